package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// metaRun drives the simulation for the metadata group's tests.
type metaRun struct {
	t      *testing.T
	s      *sim
	nextID uint64
}

func (r *metaRun) until(what string, done func() bool) {
	r.t.Helper()
	for range 3000 {
		if err := r.s.step(); err != nil {
			r.t.Fatal(err)
		}
		if done() {
			return
		}
	}
	r.t.Fatalf("%s: not within 3000 steps:%s", what, r.s.describe())
}

// leader waits for group 1's leader and returns its node.
func (r *metaRun) leader() *simNode {
	r.t.Helper()
	var lead *simNode
	r.until("a leader", func() bool {
		for _, n := range r.s.nodes {
			if n.host != nil && n.host.Status(1).Leader == n.id {
				lead = n
				return true
			}
		}
		return false
	})
	return lead
}

// txn proposes a transaction at n (which must lead) and returns its proposal
// and ID; the outcome is n.meta.Outcome(id) once the proposal is done.
func (r *metaRun) txn(n *simNode, conds []MetaCond, ops []MetaOp) (*Proposal, uint64) {
	r.t.Helper()
	r.nextID++
	p, err := n.host.Propose(1, [][]byte{EncodeTxn(MetaTxn{Origin: n.id, ID: r.nextID, If: conds, Then: ops})})
	if err != nil {
		r.t.Fatalf("propose at node %d: %v", n.id, err)
	}
	return p, r.nextID
}

func streamOp(name, status string) MetaOp {
	v, _ := json.Marshal(MetaStream{Name: name, Status: status, Shards: []MetaShard{
		{ID: "shardId-000000000000", StartingHash: "0", EndingHash: "340282366920938463463374607431768211455", Group: 7}}})
	return MetaOp{Key: StreamKey(name), Value: v}
}

// TestMetaGroup: transactions on the metadata group from two proposers in
// the same step. Two creates of one stream (condition: absent): exactly one
// commits. Two compare-and-set updates from the same version: exactly one
// commits. A ReadIndex read on a follower sees the acknowledged write. After
// the cluster settles every node holds the same state, and a whole-cluster
// power cut and restart rebuild it identically from the segments and WALs.
// Seeds with message loss and duplication, and without.
func TestMetaGroup(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			s, err := newSim(seed, simOptions{nodes: 3, groups: 1, calm: true, meta: true})
			if err != nil {
				t.Fatal(err)
			}
			if seed%2 == 1 { // no faults, but lost and duplicated messages
				s.dropP, s.dupP = 0.05, 0.05
			}
			metaGroup(t, &metaRun{t: t, s: s})
		})
	}
}

func metaGroup(t *testing.T, r *metaRun) {
	s := r.s
	for round := range 5 {
		name := fmt.Sprint("stream-", round)
		lead := r.leader()
		// Two competing creates in the same step: both conditional on absence.
		p1, id1 := r.txn(lead, []MetaCond{{Key: StreamKey(name)}}, []MetaOp{streamOp(name, "CREATING")})
		p2, id2 := r.txn(lead, []MetaCond{{Key: StreamKey(name)}}, []MetaOp{streamOp(name, "CREATING"),
			{Key: PlacementKey(7), Value: json.RawMessage(`[1,2,3]`)}})
		if !r.decide(p1, p2) {
			continue // leadership moved: both failed, try the next name
		}
		w1, ok1 := lead.meta.Outcome(id1)
		w2, ok2 := lead.meta.Outcome(id2)
		if !ok1 || !ok2 || w1 == w2 {
			t.Fatalf("round %d: creates committed %v (known %v) and %v (known %v): want exactly one", round, w1, ok1, w2, ok2)
		}
		// A linearizable read on a follower sees the created stream.
		follower := s.nodes[int(lead.id)%len(s.nodes)]
		r.read(follower)
		st, version, ok := follower.meta.Stream(name)
		if !ok || st.Status != "CREATING" {
			t.Fatalf("round %d: node %d read %+v, %v after ReadIndex", round, follower.id, st, ok)
		}
		// Two compare-and-sets from the version read: exactly one commits.
		p3, id3 := r.txn(lead, []MetaCond{{Key: StreamKey(name), Version: version}}, []MetaOp{streamOp(name, "ACTIVE")})
		p4, id4 := r.txn(lead, []MetaCond{{Key: StreamKey(name), Version: version}}, []MetaOp{streamOp(name, "DELETING")})
		if !r.decide(p3, p4) {
			continue
		}
		w3, _ := lead.meta.Outcome(id3)
		w4, _ := lead.meta.Outcome(id4)
		if w3 == w4 || !w3 {
			t.Fatalf("round %d: CAS outcomes %v and %v: want the first only", round, w3, w4)
		}
	}
	r.settleSame("after the run")
	for _, n := range s.nodes {
		s.crash(n)
	}
	r.settleSame("after a whole-cluster power cut")
}

// read waits for a ReadIndex read at n, asking again every 50 steps (a lost
// request or answer leaves a read pending for ever, as the host documents).
func (r *metaRun) read(n *simNode) {
	r.t.Helper()
	var rd *Read
	steps := 0
	r.until("a read", func() bool {
		if rd == nil || steps%50 == 0 {
			var err error
			if rd, err = n.host.ReadIndex(1); err != nil {
				r.t.Fatal(err)
			}
		}
		steps++
		return closed(rd.Done())
	})
}

// decide waits for both proposals; false if either failed (a leader change).
func (r *metaRun) decide(ps ...*Proposal) bool {
	r.until("proposals decided", func() bool {
		for _, p := range ps {
			if !closed(p.Done()) {
				return false
			}
		}
		return true
	})
	for _, p := range ps {
		if _, err := p.Result(); err != nil {
			return false
		}
	}
	return true
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// settleSame restarts every node, waits until group 1 agrees everywhere and
// checks that every node's metadata state is the same, and not empty.
func (r *metaRun) settleSame(when string) {
	r.t.Helper()
	s := r.s
	s.quiet = true
	clear(s.cut)
	if err := s.restartAllIfQuiet(); err != nil {
		r.t.Fatal(err)
	}
	r.until(when, s.settled)
	want := s.nodes[0].meta.Digest()
	if want == "" {
		r.t.Fatalf("%s: empty metadata state", when)
	}
	for _, n := range s.nodes[1:] {
		if got := n.meta.Digest(); got != want {
			r.t.Fatalf("%s: node %d's metadata state differs from node 1's:\n%s\nvs\n%s", when, n.id, got, want)
		}
	}
	s.quiet = false
}

// TestMetaRestoreFailedKeepsState (review5): a restore whose pages end in a
// read error leaves the machine's state as it was, not the part of the
// history read before the error; a complete restore replaces it.
func TestMetaRestoreFailedKeepsState(t *testing.T) {
	txn := func(id uint64, key, val string) Record {
		return Record{Seq: Ordinal(id, 0), Data: EncodeTxn(MetaTxn{Origin: 2, ID: id, Then: []MetaOp{{Key: key, Value: []byte(`"` + val + `"`)}}})}
	}
	m := NewMetaMachine(1, 1, nil)
	m.Applied(1, []Record{txn(1, "a", "old"), txn(2, "b", "old")})
	before := m.Digest()
	for _, tc := range []struct {
		name string
		fail bool
		want string
	}{
		{"read error after a page", true, before},
		{"complete", false, "a@" + fmt.Sprint(Ordinal(3, 0)) + "=\"new\"\n"},
	} {
		m.Restored(1, func(yield func([]Record, error) bool) {
			if !yield([]Record{txn(3, "a", "new")}, nil) {
				return
			}
			if tc.fail {
				yield(nil, errors.New("disk on fire"))
			}
		})
		if got := m.Digest(); got != tc.want {
			t.Fatalf("%s: state\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}
