package vfs

import (
	"bytes"
	"path/filepath"
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
