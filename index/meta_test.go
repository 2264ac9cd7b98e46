package index

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func newMeta(t *testing.T) (*Meta, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	m, err := OpenMeta(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, path
}

func streams(t *testing.T, m *Meta) []StreamRecord {
	t.Helper()
	recs, err := m.Streams()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestMetaStreams: PutStream upserts, DeleteStream removes (a missing name is
// no error), Streams sorts by name, and all of it survives a reopen.
func TestMetaStreams(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(m *Meta) error
		want []StreamRecord
	}{
		{"empty", func(*Meta) error { return nil }, nil},
		{"put sorts by name", func(m *Meta) error {
			for _, n := range []string{"b", "a", "B"} {
				if err := m.PutStream(n, []byte("v"+n)); err != nil {
					return err
				}
			}
			return nil
		}, []StreamRecord{{"B", []byte("vB")}, {"a", []byte("va")}, {"b", []byte("vb")}}},
		{"put again replaces", func(m *Meta) error {
			if err := m.PutStream("a", []byte("old")); err != nil {
				return err
			}
			return m.PutStream("a", []byte("new"))
		}, []StreamRecord{{"a", []byte("new")}}},
		{"delete", func(m *Meta) error {
			if err := m.PutStream("a", []byte("1")); err != nil {
				return err
			}
			if err := m.PutStream("b", []byte("2")); err != nil {
				return err
			}
			return m.DeleteStream("a")
		}, []StreamRecord{{"b", []byte("2")}}},
		{"delete of a missing stream", func(m *Meta) error { return m.DeleteStream("nope") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, path := newMeta(t)
			if err := tc.do(m); err != nil {
				t.Fatal(err)
			}
			if got := streams(t, m); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Streams = %q, want %q", got, tc.want)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			m2, err := OpenMeta(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			if got := streams(t, m2); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("after reopen, Streams = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMetaStreamsCopies: a value returned by Streams outlives the
// transaction and does not alias the database.
func TestMetaStreamsCopies(t *testing.T) {
	m, _ := newMeta(t)
	if err := m.PutStream("a", []byte("value")); err != nil {
		t.Fatal(err)
	}
	streams(t, m)[0].Value[0] = 'X'
	if got := streams(t, m)[0].Value; string(got) != "value" {
		t.Fatalf("stored value changed through a returned copy: %q", got)
	}
}

// TestMetaSecret: 32 random bytes made on first use, then the same forever;
// a stored value of the wrong length is replaced.
func TestMetaSecret(t *testing.T) {
	m, path := newMeta(t)
	s1, err := m.Secret()
	if err != nil || len(s1) != 32 {
		t.Fatalf("Secret = %x, %v", s1, err)
	}
	if s2, _ := m.Secret(); !bytes.Equal(s1, s2) {
		t.Fatal("second Secret differs")
	}
	m.Close()
	m, err = OpenMeta(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if s3, _ := m.Secret(); !bytes.Equal(s1, s3) {
		t.Fatal("Secret changed across a reopen")
	}
	other, _ := newMeta(t)
	if s4, _ := other.Secret(); bytes.Equal(s1, s4) {
		t.Fatal("two databases made the same secret")
	}
	if err := m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketServer).Put(keySecret, []byte("short")) }); err != nil {
		t.Fatal(err)
	}
	if s5, err := m.Secret(); err != nil || len(s5) != 32 || bytes.Equal(s5, s1) {
		t.Fatalf("Secret after a damaged value = %x, %v; want a new 32-byte secret", s5, err)
	}
}

// TestOpenMetaReadOnly: fsck reads streams through it, cannot write, and a
// missing meta.db is an error, not a new file.
func TestOpenMetaReadOnly(t *testing.T) {
	m, path := newMeta(t)
	if err := m.PutStream("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	m.Close()
	ro, err := OpenMetaReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got := streams(t, ro); !reflect.DeepEqual(got, []StreamRecord{{"a", []byte("1")}}) {
		t.Fatalf("Streams = %q", got)
	}
	if err := ro.PutStream("b", nil); !errors.Is(err, bolt.ErrDatabaseReadOnly) {
		t.Fatalf("PutStream on a read-only Meta: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "meta.db")
	if _, err := OpenMetaReadOnly(missing); err == nil {
		t.Fatal("OpenMetaReadOnly of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenMetaReadOnly created the file: %v", err)
	}
}

// TestOpenMetaInit: a new meta.db is made under a temporary name, which is
// gone afterwards, even when a crashed initialisation left one behind.
func TestOpenMetaInit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meta.db")
	if err := os.WriteFile(path+".tmp", []byte("half-made"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := OpenMeta(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	names, _ := os.ReadDir(dir)
	if len(names) != 1 || names[0].Name() != "meta.db" {
		t.Fatalf("directory holds %v, want only meta.db", names)
	}
}

// populated writes a real bbolt file of each kind, big enough that its data
// pages lie well past the meta pages, and returns its size.
func populated(t *testing.T, path string, kind string) int64 {
	t.Helper()
	switch kind {
	case "index":
		ix, _, err := Open(path, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			ix.Submit(Update{Shard: fmt.Sprintf("s/%d", i), Segments: []Segment{{ID: 1}}, Seeks: []Seek{{Seq: 1, SegID: 1}}})
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	case "meta":
		m, err := OpenMeta(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if err := m.PutStream(fmt.Sprintf("stream-%d", i), bytes.Repeat([]byte{'v'}, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// damage is one way to spoil a bbolt file; it returns whether bbolt can
// still open the file as it is.
var damage = []struct {
	name   string
	spoil  func(t *testing.T, path string, size int64)
	usable bool
}{
	{"garbage", writeFile([]byte("this is not a bbolt file, not even close to one")), false},
	{"zeroed pages", writeFile(make([]byte, 16384)), false},
	{"cut to 1 byte", truncate(func(int64) int64 { return 1 }), false},
	{"cut to one page", truncate(func(int64) int64 { return 4096 }), false},
	{"cut after the meta pages", truncate(func(int64) int64 { return 8192 }), false},
	{"cut inside the data pages", truncate(func(int64) int64 { return 20000 }), false},
	{"cut to half", truncate(func(n int64) int64 { return n / 2 }), false},
	{"a directory in its place", func(t *testing.T, path string, _ int64) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
	}, false},
	// bbolt grows its file ahead of use; losing only that slack loses nothing.
	{"unused tail cut", truncate(func(n int64) int64 { return n - 4096 }), true},
	// bbolt initialises an empty file in place.
	{"empty", truncate(func(int64) int64 { return 0 }), true},
}

func writeFile(data []byte) func(t *testing.T, path string, _ int64) {
	return func(t *testing.T, path string, _ int64) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func truncate(to func(size int64) int64) func(t *testing.T, path string, size int64) {
	return func(t *testing.T, path string, size int64) {
		if err := os.Truncate(path, to(size)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenDamagedIndex: index.db is derived, so whatever the damage Open
// sets the file aside (keeping it for inspection) and starts a fresh one
// that works; it never panics. A file bbolt can still use is kept.
func TestOpenDamagedIndex(t *testing.T) {
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			d.spoil(t, path, populated(t, path, "index"))
			ix, rebuilt, err := Open(path, time.Hour)
			if err != nil || rebuilt == d.usable {
				t.Fatalf("Open: %v rebuilt=%v, want rebuilt=%v", err, rebuilt, !d.usable)
			}
			defer ix.Close()
			_, serr := os.Stat(path + ".corrupt")
			if d.usable != errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("index.db.corrupt: %v", serr)
			}
			if !d.usable && len(shards(t, ix)) != 0 {
				t.Fatal("the fresh index is not empty")
			}
			ix.Submit(Update{Shard: "new", Segments: []Segment{{ID: 1}}})
			if err := ix.Flush(); err != nil {
				t.Fatal(err)
			}
			if segs, _ := load(t, ix, "new"); len(segs) != 1 {
				t.Fatal("the reopened index does not commit")
			}
		})
	}
}

// TestOpenDamagedMeta: meta.db is authoritative, so damage is an error, for
// the server and for fsck alike, and the file stays where and as it was.
// Never a panic.
func TestOpenDamagedMeta(t *testing.T) {
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meta.db")
			d.spoil(t, path, populated(t, path, "meta"))
			before := snapshot(t, path)
			if d.usable {
				// Read-only first: the writable open of an empty file
				// initialises it.
				for _, open := range []func(string) (*Meta, error){OpenMetaReadOnly, OpenMeta} {
					m, err := open(path)
					if err != nil && !(d.name == "empty" && m == nil) {
						t.Fatalf("open: %v", err)
					}
					if m != nil {
						m.Close()
					}
				}
				return
			}
			for name, open := range map[string]func(string) (*Meta, error){"OpenMeta": OpenMeta, "OpenMetaReadOnly": OpenMetaReadOnly} {
				if m, err := open(path); err == nil {
					m.Close()
					t.Fatalf("%s of a damaged meta.db succeeded", name)
				} else if errors.Is(err, ErrLocked) {
					t.Fatalf("%s: %v, want a damage error, not ErrLocked", name, err)
				}
			}
			if after := snapshot(t, path); after != before {
				t.Fatal("a failed open changed or moved meta.db")
			}
		})
	}
}

// snapshot is the file's contents, or "dir" for a directory.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return "dir"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTruncatedIsErrDamaged: a file shorter than its meta page says is
// reported as ErrDamaged, whether bbolt faults on it or not.
func TestTruncatedIsErrDamaged(t *testing.T) {
	for _, cut := range []int64{8192, 20000} {
		path := filepath.Join(t.TempDir(), "meta.db")
		populated(t, path, "meta")
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenMetaReadOnly(path); !errors.Is(err, ErrDamaged) {
			t.Errorf("cut to %d: %v, want ErrDamaged", cut, err)
		}
	}
}

// TestOpenIndexCannotMoveAside: if the damaged file cannot be renamed, Open
// fails and says so, leaving the file in place.
func TestOpenIndexCannotMoveAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path+".corrupt", "occupied"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, time.Hour); err == nil || !strings.Contains(err.Error(), "moving it aside failed") {
		t.Fatalf("Open: %v", err)
	}
	if snapshot(t, path) != "garbage" {
		t.Fatal("index.db changed")
	}
}

// TestErrLocked: a database held by a writer (a server) refuses every other
// open with ErrLocked after bbolt's timeout, and Open does not mistake the
// lock for damage; read-only opens share the file. The cases run in parallel
// as each waits out the timeout.
func TestErrLocked(t *testing.T) {
	openIndex := func(p string) (func() error, error) {
		ix, _, err := Open(p, time.Hour)
		if err != nil {
			return nil, err
		}
		return ix.Close, nil
	}
	openIndexRO := func(p string) (func() error, error) {
		ix, err := OpenReadOnly(p)
		if err != nil {
			return nil, err
		}
		return ix.Close, nil
	}
	openMeta := func(p string) (func() error, error) {
		m, err := OpenMeta(p)
		if err != nil {
			return nil, err
		}
		return m.Close, nil
	}
	openMetaRO := func(p string) (func() error, error) {
		m, err := OpenMetaReadOnly(p)
		if err != nil {
			return nil, err
		}
		return m.Close, nil
	}
	for _, tc := range []struct {
		name         string
		kind         string
		holder, open func(string) (func() error, error)
		locked       bool
	}{
		{"Open while a server holds index.db", "index", openIndex, openIndex, true},
		{"OpenReadOnly while a server holds index.db", "index", openIndex, openIndexRO, true},
		{"OpenMeta while a server holds meta.db", "meta", openMeta, openMeta, true},
		{"OpenMetaReadOnly while a server holds meta.db", "meta", openMeta, openMetaRO, true},
		{"OpenMeta while fsck reads meta.db", "meta", openMetaRO, openMeta, true},
		{"OpenMetaReadOnly while fsck reads meta.db", "meta", openMetaRO, openMetaRO, false},
		{"OpenReadOnly while fsck reads index.db", "index", openIndexRO, openIndexRO, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), tc.kind+".db")
			populated(t, path, tc.kind)
			release, err := tc.holder(path)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			closeSecond, err := tc.open(path)
			if tc.locked != errors.Is(err, ErrLocked) {
				t.Fatalf("second open: %v, want ErrLocked %v", err, tc.locked)
			}
			if err == nil {
				closeSecond()
			}
			if _, serr := os.Stat(path + ".corrupt"); !errors.Is(serr, os.ErrNotExist) {
				t.Fatal("a locked index.db was moved aside")
			}
		})
	}
}
