package replica

import (
	"errors"
	"testing"
)

// TestProposalsQueueBehindARound: a proposal made while a round holds the
// host's lock (its fdatasync under way) does not wait for the lock: it is
// queued, handed to raft by the next round, and ends as a direct proposal
// would (inbox.go).
func TestProposalsQueueBehindARound(t *testing.T) {
	tests := []struct {
		name    string
		node    uint64 // the host proposed to; node 1 leads every group
		group   uint64
		wantErr func(error) bool
	}{
		{"led here: committed", 1, 1, func(err error) bool { return err == nil }},
		{"a follower: ErrNotLeader, definite", 2, 1, func(err error) bool { return errors.Is(err, ErrNotLeader) }},
		{"no such group", 1, 99, func(err error) bool { return err != nil && !errors.Is(err, ErrStopped) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newStepNet(t, 2)
			h := n.hosts[tc.node]
			before := h.Stats().Proposals
			h.mu.Lock() // a round in progress
			p, err := h.Propose(tc.group, [][]byte{[]byte("r")})
			if err != nil {
				h.mu.Unlock()
				t.Fatalf("Propose during a round: %v, want it queued", err)
			}
			if got := h.Stats().Proposals; got != before || isDone(p.Done()) {
				h.mu.Unlock()
				t.Fatalf("proposals %d → %d, done %v during the round: want it queued, undecided", before, got, isDone(p.Done()))
			}
			h.mu.Unlock()
			n.pump(t)
			if !isDone(p.Done()) {
				t.Fatal("not decided after the next rounds")
			}
			seqs, err := p.Result()
			if !tc.wantErr(err) {
				t.Fatalf("result %v, %v", seqs, err)
			}
			if err == nil && len(seqs) != 1 {
				t.Fatalf("%d ordinals for one record", len(seqs))
			}
		})
	}
}

// TestQueuedProposalsEndWithTheHost: a proposal queued when the host stops
// ends ErrStopped, and one made after it is refused at once.
func TestQueuedProposalsEndWithTheHost(t *testing.T) {
	n := newStepNet(t, 1)
	h := n.hosts[1]
	h.mu.Lock()
	p, err := h.Propose(1, [][]byte{[]byte("r")})
	h.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Result(); !isDone(p.Done()) || !errors.Is(err, ErrStopped) {
		t.Fatalf("queued at Close: done %v, %v; want ErrStopped", isDone(p.Done()), err)
	}
	h.mu.Lock() // as if a round held it: the proposal goes to the inbox
	_, err = h.Propose(1, [][]byte{[]byte("r")})
	h.mu.Unlock()
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("queued after Close: %v, want ErrStopped", err)
	}
}

// TestLeaderAndPresenceWithoutTheLock: a group's leader and presence are
// answered while a round holds the host's lock, as of the last round.
func TestLeaderAndPresenceWithoutTheLock(t *testing.T) {
	n := newStepNet(t, 2)
	for id, h := range n.hosts {
		h.mu.Lock()
		lead, has, hasNot := h.Leader(2), h.HasGroup(2), h.HasGroup(99)
		h.mu.Unlock()
		if lead != 1 || !has || hasNot {
			t.Fatalf("node %d: leader %d, has group 2 %v, has group 99 %v; want 1, true, false", id, lead, has, hasNot)
		}
	}
}
