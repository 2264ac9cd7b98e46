package replica

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// partNet is a network the test drives by hand, with partitions: a batch
// between two nodes cut apart is lost.
type partNet struct {
	t     *testing.T
	hosts map[uint64]*Host
	fss   map[uint64]vfs.FS
	queue []Batch
	cut   map[[2]uint64]bool
	cfg   func(id uint64) Config
}

type partTransport struct{ n *partNet }

func (p partTransport) Send(b Batch) { p.n.queue = append(p.n.queue, b) }

func newPartNet(t *testing.T, ids []uint64, broken bool) *partNet {
	n := &partNet{t: t, hosts: map[uint64]*Host{}, fss: map[uint64]vfs.FS{}, cut: map[[2]uint64]bool{}}
	n.cfg = func(id uint64) Config {
		// Rand: no CheckQuorum, so no leader lease makes a follower ignore
		// a campaign, and, with no Tick, only the test's campaigns happen.
		return Config{NodeID: id, FS: n.fss[id], Dir: "/d", Transport: partTransport{n}, noTombstone: broken,
			Rand: rand.New(rand.NewPCG(id, 17))}
	}
	for _, id := range ids {
		n.fss[id] = vfs.NewMemFS()
		n.open(id)
	}
	t.Cleanup(func() {
		for _, h := range n.hosts {
			h.Close()
		}
	})
	return n
}

func (n *partNet) open(id uint64) {
	h, err := Open(n.cfg(id))
	if err != nil {
		n.t.Fatal(err)
	}
	n.hosts[id] = h
}

// restart closes a node's host and opens it again from its disk.
func (n *partNet) restart(id uint64) {
	if err := n.hosts[id].Close(); err != nil {
		n.t.Fatal(err)
	}
	n.open(id)
}

// isolate cuts node a from each of others (both ways); heal rejoins them.
func (n *partNet) isolate(a uint64, others ...uint64) {
	for _, b := range others {
		n.cut[[2]uint64{a, b}], n.cut[[2]uint64{b, a}] = true, true
	}
}

func (n *partNet) heal(a uint64, others ...uint64) {
	for _, b := range others {
		delete(n.cut, [2]uint64{a, b})
		delete(n.cut, [2]uint64{b, a})
	}
}

// pump runs rounds and delivers batches until nothing is left to do.
func (n *partNet) pump() {
	n.t.Helper()
	ids := slices.Sorted(func(yield func(uint64) bool) {
		for id := range n.hosts {
			if !yield(id) {
				return
			}
		}
	})
	for range 1000 {
		for _, id := range ids {
			if err := n.hosts[id].HandleReady(); err != nil {
				n.t.Fatal(err)
			}
		}
		if len(n.queue) == 0 {
			return
		}
		q := n.queue
		n.queue = nil
		for _, b := range q {
			if !n.cut[[2]uint64{b.From, b.To}] {
				n.hosts[b.To].Receive(b)
			}
		}
	}
	n.t.Fatal("the network never went quiet")
}

func (n *partNet) change(leader, group uint64, typ ChangeType, node uint64) {
	n.t.Helper()
	if err := n.hosts[leader].ChangeMembership(group, typ, node); err != nil {
		n.t.Fatalf("change %d of node %d: %v", typ, node, err)
	}
	n.pump()
}

// put proposes one record on node and reports its ordinal if the proposal
// was acknowledged once the network went quiet.
func (n *partNet) put(node, group uint64, rec string) (uint64, bool) {
	n.t.Helper()
	p, err := n.hosts[node].Propose(group, [][]byte{[]byte(rec)})
	if err != nil {
		return 0, false
	}
	n.pump()
	select {
	case <-p.Done():
	default:
		return 0, false
	}
	seqs, err := p.Result()
	if err != nil {
		return 0, false
	}
	return seqs[0], true
}

func (n *partNet) addGroup(node, group uint64, boot []uint64) {
	n.t.Helper()
	if err := n.hosts[node].AddGroup(group, boot); err != nil {
		n.t.Fatal(err)
	}
}

// TestMovedBackReplicaKeepsItsPromises is the reviewer's scenario of issue
// 17, step by step. Voters {A,B,N}; B is partitioned and misses entries; D
// joins, its promotion and the writes after it carried by {A,N}; N is
// removed (committed by {A,D,N}) and deleted; later a replica is moved back
// to N (AddGroup; N restarts, too). Before the leader reaches it, B comes
// back with its stale configuration {A,B,N} and reaches only N, and
// campaigns. N must refuse it as its old replica would have (its log was
// ahead of B's): else B leads with {B,N} while A commits with {A,D}, and
// acknowledged writes of one side are lost. Then the move completes and
// the group takes writes with N as a voter again.
//
// The broken host (no tombstone) must show the split brain: that proves
// the scenario reaches the bug, and so that the test can fail.
//
// staleLeader is the same with B a leader cut off in an older term: its
// appends must not find the re-created N at term 0.
func TestMovedBackReplicaKeepsItsPromises(t *testing.T) {
	for _, tc := range []struct {
		name   string
		run    func(*testing.T, bool) error
		broken bool
	}{
		{"candidate/broken", movedBack, true},
		{"candidate", movedBack, false},
		{"staleLeader/broken", staleLeader, true},
		{"staleLeader", staleLeader, false},
	} {
		broken := tc.broken
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t, broken)
			switch {
			case broken && err == nil:
				t.Fatal("the host without tombstones passed: the scenario does not reach the bug")
			case !broken && err != nil:
				t.Fatal(err)
			}
			t.Logf("outcome: %v", err)
		})
	}
}

// movedBack runs the scenario; a non-nil error is the safety violation.
func movedBack(t *testing.T, broken bool) error {
	const A, B, N, D, g = 1, 2, 3, 4, 7
	boot := []uint64{A, B, N}
	n := newPartNet(t, []uint64{A, B, N, D}, broken)
	for _, id := range boot {
		n.addGroup(id, g, boot)
	}
	if err := n.hosts[A].Campaign(g); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if _, ok := n.put(A, g, "before the partition"); !ok {
		t.Fatal("no write with every node up")
	}

	n.isolate(B, A, N, D)
	n.addGroup(D, g, boot)
	n.change(A, g, ChangeLearner, D)
	n.change(A, g, ChangeVoter, D) // {A,B,N,D}, committed by {A,N,D}
	if _, ok := n.put(A, g, "carried by A, N and D"); !ok {
		t.Fatal("no write while B is away")
	}
	n.change(A, g, ChangeRemove, N) // {A,B,D}, committed by {A,N,D}
	if m, _ := n.hosts[A].Membership(g); !slices.Equal(m.Voters, []uint64{A, B, D}) {
		t.Fatalf("voters %v after N's removal, want [A B D]", m.Voters)
	}
	if err := n.hosts[N].RemoveGroup(g); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.put(A, g, "carried by A and D"); !ok {
		t.Fatal("no write after N's removal")
	}

	// The replica is moved back to N; the leader has not reached it yet.
	n.isolate(N, A, D)
	n.addGroup(N, g, boot)
	n.restart(N)
	n.heal(B, N)
	_ = n.hosts[B].Campaign(g)
	n.pump()
	if st := n.hosts[B].Status(g); st.Leader == B {
		bSeq, bOK := n.put(B, g, "acknowledged by B and N")
		aSeq, aOK := n.put(A, g, "acknowledged by A and D")
		return fmt.Errorf("stale B won the re-created N's vote and leads term %d with {B,N} while A leads with {A,D}: "+
			"B acknowledged ordinal %x (%v), A acknowledged ordinal %x (%v)", st.Term, bSeq, bOK, aSeq, aOK)
	}

	// The move goes on: N as a learner, caught up, promoted; B removed.
	n.heal(N, A, D)
	n.change(A, g, ChangeLearner, N)
	n.change(A, g, ChangeVoter, N)
	n.change(A, g, ChangeRemove, B)
	seq, ok := n.put(A, g, "after the move")
	if !ok {
		t.Fatal("no write after the move back to N")
	}
	if m, _ := n.hosts[N].Membership(g); !slices.Equal(m.Voters, []uint64{A, N, D}) && !slices.Equal(m.Voters, []uint64{A, D, N}) {
		t.Fatalf("N's voters %v after the move, want A, D, N", m.Voters)
	}
	recs := n.hosts[N].Records(g)
	if len(recs) != 4 || recs[len(recs)-1].Seq != seq {
		t.Fatalf("N holds %d records, last %v; want the 4 written, the last at %x", len(recs), firstSeq(recs[len(recs)-1:]), seq)
	}
	return nil
}

// tickLeader ticks a leader's host alone and pumps, times times. A panic
// of raft's is an error: an empty replica that takes a stale leader's
// heartbeat is told a commit index beyond its log, and raft panics (the
// node's process would die).
func (n *partNet) tickLeader(id uint64, times int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("raft panicked: %v", r)
		}
	}()
	for range times {
		n.hosts[id].Tick()
		n.pump()
	}
	return nil
}

// staleLeader: B leads {A,B,N} in term 1 and is cut off; A leads term 2
// with N; D joins, N is removed and deleted, and moved back. B, still
// leader of term 1 in its view, reaches only N and proposes: N must not
// accept term-1 appends or heartbeats (its old replica had moved on to
// term 2), else B commits with {B,N} while A commits with {A,D}, or, as
// raft does when B's heartbeat names a commit index beyond N's empty log,
// N's host panics.
func staleLeader(t *testing.T, broken bool) error {
	const A, B, N, D, g = 1, 2, 3, 4, 7
	boot := []uint64{A, B, N}
	n := newPartNet(t, []uint64{A, B, N, D}, broken)
	for _, id := range boot {
		n.addGroup(id, g, boot)
	}
	if err := n.hosts[B].Campaign(g); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if _, ok := n.put(B, g, "B's term"); !ok {
		t.Fatal("no write with every node up")
	}
	n.isolate(B, A, N, D)
	if err := n.hosts[A].Campaign(g); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if st := n.hosts[A].Status(g); st.Leader != A {
		t.Fatalf("A does not lead after its campaign: %+v", st)
	}
	n.addGroup(D, g, boot)
	n.change(A, g, ChangeLearner, D)
	n.change(A, g, ChangeVoter, D)
	n.change(A, g, ChangeRemove, N)
	if err := n.hosts[N].RemoveGroup(g); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.put(A, g, "carried by A and D"); !ok {
		t.Fatal("no write after N's removal")
	}
	n.isolate(N, A, D)
	n.addGroup(N, g, boot)
	n.restart(N)
	n.heal(B, N)
	p, err := n.hosts[B].Propose(g, [][]byte{[]byte("stale leader")})
	if err != nil {
		t.Fatalf("B is no longer leader in its view: %v", err)
	}
	// B's heartbeats (B ticks alone: a leader never campaigns) resume its
	// probe of N, paused since its last append to N was lost.
	if err := n.tickLeader(B, 3); err != nil {
		return err
	}
	t.Logf("B %+v, N %+v", n.hosts[B].Status(g), n.hosts[N].Status(g))
	if seq, err := p.Result(); isDone(p.Done()) && err == nil {
		return fmt.Errorf("stale leader B (term %d) acknowledged ordinal %x with the re-created N", n.hosts[B].Status(g).Term, seq)
	}
	return nil
}

// TestTombMerge: merged tombstones keep the later term with its vote and
// the more up-to-date log end, and survive their WAL frame's codec.
func TestTombMerge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     tomb
		want     tomb
		behind   [2]uint64 // a log end (term, index)
		isBehind bool      // whether it is behind want
	}{
		{"later term wins", tomb{3, 1, 2, 9}, tomb{5, 2, 2, 7}, tomb{5, 2, 2, 9}, [2]uint64{2, 8}, true},
		{"same term, vote kept", tomb{5, 2, 4, 9}, tomb{5, 0, 5, 1}, tomb{5, 2, 5, 1}, [2]uint64{4, 100}, true},
		{"same term, vote learnt", tomb{5, 0, 4, 9}, tomb{5, 3, 4, 9}, tomb{5, 3, 4, 9}, [2]uint64{4, 9}, false},
		{"into nothing", tomb{}, tomb{7, 1, 7, 30}, tomb{7, 1, 7, 30}, [2]uint64{8, 1}, false},
	} {
		got := tc.a.merge(tc.b)
		if got != tc.want {
			t.Errorf("%s: merge %+v, want %+v", tc.name, got, tc.want)
		}
		if b := got.behind(tc.behind[0], tc.behind[1]); b != tc.isBehind {
			t.Errorf("%s: log end %v behind %+v: %v, want %v", tc.name, tc.behind, got, b, tc.isBehind)
		}
		id, dec, err := decodeTomb(encodeTomb(42, got)[1:])
		if err != nil || id != 42 || dec != got {
			t.Errorf("%s: codec: %d %+v %v", tc.name, id, dec, err)
		}
	}
}
