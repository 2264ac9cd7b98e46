package main

import (
	"os"
	"syscall"

	"github.com/shardlog/shardlog/vfs"
)

// fullDiskFS is the hidden test flag --debug-disk-full-file: while the file
// named flag exists, every write through it fails with ENOSPC, as on a full
// disk, and writes succeed again once the file is removed ("space
// returns"). It lets the real-process cluster fault test (e2e
// TestClusterCrashLoop) fill one node's disk without mounting a small file
// system, which needs privileges CI may not have. Only writes fail: reads,
// fdatasyncs of what was written, truncations (which free space) and
// renames go through, as on a real full disk, where a write that needs a
// new block is what fails.
type fullDiskFS struct {
	vfs.FS
	flag string
}

func (f fullDiskFS) full() bool {
	_, err := os.Stat(f.flag)
	return err == nil
}

func (f fullDiskFS) Create(name string) (vfs.File, error) {
	file, err := f.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return fullDiskFile{File: file, fs: f, name: name}, nil
}

func (f fullDiskFS) OpenRW(name string) (vfs.File, error) {
	file, err := f.FS.OpenRW(name)
	if err != nil {
		return nil, err
	}
	return fullDiskFile{File: file, fs: f, name: name}, nil
}

type fullDiskFile struct {
	vfs.File
	fs   fullDiskFS
	name string
}

func (f fullDiskFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.full() {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}
