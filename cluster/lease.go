package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shardlog/shardlog/replica"
)

// The metadata freshness lease (docs/cluster.md 3g, README "Durability").
// A shard's leader enforces settings it reads from its own copy of the
// metadata: the stream's encryption key, its maximum record size, its
// throttling limits. A leader cut off from the metadata group (while it
// keeps its shard group's quorum) would enforce the settings from before a
// change for as long as the cut lasts: after StartStreamEncryption, puts it
// proposes would be stored in plaintext with the stream ACTIVE+KMS.
//
// Two rules bound that, both in real (monotonic) time:
//   - a shard's leader proposes records only with a fresh metadata view: a
//     ReadIndex round of the metadata group ISSUED at most leaseTerm ago has
//     completed (and been applied) here, and the stream's record is read
//     from the local state after it (proposeAdmitted). One round is in
//     flight per node, shared by every put; it is refreshed in the
//     background once the view is half a term old, so a busy leader does
//     not wait for it; a leader that cannot complete one answers 503
//     (errMetaStale).
//   - the metadata leader ends the UPDATING of a change the leaders enforce
//     (Start/StopStreamEncryption, UpdateMaxRecordSize: streamRec.Fence) no
//     sooner than fenceTerm = leaseTerm + leaseMargin after it applied the
//     change, which is after the change committed (finishUpdates), even
//     with no UpdateDelay.
//
// So a put that reaches a shard's leader at time p after the stream is
// ACTIVE again (p > commit + leaseTerm + leaseMargin) is proposed with a
// view issued after p - leaseTerm > commit + leaseMargin: a ReadIndex
// issued after the commit returns an index at or past the change, so the
// view, and the record the put is sealed by, hold the change. The margin
// absorbs the rate difference of the two nodes' clocks (no synchronised
// clocks are assumed: each side measures its own elapsed time).

// errMetaStale: this shard leader has no fresh metadata view (it cannot
// reach the metadata group's leader); nothing was proposed. The client is
// answered ServiceUnavailable; a forwarded put's sender learns it by
// staleRefusal (forward.go).
var errMetaStale = errors.New("cluster: this shard's leader is cut off from the metadata group (no fresh view of the stream's settings)")

// leaseMargin is added to leaseTerm on the metadata leader's side.
func (n *Node) leaseMargin() time.Duration { return n.leaseTerm() / 2 }

// leaseTerm is how old (from its issue) a metadata view may be when a shard
// leader proposes by it: one election timeout, the time a ReadIndex round
// may take before linearize gives up.
func (n *Node) leaseTerm() time.Duration { return n.cfg.electionTimeout() }

// fenceTerm is how long after applying a fenced change the metadata leader
// keeps the stream UPDATING at least.
func (n *Node) fenceTerm() time.Duration { return n.leaseTerm() + n.leaseMargin() }

// metaLease is a node's newest metadata view: the issue time of the newest
// completed ReadIndex round, and the round in flight.
type metaLease struct {
	mu     sync.Mutex
	issued time.Time // zero: none yet
	round  *leaseRound
}

// leaseRound is one ReadIndex round, shared by the puts waiting for it.
type leaseRound struct {
	done chan struct{}
	err  error // set before done is closed
}

// freshMeta returns once this node's metadata state holds everything the
// metadata group committed before the call's start minus leaseTerm (a
// ReadIndex round issued since then has completed), or errMetaStale. A
// round already in flight may have been issued before that: once it ends,
// the check is made again, and a round started after the call's start
// always passes it.
func (n *Node) freshMeta(ctx context.Context) error {
	term := n.leaseTerm()
	since := time.Now().Add(-term) // the oldest issue time this call takes
	l := &n.lease
	for {
		l.mu.Lock()
		if !l.issued.IsZero() && !l.issued.Before(since) {
			if time.Since(l.issued) >= term/2 && l.round == nil {
				n.startLeaseRound() // ahead of need: puts keep going meanwhile
			}
			l.mu.Unlock()
			return nil
		}
		if l.round == nil {
			n.startLeaseRound()
		}
		r := l.round
		l.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err != nil {
			return errMetaStale
		}
	}
}

// startLeaseRound starts a ReadIndex round; l.mu is held. The round runs
// for the node's life, not a request's: the puts sharing it come and go.
// The time taken before the ReadIndex is issued is a lower bound of its
// issue time, so the view is claimed no fresher than it is.
func (n *Node) startLeaseRound() {
	r := &leaseRound{done: make(chan struct{})}
	n.lease.round = r
	issued := time.Now()
	go func() { // linearize ends within an election timeout, or at Close
		err := n.linearize(n.life, metaGroup)
		n.lease.mu.Lock()
		if err == nil && issued.After(n.lease.issued) {
			n.lease.issued = issued
		}
		r.err = err
		n.lease.round = nil
		n.lease.mu.Unlock()
		close(r.done)
	}()
}

// fenceSeen is when this node (the metadata leader) first saw a fenced
// stream's record at a version: after that version committed.
type fenceSeen struct {
	version uint64
	at      time.Time
}

// fences is the metadata leader's fenceSeen by stream.
type fences struct {
	mu   sync.Mutex
	seen map[string]fenceSeen
}

// passed reports whether fenceTerm has passed since this node first saw
// stream's record at version; the first call for a version starts it.
func (f *fences) passed(stream string, version uint64, term time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.seen[stream]
	if !ok || s.version != version {
		if f.seen == nil {
			f.seen = map[string]fenceSeen{}
		}
		f.seen[stream] = fenceSeen{version: version, at: time.Now()}
		return false
	}
	return time.Since(s.at) >= term
}

// keep forgets the streams not in live (ended, deleted).
func (f *fences) keep(live map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name := range f.seen {
		if !live[name] {
			delete(f.seen, name)
		}
	}
}

// filteredTransport sends what a test's Config.sendFilter lets through.
type filteredTransport struct {
	replica.Transport
	filter func(replica.Batch) replica.Batch
}

func (t filteredTransport) Send(b replica.Batch) {
	if b = t.filter(b); len(b.Msgs)+len(b.Beats)+len(b.Chunks) > 0 {
		t.Transport.Send(b)
	}
}
