package cluster

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// initialEpochLag back-dates a stream's shard epoch as single-node mode
// does (storage/control.go): AWS's creation second inside a new shard's
// sequence numbers lies a few seconds before the CreateStream reply.
const initialEpochLag = 3

// maxTxnAttempts bounds a control-plane call's compare-and-set retries
// (another node changed the same keys between the read and the commit).
const maxTxnAttempts = 8

// CreateStream writes the stream, its shards (hash ranges as single-node
// mode splits them, one new Raft group each) and their placement in one
// metadata transaction, conditional on the stream's absence and on the
// allocator's version. Every node then creates its replicas (reconcile);
// the stream turns ACTIVE once every group has a leader (activateStreams).
// An ON_DEMAND stream or a warm throughput passes single-node mode's checks
// first (storage.CheckCreateOnDemand; capacity.go has the conditions).
func (n *Node) CreateStream(ctx context.Context, in storage.CreateStreamInput) error {
	if err := n.createSupported(in); err != nil {
		return err
	}
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) { return n.createTxn(in) })
}

func (n *Node) createSupported(storage.CreateStreamInput) error { return nil }

// createTxn builds CreateStream's transaction from the local state (read
// after a ReadIndex round).
func (n *Node) createTxn(in storage.CreateStreamInput) ([]replica.MetaCond, []replica.MetaOp, error) {
	if _, _, ok := n.stream(in.Name); ok {
		return nil, nil, n.fail(storage.ErrStreamExists, storage.ReasonStreamExists, storage.Facts{Stream: in.Name})
	}
	acct, acctVersion := n.account()
	if err := storage.CheckCreateOnDemand(n.cfg.AccountID, &in, n.onDemandCount(), n.cfg.OnDemandStreamLimit,
		storage.AccountCommitment(acct, n.cfg.Now())); err != nil {
		return nil, nil, err
	}
	open := 0
	for _, rec := range n.streams() {
		open += openCount(rec)
	}
	if open+in.ShardCount > n.cfg.ShardLimit {
		return nil, nil, n.fail(storage.ErrLimitExceeded, storage.ReasonShardLimit,
			storage.Facts{Current: int64(open), Limit: int64(n.cfg.ShardLimit), N: int64(in.ShardCount)})
	}
	var alloc allocRec
	allocVersion, _ := n.getJSON(keyAlloc, &alloc)
	alloc.NextGroup = max(alloc.NextGroup, metaGroup+1)
	now := n.cfg.Now()
	alloc.Epoch = max(now.Unix()-initialEpochLag, alloc.Epoch+1)
	rec := streamRec{MetaStream: replica.MetaStream{Name: in.Name, Status: string(storage.StatusCreating)},
		CreatedNs: now.UnixNano(), Epoch: alloc.Epoch, RetentionHours: storage.DefaultRetentionHours,
		MaxRecordSizeKiB: in.MaxRecordSizeKiB, Tags: in.Tags, Distribution: storedDistribution(in.Distribution)}
	if in.Mode == storage.ModeOnDemand {
		rec.Mode = storage.ModeOnDemand
	}
	if in.WarmMiBps != nil {
		rec.WarmMiBps = *in.WarmMiBps
	}
	if rec.MaxRecordSizeKiB == 0 {
		rec.MaxRecordSizeKiB = storage.DefaultMaxRecordSizeKiB
	}
	var groups []uint64
	for i, r := range hashkey.Split(in.ShardCount) {
		g := alloc.NextGroup + uint64(i)
		groups = append(groups, g)
		rec.Shards = append(rec.Shards, replica.MetaShard{ID: datadir.ShardID(uint32(i)), StartingHash: r.Start.String(), EndingHash: r.End.String(), Group: g})
	}
	alloc.NextGroup += uint64(in.ShardCount)
	key := replica.StreamKey(in.Name)
	// The commitment a warm throughput needs, and the ON_DEMAND stream
	// count, are conditions of the transaction as they were checked.
	conds := []replica.MetaCond{{Key: key}, {Key: keyAlloc, Version: allocVersion}, {Key: keyAccount, Version: acctVersion}}
	ops := []replica.MetaOp{{Key: key, Value: mustJSON(rec)}, {Key: keyAlloc, Value: mustJSON(alloc)}}
	if rec.Mode == storage.ModeOnDemand {
		cond, op, err := n.onDemandGuard()
		if err != nil {
			return nil, nil, err
		}
		conds, ops = append(conds, cond), append(ops, op)
	}
	placed := n.place(groups)
	for _, g := range groups {
		ops = append(ops, replica.MetaOp{Key: replica.PlacementKey(g), Value: mustJSON(placed[g])},
			replica.MetaOp{Key: bootKey(g), Value: mustJSON(placed[g])})
	}
	return conds, ops, nil
}

// place places new groups with replica.Place over the live nodes, starting
// from the existing placement so that replica counts and preferred leaders
// stay balanced across streams. Only the new groups' placement is used:
// existing replicas move only through the placement driver (driver.go).
func (n *Node) place(newGroups []uint64) replica.Placement {
	cur := replica.Placement{}
	all := append([]uint64(nil), newGroups...)
	snap := n.meta.Snapshot()
	for k, v := range snap {
		rest, ok := cutPlacement(k)
		if !ok {
			continue
		}
		var nodes []uint64
		if json.Unmarshal(v.Value, &nodes) == nil {
			cur[rest] = nodes
			all = append(all, rest)
		}
	}
	return replica.Place(n.liveNodes(), all, cur, n.cfg.Replicas)
}

// DeleteStreamWith removes the stream's record and placement at once (AWS
// shows DELETING for a while; cluster mode skips it). The shard groups'
// replicas stay on their nodes, idle: removing groups is not built yet.
// Its consumers go with it, and it is refused while it has some unless
// o.EnforceConsumerDeletion (consumersOnDelete).
func (n *Node) DeleteStreamWith(ctx context.Context, name string, o storage.DeleteOptions) error {
	err := n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		rec, v, ok := n.stream(name)
		if !ok {
			return nil, nil, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
		}
		cconds, cops, err := n.consumersOnDelete(rec, o)
		if err != nil {
			return nil, nil, err
		}
		key := replica.StreamKey(name)
		ops := append([]replica.MetaOp{{Key: key}}, cops...)
		for _, sh := range allShards(rec) {
			if sh.Group == 0 {
				continue
			}
			ops = append(ops, replica.MetaOp{Key: replica.PlacementKey(sh.Group)}, replica.MetaOp{Key: bootKey(sh.Group)},
				replica.MetaOp{Key: moveKey(sh.Group)})
		}
		return append([]replica.MetaCond{{Key: key, Version: v}}, cconds...), ops, nil
	})
	if err == nil {
		n.routes.Delete(name)
	}
	return err
}

// casLoop runs a compare-and-set change of the metadata: build reads the
// linearized state and returns the transaction, or nil ops when there is
// nothing to write, or an error to answer; a transaction that lost a race to
// another change is built again from the newer state.
func (n *Node) casLoop(ctx context.Context, build func() ([]replica.MetaCond, []replica.MetaOp, error)) error {
	for range maxTxnAttempts {
		if err := n.linearize(ctx, metaGroup); err != nil {
			return n.unavailable("", "", err)
		}
		conds, ops, err := build()
		if err != nil || ops == nil {
			return err
		}
		committed, err := n.txn(ctx, conds, ops)
		if err != nil {
			return n.unavailable("", "", err)
		}
		if committed {
			return nil
		}
	}
	return n.unavailable("", "", errNoLeader)
}

// ListStreams answers from the metadata state after a ReadIndex round, so
// every node gives the same answer and none predates an acknowledged change.
func (n *Node) ListStreams(ctx context.Context) ([]storage.StreamInfo, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return nil, n.unavailable("", "", err)
	}
	out := []storage.StreamInfo{}
	for _, rec := range n.streams() {
		out = append(out, streamInfo(rec, false))
	}
	return out, nil
}

// DescribeStream answers as ListStreams does, with the shards.
func (n *Node) DescribeStream(ctx context.Context, name string) (storage.StreamInfo, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return storage.StreamInfo{}, n.unavailable("", "", err)
	}
	rec, _, ok := n.stream(name)
	if !ok {
		return storage.StreamInfo{}, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
	}
	return streamInfo(rec, true), nil
}

// RecordLimit is the stream's maximum record size, in bytes. It follows a
// ReadIndex round, so a size acknowledged through any node is the one
// enforced: the api asks only for requests holding a record over the
// smallest limit (1 MiB), whose bytes dwarf the round's cost.
func (n *Node) RecordLimit(ctx context.Context, stream string) (int, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return 0, n.unavailable("", "", err)
	}
	rec, _, err := n.writable(ctx, stream)
	if err != nil {
		return 0, err
	}
	return rec.MaxRecordSizeKiB << 10, nil
}

func streamInfo(rec streamRec, withShards bool) storage.StreamInfo {
	si := storage.StreamInfo{Name: rec.Name, Created: time.Unix(0, rec.CreatedNs), Status: storage.StreamStatus(rec.Status),
		Mode: rec.mode(), WarmMiBps: rec.WarmMiBps, RetentionHours: rec.RetentionHours, Tags: copyTags(rec.Tags),
		Distribution: rec.distribution(), MaxRecordSizeKiB: rec.MaxRecordSizeKiB, EncryptionType: storage.EncryptionNone,
		ShardLevelMetrics: append([]string{}, rec.ShardLevelMetrics...)}
	if rec.EncryptionType == storage.EncryptionKMS {
		si.EncryptionType, si.KeyID = storage.EncryptionKMS, rec.KeyID
	}
	if withShards && si.Status != storage.StatusCreating {
		si.Shards = make([]storage.ShardInfo, 0, len(rec.Shards))
		for _, sh := range rec.Shards {
			si.Shards = append(si.Shards, shardInfo(rec, sh))
		}
	}
	return si
}

func shardInfo(rec streamRec, sh replica.MetaShard) storage.ShardInfo {
	idx, _ := datadir.ParseShardID(sh.ID)
	start, _ := hashkey.Parse(sh.StartingHash)
	end, _ := hashkey.Parse(sh.EndingHash)
	epoch := shardEpoch(rec, sh)
	si := storage.ShardInfo{ID: sh.ID, Index: idx, Parent: sh.Parent, AdjacentParent: sh.AdjacentParent,
		HashRange:   hashkey.Range{Start: start, End: end},
		StartingSeq: seqnum.Seq{ShardCreateSecs: epoch, ShardIndex: idx, ArrivalSecs: epoch}.String()}
	if isClosed(sh) { // as single-node mode renders it (storage/stream.go)
		si.EndingSeq = seqnum.Seq{ShardCreateSecs: epoch, ShardIndex: idx, Ordinal: seqnum.MaxOrdinal, ArrivalSecs: sh.ClosedMs / 1000}.String()
	}
	return si
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// IteratorKey is derived from the cluster secret: the same on every node,
// so an iterator from one node is valid at every other.
func (n *Node) IteratorKey() []byte { return n.keys.Load().iterator }

// AccountID is the account in ARNs and messages.
func (n *Node) AccountID() string { return n.cfg.AccountID }

// ShardLimit is the account's open-shard limit.
func (n *Node) ShardLimit() int { return n.cfg.ShardLimit }

// cutPlacement parses a "placement/<group>" key.
func cutPlacement(key string) (uint64, bool) {
	const prefix = "placement/"
	if len(key) <= len(prefix) || key[:len(prefix)] != prefix {
		return 0, false
	}
	g, err := strconv.ParseUint(key[len(prefix):], 10, 64)
	return g, err == nil
}
