// Package datadir is the one definition of shardlog's data directory: the
// names of its files and directories, the record shapes meta.db stores, the
// LOCK protocol and directory fsync. The server (storage) writes the
// directory and fsck reads and repairs it; both take these facts from here,
// so they cannot drift apart. It is a leaf: it imports nothing of shardlog.
//
// The layout:
//
//	LOCK         flock: exclusive for the server and repair, shared for verify
//	meta.db      authoritative stream and shard records (bbolt; StreamRecord)
//	index.db     derived segment catalog and seek points (bbolt)
//	streams/<name>-<createdNs %016x>/shardId-%012d/<firstSeq>-<segId>.seg
//	tls/         ca.crt, server.crt, server.key of serve --tls-self-signed
//	kinesis-default.key  the master key of alias/aws/kinesis when no keyring maps it (0600)
//
// A stream's directory carries its creation time in hex nanoseconds, so a
// deleted and recreated stream never shares files (or iterators) with its
// predecessor (StreamDir). A shard's directory is named by its shard ID
// (ShardID). "<stream dir>/<shard dir>" is the shard's index key, its name in
// index.db (IndexKey), and the FNV-64a of the index key is the shard key every
// segment header of the shard carries (ShardKey), so a segment copied into
// another shard is recognised. Segment file names belong to package segment
// (segment.FileName, segment.ParseFileName).
//
// Besides these, a shard directory may hold a file ending in TmpExt (a
// segment being written; the server deletes it on open) or BrokenExt (an
// original fsck repair kept), and the data directory a bbolt file the server
// moved aside (CorruptExt).
package datadir

import (
	"os"
	"path/filepath"
)

// Names of the files and directories in a data directory.
const (
	LockFile   = "LOCK"
	MetaFile   = "meta.db"
	IndexFile  = "index.db"
	StreamsDir = "streams"
	// ChannelsOutDir is where channels deliver their objects unless
	// `serve --channel-dir` names another directory; nothing else reads it.
	ChannelsOutDir = "channels-out"
	// TLSDir holds the certificate `serve --tls-self-signed` generates
	// (TLSCAFile, TLSCertFile, TLSKeyFile); nothing else reads it.
	TLSDir = "tls"
	// DefaultKeyFile is the master key shardlog generates, once, for
	// alias/aws/kinesis when no keyring maps that alias (package keyring).
	DefaultKeyFile = "kinesis-default.key"
)

// Names of the files in TLSDir.
const (
	TLSCAFile   = "ca.crt"
	TLSCertFile = "server.crt"
	TLSKeyFile  = "server.key"
)

// Suffixes of the files that recovery and repair leave or clean up.
const (
	// TmpExt marks a file being written, renamed into place when complete;
	// one left by a crash is deleted by whoever owns the directory next.
	TmpExt = ".tmp"
	// BrokenExt marks an original that fsck repair replaced and kept.
	BrokenExt = ".broken"
	// BadExt marks a quarantined file.
	BadExt = ".bad"
	// CorruptExt marks a bbolt file the server found unreadable and moved
	// aside (index.db, which it then rebuilds).
	CorruptExt = ".corrupt"
)

// LockPath is the LOCK file of data directory dir.
func LockPath(dir string) string { return filepath.Join(dir, LockFile) }

// DefaultKeyPath is the generated alias/aws/kinesis master key of dir.
func DefaultKeyPath(dir string) string { return filepath.Join(dir, DefaultKeyFile) }

// MetaPath is meta.db of data directory dir.
func MetaPath(dir string) string { return filepath.Join(dir, MetaFile) }

// IndexPath is index.db of data directory dir.
func IndexPath(dir string) string { return filepath.Join(dir, IndexFile) }

// StreamsPath is the directory that holds the stream directories of dir.
func StreamsPath(dir string) string { return filepath.Join(dir, StreamsDir) }

// ChannelsOutPath is the default directory of channels' objects in dir.
func ChannelsOutPath(dir string) string { return filepath.Join(dir, ChannelsOutDir) }

// ShardPath is the directory of the shard with index key key in dir.
func ShardPath(dir, key string) string { return filepath.Join(StreamsPath(dir), key) }

// StreamPath is the directory of the stream whose directory name (StreamDir)
// is streamDir.
func StreamPath(dir, streamDir string) string { return filepath.Join(StreamsPath(dir), streamDir) }

// SyncDir fsyncs the directory itself, which is what makes a create, rename
// or unlink inside it survive power loss on Linux filesystems.
func SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &os.PathError{Op: "fsync dir", Path: dir, Err: err}
	}
	return nil
}
