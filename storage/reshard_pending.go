package storage

import (
	"slices"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// A reshard's two moments (see the top of reshard.go): accepted, it is stored
// as the stream's pending reshard (pendingOf) and the shards do not change;
// when UPDATING ends it takes effect (stampReshard). Both are pure functions.

type reshardRecord = datadir.ReshardRecord

// pendingOf is the record of an accepted plan: the shards it will seal and
// those it will add. Times are left out: they are those of the moment it takes
// effect.
func pendingOf(p *reshardPlan) *reshardRecord {
	r := &reshardRecord{NextShardIndex: p.meta.NextShardIndex, Add: make([]shardMeta, len(p.added))}
	for _, sm := range p.sealed {
		r.Seal = append(r.Seal, sm.Index)
	}
	for i, sm := range p.added {
		sm.CreateSecs, sm.ClosedMs = 0, 0
		r.Add[i] = sm
	}
	return r
}

// stampReshard is the plan that carries out m's pending reshard at now: the
// stream's next metadata (ACTIVE, no pending reshard), with C = now's second:
//   - every sealed parent closes at now, so its EndingSequenceNumber's time
//     field is C (both merge parents share it);
//   - every child's epoch is C + 1 and above minEpoch (one above every epoch
//     in the store), and above its parents' (an intermediate shard of
//     UpdateShardCount is closed within the plan, and its children's epochs
//     are above its own); a child's StartingSequenceNumber shows its epoch as
//     both creation second and time, so both split children show C + 1.
//
// Captured from AWS responses (aws-fidelity.md F2); unverified against the
// current service.
func stampReshard(m *streamMeta, now time.Time, minEpoch int64) *reshardPlan {
	out := m.Clone()
	pend := out.Reshard
	out.Reshard, out.Status, out.PendingUntilNs = nil, StatusActive, 0
	out.NextShardIndex = pend.NextShardIndex
	closedMs := now.UnixMilli()
	epochs := map[string]int64{}
	var sealed []shardMeta
	for i := range out.Shards {
		sm := &out.Shards[i]
		epochs[shardID(sm.Index)] = sm.CreateSecs
		if slices.Contains(pend.Seal, sm.Index) {
			sm.Closed, sm.ClosedMs = true, closedMs
			sealed = append(sealed, *sm)
		}
	}
	base := max(now.Unix()+1, minEpoch)
	added := make([]shardMeta, len(pend.Add))
	for i, sm := range pend.Add {
		sm.CreateSecs = max(base, epochs[sm.Parent]+1)
		if sm.AdjParent != "" {
			sm.CreateSecs = max(sm.CreateSecs, epochs[sm.AdjParent]+1)
		}
		if sm.Closed {
			sm.ClosedMs = closedMs
		}
		epochs[shardID(sm.Index)] = sm.CreateSecs
		added[i] = sm
	}
	out.Shards = append(out.Shards, added...)
	return &reshardPlan{meta: out, sealed: sealed, added: added}
}

// pendingGrowth is how many open shards m's pending reshard will add to the
// account (none for a merge): the account's shard limit reserves them while
// the stream is UPDATING.
func pendingGrowth(m *streamMeta) int {
	if m.Reshard == nil {
		return 0
	}
	n := 0
	for _, sm := range m.Reshard.Add {
		if !sm.Closed {
			n++
		}
	}
	return max(0, n-len(m.Reshard.Seal))
}
