// Package vfs is the only door between shardlog and the filesystem for segment data.
//
// Every segment read, write, sync, rename and unlink goes through FS, so tests can
// substitute MemFS, which loses unsynced bytes on a simulated power cut, tears the
// last write, flips bits, fills up (ENOSPC) and fails fsync on demand. The bbolt
// files are the one exception: bbolt opens its own *os.File, and both bbolt files
// are synced on every commit, so they carry no unsynced state to lose.
//
// Fault injection stays in MemFS rather than in a wrapper over any FS (as
// pebble's errorfs is): the faults act on MemFS's own state (a short write
// lands half its bytes in the file, ENOSPC counts MemFS's bytes, a failed
// fsync leaves bytes unsynced for Crash to drop), and the tests of segment,
// shard, storage and fsck arm them on a *MemFS. A wrapper would change every
// one of those callers and add no fault. TestMemFSFaults is the rule table.
package vfs

import (
	"errors"
	"io"
	"os"
)

// File is an open file. Writes are positional so that a single writer never
// depends on a shared file offset, and reads are positional so many readers can
// share one descriptor.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every byte written so far durable (fdatasync on Linux).
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	// DropCache tells the OS that the range is not needed in memory soon
	// (posix_fadvise DONTNEED on Linux). It is a hint: the data, durable or
	// not, is unaffected, and a failure can be ignored.
	DropCache(off, n int64) error
	Close() error
}

// FS is the set of filesystem operations shardlog uses for segment data.
type FS interface {
	// Create makes a new empty file, failing if it exists. The new name is not
	// durable until SyncDir of its directory.
	Create(name string) (File, error)
	// OpenRW opens an existing file for reading and writing.
	OpenRW(name string) (File, error)
	// Open opens an existing file read-only.
	Open(name string) (File, error)
	Remove(name string) error
	// RemoveAll removes a directory tree. Not durable until SyncDir of its parent.
	RemoveAll(path string) error
	Rename(oldname, newname string) error
	MkdirAll(dir string) error
	// ReadDir lists the names in dir, sorted; directories end in "/".
	ReadDir(dir string) ([]string, error)
	// SyncDir makes the directory's entries (creates, renames, unlinks) durable.
	SyncDir(dir string) error
	// OpenSyncer returns a handle on the filesystem that holds dir, whose
	// Sync makes the written data of every file on it durable in one call.
	OpenSyncer(dir string) (Syncer, error)
}

// Syncer makes a whole filesystem's written data durable at once (syncfs on
// Linux): one journal commit and one device flush for every file, where an
// fdatasync per file costs one of each per file. Sync reports a failure of
// any file's writeback since the Syncer was opened, without saying which
// file's: a caller that gets an error must treat every file's unsynced data
// as lost. It is held open for as long as it is used, because a writeback
// failure that happened before it was opened is not reported to it.
type Syncer interface {
	Sync() error
	Close() error
}

// ErrNotExist is returned (wrapped) for a missing file; it is os.ErrNotExist so
// callers can test with errors.Is either way.
var ErrNotExist = os.ErrNotExist

// IsNotExist reports whether err means a missing file.
func IsNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
