package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/shardlog/shardlog/replica"
)

// The placement driver (docs/cluster.md §8). Its state is in the metadata:
//
//	placement/<g>  the group's replicas now (the first: its preferred leader)
//	boot/<g>       the group's bootstrap voters, which every replica created
//	               later must be created with (replica.Host.AddGroup)
//	move/<g>       the one replica move in progress in the group: {from, to}
//
// The work is split where the knowledge is:
//   - the metadata leader computes replica.Place over the live nodes from
//     the current placement and starts moves (drivePlacement): one per
//     group at a time, at most maxMoves in the cluster, each a
//     compare-and-set on the group's placement and move keys;
//   - the move's target creates its replica (ensureReplicas);
//   - the group's leader, wherever it is, carries the move out step by step
//     (stepGroup): learner, catch-up, voter, leadership away from the
//     leaving replica, removal; then records the new placement and ends the
//     move in one compare-and-set. Each step is re-decided from the group's
//     applied configuration, so a lost step, a leader change or a restart
//     only means the next round decides again.
//
// Everything runs from every node's reconcile loop (node.go).

// moveRec is a replica move in progress.
type moveRec struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// maxMoves bounds the moves in progress in the cluster: each costs its
// target a catch-up (a snapshot or the log) from the group's leader.
const maxMoves = 4

const (
	bootPrefix = "boot/"
	movePrefix = "move/"
)

func bootKey(g uint64) string { return fmt.Sprintf("%s%d", bootPrefix, g) }
func moveKey(g uint64) string { return fmt.Sprintf("%s%d", movePrefix, g) }

// cutGroupKey parses "<prefix><group>".
func cutGroupKey(key, prefix string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, false
	}
	g, err := strconv.ParseUint(rest, 10, 64)
	return g, err == nil
}

// placements reads every group's placement and the moves in progress from
// the local state.
func (n *Node) placements() (replica.Placement, map[uint64]moveRec) {
	return placementsOf(n.meta.Snapshot())
}

func placementsOf(snap map[string]replica.MetaValue) (replica.Placement, map[uint64]moveRec) {
	cur, moves := replica.Placement{}, map[uint64]moveRec{}
	for k, v := range snap {
		if g, ok := cutPlacement(k); ok {
			var nodes []uint64
			if json.Unmarshal(v.Value, &nodes) == nil {
				cur[g] = nodes
			}
		} else if g, ok := cutGroupKey(k, movePrefix); ok {
			var mv moveRec
			if json.Unmarshal(v.Value, &mv) == nil {
				moves[g] = mv
			}
		}
	}
	return cur, moves
}

// bootOf is the group's bootstrap voters: boot/<g>, or for a group created
// before boot keys existed, its placement (no move had happened then).
func bootOf(snap map[string]replica.MetaValue, g uint64) []uint64 {
	var nodes []uint64
	if v, ok := snap[bootKey(g)]; ok && json.Unmarshal(v.Value, &nodes) == nil {
		return nodes
	}
	if v, ok := snap[replica.PlacementKey(g)]; ok && json.Unmarshal(v.Value, &nodes) == nil {
		return nodes
	}
	return nil
}

// ensureReplicas creates the replicas this node must hold: those placed on
// it (a new group: the preferred leader campaigns at once, so leaders
// spread as Place decided) and the targets of moves to it.
func (n *Node) ensureReplicas(snap map[string]replica.MetaValue) {
	cur, moves := placementsOf(snap)
	for _, g := range slices.Sorted(maps.Keys(cur)) {
		mv, moving := moves[g]
		joining := moving && mv.To == n.cfg.NodeID
		// A damaged replica is replaced by its repair (damage.go), not here.
		if n.host.HasGroup(g) || n.host.IsDamaged(g) || !(slices.Contains(cur[g], n.cfg.NodeID) || joining) {
			continue
		}
		boot := bootOf(snap, g)
		if err := n.host.AddGroup(g, boot); err != nil {
			n.cfg.Logger.Error("creating a shard replica", "group", g, "error", err)
			continue
		}
		if campaignsAtCreation(n.cfg.NodeID, boot, joining) {
			_ = n.host.Campaign(g)
		}
	}
}

// campaignsAtCreation: only a new group's preferred leader (its first
// bootstrap voter) campaigns as it creates its replica. A move's target
// joins a group that has a leader, which adds it as a learner: its
// bootstrap configuration may still name it a voter (a boot voter moved
// away and back), but a campaign from its empty log could only disturb the
// group (issue 17; its votes are guarded by the host's tombstones,
// replica/tomb.go).
func campaignsAtCreation(self uint64, boot []uint64, joining bool) bool {
	return !joining && len(boot) > 0 && boot[0] == self
}

// drivePlacement, on the metadata leader, starts the moves that bring the
// placement to replica.Place's over the live nodes, ends moves whose target
// is no longer live, and records a new preferred-leader order where Place
// only reorders a group's replicas.
func (n *Node) drivePlacement(ctx context.Context) {
	live := n.liveNodes()
	if len(live) == 0 {
		return
	}
	snap := n.meta.Snapshot()
	cur, moves := placementsOf(snap)
	groups := slices.Sorted(maps.Keys(cur))
	for _, g := range groups {
		if mv, ok := moves[g]; ok && !slices.Contains(live, mv.To) {
			n.commitTxn(ctx, "cancelling a move", []replica.MetaCond{{Key: moveKey(g), Version: snap[moveKey(g)].Version}},
				[]replica.MetaOp{{Key: moveKey(g)}})
			delete(moves, g)
		}
	}
	for g := range moves {
		if _, ok := cur[g]; !ok { // the stream was deleted
			n.commitTxn(ctx, "dropping a deleted group's move", []replica.MetaCond{{Key: moveKey(g), Version: snap[moveKey(g)].Version}},
				[]replica.MetaOp{{Key: moveKey(g)}})
			delete(moves, g)
		}
	}
	inflight := len(moves)
	n.startRepairs(ctx, snap, cur, moves, live, &inflight)
	target := replica.Place(live, groups, cur, n.cfg.Replicas)
	for _, mv := range replica.Moves(cur, target) {
		if _, busy := moves[mv.Group]; busy || inflight >= maxMoves {
			continue
		}
		moves[mv.Group] = moveRec{From: mv.From, To: mv.To}
		inflight++
		pk, mk := replica.PlacementKey(mv.Group), moveKey(mv.Group)
		n.commitTxn(ctx, "starting a move", []replica.MetaCond{{Key: pk, Version: snap[pk].Version}, {Key: mk}},
			[]replica.MetaOp{{Key: mk, Value: mustJSON(moveRec{From: mv.From, To: mv.To})}})
	}
	for _, g := range groups {
		if _, busy := moves[g]; busy || slices.Equal(cur[g], target[g]) || !sameSet(cur[g], target[g]) {
			continue
		}
		pk := replica.PlacementKey(g)
		n.commitTxn(ctx, "reordering a placement", []replica.MetaCond{{Key: pk, Version: snap[pk].Version}},
			[]replica.MetaOp{{Key: pk, Value: mustJSON(target[g])}})
	}
}

func sameSet(a, b []uint64) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x uint64) bool { return !slices.Contains(b, x) })
}

// commitTxn runs a driver's transaction; a failed condition or error only
// means the next round decides again.
func (n *Node) commitTxn(ctx context.Context, what string, conds []replica.MetaCond, ops []replica.MetaOp) {
	if _, err := n.txn(ctx, conds, ops); err != nil {
		n.cfg.Logger.Debug(what, "error", err)
	}
}

// stepGroups advances every group this node leads (stepGroup).
func (n *Node) stepGroups(ctx context.Context) {
	snap := n.meta.Snapshot()
	cur, moves := placementsOf(snap)
	for _, g := range slices.Sorted(maps.Keys(cur)) {
		if n.host.HasGroup(g) && n.host.Status(g).Leader == n.cfg.NodeID {
			mv, moving := moves[g]
			var p *moveRec
			if moving {
				p = &mv
			}
			n.stepGroup(ctx, g, snap, cur[g], p)
		}
	}
}

// stepGroup takes the next step of the group's membership, which this node
// leads, towards its placement and move: replicas that are neither placed
// nor the move's target go (after a fresh read of the metadata: this
// node's copy may lag one that placed them); the move's target joins as a
// learner, is promoted once caught up, then its source leaves (leadership
// first, if it is here) and the move is recorded as done. With no move, a
// caught-up preferred leader is handed the leadership.
func (n *Node) stepGroup(ctx context.Context, g uint64, snap map[string]replica.MetaValue, placed []uint64, mv *moveRec) {
	m, ok := n.host.Membership(g)
	if !ok || m.Match == nil {
		return
	}
	keep := slices.Clone(placed)
	if mv != nil {
		keep = append(keep, mv.To)
	}
	for _, id := range append(slices.Clone(m.Voters), m.Learners...) {
		if !slices.Contains(keep, id) {
			if n.linearize(ctx, metaGroup) == nil && n.strayStill(g, id) {
				n.removeMember(g, m, id, keep)
			}
			return
		}
	}
	if mv != nil && mv.From == mv.To {
		n.stepRepairInPlace(ctx, g, snap, m, placed, *mv)
		return
	}
	if mv == nil {
		// A damaged replica's match index can look caught up (an idle
		// group), but it would never take the leadership handed to it.
		if pref := placed[0]; pref != n.cfg.NodeID && slices.Contains(m.Voters, pref) && n.caughtUp(m, pref) &&
			!isDamaged(snap, g, pref) {
			_ = n.host.TransferLeader(g, pref)
		}
		return
	}
	switch {
	case !m.Has(mv.To):
		n.change(g, replica.ChangeLearner, mv.To)
	case slices.Contains(m.Learners, mv.To):
		if n.caughtUp(m, mv.To) {
			n.change(g, replica.ChangeVoter, mv.To)
		}
	case m.Has(mv.From):
		n.removeMember(g, m, mv.From, slices.DeleteFunc(slices.Clone(keep), func(id uint64) bool { return id == mv.From }))
	default:
		n.finishMove(ctx, g, snap, placed, *mv)
	}
}

// strayStill re-reads, after a linearizing read, whether node is neither
// placed in group g nor its move's target.
func (n *Node) strayStill(g, node uint64) bool {
	cur, moves := n.placements()
	mv, moving := moves[g]
	return len(cur[g]) > 0 && !slices.Contains(cur[g], node) && !(moving && mv.To == node)
}

// finishMove records a move's result: the target takes the source's place
// in the placement (so the preferred leader's slot passes to it), and the
// move ends, in one compare-and-set.
func (n *Node) finishMove(ctx context.Context, g uint64, snap map[string]replica.MetaValue, placed []uint64, mv moveRec) {
	next := slices.Clone(placed)
	if i := slices.Index(next, mv.From); i >= 0 {
		next[i] = mv.To
	} else if !slices.Contains(next, mv.To) {
		next = append(next, mv.To)
	}
	pk, mk := replica.PlacementKey(g), moveKey(g)
	n.commitTxn(ctx, "finishing a move", []replica.MetaCond{{Key: pk, Version: snap[pk].Version}, {Key: mk, Version: snap[mk].Version}},
		[]replica.MetaOp{{Key: pk, Value: mustJSON(next)}, {Key: mk}})
}

// dropReplicas deletes this node's replicas that no group needs any more
// (replica.Host.RemoveGroup): those of deleted streams, and those moved
// away once the group's committed configuration is known to exclude this
// node (its own replica applied its removal, or the group's leader says
// so). It decides only on a linearized view of the metadata: right after
// a restart the local copy may predate the placement that put a replica
// here, and deleting a live voter's data would break the group's quorums.
func (n *Node) dropReplicas(ctx context.Context) {
	var stale []uint64
	snap := n.meta.Snapshot()
	cur, moves := placementsOf(snap)
	for _, g := range n.host.Groups() {
		if mv, ok := moves[g]; g != metaGroup && !slices.Contains(cur[g], n.cfg.NodeID) && !(ok && mv.To == n.cfg.NodeID) {
			stale = append(stale, g)
		}
	}
	// A leaving node needs no fresh read: its copy already holds its own
	// leaving mark, so every placement made before it, and none is made on
	// it after. It may not be able to read at all: its metadata seat can go
	// before its last replicas are deleted.
	leaving := n.nodeRecs()[n.cfg.NodeID].State != ""
	if len(stale) == 0 || !leaving && n.linearize(ctx, metaGroup) != nil {
		return
	}
	cur, moves = n.placements()
	for _, g := range stale {
		placed, exists := cur[g]
		if mv, ok := moves[g]; slices.Contains(placed, n.cfg.NodeID) || ok && mv.To == n.cfg.NodeID {
			continue
		}
		if exists && !n.removedFrom(ctx, g) {
			continue
		}
		if err := n.host.RemoveGroup(g); err != nil {
			n.cfg.Logger.Error("deleting a removed replica", "group", g, "error", err)
			continue
		}
		n.cfg.Logger.Info("deleted a replica moved away", "group", g)
	}
}

// removedFrom reports whether group g's committed configuration excludes
// this node: as its own replica applied it, or as the group's leader
// reports it.
func (n *Node) removedFrom(ctx context.Context, g uint64) bool {
	if m, ok := n.host.Membership(g); ok && !m.Has(n.cfg.NodeID) {
		return true
	}
	voters, learners, ok := n.leaderConfig(ctx, g)
	return ok && !slices.Contains(voters, n.cfg.NodeID) && !slices.Contains(learners, n.cfg.NodeID)
}

// leaderConfig is group g's configuration as its leader (another node)
// reports it; ok is false if no leader answered.
func (n *Node) leaderConfig(ctx context.Context, g uint64) (voters, learners []uint64, ok bool) {
	key := strconv.FormatUint(g, 10)
	for _, id := range n.candidates(g) {
		addr := n.apiAddr(id)
		if id == n.cfg.NodeID || addr == "" {
			continue
		}
		var st NodeStatus
		if n.post(ctx, addr, "status?group="+key, nil, &st) != nil {
			continue
		}
		if gs := st.Groups[key]; gs.Leader == id && len(gs.Voters) > 0 {
			return gs.Voters, gs.Learners, true
		}
	}
	return nil, nil, false
}
