package storage

import (
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
)

// planner builds a reshard on a copy of the stream's metadata.
type planner struct {
	m      *streamMeta
	now    time.Time
	epoch  int64       // the least epoch a new shard may take
	sealed []shardMeta // shards open before the plan that it closes
	added  []shardMeta // shards the plan creates (some closed again by it)
	acct   string
	// rng caches parsed hash ranges: parsing the decimal strings on every
	// probe made planning quadratic in big.Int work (4 s at 1,000 shards,
	// under the store lock).
	rng map[uint32]hashkey.Range
}

// rangeOf is sm's hash range, parsed once per plan.
func (p *planner) rangeOf(sm shardMeta) hashkey.Range {
	r, ok := p.rng[sm.Index]
	if !ok {
		r = hashRangeOf(sm)
		p.rng[sm.Index] = r
	}
	return r
}

// newPlanner starts a plan on a copy of in.meta, once the stream may be
// resharded.
func newPlanner(in planInput) (*planner, error) {
	if err := checkReshardable(in.meta, in.account, in.internal); err != nil {
		return nil, err
	}
	return &planner{m: in.meta.Clone(), now: in.now, epoch: max(in.now.Unix(), in.minEpoch), acct: in.account,
		rng: map[uint32]hashkey.Range{}}, nil
}

func (p *planner) result() *reshardPlan {
	return &reshardPlan{meta: p.m, sealed: p.sealed, added: p.added}
}

// resolveShardIDs checks, in order, that every id names a shard index
// (datadir.ParseShardID), and reports the first that does not, as sent.
// MergeShards and SplitShard run it before anything else, the stream lookup
// included: AWS reports an unresolvable id ahead of a missing or non-ACTIVE
// stream (captured from AWS responses; unverified against the current
// service).
func resolveShardIDs(account, stream string, ids ...string) error {
	for _, id := range ids {
		if _, ok := datadir.ParseShardID(id); !ok {
			return newError(ErrShardNotFound, ReasonBadShardID, Facts{Account: account, Stream: stream, Given: id})
		}
	}
	return nil
}

// openShard finds the open shard a client's id names, with AWS's errors;
// the id resolves (resolveShardIDs ran first).
func (p *planner) openShard(id string) (shardMeta, error) {
	idx, ok := datadir.ParseShardID(id)
	if !ok {
		return shardMeta{}, newError(ErrShardNotFound, ReasonBadShardID, Facts{Account: p.acct, Stream: p.m.Name, Given: id})
	}
	i := p.find(idx)
	if i < 0 {
		return shardMeta{}, newError(ErrShardNotFound, ReasonNoSuchShard, Facts{Account: p.acct, Stream: p.m.Name, Shard: shardID(idx)})
	}
	if p.m.Shards[i].Closed {
		return shardMeta{}, newError(ErrInvalidArgument, ReasonMerged, Facts{Account: p.acct, Stream: p.m.Name, Shard: shardID(idx)})
	}
	return p.m.Shards[i], nil
}

func (p *planner) find(idx uint32) int {
	for i, sm := range p.m.Shards {
		if sm.Index == idx {
			return i
		}
	}
	return -1
}

func (p *planner) openCount() int { return openCount(p.m) }

// close marks a shard closed and returns the least epoch of its children.
func (p *planner) close(idx uint32) int64 {
	i := p.find(idx)
	sm := &p.m.Shards[i]
	if !p.isNew(idx) {
		p.sealed = append(p.sealed, *sm)
	}
	sm.Closed, sm.ClosedMs = true, p.now.UnixMilli()
	p.markAdded(*sm)
	return max(p.epoch, sm.CreateSecs+1)
}

func (p *planner) isNew(idx uint32) bool {
	for _, sm := range p.added {
		if sm.Index == idx {
			return true
		}
	}
	return false
}

// markAdded refreshes the copy of a new shard in added after a change.
func (p *planner) markAdded(sm shardMeta) {
	for i := range p.added {
		if p.added[i].Index == sm.Index {
			p.added[i] = sm
		}
	}
}

func (p *planner) add(r hashkey.Range, epoch int64, parent, adj uint32, merged bool) uint32 {
	sm := shardMeta{Index: p.m.NextShardIndex, Parent: shardID(parent), HashStart: r.Start.String(), HashEnd: r.End.String(), CreateSecs: epoch}
	if merged {
		sm.AdjParent = shardID(adj)
	}
	p.rng[sm.Index] = r
	p.m.NextShardIndex++
	p.m.Shards = append(p.m.Shards, sm)
	p.added = append(p.added, sm)
	return sm.Index
}

// split closes idx and adds its two children; k is the upper child's start.
func (p *planner) split(idx uint32, k hashkey.Key) (lo, hi uint32) {
	r := p.rangeOf(p.m.Shards[p.find(idx)])
	e := p.close(idx)
	lo = p.add(hashkey.Range{Start: r.Start, End: k.Sub(1)}, e, idx, 0, false)
	hi = p.add(hashkey.Range{Start: k, End: r.End}, e, idx, 0, false)
	return lo, hi
}

// merge closes a and b and adds their union. b starts right after a ends
// (adjacent(a, b)): AWS merges only in that direction, so a is the lower
// shard here too, and becomes the child's ParentShardId.
func (p *planner) merge(a, b uint32) uint32 {
	ra, rb := p.rangeOf(p.m.Shards[p.find(a)]), p.rangeOf(p.m.Shards[p.find(b)])
	r := hashkey.Range{Start: ra.Start, End: rb.End}
	e := max(p.close(a), p.close(b))
	return p.add(r, e, a, b, true)
}

// uniform reshapes the open shards into hashkey.Split(target): first every
// open shard is split at each target boundary strictly inside it, so every
// open shard lies within one target range; then the pieces of each target
// range are merged left to right, the accumulated lower piece always the
// ShardToMerge, as MergeShards requires. These internal splits are not held
// to SplitShard's bound (start+1 < k < end): a boundary may fall one key
// after a shard's start or at its end (after user splits, or where two
// uniform layouts round differently), making a one-key piece. Such a piece
// is never split (no boundary lies strictly inside it) and is merged away
// by the same plan.
func (p *planner) uniform(target int) {
	ranges := hashkey.Split(target)
	for _, r := range ranges[1:] {
		if sm, ok := p.openContaining(r.Start); ok && p.rangeOf(sm).Start != r.Start {
			p.split(sm.Index, r.Start)
		}
	}
	for _, r := range ranges {
		pieces := p.openWithin(r)
		acc := pieces[0]
		for _, next := range pieces[1:] {
			acc = p.merge(acc, next)
		}
	}
}

func (p *planner) openContaining(k hashkey.Key) (shardMeta, bool) {
	for _, sm := range p.m.Shards {
		if !sm.Closed && p.rangeOf(sm).Contains(k) {
			return sm, true
		}
	}
	return shardMeta{}, false
}

// openWithin lists the open shards inside r by range start.
func (p *planner) openWithin(r hashkey.Range) []uint32 {
	var out []uint32
	k := r.Start
	for {
		sm, ok := p.openContaining(k)
		if !ok {
			return out
		}
		out = append(out, sm.Index)
		end := p.rangeOf(sm).End
		if end.Cmp(r.End) >= 0 {
			return out
		}
		k = end.Add(1)
	}
}
