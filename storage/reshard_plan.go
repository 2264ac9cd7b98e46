package storage

import (
	"fmt"
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
// [newStart, end], so newStart must be above start and at most end (neither
// child empty). AWS words the refusal as requiring start+1 < newStart < end;
// the text is AWS's, the bound the looser one.
func planSplit(in planInput, shardToSplit, newStart string) (*reshardPlan, error) {
	p, err := newPlanner(in)
	if err != nil {
		return nil, err
	}
	sm, err := p.openShard(shardToSplit)
	if err != nil {
		return nil, err
	}
	r := hashRangeOf(sm)
	k, err := hashkey.Parse(newStart)
	if err != nil || k.Cmp(r.Start) <= 0 || k.Cmp(r.End) > 0 {
		return nil, errorf(ErrInvalidArgument, fmt.Sprintf("NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under account %s is not both greater than one plus the shard's StartingHashKey %s and less than the shard's EndingHashKey %s.",
			newStart, shardID(sm.Index), in.meta.Name, in.account, sm.HashStart, sm.HashEnd))
	}
	if err := checkShardLimit(in.limits, 1, in.account); err != nil {
		return nil, err
	}
	p.split(sm.Index, k)
	return p.result(), nil
}

// planMerge plans MergeShards of two adjacent open shards. The child's
// ParentShardId is shardToMerge and its AdjacentParentShardId adjacentShard.
func planMerge(in planInput, shardToMerge, adjacentShard string) (*reshardPlan, error) {
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
	ra, rb := hashRangeOf(a), hashRangeOf(b)
	if !adjacent(ra, rb) && !adjacent(rb, ra) {
		return nil, errorf(ErrInvalidArgument, fmt.Sprintf("Shards %s and %s in stream %s under account %s are not an adjacent pair of shards eligible for merging",
			shardID(a.Index), shardID(b.Index), in.meta.Name, in.account))
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
func checkReshardable(m *streamMeta, account string) error {
	if m.Mode == ModeOnDemand {
		return errorf(ErrValidation, fmt.Sprintf("Resharding is not supported for stream %s under account %s because it is in ON_DEMAND capacity mode.", m.Name, account))
	}
	if m.Status != StatusActive {
		return errorf(ErrResourceInUse, fmt.Sprintf("Stream %s under account %s not ACTIVE, instead in state %s", m.Name, account, m.Status))
	}
	return nil
}

// checkScaling applies UpdateShardCount's limits in kinesalite's (AWS's) order.
func checkScaling(in planInput, cur, target int) error {
	counts := fmt.Sprintf("Current open shard count: %d, Target shard count: %d", cur, target)
	switch {
	case target > MaxShardsPerStream:
		return errorf(ErrLimitExceeded, fmt.Sprintf("Target shard count or number of open shards cannot be greater than %d. %s", MaxShardsPerStream, counts))
	case target > 2*cur:
		return errorf(ErrLimitExceeded, "UpdateShardCount cannot scale up over double your current open shard count. "+counts)
	case 2*target < cur:
		return errorf(ErrLimitExceeded, "UpdateShardCount cannot scale down below half your current open shard count. "+counts)
	case len(recentScalings(in.meta.ScalingNs, in.now)) >= in.limits.scalingCallsPerDay:
		return errorf(ErrLimitExceeded, fmt.Sprintf("Exceeded the limit of %d UpdateShardCount calls per rolling 24 hours for stream %s under account %s.", in.limits.scalingCallsPerDay, in.meta.Name, in.account))
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
	return errorf(ErrLimitExceeded, fmt.Sprintf("This request would exceed the shard limit for the account %s in {region}. "+
		"Current shard count for the account: %d. Limit: %d. Number of additional shards that would have resulted from this request: %d. "+
		"Refer to the AWS Service Limits page (https://docs.aws.amazon.com/kinesis/latest/dev/service-sizes-and-limits.html) for current limits and how to request higher limits.",
		account, l.openShards, l.shardLimit, add))
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
