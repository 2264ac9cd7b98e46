package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shardlog/shardlog/replica"
)

// Damaged replicas (docs/cluster.md §8, issue 17). A node whose replica of
// a group failed recovery with corruption opens without it
// (replica.Host.Damaged): that replica takes no part in its group. The
// cluster replaces it as it replaces a replica of a leaving node, for that
// group only:
//
//	damaged/<g>/<node>  the node's replica of group g is damaged (the node
//	                    writes it, and deletes it once it holds no damaged
//	                    replica of g any more)
//
//   - the metadata leader starts a move of g away from the damaged replica
//     (startRepairs): to a live node that holds no replica of g, the
//     fewest-loaded first, else back to the same node;
//   - to another node, the move runs as any move (stepGroup): the new
//     replica joins as a learner, catches up (snapshot and log), is
//     promoted, then the damaged one is removed, and the damaged node
//     drops it (dropReplicas) as any replica moved away;
//   - to the same node (no other node is free: a three-node cluster),
//     the order is reversed, since a node holds one replica per group: the
//     damaged voter is removed first (stepRepairInPlace), the node drops it
//     and creates a fresh replica (repairInPlace), which the tombstone the
//     damaged one left makes safe (replica/tomb.go: it starts from every
//     promise of the damaged replica, whose term, vote and log end came
//     from the WAL, not from the damaged files), and only then the fresh
//     replica joins as a learner, is promoted once caught up, and the move
//     ends. Removing first costs nothing in availability: the damaged
//     voter counted toward no quorum already, so two of three voters and
//     two of two tolerate the same failures.
//
// Writes and reads of the shard go on through the healthy replicas
// meanwhile. A damaged replica of the metadata group is not repaired
// automatically: the node refuses to start (metaDamaged), and is removed
// (remove-node) and replaced by a new node (README, Cluster).

const damagedPrefix = "damaged/"

func damagedKey(g, node uint64) string { return fmt.Sprintf("%s%d/%d", damagedPrefix, g, node) }

// damageRec is a damaged replica as its node reports it.
type damageRec struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Dir    string    `json:"dir"` // where its files were moved, on that node
}

// damagedOf is every damaged replica the metadata records: group → nodes.
func damagedOf(snap map[string]replica.MetaValue) map[uint64][]uint64 {
	out := map[uint64][]uint64{}
	for k := range snap {
		rest, ok := strings.CutPrefix(k, damagedPrefix)
		if !ok {
			continue
		}
		gs, ns, ok := strings.Cut(rest, "/")
		g, err1 := strconv.ParseUint(gs, 10, 64)
		node, err2 := strconv.ParseUint(ns, 10, 64)
		if ok && err1 == nil && err2 == nil {
			out[g] = append(out[g], node)
		}
	}
	return out
}

func isDamaged(snap map[string]replica.MetaValue, g, node uint64) bool {
	_, ok := snap[damagedKey(g, node)]
	return ok
}

// reportDamage makes the metadata's damaged/ keys of this node match its
// host's damaged replicas.
func (n *Node) reportDamage(ctx context.Context, snap map[string]replica.MetaValue) {
	held := map[uint64]replica.Damage{}
	for _, d := range n.host.Damaged() {
		held[d.Group] = d
		if k := damagedKey(d.Group, n.cfg.NodeID); !isDamaged(snap, d.Group, n.cfg.NodeID) {
			rec := damageRec{Reason: d.Reason, At: d.At, Dir: d.Dir}
			n.commitTxn(ctx, "reporting a damaged replica", []replica.MetaCond{{Key: k}}, []replica.MetaOp{{Key: k, Value: mustJSON(rec)}})
		}
	}
	for g, nodes := range damagedOf(snap) {
		if _, still := held[g]; !still && slices.Contains(nodes, n.cfg.NodeID) {
			k := damagedKey(g, n.cfg.NodeID)
			n.commitTxn(ctx, "clearing a repaired replica's damage", []replica.MetaCond{{Key: k, Version: snap[k].Version}},
				[]replica.MetaOp{{Key: k}})
		}
	}
}

// startRepairs, on the metadata leader, starts a move away from each
// damaged replica that is still placed and whose group has no move under
// way; inflight counts the moves, bounded by maxMoves.
func (n *Node) startRepairs(ctx context.Context, snap map[string]replica.MetaValue, cur replica.Placement,
	moves map[uint64]moveRec, live []uint64, inflight *int) {
	dmg := damagedOf(snap)
	for _, g := range slices.Sorted(maps.Keys(dmg)) {
		for _, d := range slices.Sorted(slices.Values(dmg[g])) {
			if _, busy := moves[g]; busy || *inflight >= maxMoves || !slices.Contains(cur[g], d) || g == metaGroup {
				continue
			}
			mv := moveRec{From: d, To: repairTarget(cur, g, d, live)}
			moves[g] = mv
			*inflight++
			pk, mk := replica.PlacementKey(g), moveKey(g)
			n.commitTxn(ctx, "starting a damaged replica's repair", []replica.MetaCond{{Key: pk, Version: snap[pk].Version}, {Key: mk}},
				[]replica.MetaOp{{Key: mk, Value: mustJSON(mv)}})
			n.cfg.Logger.Info("replacing a damaged replica", "group", g, "node", d, "to", mv.To)
		}
	}
}

// repairTarget is the node a damaged replica of group g on node d moves
// to: the live node holding no replica of g with the fewest replicas (the
// lowest ID first), or d itself if there is none.
func repairTarget(cur replica.Placement, g, d uint64, live []uint64) uint64 {
	load := map[uint64]int{}
	for _, nodes := range cur {
		for _, x := range nodes {
			load[x]++
		}
	}
	best := d
	for _, x := range live {
		if x != d && !slices.Contains(cur[g], x) && (best == d || load[x] < load[best]) {
			best = x
		}
	}
	return best
}

// stepRepairInPlace is stepGroup for a move from a node to itself: a
// damaged replica replaced by a fresh one on the same node. While the
// metadata says the replica is damaged, the step is its removal (after a
// linearizing read: a stale copy may still hold a repaired replica's
// damage); once the node has created the fresh replica and cleared its
// damage, the fresh replica joins as a learner, is promoted once caught
// up, and the move ends.
func (n *Node) stepRepairInPlace(ctx context.Context, g uint64, snap map[string]replica.MetaValue, m replica.Membership,
	placed []uint64, mv moveRec) {
	d := mv.From
	switch {
	case isDamaged(snap, g, d):
		if slices.Contains(m.Voters, d) || slices.Contains(m.Learners, d) {
			if n.linearize(ctx, metaGroup) == nil && isDamaged(n.meta.Snapshot(), g, d) {
				n.change(g, replica.ChangeRemove, d)
			}
		}
	case !m.Has(d):
		n.change(g, replica.ChangeLearner, d)
	case slices.Contains(m.Learners, d):
		if n.caughtUp(m, d) {
			n.change(g, replica.ChangeVoter, d)
		}
	default:
		n.finishMove(ctx, g, snap, placed, mv)
	}
}

// repairInPlace, on a node with a damaged replica moving to itself, drops
// the damaged replica once the group's leader reports this node no voter
// of it, and creates a fresh one (over the damaged one's tombstone).
func (n *Node) repairInPlace(ctx context.Context, snap map[string]replica.MetaValue) {
	_, moves := placementsOf(snap)
	for _, d := range n.host.Damaged() {
		mv, ok := moves[d.Group]
		if !ok || mv.From != n.cfg.NodeID || mv.To != n.cfg.NodeID || !d.Dynamic {
			continue
		}
		voters, _, known := n.leaderConfig(ctx, d.Group)
		if !known || slices.Contains(voters, n.cfg.NodeID) {
			continue
		}
		if err := n.host.RemoveGroup(d.Group); err != nil {
			n.cfg.Logger.Error("dropping a damaged replica", "group", d.Group, "error", err)
			continue
		}
		if err := n.host.AddGroup(d.Group, bootOf(snap, d.Group)); err != nil {
			n.cfg.Logger.Error("creating a damaged replica's replacement", "group", d.Group, "error", err)
			continue
		}
		n.cfg.Logger.Info("replaced a damaged replica with a fresh one", "group", d.Group, "damaged_files", d.Dir)
	}
}

// metaDamaged refuses to run a node whose replica of the metadata group is
// damaged: without its copy of the metadata it would answer that no stream
// exists, and could neither drive nor report anything. Its shard replicas
// are intact; the cluster keeps them on their other nodes once the node is
// removed.
func metaDamaged(h *replica.Host) error {
	for _, d := range h.Damaged() {
		if d.Group == metaGroup {
			return fmt.Errorf("cluster: this node's replica of the metadata group is damaged (%s; its files are kept in %s): "+
				"remove the node (shardlog cluster remove-node) and add a new one with an empty data directory", d.Reason, d.Dir)
		}
	}
	return nil
}

// damagedReplicas is this node's damaged replicas as its status shows them.
func (n *Node) damagedReplicas() []DamagedReplica {
	var out []DamagedReplica
	for _, d := range n.host.Damaged() {
		out = append(out, DamagedReplica{Group: d.Group, Reason: d.Reason, At: d.At, Dir: d.Dir})
	}
	return out
}

// DamagedReplica is a replica its node set aside as damaged (NodeStatus,
// NodeInfo).
type DamagedReplica struct {
	Group  uint64    `json:"group"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	Dir    string    `json:"dir,omitempty"`
}

// damagedOn is the damaged replicas the metadata records on node id.
func damagedOn(snap map[string]replica.MetaValue, id uint64) []DamagedReplica {
	var out []DamagedReplica
	dmg := damagedOf(snap)
	for _, g := range slices.Sorted(maps.Keys(dmg)) {
		if !slices.Contains(dmg[g], id) {
			continue
		}
		var rec damageRec
		_ = json.Unmarshal(snap[damagedKey(g, id)].Value, &rec)
		out = append(out, DamagedReplica{Group: g, Reason: rec.Reason, At: rec.At, Dir: rec.Dir})
	}
	return out
}
