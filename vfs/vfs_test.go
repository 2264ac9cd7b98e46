package vfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// DropCache is only a hint: on either filesystem the bytes read back
// unchanged afterwards, synced or not.
func TestDropCacheKeepsData(t *testing.T) {
	for name, fs := range map[string]FS{"os": OS{}, "mem": NewMemFS()} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if name == "mem" {
				dir = "/d"
				fs.MkdirAll(dir)
			}
			f, err := fs.Create(filepath.Join(dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := bytes.Repeat([]byte("shardlog"), 4096)
			f.WriteAt(want[:16384], 0)
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.WriteAt(want[16384:], 16384) // not synced
			if err := f.DropCache(0, 0); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after DropCache: %v, data changed: %v", err, !bytes.Equal(got, want))
			}
		})
	}
}

func TestMemFSRecordsCacheDrops(t *testing.T) {
	m := NewMemFS()
	m.MkdirAll("/d")
	f, _ := m.Create("/d/f")
	f.WriteAt(make([]byte, 100), 0)
	f.Sync()
	f.WriteAt(make([]byte, 50), 100)
	f.DropCache(10, 20)
	want := []CacheDrop{{Path: "/d/f", Off: 10, N: 20, SyncedBytes: 100}}
	if got := m.CacheDrops(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("CacheDrops = %+v, want %+v", got, want)
	}
}

// TestFSContract runs the same calls on the real filesystem (in a temporary
// directory) and on MemFS, so the double cannot drift from what the code
// meets in production. The OS cannot simulate a crash; SyncDir is checked
// to succeed on a directory and to fail with not-exist on a missing one.
func TestFSContract(t *testing.T) {
	for _, fsys := range []struct {
		name string
		fs   FS
		root func(t *testing.T) string
	}{
		{"os", OS{}, func(t *testing.T) string { return t.TempDir() }},
		{"mem", NewMemFS(), func(t *testing.T) string { return "/root" }},
	} {
		t.Run(fsys.name, func(t *testing.T) {
			root := fsys.root(t)
			if err := fsys.fs.MkdirAll(root); err != nil {
				t.Fatal(err)
			}
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) {
					dir := filepath.Join(root, strings.ReplaceAll(c.name, " ", "_"))
					if err := fsys.fs.MkdirAll(dir); err != nil {
						t.Fatal(err)
					}
					c.check(t, fsys.fs, dir)
				})
			}
		})
	}
}

func notExist(t *testing.T, what string, err error) {
	t.Helper()
	if !IsNotExist(err) {
		t.Errorf("%s: %v, want a not-exist error", what, err)
	}
}

var contract = []struct {
	name  string
	check func(t *testing.T, fs FS, dir string)
}{
	{"file round trip", func(t *testing.T, fs FS, dir string) {
		f, err := fs.Create(filepath.Join(dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, err := f.WriteAt([]byte("hello, world"), 0); n != 12 || err != nil {
			t.Fatalf("WriteAt = %d, %v", n, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(5); err != nil {
			t.Fatal(err)
		}
		if size, err := f.Size(); size != 5 || err != nil {
			t.Fatalf("Size = %d, %v", size, err)
		}
		buf := make([]byte, 8)
		if n, err := f.ReadAt(buf, 2); n != 3 || err != io.EOF || string(buf[:n]) != "llo" {
			t.Fatalf("ReadAt past the end = %d %q, %v; want 3 \"llo\", EOF", n, buf[:n], err)
		}
		r, err := fs.Open(filepath.Join(dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.WriteAt([]byte("x"), 0); err == nil {
			t.Fatal("WriteAt on a read-only handle succeeded")
		}
		if n, err := r.ReadAt(buf[:5], 0); n != 5 || err != nil || string(buf[:5]) != "hello" {
			t.Fatalf("ReadAt = %d %q, %v", n, buf[:5], err)
		}
	}},
	{"create existing", func(t *testing.T, fs FS, dir string) {
		f, err := fs.Create(filepath.Join(dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := fs.Create(filepath.Join(dir, "f")); !errors.Is(err, os.ErrExist) {
			t.Fatalf("Create of an existing file: %v, want exist", err)
		}
	}},
	{"missing names", func(t *testing.T, fs FS, dir string) {
		missing := filepath.Join(dir, "missing")
		_, err := fs.Create(filepath.Join(missing, "f"))
		notExist(t, "Create in a missing directory", err)
		_, err = fs.Open(missing)
		notExist(t, "Open", err)
		_, err = fs.OpenRW(missing)
		notExist(t, "OpenRW", err)
		notExist(t, "Remove", fs.Remove(missing))
		notExist(t, "Rename", fs.Rename(missing, filepath.Join(dir, "g")))
		_, err = fs.ReadDir(missing)
		notExist(t, "ReadDir", err)
		notExist(t, "SyncDir", fs.SyncDir(missing))
		if err := fs.RemoveAll(missing); err != nil {
			t.Errorf("RemoveAll of a missing tree: %v, want nil", err)
		}
	}},
	{"rename into a missing directory", func(t *testing.T, fs FS, dir string) {
		f, err := fs.Create(filepath.Join(dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		notExist(t, "Rename", fs.Rename(filepath.Join(dir, "f"), filepath.Join(dir, "missing", "f")))
		if _, err := fs.Open(filepath.Join(dir, "f")); err != nil {
			t.Fatalf("the failed rename lost the file: %v", err)
		}
	}},
	{"directory operations", func(t *testing.T, fs FS, dir string) {
		for _, d := range []string{"b/deep", "b/deep", "a"} { // MkdirAll is idempotent
			if err := fs.MkdirAll(filepath.Join(dir, d)); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"z", "b/deep/f", "b0"} {
			f, err := fs.Create(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		if err := fs.Rename(filepath.Join(dir, "z"), filepath.Join(dir, "b", "z")); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{dir, filepath.Join(dir, "b")} {
			if err := fs.SyncDir(d); err != nil {
				t.Fatalf("SyncDir(%s): %v", d, err)
			}
		}
		names, err := fs.ReadDir(dir)
		if want := []string{"a/", "b/", "b0"}; err != nil || !reflect.DeepEqual(names, want) {
			t.Fatalf("ReadDir = %q, %v; want %q", names, err, want)
		}
		if err := fs.Remove(filepath.Join(dir, "a")); err != nil {
			t.Fatalf("Remove of an empty directory: %v", err)
		}
		if err := fs.RemoveAll(filepath.Join(dir, "b")); err != nil {
			t.Fatal(err)
		}
		names, err = fs.ReadDir(dir)
		if want := []string{"b0"}; err != nil || !reflect.DeepEqual(names, want) {
			t.Fatalf("after Remove and RemoveAll, ReadDir = %q, %v; want %q", names, err, want)
		}
		if err := fs.Remove(filepath.Join(dir, "b0")); err != nil {
			t.Fatal(err)
		}
		_, err = fs.Open(filepath.Join(dir, "b0"))
		notExist(t, "Open after Remove", err)
	}},
}
