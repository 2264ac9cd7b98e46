package cluster

import (
	"strconv"

	"github.com/shardlog/shardlog/replica"
)

// NodeStatus is a node's view of the cluster (GET /_cluster/v1/status).
type NodeStatus struct {
	Node uint64 `json:"node"`
	// Groups is every group this node holds, by ID: the metadata group
	// ("1") and each shard's.
	Groups map[string]GroupStatus `json:"groups"`
	// Shards maps "<stream>/<shardId>" to its group.
	Shards map[string]uint64 `json:"shards"`
	// Raft is the node's Raft host's counters since it started: Ready
	// rounds, WAL fdatasyncs and entries (of all groups together: one
	// fdatasync per round, however many groups it served), segment
	// fdatasyncs and proposals.
	Raft RaftStats `json:"raft"`
	// Damaged is this node's replicas set aside as damaged (damage.go):
	// they take no part in their groups until replaced.
	Damaged []DamagedReplica `json:"damaged,omitempty"`
}

// RaftStats is replica.Stats as the status endpoint shows it.
type RaftStats struct {
	Rounds     uint64 `json:"rounds"`
	WALSyncs   uint64 `json:"walSyncs"`
	Entries    uint64 `json:"entries"`
	StateSyncs uint64 `json:"stateSyncs"`
	Proposals  uint64 `json:"proposals"`
	// Times is where the rounds' and the proposals' time went, cumulative
	// nanoseconds (replica.RoundTimes).
	Times replica.RoundTimes `json:"times"`
}

// GroupStatus is one group's leader (0: none known) and the last index
// applied here.
type GroupStatus struct {
	Leader  uint64 `json:"leader"`
	Applied uint64 `json:"applied"`
	// Voters and Learners are the group's applied configuration, given
	// (by ?group=G) only by its leader.
	Voters   []uint64 `json:"voters,omitempty"`
	Learners []uint64 `json:"learners,omitempty"`
}

// statusOf is Status, or one group's only (group: its ID in decimal).
func (n *Node) statusOf(group string) NodeStatus {
	g, err := strconv.ParseUint(group, 10, 64)
	if err != nil {
		return n.Status()
	}
	st := NodeStatus{Node: n.cfg.NodeID, Groups: map[string]GroupStatus{}}
	if n.host.HasGroup(g) {
		s := n.host.Status(g)
		gs := GroupStatus{Leader: s.Leader, Applied: s.Applied}
		if m, ok := n.host.Membership(g); ok && m.Match != nil {
			gs.Voters, gs.Learners = m.Voters, m.Learners
		}
		st.Groups[group] = gs
	}
	return st
}

// Status reports this node's view of every group, from its local state.
func (n *Node) Status() NodeStatus {
	hs := n.host.Stats()
	st := NodeStatus{Node: n.cfg.NodeID, Groups: map[string]GroupStatus{}, Shards: map[string]uint64{},
		Raft:    RaftStats{Rounds: hs.Rounds, WALSyncs: hs.WALSyncs, Entries: hs.Entries, StateSyncs: hs.StateSyncs, Proposals: hs.Proposals, Times: hs.Times},
		Damaged: n.damagedReplicas()}
	groups := []uint64{metaGroup}
	for _, rec := range n.streams() {
		for _, sh := range rec.Shards {
			st.Shards[rec.Name+"/"+sh.ID] = sh.Group
			groups = append(groups, sh.Group)
		}
	}
	for _, g := range groups {
		if n.host.HasGroup(g) {
			s := n.host.Status(g)
			st.Groups[strconv.FormatUint(g, 10)] = GroupStatus{Leader: s.Leader, Applied: s.Applied}
		}
	}
	return st
}
