package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
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

// TestRunConcurrentProposers: proposers on many goroutines against hosts
// driven by Run (so proposals meet rounds in progress and queue): every
// proposal is decided, each acknowledged record once, with its own
// ordinal, and the leader applies exactly the acknowledged records.
func TestRunConcurrentProposers(t *testing.T) {
	const proposers, each = 8, 25
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard, not a timing assertion
	defer cancel()
	tr := chanTransport{1: make(chan Batch, 1024), 2: make(chan Batch, 1024), 3: make(chan Batch, 1024)}
	hosts := map[uint64]*Host{}
	done := make(chan error, 3)
	runCtx, stop := context.WithCancel(ctx)
	for id := uint64(1); id <= 3; id++ {
		h, err := Open(Config{NodeID: id, FS: vfs.NewMemFS(), Dir: "/d", Groups: []GroupConfig{{ID: 1, Peers: []uint64{1, 2, 3}}}, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		hosts[id] = h
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		go func() { done <- h.Run(runCtx, ticker.C, tr[id]) }()
	}
	proposeToLeader(ctx, t, hosts, 1, "first") // a leader exists
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for w := range proposers {
		wg.Go(func() {
			for i := range each {
				rec := fmt.Sprintf("w%d-%d", w, i)
				if seq, ok := proposeOnce(ctx, hosts, rec); ok {
					mu.Lock()
					acked[seq] = rec
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	stop()
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var queued uint64
	var longest []Record
	for id := uint64(1); id <= 3; id++ {
		queued += hosts[id].Stats().Queued
		if r := hosts[id].Records(1); len(r) > len(longest) {
			longest = r
		}
	}
	t.Logf("%d of %d proposals acknowledged, %d went through an inbox", len(acked), proposers*each, queued)
	if len(acked) != proposers*each {
		t.Fatalf("%d records acknowledged, want %d (a leader stayed put, nothing else fails them)", len(acked), proposers*each)
	}
	if len(longest) != len(acked)+1 {
		t.Fatalf("the leader applied %d records, want %d", len(longest), len(acked)+1)
	}
	for _, r := range longest[1:] {
		if acked[r.Seq] != string(r.Data) {
			t.Fatalf("ordinal %d holds %q, acknowledged as %q", r.Seq, r.Data, acked[r.Seq])
		}
	}
}

// proposeOnce proposes rec at whichever host leads group 1, retrying while
// none does; it reports the record's ordinal once acknowledged.
func proposeOnce(ctx context.Context, hosts map[uint64]*Host, rec string) (uint64, bool) {
	for ctx.Err() == nil {
		for id := uint64(1); id <= 3; id++ {
			p, err := hosts[id].Propose(1, [][]byte{[]byte(rec)})
			if err != nil {
				continue
			}
			if seqs, err := p.Wait(ctx); err == nil {
				return seqs[0], true
			} else if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrDropped) {
				return 0, false
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, false
}
