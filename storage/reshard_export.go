package storage

import (
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// The reshard planners as pure functions for other backends (cluster mode
// plans its reshards with them, so shard IDs, hash ranges, epochs, lineage,
// errors and their order are single-node mode's exactly). They read only
// their input and return a new record; no Store is involved.

// ReshardInput is what planning a reshard reads.
type ReshardInput struct {
	Stream  *datadir.StreamRecord // the stream now; never modified
	Now     time.Time
	Account string
	// MinEpoch is the least epoch (creation second) a new shard may take
	// besides Now's: one above every epoch given out.
	MinEpoch           int64
	ShardLimit         int // the account's open-shard limit
	OpenShards         int // open shards in the account now, pending ones included
	ScalingCallsPerDay int // UpdateShardCount calls per stream per rolling 24 hours
}

// ReshardPlan is a planned reshard: the stream's record after it (parents
// Closed with ClosedMs, children added with their CreateSecs, NextShardIndex
// and ScalingNs updated; Status unchanged), the shards open before it that
// it closes, and the shards it creates (an UpdateShardCount may create
// intermediate shards that it closes again: Closed in Added). A plan that
// adds nothing (UpdateShardCount to the current count) only records the call.
type ReshardPlan struct {
	Stream *datadir.StreamRecord
	Sealed []datadir.ShardRecord
	Added  []datadir.ShardRecord
}

func (in ReshardInput) plan() planInput {
	return planInput{meta: in.Stream, now: in.Now, account: in.Account, minEpoch: in.MinEpoch,
		limits: planLimits{shardLimit: in.ShardLimit, openShards: in.OpenShards, scalingCallsPerDay: in.ScalingCallsPerDay}}
}

func exported(p *reshardPlan) ReshardPlan {
	return ReshardPlan{Stream: p.meta, Sealed: p.sealed, Added: p.added}
}

// PlanSplitShard plans SplitShard as single-node mode does.
func PlanSplitShard(in ReshardInput, shardToSplit, newStart string) (ReshardPlan, error) {
	p, err := planSplit(in.plan(), shardToSplit, newStart)
	if err != nil {
		return ReshardPlan{}, err
	}
	return exported(p), nil
}

// PlanMergeShards plans MergeShards as single-node mode does.
func PlanMergeShards(in ReshardInput, shardToMerge, adjacentShard string) (ReshardPlan, error) {
	p, err := planMerge(in.plan(), shardToMerge, adjacentShard)
	if err != nil {
		return ReshardPlan{}, err
	}
	return exported(p), nil
}

// PlanUpdateShardCount plans UpdateShardCount (UNIFORM_SCALING) as
// single-node mode does; the result is set once the open count is known,
// refusals included.
func PlanUpdateShardCount(in ReshardInput, target int) (ReshardPlan, UpdateShardCountResult, error) {
	p, res, err := planUpdateShardCount(in.plan(), target)
	if err != nil {
		return ReshardPlan{}, res, err
	}
	return exported(p), res, nil
}

// CheckShardIDs fails, as single-node mode does before it looks the stream
// up, on the first id that names no shard index.
func CheckShardIDs(account, stream string, ids ...string) error {
	return resolveShardIDs(account, stream, ids...)
}
