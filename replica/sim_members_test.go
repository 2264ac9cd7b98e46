package replica

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shardlog/shardlog/vfs"
)

// Membership changes in the simulation (simOptions.churn). A sixth of the way
// through the run a node joins with an empty disk and one replica of every
// group moves to it; half-way through, a node is decommissioned: each of its
// replicas moves to a node that has none of that group, then the node is shut
// down for good. Node IDs are never reused. Every move is driven step by step
// from the group leader's applied configuration (membership.go), under the
// run's faults, and the checker then checks every current replica.

// move is one replica moving from one node to another.
type move struct {
	group, from, to uint64
}

type membersSim struct {
	queue   map[uint64][]move   // per group, the moves still to do, in order
	holders map[uint64][]uint64 // per group, the replicas once every planned move is done
	leaving uint64              // the node being decommissioned, 0 for none
}

func (m *membersSim) idle() bool {
	for _, q := range m.queue {
		if len(q) > 0 {
			return false
		}
	}
	return m.leaving == 0
}

func (m *membersSim) describe() string {
	var b strings.Builder
	for g, q := range m.queue {
		if len(q) > 0 {
			fmt.Fprintf(&b, "\n  group %d moves to do: %v", g, q)
		}
	}
	if m.leaving != 0 {
		fmt.Fprintf(&b, "\n  node %d is leaving", m.leaving)
	}
	return b.String()
}

// boot is the groups' bootstrap voters: the nodes the run started with.
func (s *sim) boot() []uint64 {
	var ids []uint64
	for _, n := range s.nodes {
		if !n.joined {
			ids = append(ids, n.id)
		}
	}
	return ids
}

// churn plans the join and the departure at their steps, and advances the
// planned moves.
func (s *sim) churn() {
	if !s.opt.churn {
		return
	}
	m := &s.members
	if m.queue == nil {
		m.queue, m.holders = map[uint64][]move{}, map[uint64][]uint64{}
		for g := range s.opt.groups {
			m.holders[uint64(g+1)] = s.boot()
		}
	}
	switch s.now {
	case uint64(s.opt.steps / 6):
		s.join()
	case uint64(s.opt.steps / 2):
		s.leave()
	}
	for g := range s.opt.groups {
		gid := uint64(g + 1)
		if q := m.queue[gid]; len(q) > 0 && s.rng.Float64() < 0.3 && s.advance(q[0]) {
			m.queue[gid] = q[1:]
			s.stats.moves++
		}
	}
	if m.leaving != 0 && m.idle0() {
		n := s.nodes[m.leaving-1]
		s.crash(n)
		n.gone, m.leaving = true, 0
		s.stats.left++
	}
}

// idle0: no move left (the leaving node holds nothing any more).
func (m *membersSim) idle0() bool {
	for _, q := range m.queue {
		if len(q) > 0 {
			return false
		}
	}
	return true
}

// join adds a node with a fresh ID and moves one replica of each group to it.
func (s *sim) join() {
	n := &simNode{id: uint64(len(s.nodes) + 1), fs: vfs.NewMemFS(), joined: true}
	s.nodes = append(s.nodes, n)
	_ = s.start(n)
	s.stats.joined++
	for g := range s.opt.groups {
		gid := uint64(g + 1)
		hs := s.members.holders[gid]
		s.plan(move{gid, hs[s.rng.IntN(len(hs))], n.id})
	}
}

// leave decommissions a random node: each of its replicas moves to a node
// holding none of that group.
func (s *sim) leave() {
	var live []uint64
	for _, n := range s.nodes {
		if !n.gone {
			live = append(live, n.id)
		}
	}
	x := live[s.rng.IntN(len(live))]
	s.members.leaving = x
	for g := range s.opt.groups {
		gid := uint64(g + 1)
		hs := s.members.holders[gid]
		if !slices.Contains(hs, x) {
			continue
		}
		var free []uint64
		for _, id := range live {
			if id != x && !slices.Contains(hs, id) {
				free = append(free, id)
			}
		}
		if len(free) > 0 {
			s.plan(move{gid, x, free[s.rng.IntN(len(free))]})
		}
	}
}

func (s *sim) plan(mv move) {
	m := &s.members
	m.queue[mv.group] = append(m.queue[mv.group], mv)
	hs := slices.DeleteFunc(slices.Clone(m.holders[mv.group]), func(id uint64) bool { return id == mv.from })
	m.holders[mv.group] = append(hs, mv.to)
}

// advance takes the next step of a move, as the group's leader sees its
// configuration, and reports whether the move is done. Any refusal (a lost
// leadership, a change pending) is retried at a later step.
func (s *sim) advance(mv move) bool {
	lead, m := s.leaderOf(mv.group)
	if lead == nil {
		return false
	}
	to := s.nodes[mv.to-1]
	switch {
	case !m.Has(mv.to):
		if to.host == nil || to.host.AddGroup(mv.group, s.boot()) != nil {
			return false // down, or stopped by a failed fdatasync (its next round crashes it)
		}
		_ = lead.host.ChangeMembership(mv.group, ChangeLearner, mv.to)
	case slices.Contains(m.Learners, mv.to):
		if m.Match[mv.to] >= m.Commit {
			_ = lead.host.ChangeMembership(mv.group, ChangeVoter, mv.to)
		}
	case slices.Contains(m.Voters, mv.from) || slices.Contains(m.Learners, mv.from):
		if lead.id != mv.from {
			_ = lead.host.ChangeMembership(mv.group, ChangeRemove, mv.from)
			return false
		}
		// The leader leaves: hand leadership to the most caught-up voter.
		var best uint64
		for _, v := range m.Voters {
			if v != mv.from && (best == 0 || m.Match[v] > m.Match[best]) {
				best = v
			}
		}
		if lead.host.TransferLeader(mv.group, best) == nil {
			s.stats.transfers++
		}
	default:
		return true
	}
	return false
}

// leaderOf is the group's leader of the highest term among the live nodes,
// and its applied configuration.
func (s *sim) leaderOf(group uint64) (*simNode, Membership) {
	var lead *simNode
	var term uint64
	for _, n := range s.nodes {
		if n.host == nil {
			continue
		}
		if st := n.host.Status(group); st.Leader == n.id && st.Term > term {
			lead, term = n, st.Term
		}
	}
	if lead == nil {
		return nil, Membership{}
	}
	m, _ := lead.host.Membership(group)
	return lead, m
}
