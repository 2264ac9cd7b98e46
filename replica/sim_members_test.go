package replica

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/shardlog/shardlog/vfs"
)

// Membership changes in the simulation (simOptions.churn). A sixth of the way
// through the run a node joins with an empty disk; half-way through, a node is
// decommissioned, and once none of its replicas is left it is shut down for
// good. Node IDs are never reused. At each, Place computes the new placement
// from the planned one, and its Moves are queued: replicas move to the new
// node, and away from the leaving one. Every move is driven step by step
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

// join adds a node with a fresh ID; the placement moves replicas to it.
func (s *sim) join() {
	n := &simNode{id: uint64(len(s.nodes) + 1), fs: vfs.NewMemFS(), joined: true}
	s.nodes = append(s.nodes, n)
	_ = s.start(n)
	s.stats.joined++
	s.replace(s.liveIDs())
}

// leave decommissions a random node; the placement moves its replicas away.
func (s *sim) leave() {
	live := s.liveIDs()
	x := live[s.rng.IntN(len(live))]
	s.members.leaving = x
	s.replace(slices.DeleteFunc(live, func(id uint64) bool { return id == x }))
}

func (s *sim) liveIDs() []uint64 {
	var live []uint64
	for _, n := range s.nodes {
		if !n.gone {
			live = append(live, n.id)
		}
	}
	return live
}

// replace places the groups on nodes and queues the moves from the planned
// placement to the new one.
func (s *sim) replace(nodes []uint64) {
	m := &s.members
	to := Place(nodes, slices.Sorted(maps.Keys(m.holders)), m.holders, len(s.boot()))
	for _, mv := range Moves(m.holders, to) {
		m.queue[mv.Group] = append(m.queue[mv.Group], move{mv.Group, mv.From, mv.To})
	}
	m.holders = to
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
		// The source's replica is out of the committed configuration: it
		// is deleted where it was added by AddGroup (a joined node's; the
		// others' are configured groups, which stay, idle).
		if from := s.nodes[mv.from-1]; from.host != nil && from.host.RemoveGroup(mv.group) == nil {
			s.stats.replicasDeleted++
		}
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

// checkDiverged fails if some replica's raft configuration differs from the
// host's record of its applied configuration.
func (s *sim) checkDiverged() error {
	for _, n := range s.nodes {
		for g := range s.opt.groups {
			if n.host == nil {
				continue
			}
			if m, ok := n.host.Membership(uint64(g + 1)); ok && m.Diverged {
				return fmt.Errorf("group %d: node %d's raft voters %v differ from its applied configuration", g+1, n.id, m.Voters)
			}
		}
	}
	return nil
}
