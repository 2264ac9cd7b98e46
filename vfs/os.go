package vfs

import (
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/shardlog/shardlog/datadir"
)

// OS is the real filesystem.
type OS struct{}

type osFile struct{ f *os.File }

func (o osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o osFile) Truncate(size int64) error                { return o.f.Truncate(size) }
func (o osFile) Close() error                             { return o.f.Close() }

// DropCache drops the range's clean pages from the page cache; dirty pages
// are only scheduled for writeback, never discarded.
func (o osFile) DropCache(off, n int64) error {
	return unix.Fadvise(int(o.f.Fd()), off, n, unix.FADV_DONTNEED)
}

// Sync uses fdatasync: the data and the metadata needed to read it back (the
// file size) are flushed, but not timestamps.
func (o osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (o osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (OS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) OpenRW(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) Remove(name string) error             { return os.Remove(name) }
func (OS) RemoveAll(path string) error          { return os.RemoveAll(path) }
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (OS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o755) }

func (OS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// OpenSyncer opens dir to call syncfs on its filesystem. Linux reports
// writeback errors to syncfs since 5.8 (per open file, through the
// superblock's error sequence), which is why the descriptor is kept open.
func (OS) OpenSyncer(dir string) (Syncer, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	return osSyncer{f}, nil
}

type osSyncer struct{ f *os.File }

func (o osSyncer) Sync() error {
	for {
		err := unix.Syncfs(int(o.f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "syncfs", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (o osSyncer) Close() error { return o.f.Close() }

// SyncDir fsyncs the directory itself, which is what makes a create, rename or
// unlink inside it survive power loss on Linux filesystems.
func (OS) SyncDir(dir string) error { return datadir.SyncDir(dir) }
