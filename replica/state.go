package replica

import "github.com/shardlog/shardlog/vfs"

// appliedState is the contract between the host and a group's applied state
// (docs/cluster.md §2), implemented by the group's segment files (segState,
// segstate.go):
//   - add/write: applied entries are written as they apply, without an
//     fdatasync of their own (the WAL holds them durably until then);
//   - sync makes everything written durable: it runs before the WAL files
//     behind the state are deleted (Host.maybeRoll), which makes the group's
//     durable-applied index its applied index; durableNext is the ordinal
//     after the newest record synced, which the new WAL file's header
//     records (kindStateSynced);
//   - snapshot lists the files that hold the state up to the applied index
//     (a manifest), chunk serves their bytes to a receiver, which fetches
//     them into fetchDir, checks each (checkFetched) and the whole list
//     (prepared), and install makes them
//     the whole state durably and atomically (a crash leaves the old state
//     or the new one, never a mix; snapfetch.go);
//   - applying is idempotent by index: recovery replays the WAL from the
//     compaction point and skips the entries the state already holds (held);
//   - trim deletes whole sealed segments whose records all arrived before a
//     time (retention, segtrim.go);
//   - read serves the records from the state itself, never from memory, and
//     may run without the host's lock.
type appliedState interface {
	add(index uint64, arrivalMs int64, recs [][]byte) []Record
	held() uint64
	write() error
	sync() error
	durableNext() uint64
	read(from uint64, maxRecords, maxBytes int) ([]Record, error)
	snapshot(applied uint64) ([]byte, error)
	chunk(life, gen, first, id uint64, off int64, n int) ([]byte, error)
	fetchDir() (string, error)
	checkFetched(f vfs.File, sf snapFile) error
	prepared(m snapManifest) (*segState, error)
	install(index uint64, ns *segState, crash func(string) error) error
	trim(beforeMs int64) (segments int, bytes int64, err error)
	close() error
}

// The points of a snapshot's installation where the crash tests cut power.
const (
	crashSnapTempSynced = "snapshot: new generation written and synced"
	crashSnapRenamed    = "snapshot: CURRENT renamed into place"
	crashSnapDirSynced  = "snapshot: group directory synced"
	// crashTrimRemoved: a retention trim, after one segment's unlink and
	// directory sync (segtrim.go).
	crashTrimRemoved = "retention: a segment removed and its directory synced"
)
