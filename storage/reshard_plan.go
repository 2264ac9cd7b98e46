package storage

import (
	"time"

	"github.com/shardlog/shardlog/hashkey"
)

// Reshard planning: pure functions from a stream's metadata, the request,
// the clock and the limits to a plan (the stream's next metadata and the
// shards it seals and adds) or a client error. They touch no Store, lock,
// file or goroutine; reshard.go runs the plan.
//
// A plan is a sequence of steps, each a split (one parent, two children) or
// a merge (two adjacent parents, one child). A closed parent's ClosedMs is
// the plan's clock; a child's epoch (CreateSecs) is above its parents' and
// at least planInput.minEpoch, so its sequence numbers sort above theirs.

// planInput is everything planning a reshard reads.
type planInput struct {
	meta    *streamMeta // the stream's metadata now; never modified
	now     time.Time
	account string
	// minEpoch is the least epoch a new shard may take besides now: one
	// above every epoch in the store (reserved ones included).
	minEpoch int64
	limits   planLimits
	// internal marks a reshard the server makes itself (the on-demand
	// scaler, warm throughput): it may reshard an ON_DEMAND stream, which
	// users may not.
	internal bool
}

// planLimits are the account's and the stream's limits on a reshard.
type planLimits struct {
	shardLimit         int // the account's open-shard limit
	openShards         int // open shards in the account now, reserved ones included
	scalingCallsPerDay int // UpdateShardCount calls per stream per rolling 24 hours
}

// reshardPlan is a planned reshard.
type reshardPlan struct {
	// meta is the stream's metadata after the reshard: parents closed,
	// children added, NextShardIndex and ScalingNs updated. Its Status and
	// PendingUntilNs are still the old ones.
	meta   *streamMeta
	sealed []shardMeta // shards open before the plan that it closes
	added  []shardMeta // shards the plan creates (some closed again by it), as meta has them
}

// planSplit plans SplitShard: the children are [start, newStart-1] and
// [newStart, end]. AWS accepts only start+1 < newStart < end, so each child
// holds at least two keys. Checks run in AWS's order: the id resolves, the
// stream may be resharded, the shard exists and is open, the key is inside.
func planSplit(in planInput, shardToSplit, newStart string) (*reshardPlan, error) {
	if err := resolveShardIDs(in.account, in.meta.Name, shardToSplit); err != nil {
		return nil, err
	}
	p, err := newPlanner(in)
	if err != nil {
		return nil, err
	}
	sm, err := p.openShard(shardToSplit)
	if err != nil {
		return nil, err
	}
	k, err := hashkey.Parse(newStart)
	if err != nil || !splitsInside(hashRangeOf(sm), k) {
		return nil, newError(ErrInvalidArgument, ReasonBadSplitKey, Facts{Account: in.account, Stream: in.meta.Name,
			Shard: shardID(sm.Index), Given: newStart, Start: sm.HashStart, End: sm.HashEnd})
	}
	if err := checkShardLimit(in.limits, 1, in.account); err != nil {
		return nil, err
	}
	p.split(sm.Index, k)
	return p.result(), nil
}

// splitsInside reports whether k may split r: r.Start+1 < k < r.End. (k-1
// is computed only once k > r.Start, so it cannot wrap.)
func splitsInside(r hashkey.Range, k hashkey.Key) bool {
	return k.Cmp(r.Start) > 0 && k.Sub(1).Cmp(r.Start) > 0 && k.Cmp(r.End) < 0
}

// planMerge plans MergeShards of two adjacent open shards: adjacentShard
// must start right after shardToMerge ends (AWS refuses the pair in the
// other order; captured from AWS responses, unverified against the current
// service). The child's ParentShardId is shardToMerge and its
// AdjacentParentShardId adjacentShard. Both ids resolve before anything
// else is checked, then the stream, then each shard in turn.
func planMerge(in planInput, shardToMerge, adjacentShard string) (*reshardPlan, error) {
	if err := resolveShardIDs(in.account, in.meta.Name, shardToMerge, adjacentShard); err != nil {
		return nil, err
	}
	p, err := newPlanner(in)
	if err != nil {
		return nil, err
	}
	a, err := p.openShard(shardToMerge)
	if err != nil {
		return nil, err
	}
	b, err := p.openShard(adjacentShard)
	if err != nil {
		return nil, err
	}
	if !adjacent(hashRangeOf(a), hashRangeOf(b)) {
		return nil, newError(ErrInvalidArgument, ReasonNotAdjacent, Facts{Account: in.account, Stream: in.meta.Name,
			Shard: shardID(a.Index), Shard2: shardID(b.Index)})
	}
	p.merge(a.Index, b.Index)
	return p.result(), nil
}

// adjacent reports whether b starts right after a ends.
func adjacent(a, b hashkey.Range) bool { return a.End != hashkey.Max && a.End.Add(1) == b.Start }

// planUpdateShardCount plans UpdateShardCount: the open shards become
// target uniform ranges (as CreateStream would lay them out) by splits, then
// merges. Short-lived intermediate shards may appear, closed and empty, as
// on AWS; every shard created names at most two parents. The call is
// recorded in ScalingNs even when target is the current count (a plan that
// adds no shard). The result is set as soon as the open count is known,
// refusals included.
func planUpdateShardCount(in planInput, target int) (*reshardPlan, UpdateShardCountResult, error) {
	p, err := newPlanner(in)
	if err != nil {
		return nil, UpdateShardCountResult{}, err
	}
	cur := p.openCount()
	res := UpdateShardCountResult{Current: cur, Target: target}
	if err := checkScaling(in, cur, target); err != nil {
		return nil, res, err
	}
	p.m.ScalingNs = append(recentScalings(p.m.ScalingNs, p.now), p.now.UnixNano())
	p.uniform(target)
	return p.result(), res, nil
}

// checkReshardable refuses a stream that may not be resharded now.
func checkReshardable(m *streamMeta, account string, internal bool) error {
	if m.Mode == ModeOnDemand && !internal {
		return newError(ErrValidation, ReasonOnDemand, Facts{Account: account, Stream: m.Name})
	}
	if m.Status != StatusActive {
		return newError(ErrResourceInUse, ReasonNotActive, Facts{Account: account, Stream: m.Name, State: m.Status})
	}
	return nil
}

// checkScaling applies UpdateShardCount's limits in kinesalite's (AWS's) order.
func checkScaling(in planInput, cur, target int) error {
	f := Facts{Account: in.account, Stream: in.meta.Name, Current: int64(cur), Target: int64(target)}
	switch {
	case target > MaxShardsPerStream:
		f.Limit = MaxShardsPerStream
		return newError(ErrLimitExceeded, ReasonMaxShards, f)
	case target > 2*cur:
		return newError(ErrLimitExceeded, ReasonScaleUp, f)
	case 2*target < cur:
		return newError(ErrLimitExceeded, ReasonScaleDown, f)
	case len(recentScalings(in.meta.ScalingNs, in.now)) >= in.limits.scalingCallsPerDay:
		f.Limit = int64(in.limits.scalingCallsPerDay)
		return newError(ErrLimitExceeded, ReasonScalingCalls, f)
	}
	return checkShardLimit(in.limits, target-cur, in.account)
}

// recentScalings keeps the UpdateShardCount call times of the last 24 hours.
func recentScalings(ns []int64, now time.Time) []int64 {
	var out []int64
	for _, t := range ns {
		if t > now.Add(-24*time.Hour).UnixNano() {
			out = append(out, t)
		}
	}
	return out
}

// checkShardLimit fails when add more open shards would exceed the account's
// shard limit.
func checkShardLimit(l planLimits, add int, account string) error {
	if add <= 0 || l.openShards+add <= l.shardLimit {
		return nil
	}
	return newError(ErrLimitExceeded, ReasonShardLimit, Facts{Account: account,
		Current: int64(l.openShards), Limit: int64(l.shardLimit), N: int64(add)})
}

// openCount counts m's open shards.
func openCount(m *streamMeta) int {
	n := 0
	for _, sm := range m.Shards {
		if !sm.Closed {
			n++
		}
	}
	return n
}
