package replica

import (
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
)

// The hot path's lock-free side (BENCHMARKS.md, "PutRecord at 256 shards").
// A Ready round held h.mu across the WAL's fdatasync (until the pipelined
// loop, pipeline.go; it still holds it for its CPU work). Before, every
// request also took h.mu two or three times (the leader guess, the group
// check, the proposal), so each waited behind a round in progress, and the
// Run loop's next round waited behind all of them (a convoy: under
// starvation the mutex is handed over in FIFO order, one scheduling delay
// per waiter). Now a proposal that finds the lock taken is queued in an
// inbox the next round takes first, and a group's presence and leader are
// read from an index the rounds keep up to date.

// inbox is the proposals queued while a round held h.mu. Its own lock is
// only ever held for a slice operation.
type inbox struct {
	mu     sync.Mutex
	queue  []queued
	closed error // set at stop: a proposal queued after it would wait for ever
}

// queued is a proposal waiting for the next round to hand it to raft.
type queued struct {
	group uint64
	rs    *Records
	p     *Proposal
}

// groupIndex is what lock-free readers may know of a group: a pointer to
// its live record, never dereferenced but for these fields.
type groupIndex struct {
	lead atomic.Uint64 // the leader as of the group's last Ready (0: none known)
}

// Leader is the group's leader as this node knew it at its last round (0:
// none known, or no replica here). It takes no lock: a front end guessing
// where to send a write must not wait for a round's fdatasync. It may lag
// raft by one round; a wrong guess is answered ErrNotLeader.
func (h *Host) Leader(group uint64) uint64 {
	if ix, ok := h.index.Load(group); ok {
		return ix.(*groupIndex).lead.Load()
	}
	return 0
}

// publishLead records a round's SoftState in the index.
func (h *Host) publishLead(g *group, rd raft.Ready) {
	if rd.SoftState != nil {
		g.ix.lead.Store(rd.SoftState.Lead)
	}
}

// enqueue queues a proposal for the next round, unless the host stopped.
func (h *Host) enqueue(group uint64, rs *Records) (*Proposal, error) {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	if h.in.closed != nil {
		return nil, h.in.closed
	}
	p := &Proposal{done: make(chan struct{}), made: time.Now()}
	h.in.queue = append(h.in.queue, queued{group: group, rs: rs, p: p})
	h.queued.Add(1)
	h.wake()
	return p, nil
}

// takeInbox hands the queued proposals to raft, in the order they were
// queued; it runs under h.mu at the start of a round, so a proposal queued
// during a round goes out in the next one. One whose group is gone, or not
// led here any more, ends as its Propose would have: at once, definitely.
func (h *Host) takeInbox() {
	h.in.mu.Lock()
	q := h.in.queue
	h.in.queue = nil
	h.in.mu.Unlock()
	now := time.Now()
	for _, e := range q {
		h.tm.queued.Add(int64(now.Sub(e.p.made)))
		if err := h.proposeLocked(e.group, e.rs, e.p); err != nil {
			e.p.finish(nil, err)
		}
	}
}

// closeInbox ends the queued proposals with err, and every later one.
func (h *Host) closeInbox(err error) {
	h.in.mu.Lock()
	q := h.in.queue
	h.in.queue, h.in.closed = nil, err
	h.in.mu.Unlock()
	for _, e := range q {
		e.p.finish(nil, err)
	}
}
