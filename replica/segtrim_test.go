package replica

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestSegStateTrim: trim deletes the oldest sealed segments whose records
// all arrived before the cut, never the newest; reads go on from the first
// segment left; a reopened state agrees; and when, after a trim that left
// only the newest segment, a crash cuts that segment to nothing, the state
// still holds everything before it (the WAL must not apply the deleted
// entries again).
func TestSegStateTrim(t *testing.T) {
	fs := vfs.NewMemFS()
	st := openTestState(t, fs) // 300-byte segments: a few entries each
	for idx := uint64(1); idx <= 40; idx++ {
		st.add(idx, int64(idx*10), [][]byte{[]byte(fmt.Sprint("record-", idx))})
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.sync(); err != nil {
		t.Fatal(err)
	}
	segs := len(st.segs)
	if segs < 4 {
		t.Fatalf("%d segments: the test needs several", segs)
	}
	for _, tc := range []struct {
		name     string
		beforeMs int64
	}{
		{"nothing expired", 10},
		{"some expired", 150},
		{"again, same cut", 150},
		{"everything expired", 1 << 40},
	} {
		firstBefore := st.segs[0]
		n, _, err := st.trim(tc.beforeMs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(st.segs) == 0 {
			t.Fatalf("%s: the newest segment was deleted", tc.name)
		}
		got, err := st.read(0, 1<<30, 1<<30)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n > 0 && firstBefore.maxTs >= tc.beforeMs {
			t.Fatalf("%s: deleted a segment with a record at %d, cut %d", tc.name, firstBefore.maxTs, tc.beforeMs)
		}
		// The first segment left holds an unexpired record, or is the newest.
		if len(st.segs) > 1 && st.segs[0].maxTs < tc.beforeMs {
			t.Fatalf("%s: an expired sealed segment survived", tc.name)
		}
		if len(got) == 0 || got[len(got)-1].Seq != Ordinal(40, 0) || got[0].Seq != st.segs[0].seeks[0].seq {
			t.Fatalf("%s: read %d records after the trim", tc.name, len(got))
		}
		if names, _ := fs.ReadDir(st.genDir(st.gen)); len(names) != len(st.segs) {
			t.Fatalf("%s: %d files, %d segments", tc.name, len(names), len(st.segs))
		}
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	st = openTestState(t, fs)
	if st.held() != 40 || len(st.segs) != 1 {
		t.Fatalf("reopened: held %d, %d segments; want 40, 1", st.held(), len(st.segs))
	}
	// A reopened state writes to a new segment; lose its only frame as a
	// power cut would (its header synced, its frame not).
	st.add(41, 410, [][]byte{[]byte("record-41")})
	if err := st.write(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := st.trim(1 << 40); err != nil || n != 1 {
		t.Fatalf("trim of the sealed one: %d, %v", n, err)
	}
	last := st.segs[0]
	st.close()
	if err := truncateFile(fs, last.path, last.start); err != nil {
		t.Fatal(err)
	}
	st = openTestState(t, fs)
	if st.held() != 40 || st.wnext != Ordinal(40, 0)+1 {
		t.Fatalf("after the cut: held %d, next ordinal %x; want 40, %x", st.held(), st.wnext, Ordinal(40, 0)+1)
	}
}

func truncateFile(fs vfs.FS, name string, size int64) error {
	f, err := fs.OpenRW(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// TestTrimCrash: a power cut in the middle of a retention trim, after each
// segment's removal, in each tear mode, leaves a state that opens, whose
// chain has no gap and holds every unexpired record up to the newest; the
// next trim finishes the job. A trim that unlinks the newest expired
// segment first (a broken order) leaves a gap that stops the state from
// opening, and the test catches it.
func TestTrimCrash(t *testing.T) {
	for _, broken := range []bool{false, true} {
		for after := 1; after <= 3; after++ {
			for _, mode := range []vfs.TearMode{vfs.TearNone, vfs.TearPrefix, vfs.TearZeros} {
				name := fmt.Sprintf("broken %v/cut after removal %d/tear %d", broken, after, mode)
				t.Run(name, func(t *testing.T) {
					err := trimCrash(t, broken, after, mode)
					switch {
					case broken && after == 1 && err == nil:
						t.Fatal("the broken order left no gap: the test cannot tell")
					case broken && err != nil:
						t.Logf("caught: %v", err)
					case err != nil:
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// trimCrash runs one case; it returns the reopen's error.
func trimCrash(t *testing.T, broken bool, after int, mode vfs.TearMode) error {
	fs := vfs.NewMemFS()
	st := openTestState(t, fs) // 300-byte segments
	for idx := uint64(1); idx <= 40; idx++ {
		st.add(idx, int64(idx*10), [][]byte{[]byte(fmt.Sprint("record-", idx))})
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.sync(); err != nil {
		t.Fatal(err)
	}
	all, _ := st.read(0, 1<<30, 1<<30)
	if len(st.segs) < 5 {
		t.Fatalf("%d segments: the test needs several", len(st.segs))
	}
	removals := 0
	st.brokenTrimOrder = broken
	st.crash = func(point string) error {
		if removals++; point == crashTrimRemoved && removals == after {
			return errCrashPoint
		}
		return nil
	}
	if _, _, err := st.trim(1 << 40); !errors.Is(err, errCrashPoint) {
		t.Fatalf("trim: %v, want the power cut", err)
	}
	st.close()
	fs.Crash(rand.New(rand.NewPCG(uint64(after), 9)), mode)
	st, err := openSegState(&segState{fs: fs, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1, size: 300, now: func() int64 { return 0 }})
	if err != nil {
		return err
	}
	got, err := st.read(0, 1<<30, 1<<30)
	if err != nil {
		return err
	}
	if len(got) == 0 || !sameStored(got, all[len(all)-len(got):]) || st.held() != 40 {
		return fmt.Errorf("after the cut: %d records, held %d; want a suffix of the %d ending at entry 40", len(got), st.held(), len(all))
	}
	if _, _, err := st.trim(1 << 40); err != nil || len(st.segs) != 1 {
		return fmt.Errorf("the next trim: %v, %d segments left", err, len(st.segs))
	}
	return nil
}

// failFS fails the n-th Remove or SyncDir (counted from 1) once; n 0 never.
type failFS struct {
	vfs.FS
	op        string // "remove" or "syncdir"
	n, called int
}

func (f *failFS) hit(op string) error {
	if op != f.op {
		return nil
	}
	if f.called++; f.called == f.n {
		return vfs.ErrInjected
	}
	return nil
}

func (f *failFS) Remove(name string) error {
	if err := f.hit("remove"); err != nil {
		return err
	}
	return f.FS.Remove(name)
}

func (f *failFS) SyncDir(dir string) error {
	if err := f.hit("syncdir"); err != nil {
		return err
	}
	return f.FS.SyncDir(dir)
}

// TestTrimIOError (review5): a trim whose second unlink fails leaves the
// list and the disk agreeing (the failed segment back at the front, the
// later ones never detached), so a later trim deletes a prefix and the
// state opens again; a failed directory sync is errTrimUnsynced, final for
// the host. Before the fix the later segments stayed detached but on
// disk, the next trim deleted newer ones, and the reopen found a gap.
func TestTrimIOError(t *testing.T) {
	for _, op := range []string{"remove", "syncdir"} {
		t.Run(op, func(t *testing.T) {
			mem := vfs.NewMemFS()
			fs := &failFS{FS: mem, op: op}
			st := openTestState(t, fs)
			for idx := uint64(1); idx <= 40; idx++ {
				st.add(idx, int64(idx*10), [][]byte{[]byte(fmt.Sprint("record-", idx))})
				if err := st.write(); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.sync(); err != nil {
				t.Fatal(err)
			}
			if len(st.segs) < 6 {
				t.Fatalf("%d segments: the test needs several", len(st.segs))
			}
			// A first cut expires four segments; the second unlink fails.
			fs.n = fs.called + 2
			n, _, err := st.trim(st.segs[3].maxTs + 1)
			if err == nil || n != 1 {
				t.Fatalf("trim: %d, %v; want 1 deleted and the injected error", n, err)
			}
			if got := errors.Is(err, errTrimUnsynced); got != (op == "syncdir") {
				t.Fatalf("trim: %v; errTrimUnsynced %v", err, got)
			}
			if op == "remove" {
				names, _ := mem.ReadDir(st.genDir(st.gen))
				if len(names) != len(st.segs) {
					t.Fatalf("after the failed unlink: %d files, %d segments listed", len(names), len(st.segs))
				}
			}
			// A later cut expires everything (on a stopped host there is no
			// next trim; here it shows the list hid no segment): it deletes
			// a prefix, and the state opens.
			if _, _, err := st.trim(1 << 40); err != nil || len(st.segs) != 1 {
				t.Fatalf("the next trim: %v, %d segments left", err, len(st.segs))
			}
			st.close()
			st, err = openSegState(&segState{fs: mem, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1, size: 300, now: func() int64 { return 0 }})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if st.held() != 40 {
				t.Fatalf("reopened: held %d, want 40", st.held())
			}
		})
	}
}

// TestHostTrimSyncErrorStops (review5): a retention trim whose directory
// sync fails stops the host, as a failed fdatasync of a round does: the
// unlink's durability is unknown, and no later trim may pass it.
func TestHostTrimSyncErrorStops(t *testing.T) {
	fs := &failFS{op: "syncdir"} // wraps the host's MemFS (tweak)
	s := &solo{t: t, fs: vfs.NewMemFS()}
	s.tweak = func(c *Config) {
		fs.FS = c.FS
		c.FS, c.StateSegmentSize = fs, 300
	}
	s.open()
	defer s.h.Close()
	runSolo(t, s, 3000, func() bool { return s.current == nil && s.h.Segments(1) >= 4 })
	fs.n = fs.called + 1
	if _, err := s.h.Trim(1, time.Now().Add(time.Hour).UnixMilli()); !errors.Is(err, errTrimUnsynced) {
		t.Fatalf("trim: %v, want errTrimUnsynced", err)
	}
	if err := s.h.HandleReady(); err == nil {
		t.Fatal("the host goes on after a trim's failed directory sync")
	}
}
