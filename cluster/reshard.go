package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Resharding in cluster mode (docs/cluster.md §8): SplitShard, MergeShards
// and UpdateShardCount.
//
// Planning is single-node mode's (storage.PlanSplitShard and the rest:
// shard IDs, hash ranges, lineage, errors and their order are the same).
// A reshard has two metadata transactions and a seal between them:
//
//  1. accept (the call): one compare-and-set on the stream's record and the
//     allocator stores the stream UPDATING with the plan pending
//     (streamRec.Reshard: the whole shard list after it, children with new
//     groups), and the children's placement and boot keys, placed by
//     replica.Place. Every node's reconcile creates the children's replicas.
//     The stream's Shards are unchanged: DescribeStream, ListShards and
//     writes see the parents open, as in single-node mode during UPDATING.
//  2. seal (the metadata leader's reconcile, once every child group has a
//     leader): a seal entry is proposed to each parent's group. Its place
//     in the parent's log decides, the same way on every replica, which
//     records are the parent's: those committed before the first seal entry.
//     An entry committed after it is not the parent's: its proposer answers
//     errSealed (retryable; Put re-routes the records to the children), and
//     no replica serves it (sealedReader).
//  3. finish: one compare-and-set installs the pending shard list, each
//     parent with End (its seal's ordinal) and ClosedMs, and makes the
//     stream ACTIVE. A reader at a closed parent's end gets no
//     NextShardIterator and the ChildShards.
//
// A crash or leader change anywhere leaves the metadata from which the next
// metadata leader's round seals (again: only the first seal counts) and
// finishes, so an accepted reshard always takes effect.
//
// Sequence numbers: a child's epoch (the creation second its numbers carry
// above the ordinal) is above every epoch given out before (the allocator),
// as single-node mode does, so every child's number is greater than every
// number of its parents, and the child's ordinals are its own group's log
// positions. No floor entry is needed: numbers carry the shard index, and
// per shard they increase because its log's indexes do.

// reshardRec is a pending reshard: the stream's shards once it takes effect.
type reshardRec struct {
	Shards []replica.MetaShard `json:"shards"`
}

// errSealed: the entry committed after its group's seal; it is not stored
// as far as any reader is concerned. Definite, so Put re-routes it.
var errSealed = errors.New("cluster: the shard was closed by a reshard; the write was not stored")

// isClosed reports whether a shard takes no more writes.
func isClosed(sh replica.MetaShard) bool { return sh.ClosedMs != 0 }

// shardEpoch is the creation second a shard's sequence numbers carry.
func shardEpoch(rec streamRec, sh replica.MetaShard) int64 {
	if sh.Epoch != 0 {
		return sh.Epoch
	}
	return rec.Epoch
}

// takesWrites: Kinesis takes writes and reads on an UPDATING stream.
func takesWrites(status string) bool {
	return status == string(storage.StatusActive) || status == string(storage.StatusUpdating)
}

// allShards is every shard a stream has or will have once its pending
// reshard takes effect (the pending list holds every current shard too).
func allShards(rec streamRec) []replica.MetaShard {
	if rec.Reshard != nil {
		return rec.Reshard.Shards
	}
	return rec.Shards
}

// openCount counts the shards open now or once the pending reshard takes
// effect, whichever is more (the account's limit reserves them).
func openCount(rec streamRec) int {
	count := func(shards []replica.MetaShard) int {
		k := 0
		for _, sh := range shards {
			if !isClosed(sh) {
				k++
			}
		}
		return k
	}
	k := count(rec.Shards)
	if rec.Reshard != nil {
		k = max(k, count(rec.Reshard.Shards))
	}
	return k
}

func (n *Node) openShards() int {
	k := 0
	for _, rec := range n.streams() {
		k += openCount(rec)
	}
	return k
}

// SplitShard splits an open shard at newStart. The id resolves before the
// stream is looked up, as in single-node mode.
func (n *Node) SplitShard(ctx context.Context, stream, shardToSplit, newStart string) error {
	if err := storage.CheckShardIDs(n.cfg.AccountID, stream, shardToSplit); err != nil {
		return err
	}
	return n.reshard(ctx, stream, func(in storage.ReshardInput) (storage.ReshardPlan, error) {
		return storage.PlanSplitShard(in, shardToSplit, newStart)
	})
}

// MergeShards merges two adjacent open shards.
func (n *Node) MergeShards(ctx context.Context, stream, shardToMerge, adjacentShard string) error {
	if err := storage.CheckShardIDs(n.cfg.AccountID, stream, shardToMerge, adjacentShard); err != nil {
		return err
	}
	return n.reshard(ctx, stream, func(in storage.ReshardInput) (storage.ReshardPlan, error) {
		return storage.PlanMergeShards(in, shardToMerge, adjacentShard)
	})
}

// UpdateShardCount reshapes the open shards into target uniform ranges.
func (n *Node) UpdateShardCount(ctx context.Context, stream string, target int) (storage.UpdateShardCountResult, error) {
	var res storage.UpdateShardCountResult
	err := n.reshard(ctx, stream, func(in storage.ReshardInput) (storage.ReshardPlan, error) {
		p, r, err := storage.PlanUpdateShardCount(in, target)
		res = r
		return p, err
	})
	return res, err
}

// reshard plans a reshard from the linearized metadata and accepts it (step
// 1 at the top of this file), retrying when another change won the race.
func (n *Node) reshard(ctx context.Context, name string, plan func(storage.ReshardInput) (storage.ReshardPlan, error)) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) { return n.acceptTxn(name, plan) })
}

// acceptTxn builds the accept transaction from the local state; nil ops:
// nothing to do.
func (n *Node) acceptTxn(name string, plan func(storage.ReshardInput) (storage.ReshardPlan, error)) ([]replica.MetaCond, []replica.MetaOp, error) {
	rec, v, ok := n.stream(name)
	if !ok {
		return nil, nil, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
	}
	var alloc allocRec
	allocVersion, _ := n.getJSON(keyAlloc, &alloc)
	alloc.NextGroup = max(alloc.NextGroup, metaGroup+1)
	p, err := plan(n.reshardInput(rec, alloc))
	if err != nil {
		return nil, nil, err
	}
	key := replica.StreamKey(name)
	rec.ScalingNs = p.Stream.ScalingNs
	if len(p.Added) == 0 { // UpdateShardCount to the current count: the call is recorded
		return []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}, nil
	}
	conds, ops := n.pendingTxn(rec, v, p, alloc, allocVersion)
	return conds, ops, nil
}

// pendingTxn is the transaction that accepts plan p on rec (read at
// version v): the stream UPDATING with p pending, the allocator (read at
// allocVersion) advanced, and the children's groups placed.
func (n *Node) pendingTxn(rec streamRec, v uint64, p storage.ReshardPlan, alloc allocRec, allocVersion uint64) ([]replica.MetaCond, []replica.MetaOp) {
	key := replica.StreamKey(rec.Name)
	next, groups := pendingShards(rec, p, &alloc)
	rec.Status, rec.Reshard, rec.NextShardIndex = string(storage.StatusUpdating), &reshardRec{Shards: next}, p.Stream.NextShardIndex
	conds := []replica.MetaCond{{Key: key, Version: v}, {Key: keyAlloc, Version: allocVersion}}
	ops := []replica.MetaOp{{Key: key, Value: mustJSON(rec)}, {Key: keyAlloc, Value: mustJSON(alloc)}}
	placed := n.place(groups)
	for _, g := range groups {
		ops = append(ops, replica.MetaOp{Key: replica.PlacementKey(g), Value: mustJSON(placed[g])},
			replica.MetaOp{Key: bootKey(g), Value: mustJSON(placed[g])})
	}
	return conds, ops
}

// reshardInput is what the planners read of rec and the account, alloc
// being the allocator read with it.
func (n *Node) reshardInput(rec streamRec, alloc allocRec) storage.ReshardInput {
	return storage.ReshardInput{Stream: planRecord(rec), Now: n.cfg.Now(), Account: n.cfg.AccountID,
		MinEpoch: alloc.Epoch + 1, ShardLimit: n.cfg.ShardLimit, OpenShards: n.openShards(),
		ScalingCallsPerDay: storage.DefaultScalingCallsPerDay}
}

// planRecord is a stream's record as the planners and the capacity rules
// read it. Its mode makes users' SplitShard, MergeShards and
// UpdateShardCount of an ON_DEMAND stream refused, as in single-node mode.
func planRecord(rec streamRec) *datadir.StreamRecord {
	r := &datadir.StreamRecord{Name: rec.Name, CreatedNs: rec.CreatedNs, Status: storage.StreamStatus(rec.Status),
		Mode: rec.mode(), RetentionHours: rec.RetentionHours, NextShardIndex: rec.NextShardIndex,
		ScalingNs: rec.ScalingNs, ModeSwitchNs: rec.ModeSwitchNs, WarmMiBps: rec.WarmMiBps, WritePeaks: rec.WritePeaks}
	for _, sh := range rec.Shards {
		idx, _ := datadir.ParseShardID(sh.ID)
		r.Shards = append(r.Shards, datadir.ShardRecord{Index: idx, Parent: sh.Parent, AdjParent: sh.AdjacentParent,
			HashStart: sh.StartingHash, HashEnd: sh.EndingHash, CreateSecs: shardEpoch(rec, sh),
			Closed: isClosed(sh), ClosedMs: sh.ClosedMs})
		r.NextShardIndex = max(r.NextShardIndex, idx+1) // records from before NextShardIndex was kept
	}
	return r
}

// pendingShards is the shard list after plan p: the current shards (the
// parents now with their closing time), then the new ones, each open one
// with a new group (an intermediate shard closed within the plan has none).
// The allocator gives the groups and records the children's epochs.
func pendingShards(rec streamRec, p storage.ReshardPlan, alloc *allocRec) ([]replica.MetaShard, []uint64) {
	after := map[uint32]datadir.ShardRecord{}
	for _, sr := range p.Stream.Shards {
		after[sr.Index] = sr
	}
	var out []replica.MetaShard
	for _, sh := range rec.Shards {
		idx, _ := datadir.ParseShardID(sh.ID)
		if sr := after[idx]; sr.Closed && !isClosed(sh) {
			sh.ClosedMs = sr.ClosedMs
		}
		out = append(out, sh)
	}
	var groups []uint64
	for _, sr := range p.Added {
		sh := replica.MetaShard{ID: datadir.ShardID(sr.Index), StartingHash: sr.HashStart, EndingHash: sr.HashEnd,
			Parent: sr.Parent, AdjacentParent: sr.AdjParent, Epoch: sr.CreateSecs}
		if sr := after[sr.Index]; sr.Closed {
			sh.ClosedMs = sr.ClosedMs
		} else {
			sh.Group = alloc.NextGroup
			alloc.NextGroup++
			groups = append(groups, sh.Group)
		}
		alloc.Epoch = max(alloc.Epoch, sr.CreateSecs)
		out = append(out, sh)
	}
	return out, groups
}

// finishReshards (the metadata leader's reconcile) seals and finishes every
// pending reshard whose children's groups all have leaders (steps 2 and 3).
func (n *Node) finishReshards(ctx context.Context) {
	for _, rec := range n.streams() {
		if rec.Reshard == nil || rec.Status != string(storage.StatusUpdating) {
			continue
		}
		if err := n.finishReshard(ctx, rec.Name); err != nil {
			n.cfg.Logger.Debug("finishing a reshard", "stream", rec.Name, "error", err)
		}
	}
}

var errChildrenNotLed = errors.New("cluster: a child shard's group has no leader yet")

func (n *Node) finishReshard(ctx context.Context, name string) error {
	rec, v, ok := n.stream(name)
	if !ok || rec.Reshard == nil {
		return nil
	}
	for _, sh := range rec.Reshard.Shards {
		if !isClosed(sh) && sh.Group != 0 && n.groupLeader(ctx, sh.Group) == 0 {
			return errChildrenNotLed
		}
	}
	next := append([]replica.MetaShard(nil), rec.Reshard.Shards...)
	for i, sh := range next {
		if isClosed(sh) && sh.Group != 0 && sh.End == 0 {
			end, err := n.seal(ctx, sh.Group)
			if err != nil {
				return fmt.Errorf("seal %s: %w", sh.ID, err)
			}
			next[i].End = end
		}
	}
	rec.Shards, rec.Reshard, rec.Status = next, nil, string(storage.StatusActive)
	key := replica.StreamKey(name)
	_, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}})
	return err
}

// seal ends group g's records at its first seal entry, proposing one on
// the group's leader (here or forwarded) unless it has one, and returns
// that entry's ordinal.
func (n *Node) seal(ctx context.Context, g uint64) (uint64, error) {
	var end uint64
	err := n.onLeader(ctx, g,
		func(ctx context.Context) (err error) {
			end, err = n.sealHere(ctx, g)
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			end, err = n.forwardSeal(ctx, addr, g)
			return err
		})
	return end, err
}

// sealHere seals a group this node leads. A seal it has not applied yet
// (committed under an earlier leader) may exist: then the new entry comes
// after it, and the first one is the answer all the same.
func (n *Node) sealHere(ctx context.Context, g uint64) (uint64, error) {
	if end, ok, err := n.seals.end(ctx, g); err != nil || ok {
		return end, err
	}
	p, err := n.host.Propose(g, [][]byte{sealMarker})
	if err != nil {
		return 0, err
	}
	if _, err := n.await(ctx, p); err != nil {
		return 0, err
	}
	end, ok, err := n.seals.end(ctx, g)
	if err == nil && !ok {
		err = fmt.Errorf("cluster: group %d applied its seal without noting it", g)
	}
	return end, err
}

// sealedAfter reports whether an entry of group g whose first record got
// ordinal ord was committed after the group's seal: a proposer asks it once
// its entry applied here, so a seal before it has applied here too. An
// error leaves it unknown (the entry committed: the write may be stored).
func (n *Node) sealedAfter(ctx context.Context, g, ord uint64) (bool, error) {
	end, ok, err := n.seals.end(ctx, g)
	return ok && ord > end, err
}
