package main

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// TestFullDiskFS: writes fail with ENOSPC exactly while the flag file
// exists, through files created or opened before or after it appeared;
// reads, syncs and truncation go on.
func TestFullDiskFS(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "full")
	fs := fullDiskFS{FS: vfs.OS{}, flag: flag}
	f, err := fs.Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(f vfs.File, off int64) error { _, err := f.WriteAt([]byte("abcd"), off); return err }
	if err := write(f, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := write(f, 4); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ENOSPC", err)
	}
	g, err := fs.OpenRW(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := write(g, 4); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write through a file opened on a full disk: %v, want ENOSPC", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	if err := write(g, 2); err != nil {
		t.Fatalf("write once space returned: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "ababcd" {
		t.Fatalf("file holds %q", got)
	}
}
