package shard

import "sync"

// SyncRounds lines up the fdatasyncs of many shards (one SyncRounds per
// store, shared through Options.Rounds) so that they start together, in
// rounds: a shard's syncer that finds a round running waits for it to end,
// then starts with every other shard that arrived meanwhile. Two things
// follow, measured in BENCHMARKS.md ("Per-request cost"):
//   - the fdatasyncs of one round are in flight at the same moment, so the
//     filesystem commits their metadata in one journal transaction and the
//     block device sees one flush for many of them, instead of one flush per
//     shard at staggered moments;
//   - while a shard waits for its round, its writer keeps writing frames,
//     and the syncer takes them all into the same fdatasync (syncLoop drains
//     again after the wait): fewer, larger syncs per record.
//
// It owns no file and no shard state: each shard's syncer still calls
// fdatasync on its own segment, and acknowledges only what that call covered,
// so every durability promise is the shard's own, as without SyncRounds. It
// only decides when a sync may start. The price: a slow fdatasync holds the
// next sync of every other shard until it returns. The shards share one
// filesystem, whose journal commits one transaction at a time anyway, so a
// stalled device stalls them all with or without rounds. A nil *SyncRounds
// starts every sync at once.
type SyncRounds struct {
	mu      sync.Mutex
	running int           // syncs of the current round not yet returned
	next    chan struct{} // closed when the next round starts; nil: nobody waits
	waiting int           // syncers waiting on next
	round   uint64        // counts the rounds started (tests check them)
}

// NewSyncRounds returns an idle coordinator.
func NewSyncRounds() *SyncRounds { return &SyncRounds{} }

// join waits until the caller's sync may start, counts it in the round,
// and returns the round's number. Every join is followed by exactly one
// leave.
func (r *SyncRounds) join() uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	if r.running == 0 && r.next == nil {
		r.running = 1
		r.round++
		defer r.mu.Unlock()
		return r.round
	}
	if r.next == nil {
		r.next = make(chan struct{})
	}
	ch := r.next
	r.waiting++
	r.mu.Unlock()
	<-ch // leave moved us into the running round, which we keep running
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.round
}

// leave ends the caller's sync; the last sync of a round starts the next
// one with every syncer that waits for it.
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
	r.running, r.waiting = r.waiting, 0
	r.round++
	close(r.next)
	r.next = nil
}
