package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api"
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

// failingBackend is a backend that reports, like cluster.Node, that it
// stopped for good.
type failingBackend struct {
	stubBackend
	failed chan error
}

func (b failingBackend) Failed() <-chan error { return b.failed }

// TestServeExitsWhenTheStoreFails: a backend that fail-stops (a cluster
// node whose Raft host could not write) ends serve with its error, and the
// store is closed, instead of serving as a live node.
func TestServeExitsWhenTheStoreFails(t *testing.T) {
	closer := &countingCloser{}
	b := failingBackend{failed: make(chan error, 1)}
	open := func(context.Context, serveOptions, hclog.Logger) (api.Backend, io.Closer, error) {
		return b, closer, nil
	}
	err := runServe(context.Background(), testOptions(), open, hclog.NewNullLogger(), func(endpoints) {
		b.failed <- &os.PathError{Op: "write", Path: "wal", Err: syscall.ENOSPC}
	})
	if !errors.Is(err, syscall.ENOSPC) || closer.n.Load() != 1 {
		t.Fatalf("runServe = %v (store closed %d times), want the ENOSPC and one close", err, closer.n.Load())
	}
}
