package shard

import (
	"fmt"
	"sync"

	"github.com/shardlog/shardlog/vfs"
)

// SyncRounds lines up the syncs of many shards (one SyncRounds per store,
// shared through Options.Rounds) so that they start together, in rounds: a
// shard's syncer that finds a round running waits for it to end, then starts
// with every other shard that arrived meanwhile. While a shard waits, its
// writer keeps writing frames, and the syncer takes them all into the same
// sync (syncLoop drains again after the wait): fewer, larger syncs.
//
// A round of two or more shards is shared when the store gave a vfs.Syncer:
// once every shard of the round has drained its frames, the last one calls
// syncfs once for all of them, instead of one fdatasync each. The choice was
// measured on this project's 2-core VM (ext4 on virtio; BENCHMARKS.md
// "Shared syncs"): fdatasync is a journal commit plus a device flush per
// file, about 100 µs of CPU each, so N shards cost N of them, issued together
// or not; one syncfs cost 114 µs of CPU for 4 dirty files and 1.5 ms for 256
// (5.8 µs a file), and its wall time was a third of the N parallel
// fdatasyncs'. A round of one shard fdatasyncs its own file, which is cheaper
// alone (114 against 143 µs). The options the issue listed and why not:
//   - several fdatasyncs in flight at once (this type's first version): the
//     block layer merged some flushes, but every file still paid its own
//     journal commit, about 100 µs of CPU per shard per round;
//   - sync_file_range plus one flush: it writes data but not the metadata
//     (the file size of an append), so it does not make an append durable;
//   - a shared journal for small frames: one file and one fdatasync too, but
//     every record written twice and a second log to recover, check (fsck)
//     and trim; syncfs gets the same one flush with the segments unchanged.
//
// The price of syncfs: it also writes back whatever else is dirty on the
// filesystem (another program's files), so a round can wait for unrelated
// writes; serve --shared-sync=false turns it off. And a failed syncfs does
// not say whose pages were lost, so it fails every later sync of every shard
// (sticky): the shards turn read-only, as one shard does after a failed
// fdatasync, and only a restart, which re-reads the disk, can tell what is
// durable.
//
// A shard still acknowledges only frames written before a sync that
// succeeded began: a shared round's syncfs starts only after every member
// has drained its flights, and syncfs covers every file of the filesystem.
// A nil *SyncRounds starts every sync at once, each shard on its own.
type SyncRounds struct {
	fs vfs.Syncer // nil: every shard fdatasyncs its own file

	mu      sync.Mutex
	running int    // members of the current round not yet left
	next    *round // the round waiting syncers will run in; nil: nobody waits
	failed  error  // a failed syncfs: every later sync fails with it
	round   uint64 // counts the rounds started (tests check them)
	shared  uint64 // counts the shared rounds (tests check them)
}

// round is one round's members and, if shared, the outcome of its syncfs.
type round struct {
	n       uint64        // the round's number
	size    int           // members
	shared  bool          // one syncfs covers every member
	arrived int           // members that have drained and called sync
	start   chan struct{} // closed when the round starts
	done    chan struct{} // closed when the shared syncfs has returned
	err     error
}

// NewSyncRounds returns an idle coordinator; fs, if not nil, is the syncfs
// handle that shared rounds use.
func NewSyncRounds(fs vfs.Syncer) *SyncRounds { return &SyncRounds{fs: fs} }

// join waits until the caller's sync may start and returns its round. Every
// join is followed by exactly one sync, then one leave.
func (r *SyncRounds) join() *round {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.running == 0 && r.next == nil {
		r.running = 1
		r.round++
		r.mu.Unlock()
		return &round{n: r.round, size: 1}
	}
	if r.next == nil {
		r.next = &round{start: make(chan struct{}), done: make(chan struct{})}
	}
	rd := r.next
	rd.size++
	r.mu.Unlock()
	<-rd.start
	return rd
}

// sync makes the caller's drained frames durable within its round: with own
// (its segment's fdatasync) in a round of its own, with the round's one
// syncfs in a shared round. own is nil for a member with nothing it can sync
// (its file would not open): it still counts, so the round's syncfs runs.
// timed wraps the call that syncs (the shard's metrics).
func (r *SyncRounds) sync(rd *round, own func() error, timed func(func() error) error) error {
	if err := r.failure(); err != nil {
		return err
	}
	if rd == nil || !rd.shared {
		if own == nil {
			return nil
		}
		return timed(own)
	}
	r.mu.Lock()
	rd.arrived++
	last := rd.arrived == rd.size
	r.mu.Unlock()
	if !last {
		<-rd.done
		return rd.err
	}
	if err := timed(r.fs.Sync); err != nil {
		rd.err = fmt.Errorf("shared sync of %d shards: %w", rd.size, err)
		r.mu.Lock()
		r.failed = rd.err
		r.mu.Unlock()
	}
	close(rd.done)
	return rd.err
}

func (r *SyncRounds) failure() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// leave ends the caller's part in its round; the last member to leave starts
// the next round with every syncer that waits for it.
func (r *SyncRounds) leave() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.running > 0 || r.next == nil {
		return
	}
	rd := r.next
	r.next = nil
	rd.shared = r.fs != nil && rd.size >= 2
	if rd.shared {
		r.shared++
	}
	r.running = rd.size
	r.round++
	rd.n = r.round
	close(rd.start)
}
