package vfs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// The crash tests name each scenario like a line of a crash log: what was done
// to which file, then "crash". The namespace after the crash is compared as a
// tree: file path → contents, directory path + "/" → "".

var tearModes = []struct {
	name string
	mode TearMode
}{{"TearNone", TearNone}, {"TearPrefix", TearPrefix}, {"TearZeros", TearZeros}}

// seeds is enough for every torn length of the short appends below to occur.
const seeds = 200

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5ead)) }

// newMem returns a MemFS with the directories /d and /e.
func newMem(t *testing.T) *MemFS {
	t.Helper()
	m := NewMemFS()
	for _, d := range []string{"/d", "/e"} {
		if err := m.MkdirAll(d); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// create makes name with contents s, written but neither synced nor named durably.
func create(t *testing.T, m *MemFS, name, s string) File {
	t.Helper()
	f, err := m.Create(name)
	must(t, err)
	writeAt(t, f, 0, s)
	return f
}

func writeAt(t *testing.T, f File, off int64, s string) {
	t.Helper()
	if n, err := f.WriteAt([]byte(s), off); err != nil || n != len(s) {
		t.Fatalf("WriteAt(%q, %d) = %d, %v", s, off, n, err)
	}
}

// durable makes name with contents s and makes both durable, returning the
// open handle.
func durable(t *testing.T, m *MemFS, name, s string) File {
	t.Helper()
	f := create(t, m, name, s)
	must(t, f.Sync())
	must(t, m.SyncDir(path.Dir(name)))
	return f
}

func appendTo(t *testing.T, f File, s string) {
	t.Helper()
	size, err := f.Size()
	must(t, err)
	writeAt(t, f, size, s)
}

// tree lists everything reachable from "/" through the FS interface.
func tree(t *testing.T, m *MemFS) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(dir string)
	walk = func(dir string) {
		names, err := m.ReadDir(dir)
		must(t, err)
		for _, n := range names {
			p := path.Join(dir, n)
			if strings.HasSuffix(n, "/") {
				out[p+"/"] = ""
				walk(p)
				continue
			}
			b, err := m.Bytes(p)
			must(t, err)
			out[p] = string(b)
		}
	}
	walk("/")
	return out
}

// files returns the tree with /d and /e, which every test starts with, added.
func files(kv ...string) map[string]string {
	out := map[string]string{"/d/": "", "/e/": ""}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// checkTree compares the tree with want, and checks the invariant that every
// file, reachable or not, sits in a directory that exists.
func checkTree(t *testing.T, m *MemFS, want map[string]string) {
	t.Helper()
	m.mu.Lock()
	for name := range m.files {
		if !m.dirs[path.Dir(name)] {
			t.Errorf("%s exists in a directory that does not", name)
		}
	}
	m.mu.Unlock()
	if got := tree(t, m); !reflect.DeepEqual(got, want) {
		t.Fatalf("after crash:\n got %q\nwant %q", got, want)
	}
}

// TestMemFSCrashDropsUnsyncedBytes: whatever the tear mode, a crash keeps
// nothing that was not made durable, except the torn tail of an append
// (TestMemFSTornAppend), which TearNone and a nil rng never keep.
func TestMemFSCrashDropsUnsyncedBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		do      func(t *testing.T, m *MemFS)
		nilRNG  bool // crash with a nil rng
		anyMode bool // the outcome holds for every tear mode, not only TearNone
		want    map[string]string
	}{
		{"a: create, write abc, crash", func(t *testing.T, m *MemFS) { create(t, m, "/d/a", "abc") }, false, true, files()},
		{"a: create, write abc, fsync, crash (no dir sync)", func(t *testing.T, m *MemFS) {
			must(t, create(t, m, "/d/a", "abc").Sync())
		}, false, true, files()},
		{"a: create, dir sync, write abc, crash (no fsync)", func(t *testing.T, m *MemFS) {
			f, err := m.Create("/d/a")
			must(t, err)
			must(t, m.SyncDir("/d"))
			writeAt(t, f, 0, "abc")
		}, false, false, files("/d/a", "")},
		{"a: durable abc, append def, crash", func(t *testing.T, m *MemFS) {
			appendTo(t, durable(t, m, "/d/a", "abc"), "def")
		}, false, false, files("/d/a", "abc")},
		{"a: durable abc, append def, crash with nil rng", func(t *testing.T, m *MemFS) {
			appendTo(t, durable(t, m, "/d/a", "abc"), "def")
		}, true, true, files("/d/a", "abc")},
		{"a: durable abc, overwrite X@0, append def, crash", func(t *testing.T, m *MemFS) {
			f := durable(t, m, "/d/a", "abc")
			writeAt(t, f, 0, "X")
			appendTo(t, f, "def")
		}, false, true, files("/d/a", "abc")},
		{"a: durable abcdef, truncate 2, crash", func(t *testing.T, m *MemFS) {
			must(t, durable(t, m, "/d/a", "abcdef").Truncate(2))
		}, false, true, files("/d/a", "abcdef")},
		{"a: durable abc, write def, fsync fails, crash", func(t *testing.T, m *MemFS) {
			f := durable(t, m, "/d/a", "abc")
			appendTo(t, f, "def")
			m.FailNextSync(nil)
			if f.Sync() == nil {
				t.Fatal("armed Sync succeeded")
			}
		}, false, false, files("/d/a", "abc")},
	} {
		for _, tm := range tearModes {
			if !tc.anyMode && tm.mode != TearNone {
				continue
			}
			t.Run(tc.name+"/"+tm.name, func(t *testing.T) {
				for seed := range uint64(seeds) {
					m := newMem(t)
					tc.do(t, m)
					rng := seeded(seed)
					if tc.nilRNG {
						rng = nil
					}
					m.Crash(rng, tm.mode)
					checkTree(t, m, tc.want)
				}
			})
		}
	}
}

// TestMemFSCrashKeepsSynced: a byte synced under a name whose directory was
// synced survives any crash, in any tear mode, and any number of crashes.
func TestMemFSCrashKeepsSynced(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, m *MemFS)
		want map[string]string
	}{
		{"a: create, write abc, fsync, dir sync, crash", func(t *testing.T, m *MemFS) {
			durable(t, m, "/d/a", "abc")
		}, files("/d/a", "abc")},
		{"a: create, dir sync, write abc, fsync, crash", func(t *testing.T, m *MemFS) {
			f, err := m.Create("/d/a")
			must(t, err)
			must(t, m.SyncDir("/d"))
			writeAt(t, f, 0, "abc")
			must(t, f.Sync())
		}, files("/d/a", "abc")},
		{"a: durable abc, append def, fsync, crash", func(t *testing.T, m *MemFS) {
			f := durable(t, m, "/d/a", "abc")
			appendTo(t, f, "def")
			must(t, f.Sync())
		}, files("/d/a", "abcdef")},
		{"a: durable abc, overwrite X@1, fsync, crash", func(t *testing.T, m *MemFS) {
			f := durable(t, m, "/d/a", "abc")
			writeAt(t, f, 1, "X")
			must(t, f.Sync())
		}, files("/d/a", "aXc")},
		{"a: durable abcdef, truncate 2, fsync, crash", func(t *testing.T, m *MemFS) {
			f := durable(t, m, "/d/a", "abcdef")
			must(t, f.Truncate(2))
			must(t, f.Sync())
		}, files("/d/a", "ab")},
		{"a, b, x/c: durable in three directories, crash", func(t *testing.T, m *MemFS) {
			must(t, m.MkdirAll("/d/x"))
			durable(t, m, "/d/a", "A")
			durable(t, m, "/e/b", "B")
			durable(t, m, "/d/x/c", "C")
		}, files("/d/a", "A", "/e/b", "B", "/d/x/", "", "/d/x/c", "C")},
	} {
		for _, tm := range tearModes {
			t.Run(tc.name+"/"+tm.name, func(t *testing.T) {
				for seed := range uint64(seeds) {
					m := newMem(t)
					tc.do(t, m)
					m.Crash(seeded(seed), tm.mode)
					checkTree(t, m, tc.want)
					m.Crash(seeded(seed+1), tm.mode)
					checkTree(t, m, tc.want)
				}
			})
		}
	}
}

// TestMemFSTornAppend pins what each tear mode leaves of an unsynced append
// to a synced file: TearNone nothing; TearPrefix a prefix of the appended
// bytes, of any length from none to all; TearZeros the full length, with a
// prefix of the appended bytes followed by zeros. There is no mode that
// leaves garbage: a torn append never shows bytes that were not written,
// other than zeros. The remnant is durable: a second crash keeps it.
func TestMemFSTornAppend(t *testing.T) {
	const synced, appended = "abcd", "EFGHIJKL"
	for _, tc := range []struct {
		mode     TearMode
		fullSize bool // the file keeps its unsynced length
		lengths  int  // how many distinct remnant lengths the seeds must produce
	}{
		{TearNone, false, 1},
		{TearPrefix, false, len(appended) + 1},
		{TearZeros, true, len(appended) + 1},
	} {
		t.Run(tearModes[tc.mode].name, func(t *testing.T) {
			seen := map[int]bool{}
			for seed := range uint64(seeds) {
				m := newMem(t)
				appendTo(t, durable(t, m, "/d/a", synced), appended)
				m.Crash(seeded(seed), tc.mode)
				got, err := m.Bytes("/d/a")
				must(t, err)
				keep := tornKeep(t, got, synced, appended, tc.fullSize)
				if tc.mode == TearNone && keep != 0 {
					t.Fatalf("seed %d: TearNone kept %q", seed, got)
				}
				seen[keep] = true
				m.Crash(seeded(seed+1), tc.mode)
				if again, _ := m.Bytes("/d/a"); !bytes.Equal(again, got) {
					t.Fatalf("seed %d: the torn remnant %q did not survive a second crash: %q", seed, got, again)
				}
			}
			if len(seen) != tc.lengths {
				t.Fatalf("remnant lengths seen: %v, want %d distinct", seen, tc.lengths)
			}
		})
	}
}

// tornKeep checks that got is synced, then a prefix of appended, then (if
// fullSize) zeros up to the appended length, and returns the prefix length.
func tornKeep(t *testing.T, got []byte, synced, appended string, fullSize bool) int {
	t.Helper()
	if !bytes.HasPrefix(got, []byte(synced)) {
		t.Fatalf("torn file %q lost its synced prefix %q", got, synced)
	}
	tail := got[len(synced):]
	keep := 0
	for keep < len(tail) && keep < len(appended) && tail[keep] == appended[keep] {
		keep++
	}
	rest := tail[keep:]
	switch {
	case fullSize && len(tail) != len(appended):
		t.Fatalf("torn file %q: size %d, want the unsynced size %d", got, len(got), len(synced)+len(appended))
	case fullSize && len(bytes.Trim(rest, "\x00")) != 0:
		t.Fatalf("torn file %q: after the kept prefix, %q is not zeros", got, rest)
	case !fullSize && len(rest) != 0:
		t.Fatalf("torn file %q: %q is not a prefix of the append %q", got, tail, appended)
	}
	return keep
}

// TestMemFSSyncDir: a change to a directory's entries survives a crash only
// if the directory was synced after it. Directories themselves are durable
// once made, and so is RemoveAll (its files' names go with the tree), so
// MkdirAll and RemoveAll come out the same either way.
func TestMemFSSyncDir(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(t *testing.T, m *MemFS) // made durable before op
		op        func(m *MemFS) error
		syncDirs  []string
		synced    map[string]string // after a crash, when syncDirs were synced after op
		notSynced map[string]string // after a crash, when they were not
	}{
		{"create a, crash", nil,
			func(m *MemFS) error { _, err := m.Create("/d/a"); return err },
			[]string{"/d"}, files("/d/a", ""), files()},
		{"rename a → b, crash", func(t *testing.T, m *MemFS) { durable(t, m, "/d/a", "A") },
			func(m *MemFS) error { return m.Rename("/d/a", "/d/b") },
			[]string{"/d"}, files("/d/b", "A"), files("/d/a", "A")},
		{"rename a → existing b, crash", func(t *testing.T, m *MemFS) {
			durable(t, m, "/d/a", "A")
			durable(t, m, "/d/b", "B")
		}, func(m *MemFS) error { return m.Rename("/d/a", "/d/b") },
			[]string{"/d"}, files("/d/b", "A"), files("/d/a", "A", "/d/b", "B")},
		{"rename d/a → e/a, crash", func(t *testing.T, m *MemFS) { durable(t, m, "/d/a", "A") },
			func(m *MemFS) error { return m.Rename("/d/a", "/e/a") },
			[]string{"/d", "/e"}, files("/e/a", "A"), files("/d/a", "A")},
		// Syncing one side of a cross-directory rename: the name is kept
		// twice (only the target synced) or lost (only the source synced).
		{"rename d/a → e/a, sync e only, crash", func(t *testing.T, m *MemFS) { durable(t, m, "/d/a", "A") },
			func(m *MemFS) error { return m.Rename("/d/a", "/e/a") },
			[]string{"/e"}, files("/d/a", "A", "/e/a", "A"), files("/d/a", "A")},
		{"rename d/a → e/a, sync d only, crash", func(t *testing.T, m *MemFS) { durable(t, m, "/d/a", "A") },
			func(m *MemFS) error { return m.Rename("/d/a", "/e/a") },
			[]string{"/d"}, files(), files("/d/a", "A")},
		{"remove a, crash", func(t *testing.T, m *MemFS) { durable(t, m, "/d/a", "A") },
			func(m *MemFS) error { return m.Remove("/d/a") },
			[]string{"/d"}, files(), files("/d/a", "A")},
		{"remove a, sync the other directory, crash", func(t *testing.T, m *MemFS) { durable(t, m, "/d/a", "A") },
			func(m *MemFS) error { return m.Remove("/d/a") },
			[]string{"/e"}, files("/d/a", "A"), files("/d/a", "A")},
		// Removing the emptied directory is durable at once, like any
		// directory change here, and takes the unlink of a with it: a
		// file never outlives its directory.
		{"remove x/a, remove x, crash", func(t *testing.T, m *MemFS) {
			must(t, m.MkdirAll("/d/x"))
			durable(t, m, "/d/x/a", "A")
		}, func(m *MemFS) error {
			if err := m.Remove("/d/x/a"); err != nil {
				return err
			}
			return m.Remove("/d/x")
		}, []string{"/d"}, files(), files()},
		{"removeall d/x with x/a and x/y/b, crash", func(t *testing.T, m *MemFS) {
			must(t, m.MkdirAll("/d/x/y"))
			durable(t, m, "/d/x/a", "A")
			durable(t, m, "/d/x/y/b", "B")
		}, func(m *MemFS) error { return m.RemoveAll("/d/x") },
			[]string{"/d"}, files(), files()},
		{"mkdirall d/x/y, crash", nil,
			func(m *MemFS) error { return m.MkdirAll("/d/x/y") },
			[]string{"/d"}, files("/d/x/", "", "/d/x/y/", ""), files("/d/x/", "", "/d/x/y/", "")},
	} {
		for _, sync := range []bool{true, false} {
			name, want := tc.name, tc.notSynced
			if sync {
				name, want = "sync "+strings.Join(tc.syncDirs, ",")+", "+tc.name, tc.synced
			}
			t.Run(name, func(t *testing.T) {
				m := newMem(t)
				if tc.setup != nil {
					tc.setup(t, m)
				}
				must(t, tc.op(m))
				if sync {
					for _, d := range tc.syncDirs {
						must(t, m.SyncDir(d))
					}
				}
				m.Crash(nil, TearNone)
				checkTree(t, m, want)
			})
		}
	}
}

// TestMemFSCrashKillsHandles: a handle opened before a crash fails every
// call after it, as the process that held it is gone; the file reopens.
func TestMemFSCrashKillsHandles(t *testing.T) {
	m := newMem(t)
	f := durable(t, m, "/d/a", "abc")
	m.Crash(nil, TearNone)
	calls := map[string]func() error{
		"ReadAt":    func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err },
		"WriteAt":   func() error { _, err := f.WriteAt([]byte("x"), 0); return err },
		"Sync":      f.Sync,
		"Truncate":  func() error { return f.Truncate(0) },
		"Size":      func() error { _, err := f.Size(); return err },
		"DropCache": func() error { return f.DropCache(0, 0) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, errDead) {
			t.Errorf("%s after crash: %v, want %v", name, err, errDead)
		}
	}
	g, err := m.OpenRW("/d/a")
	must(t, err)
	writeAt(t, g, 3, "d")
	if b, _ := m.Bytes("/d/a"); string(b) != "abcd" {
		t.Fatalf("reopened file = %q", b)
	}
}

// TestMemFSFaults is the rule table for the injected faults: what the armed
// call returns, what it leaves in the file now and after a crash, and what a
// second write and sync return (a Fail* fault fires once; a capacity stays
// until lifted). Each case appends "efgh" to a durable "abcd" and syncs it.
func TestMemFSFaults(t *testing.T) {
	errIO := syscall.EIO
	for _, tc := range []struct {
		name       string
		arm        func(m *MemFS)
		writeN     int
		writeErr   error // errors.Is target; nil: success
		syncErr    error
		now, crash string // contents now, and after a TearNone crash
		againErr   error  // from a second write of "ijkl" at the end
	}{
		{"no fault", func(*MemFS) {}, 4, nil, nil, "abcdefgh", "abcdefgh", nil},
		{"FailNextWrite(nil)", func(m *MemFS) { m.FailNextWrite(nil, false) },
			0, ErrInjected, nil, "abcd", "abcd", nil},
		{"FailNextWrite(EIO)", func(m *MemFS) { m.FailNextWrite(errIO, false) },
			0, errIO, nil, "abcd", "abcd", nil},
		{"FailNextWrite(nil, short): half the bytes land", func(m *MemFS) { m.FailNextWrite(nil, true) },
			2, ErrInjected, nil, "abcdef", "abcdef", nil},
		{"FailNextSync(nil): the bytes stay unsynced", func(m *MemFS) { m.FailNextSync(nil) },
			4, nil, ErrInjected, "abcdefgh", "abcd", nil},
		{"FailNextSync(EIO)", func(m *MemFS) { m.FailNextSync(errIO) },
			4, nil, errIO, "abcdefgh", "abcd", nil},
		{"SetCapacity(6): ENOSPC, nothing written", func(m *MemFS) { m.SetCapacity(6) },
			0, syscall.ENOSPC, nil, "abcd", "abcd", syscall.ENOSPC},
		{"SetCapacity(8): exactly enough", func(m *MemFS) { m.SetCapacity(8) },
			4, nil, nil, "abcdefgh", "abcdefgh", syscall.ENOSPC},
		{"FailNextWrite and SetCapacity(6): the armed fault fires first", func(m *MemFS) {
			m.SetCapacity(6)
			m.FailNextWrite(nil, false)
		}, 0, ErrInjected, nil, "abcd", "abcd", syscall.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMem(t)
			f := durable(t, m, "/d/a", "abcd")
			writes := m.Writes()
			tc.arm(m)
			n, err := f.WriteAt([]byte("efgh"), 4)
			if n != tc.writeN || !isOrNil(err, tc.writeErr) {
				t.Fatalf("WriteAt = %d, %v; want %d, %v", n, err, tc.writeN, tc.writeErr)
			}
			if wantWrites := writes + btoi(err == nil); m.Writes() != wantWrites {
				t.Fatalf("Writes() = %d, want %d: only successful writes count", m.Writes(), wantWrites)
			}
			if err := f.Sync(); !isOrNil(err, tc.syncErr) {
				t.Fatalf("Sync = %v, want %v", err, tc.syncErr)
			}
			if got, _ := m.Bytes("/d/a"); string(got) != tc.now {
				t.Fatalf("contents = %q, want %q", got, tc.now)
			}
			m.Crash(nil, TearNone)
			if got, _ := m.Bytes("/d/a"); string(got) != tc.crash {
				t.Fatalf("after crash = %q, want %q", got, tc.crash)
			}

			m = newMem(t)
			f = durable(t, m, "/d/a", "abcd")
			tc.arm(m)
			f.WriteAt([]byte("efgh"), 4)
			f.Sync()
			size, _ := f.Size()
			if _, err := f.WriteAt([]byte("ijkl"), size); !isOrNil(err, tc.againErr) {
				t.Fatalf("second WriteAt = %v, want %v", err, tc.againErr)
			}
			if err := f.Sync(); err != nil {
				t.Fatalf("second Sync = %v", err)
			}
		})
	}
}

// TestMemFSCrashDisarmsFaults: Fail* faults do not outlive a crash (the
// process that armed them is gone); a capacity does (the disk is the same).
func TestMemFSCrashDisarmsFaults(t *testing.T) {
	m := newMem(t)
	f := durable(t, m, "/d/a", "abcd")
	m.FailNextWrite(nil, false)
	m.FailNextSync(nil)
	m.SetCapacity(6)
	m.Crash(nil, TearNone)
	f, err := m.OpenRW("/d/a")
	must(t, err)
	writeAt(t, f, 4, "ef")
	must(t, f.Sync())
	if _, err := f.WriteAt([]byte("g"), 6); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past capacity after crash: %v, want ENOSPC", err)
	}
}

func isOrNil(err, target error) bool {
	if target == nil {
		return err == nil
	}
	return errors.Is(err, target)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestMemFSCapacity: a write that would grow the live files past the
// capacity fails with ENOSPC before touching the file; anything that frees
// space lets writes resume.
func TestMemFSCapacity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		free   func(t *testing.T, m *MemFS, a, b File) // run between the failed write and the retry
		retry  func(a File) error
		used   int64 // Used() after the retry
		enospc bool  // the retry fails too
	}{
		{"nothing freed: still full", func(*testing.T, *MemFS, File, File) {},
			appendErr("xy"), 12, true},
		{"overwrite in place needs no space", func(*testing.T, *MemFS, File, File) {},
			func(a File) error { _, err := a.WriteAt([]byte("XYZ"), 0); return err }, 12, false},
		{"remove b, even unsynced", func(t *testing.T, m *MemFS, _, _ File) { must(t, m.Remove("/d/b")) },
			appendErr("xy"), 8, false},
		{"truncate b", func(t *testing.T, _ *MemFS, _, b File) { must(t, b.Truncate(0)) },
			appendErr("xy"), 8, false},
		{"removeall /e", func(t *testing.T, m *MemFS, _, _ File) { must(t, m.RemoveAll("/e")) },
			appendErr("xy"), 12, false},
		{"SetCapacity(0) lifts the limit", func(_ *testing.T, m *MemFS, _, _ File) { m.SetCapacity(0) },
			appendErr("xy"), 14, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMem(t)
			a := durable(t, m, "/d/a", "abcd")
			b := durable(t, m, "/d/b", "abcdef")
			durable(t, m, "/e/c", "ab")
			m.SetCapacity(m.Used() + 1)
			if n, err := a.WriteAt([]byte("xy"), 4); n != 0 || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write past capacity = %d, %v; want 0, ENOSPC", n, err)
			}
			var pe *os.PathError
			if _, err := a.WriteAt([]byte("xy"), 4); !errors.As(err, &pe) || pe.Op != "write" || pe.Path != "/d/a" {
				t.Fatalf("ENOSPC error %v does not name the write and the file", err)
			}
			if got, _ := m.Bytes("/d/a"); string(got) != "abcd" {
				t.Fatalf("failed write changed the file: %q", got)
			}
			tc.free(t, m, a, b)
			if err := tc.retry(a); errors.Is(err, syscall.ENOSPC) != tc.enospc || (err != nil && !tc.enospc) {
				t.Fatalf("retry: %v, want ENOSPC %v", err, tc.enospc)
			}
			if m.Used() != tc.used {
				t.Fatalf("Used() = %d, want %d", m.Used(), tc.used)
			}
		})
	}
}

// appendErr returns a retry that appends s.
func appendErr(s string) func(File) error {
	return func(f File) error {
		size, err := f.Size()
		if err != nil {
			return err
		}
		_, err = f.WriteAt([]byte(s), size)
		return err
	}
}

// TestMemFSFlipBit: a flipped bit is media corruption, so it is in the
// durable bytes too when it falls in the synced part.
func TestMemFSFlipBit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		off        int64
		bit        uint
		now, crash string
	}{
		{"synced byte", 1, 0, "acc" + "d", "acc"},         // 'b'^1 = 'c'
		{"bit taken mod 8", 0, 8 + 5, "Abc" + "d", "Abc"}, // 'a'^0x20 = 'A'
		{"unsynced byte: lost in the crash", 3, 0, "abce", "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMem(t)
			appendTo(t, durable(t, m, "/d/a", "abc"), "d")
			must(t, m.FlipBit("/d/a", tc.off, tc.bit))
			if got, _ := m.Bytes("/d/a"); string(got) != tc.now {
				t.Fatalf("now %q, want %q", got, tc.now)
			}
			m.Crash(nil, TearNone)
			if got, _ := m.Bytes("/d/a"); string(got) != tc.crash {
				t.Fatalf("after crash %q, want %q", got, tc.crash)
			}
		})
	}
	m := newMem(t)
	durable(t, m, "/d/a", "abc")
	for _, bad := range []struct {
		name string
		off  int64
	}{{"/d/a", 3}, {"/d/missing", 0}} {
		if err := m.FlipBit(bad.name, bad.off, 0); !IsNotExist(err) {
			t.Errorf("FlipBit(%s, %d) = %v, want not-exist", bad.name, bad.off, err)
		}
	}
}

// TestMemFSBytesSetBytes: Bytes and SetBytes copy, SetBytes is durable at
// once (name and contents) and replaces a file in place.
func TestMemFSBytesSetBytes(t *testing.T) {
	m := newMem(t)
	in := []byte("damaged")
	m.SetBytes("/d/a", in)
	in[0] = 'X'
	out, err := m.Bytes("/d/a")
	must(t, err)
	out[1] = 'X'
	if got, _ := m.Bytes("/d/a"); string(got) != "damaged" {
		t.Fatalf("Bytes/SetBytes share memory with the caller: %q", got)
	}
	durable(t, m, "/d/b", "old contents")
	m.SetBytes("/d/b", []byte("new"))
	m.Crash(seeded(1), TearPrefix)
	checkTree(t, m, files("/d/a", "damaged", "/d/b", "new"))
	if _, err := m.Bytes("/d/missing"); !IsNotExist(err) {
		t.Fatalf("Bytes of a missing file: %v", err)
	}
}

// TestMemFSCacheDropsInOrder: every DropCache call is recorded, oldest first,
// with the synced length at the time, and CacheDrops returns a copy.
func TestMemFSCacheDropsInOrder(t *testing.T) {
	m := newMem(t)
	a := durable(t, m, "/d/a", "abcd")
	b := create(t, m, "/e/b", "xy")
	must(t, a.DropCache(0, 4))
	must(t, b.DropCache(1, 1))
	appendTo(t, a, "ef")
	must(t, a.Sync())
	must(t, a.DropCache(4, 2))
	want := []CacheDrop{{"/d/a", 0, 4, 4}, {"/e/b", 1, 1, 0}, {"/d/a", 4, 2, 6}}
	got := m.CacheDrops()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CacheDrops = %+v, want %+v", got, want)
	}
	got[0].Path = "changed"
	if m.CacheDrops()[0].Path != "/d/a" {
		t.Fatal("CacheDrops returned its own slice")
	}
}

// TestMemFSReadDir: names are sorted, directories end in "/", only direct
// children are listed, and relative paths resolve against ".".
func TestMemFSReadDir(t *testing.T) {
	m := newMem(t)
	must(t, m.MkdirAll("/d/m/deep"))
	must(t, m.MkdirAll("/d/B"))
	for _, n := range []string{"/d/z", "/d/a", "/d/m.seg", "/d/m/inner", "/d/B/x"} {
		create(t, m, n, "")
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"/d", []string{"B/", "a", "m.seg", "m/", "z"}},
		{"/d/", []string{"B/", "a", "m.seg", "m/", "z"}},
		{"/d/m", []string{"deep/", "inner"}},
		{"/d/m/deep", nil},
		{"/", []string{"d/", "e/"}},
	} {
		got, err := m.ReadDir(tc.dir)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ReadDir(%s) = %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}
	must(t, m.MkdirAll("rel/sub"))
	create(t, m, "rel/f", "")
	if got, err := m.ReadDir("rel"); err != nil || !reflect.DeepEqual(got, []string{"f", "sub/"}) {
		t.Errorf("ReadDir(rel) = %q, %v", got, err)
	}
}

// TestMemFSTornGap pins TearGap: the file keeps its unsynced length and
// every unsynced byte but those of one block, aligned in the file and cut
// to the unsynced range, which are zeros; over the seeds the lost block is
// sometimes followed by bytes that persisted (a later block kept, an
// earlier one lost). The remnant is durable.
func TestMemFSTornGap(t *testing.T) {
	synced := strings.Repeat("s", 100)
	appended := strings.Repeat("A", 3*TearBlock+200)
	laterKept := false
	for seed := range uint64(seeds) {
		m := newMem(t)
		appendTo(t, durable(t, m, "/d/a", synced), appended)
		m.Crash(seeded(seed), TearGap)
		got, err := m.Bytes("/d/a")
		must(t, err)
		if len(got) != len(synced)+len(appended) || !bytes.HasPrefix(got, []byte(synced)) {
			t.Fatalf("seed %d: %d bytes, synced prefix kept %v", seed, len(got), bytes.HasPrefix(got, []byte(synced)))
		}
		start := bytes.IndexByte(got, 0)
		end := start + bytes.IndexByte(got[start:], 'A')
		if end < start {
			end = len(got)
		}
		if start < len(synced) || start/TearBlock != (end-1)/TearBlock ||
			(start%TearBlock != 0 && start != len(synced)) || (end%TearBlock != 0 && end != len(got)) ||
			bytes.IndexByte(got[end:], 0) >= 0 {
			t.Fatalf("seed %d: zeros at [%d,%d) are not one block of the unsynced bytes", seed, start, end)
		}
		laterKept = laterKept || end < len(got)
		m.Crash(seeded(seed+1), TearGap)
		if again, _ := m.Bytes("/d/a"); !bytes.Equal(again, got) {
			t.Fatalf("seed %d: the remnant did not survive a second crash", seed)
		}
	}
	if !laterKept {
		t.Fatal("no seed kept a block after the lost one")
	}
}

// TestMemFSCrashIsDeterministic: one seed tears a disk's files the same way
// every time, whatever the map order of its files, so that a simulation seed
// replays (replica's TestSimulationIsDeterministic).
func TestMemFSCrashIsDeterministic(t *testing.T) {
	names := []string{"/d/a", "/d/b", "/d/c", "/d/e", "/d/f", "/d/g", "/d/h", "/d/i"}
	tear := func(seed uint64, mode TearMode) map[string]string {
		m := newMem(t)
		for i, n := range names {
			appendTo(t, durable(t, m, n, strings.Repeat("s", 10*i)), strings.Repeat("A", 2*TearBlock+50*i))
		}
		m.Crash(seeded(seed), mode)
		out := map[string]string{}
		for _, n := range names {
			b, err := m.Bytes(n)
			must(t, err)
			out[n] = string(b)
		}
		return out
	}
	for _, mode := range []TearMode{TearPrefix, TearZeros, TearGap} {
		for seed := range uint64(4) {
			want := tear(seed, mode)
			for run := range 10 {
				if got := tear(seed, mode); !reflect.DeepEqual(got, want) {
					t.Fatalf("mode %d seed %d run %d: the same seed tore the files differently", mode, seed, run)
				}
			}
		}
	}
}
