package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/shard"
)

// Resharding: SplitShard, MergeShards and UpdateShardCount.
//
// Every reshard is planned in memory as a sequence of steps, each a split
// (one parent, two children) or a merge (two adjacent parents, one child),
// and then applied as one unit:
//
//  0. under the store lock the plan is made, and the stream is claimed (see
//     Store.reshard); steps 1 and 2 run without the store lock;
//  1. under the stream's gate (so no Append is in flight), the parents are
//     sealed in place (shard.Seal): their writers commit every queued
//     append and stop, and they go on serving reads. A Put that meets a
//     sealed parent waits for the reshard and is re-routed to the children
//     (Store.rerouteClosed);
//  2. the children are opened, which creates their directories and first
//     segments (a crash here leaves empty, unlisted directories under
//     indexes not yet taken; the next reshard removes them first);
//  3. under the store lock again, one meta.db transaction closes the
//     parents, adds the children and puts the stream in UPDATING: this is
//     the commit point, so after a crash the stream has either its old shard
//     set or the new one;
//  4. the new handles and routing table are installed. A failure before the
//     commit unseals the parents instead (shard.Unseal) and removes the
//     children.
//
// The shard change is visible as soon as the operation returns, at the start
// of UPDATING; the stream turns ACTIVE after Options.UpdateDelay (and on
// restart, resumePending finishes an interrupted UPDATING the same way).
//
// A closed parent's EndingSequenceNumber carries the largest ordinal, and
// every child's epoch (the creation second in its sequence numbers) is above
// every epoch in the store, so children's numbers sort above their parents'.

// DefaultScalingCallsPerDay is AWS's default limit on UpdateShardCount calls
// per stream per rolling 24 hours.
const DefaultScalingCallsPerDay = 10

// MaxShardsPerStream is AWS's limit on a stream's open shards for
// UpdateShardCount.
const MaxShardsPerStream = 10000

// reshardHook, when set (by tests), runs between the steps of a reshard
// ("begin", "sealed", "children", "committed"). An error it returns fails
// the reshard like a real failure at that point (rolled back before the
// commit), except errCrashStop, which stops it at once with nothing rolled
// back, as a crash would.
var reshardHook func(step string) error

// errCrashStop is what a test hook returns to simulate a crash.
var errCrashStop = errors.New("reshard stopped by a simulated crash")

func runHook(step string) error {
	if reshardHook == nil {
		return nil
	}
	return reshardHook(step)
}

// UpdateShardCountResult is UpdateShardCount's answer.
type UpdateShardCountResult struct {
	Current, Target int
}

// SplitShard splits an open shard at newStart: the children are [start,
// newStart-1] and [newStart, end], so newStart must be above start and at
// most end (neither child empty). AWS words the refusal as requiring
// start+1 < newStart < end; the text is AWS's, the bound the looser one.
func (s *Store) SplitShard(ctx context.Context, name, shardToSplit, newStart string) error {
	return s.reshard(name, func(p *planner) error {
		sm, err := p.openShard(shardToSplit)
		if err != nil {
			return err
		}
		r := hashRangeOf(sm)
		k, err := hashkey.Parse(newStart)
		if err != nil || k.Cmp(r.Start) <= 0 || k.Cmp(r.End) > 0 {
			return errorf(ErrInvalidArgument, fmt.Sprintf("NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under account %s is not both greater than one plus the shard's StartingHashKey %s and less than the shard's EndingHashKey %s.",
				newStart, shardID(sm.Index), name, s.opts.AccountID, sm.HashStart, sm.HashEnd))
		}
		if err := s.checkShardLimitLocked(1); err != nil {
			return err
		}
		p.split(sm.Index, k)
		return nil
	})
}

// MergeShards merges two adjacent open shards. The child's ParentShardId is
// shardToMerge and its AdjacentParentShardId is adjacentShard.
func (s *Store) MergeShards(ctx context.Context, name, shardToMerge, adjacentShard string) error {
	return s.reshard(name, func(p *planner) error {
		a, err := p.openShard(shardToMerge)
		if err != nil {
			return err
		}
		b, err := p.openShard(adjacentShard)
		if err != nil {
			return err
		}
		ra, rb := hashRangeOf(a), hashRangeOf(b)
		if !adjacent(ra, rb) && !adjacent(rb, ra) {
			return errorf(ErrInvalidArgument, fmt.Sprintf("Shards %s and %s in stream %s under account %s are not an adjacent pair of shards eligible for merging",
				shardID(a.Index), shardID(b.Index), name, s.opts.AccountID))
		}
		p.merge(a.Index, b.Index)
		return nil
	})
}

// adjacent reports whether b starts right after a ends.
func adjacent(a, b hashkey.Range) bool { return a.End != hashkey.Max && a.End.Add(1) == b.Start }

// UpdateShardCount reshards the open shards into target uniform ranges (as
// CreateStream would lay them out) by splits, then merges, committed as one
// transaction. Short-lived intermediate shards may appear, closed and empty,
// as on AWS; every shard created names at most two parents.
func (s *Store) UpdateShardCount(ctx context.Context, name string, target int) (UpdateShardCountResult, error) {
	var res UpdateShardCountResult
	err := s.reshard(name, func(p *planner) error {
		cur := p.openCount()
		res = UpdateShardCountResult{Current: cur, Target: target}
		if err := s.checkScaling(p, cur, target); err != nil {
			return err
		}
		p.m.ScalingNs = append(recentScalings(p.m.ScalingNs, p.now), p.now.UnixNano())
		p.uniform(target)
		return nil
	})
	return res, err
}

// checkScaling applies UpdateShardCount's limits in kinesalite's (AWS's) order.
func (s *Store) checkScaling(p *planner, cur, target int) error {
	counts := fmt.Sprintf("Current open shard count: %d, Target shard count: %d", cur, target)
	switch {
	case target > MaxShardsPerStream:
		return errorf(ErrLimitExceeded, fmt.Sprintf("Target shard count or number of open shards cannot be greater than %d. %s", MaxShardsPerStream, counts))
	case target > 2*cur:
		return errorf(ErrLimitExceeded, "UpdateShardCount cannot scale up over double your current open shard count. "+counts)
	case 2*target < cur:
		return errorf(ErrLimitExceeded, "UpdateShardCount cannot scale down below half your current open shard count. "+counts)
	case len(recentScalings(p.m.ScalingNs, p.now)) >= s.opts.ScalingCallsPerDay:
		return errorf(ErrLimitExceeded, fmt.Sprintf("Exceeded the limit of %d UpdateShardCount calls per rolling 24 hours for stream %s under account %s.", s.opts.ScalingCallsPerDay, p.m.Name, s.opts.AccountID))
	}
	return s.checkShardLimitLocked(target - cur)
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

// checkShardLimitLocked fails when add more open shards would exceed the
// account's shard limit.
func (s *Store) checkShardLimitLocked(add int) error {
	open := s.openShardsLocked() + s.reservedShards
	if add <= 0 || open+add <= s.opts.ShardLimit {
		return nil
	}
	return errorf(ErrLimitExceeded, fmt.Sprintf("This request would exceed the shard limit for the account %s in {region}. "+
		"Current shard count for the account: %d. Limit: %d. Number of additional shards that would have resulted from this request: %d. "+
		"Refer to the AWS Service Limits page (https://docs.aws.amazon.com/kinesis/latest/dev/service-sizes-and-limits.html) for current limits and how to request higher limits.",
		s.opts.AccountID, open, s.opts.ShardLimit, add))
}

// reshard plans a change under the store lock, does its file work (sealing
// parents, creating children) without it, so that requests to other streams
// go on, and commits under it again. During the file work the stream is
// UPDATING in memory, so other reshards and metadata changes of this stream
// get ResourceInUse as AWS answers for an UPDATING stream, and st.resharding
// is set: DeleteStream and Close wait for it, retention skips the stream, and
// a Put that meets a sealed parent waits for it before re-routing.
func (s *Store) reshard(name string, plan func(p *planner) error) error {
	s.mu.Lock()
	st, p, err := s.planLocked(name, plan)
	if err != nil || p == nil {
		s.mu.Unlock()
		return err
	}
	s.beginReshardLocked(st, p)
	s.mu.Unlock()
	sealed, kids, err := s.prepare(st, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.endReshardLocked(st, p)
	return s.commitLocked(st, p, sealed, kids, err)
}

// planLocked plans a reshard. A plan that adds no shard (UpdateShardCount to
// the current count) only records the call; it returns a nil planner.
func (s *Store) planLocked(name string, plan func(p *planner) error) (*stream, *planner, error) {
	st, err := s.reshardableLocked(name)
	if err != nil {
		return nil, nil, err
	}
	p := s.newPlanner(st)
	if err := plan(p); err != nil {
		return nil, nil, err
	}
	if len(p.added) == 0 {
		if len(p.m.ScalingNs) != len(st.meta.ScalingNs) {
			return nil, nil, s.persistLocked(st, p.m)
		}
		return nil, nil, nil
	}
	p.m.Status, p.m.PendingUntilNs = StatusUpdating, p.now.Add(s.opts.UpdateDelay).UnixNano()
	return st, p, nil
}

func (s *Store) persistLocked(st *stream, m *streamMeta) error {
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	return nil
}

// reshardableLocked returns a stream that may be resharded now.
func (s *Store) reshardableLocked(name string) (*stream, error) {
	st, err := s.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	if st.meta.Mode == ModeOnDemand {
		return nil, errorf(ErrValidation, fmt.Sprintf("Resharding is not supported for stream %s under account %s because it is in ON_DEMAND capacity mode.", name, s.opts.AccountID))
	}
	if st.meta.Status != StatusActive {
		return nil, errorf(ErrResourceInUse, fmt.Sprintf("Stream %s under account %s not ACTIVE, instead in state %s", name, s.opts.AccountID, st.meta.Status))
	}
	return st, nil
}

// beginReshardLocked claims the stream for p. The UPDATING status is not
// persisted: a crash before the commit leaves the stream ACTIVE with its old
// shards. The children's epochs and shard count are reserved, so a stream
// created meanwhile takes a later epoch and the account limit holds.
func (s *Store) beginReshardLocked(st *stream, p *planner) {
	p.prev = st.meta
	p.parents = map[uint32]*shard.Shard{}
	for _, sm := range p.sealed {
		p.parents[sm.Index] = st.shards[sm.Index]
	}
	cur := st.meta.Clone()
	cur.Status = StatusUpdating
	st.meta = cur
	st.resharding = make(chan struct{})
	for _, sm := range p.added {
		s.reservedEpoch = max(s.reservedEpoch, sm.CreateSecs)
	}
	p.reserved = max(0, p.openCount()-len(st.routes))
	s.reservedShards += p.reserved
}

func (s *Store) endReshardLocked(st *stream, p *planner) {
	s.reservedShards -= p.reserved
	close(st.resharding)
	st.resharding = nil
}

// prepare does a reshard's file work, without the store lock; see the
// comment at the top of this file.
func (s *Store) prepare(st *stream, p *planner) (sealed, kids map[uint32]*shard.Shard, err error) {
	if err := runHook("begin"); err != nil {
		return nil, nil, err
	}
	sealed, err = s.sealParents(st, p)
	if err == nil {
		err = runHook("sealed")
	}
	if err != nil {
		return sealed, nil, err
	}
	kids, err = s.openChildren(st, p.m, p.added)
	if err == nil {
		err = runHook("children")
	}
	return sealed, kids, err
}

// commitLocked commits a prepared reshard (one meta.db transaction) and
// installs it, or undoes it after a failure before the commit; a hook's
// simulated crash (errCrashStop) leaves the files as they are.
func (s *Store) commitLocked(st *stream, p *planner, sealed, kids map[uint32]*shard.Shard, err error) error {
	if err == nil {
		err = s.persist(p.m)
	}
	if err != nil {
		st.meta = p.prev
		if errors.Is(err, errCrashStop) {
			closeAll(sealed)
			closeAll(kids)
			return err
		}
		s.discardChildren(st, p.added, kids)
		return s.rollback(st, p, err)
	}
	if err := runHook("committed"); err != nil {
		closeAll(kids)
		closeAll(sealed)
		return err
	}
	s.install(st, p.m, sealed, kids)
	return nil
}

// rollback unseals the parents after a failure before the commit
// (shard.Unseal: the same handles, nothing re-read, writable again even if
// the failure was a full disk). A parent whose writer failed (a Seal whose
// fsync failed) stays sealed, readable and refusing writes, until a restart.
func (s *Store) rollback(st *stream, p *planner, err error) error {
	errs := []error{err}
	for _, sm := range p.sealed {
		if uerr := st.shards[sm.Index].Unseal(); uerr != nil && !errors.Is(uerr, shard.ErrReadOnly) {
			errs = append(errs, fmt.Errorf("unseal %s: %w", shardID(sm.Index), uerr))
		}
	}
	return errors.Join(errs...)
}

// install makes a committed plan live.
func (s *Store) install(st *stream, m *streamMeta, sealed, kids map[uint32]*shard.Shard) {
	st.meta = m
	for i, sh := range sealed {
		st.shards[i] = sh
	}
	for i, sh := range kids {
		st.shards[i] = sh
	}
	st.rebuildRoutes()
	if st.timer != nil {
		st.timer.Stop()
	}
	s.resumePending(st)
}

// awaitReshard waits until no reshard of the named stream is doing its file
// work, or ctx ends.
func (s *Store) awaitReshard(ctx context.Context, name string) {
	s.mu.RLock()
	var ch chan struct{}
	if st, ok := s.streams[name]; ok {
		ch = st.resharding
	}
	s.mu.RUnlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// sealParents seals the shards about to close in place (shard.Seal): each
// commits every append already queued, so each record acknowledged by a
// parent is in its files before the parent is sealed, and keeps serving
// reads; an append that arrives later fails with shard.ErrClosed and Put
// re-routes it. (Closing and reopening them read-only, as a first version
// did, re-read every parent's active segment with CRCs under the store lock.)
func (s *Store) sealParents(st *stream, p *planner) (map[uint32]*shard.Shard, error) {
	st.gate.Lock()
	defer st.gate.Unlock()
	errs := make([]error, len(p.sealed))
	forEachParallel(len(p.sealed), reshardParallel, func(i int) {
		if err := p.parents[p.sealed[i].Index].Seal(); err != nil {
			errs[i] = fmt.Errorf("seal %s: %w", shardID(p.sealed[i].Index), err)
		}
	})
	return p.parents, errors.Join(errs...)
}

// openChildren opens (creating) the plan's new shards; intermediate shards,
// closed within the plan, are opened read-only and stay empty. Creating a
// shard costs two fsyncs (its first segment and its directory), so they are
// opened reshardParallel at a time (one after the other, 128 -> 256 shards
// took 220 ms); the stream directory is synced once, after all of them.
func (s *Store) openChildren(st *stream, m *streamMeta, added []shardMeta) (map[uint32]*shard.Shard, error) {
	if err := s.removeLeftovers(st, added); err != nil {
		return nil, err
	}
	out := make([]*shard.Shard, len(added))
	errs := make([]error, len(added))
	forEachParallel(len(added), reshardParallel, func(i int) {
		out[i], errs[i] = s.openShard(st, m, added[i])
		if errs[i] != nil {
			errs[i] = fmt.Errorf("open %s: %w", shardID(added[i].Index), errs[i])
		}
	})
	kids := map[uint32]*shard.Shard{}
	for i, sh := range out {
		if sh != nil {
			kids[added[i].Index] = sh
		}
	}
	if err := errors.Join(errs...); err != nil {
		return kids, err // the caller discards the ones that opened
	}
	return kids, s.opts.FS.SyncDir(filepath.Join(s.streamsDir(), st.dir))
}

// reshardParallel bounds the shards a reshard creates or seals at once.
const reshardParallel = 16

// removeLeftovers deletes what a reshard that crashed before its commit
// left of the new shards (directories and catalog entries under the same
// indexes, which were never listed and never took a record), so every new
// shard starts empty.
func (s *Store) removeLeftovers(st *stream, added []shardMeta) error {
	dir := filepath.Join(s.streamsDir(), st.dir)
	names, err := s.opts.FS.ReadDir(dir)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, n := range names {
		present[strings.TrimSuffix(n, "/")] = true
	}
	found := false
	for _, sm := range added {
		if id := shardID(sm.Index); present[id] {
			if err := s.opts.FS.RemoveAll(filepath.Join(dir, id)); err != nil {
				return err
			}
			s.idx.Submit(index.Update{Shard: datadir.IndexKey(st.dir, sm.Index), Drop: true})
			found = true
		}
	}
	if !found {
		return nil
	}
	s.log.Warn("removed shards left by an interrupted reshard", "stream", st.name)
	if err := s.opts.FS.SyncDir(dir); err != nil {
		return err
	}
	return s.idx.Flush()
}

// discardChildren removes the children of a plan that was never committed:
// those that opened, and what a child that failed half-way left on disk.
func (s *Store) discardChildren(st *stream, added []shardMeta, kids map[uint32]*shard.Shard) {
	closeAll(kids)
	for _, sm := range added {
		key := datadir.IndexKey(st.dir, sm.Index)
		if err := s.opts.FS.RemoveAll(filepath.Join(s.streamsDir(), key)); err != nil {
			s.log.Warn("cannot remove uncommitted shard", "shard", key, "error", err)
		}
		s.idx.Submit(index.Update{Shard: key, Drop: true})
	}
	if err := s.opts.FS.SyncDir(filepath.Join(s.streamsDir(), st.dir)); err != nil {
		s.log.Warn("cannot sync the stream directory", "stream", st.name, "error", err)
	}
}

func closeAll(shards map[uint32]*shard.Shard) {
	for _, sh := range shards {
		sh.Close()
	}
}

// planner builds a reshard on a copy of the stream's metadata.
type planner struct {
	m      *streamMeta
	now    time.Time
	epoch  int64       // the least epoch a new shard may take
	sealed []shardMeta // shards open before the plan that it closes
	added  []shardMeta // shards the plan creates (some closed again by it)
	acct   string
	prev   *streamMeta // the stream's metadata before the plan (beginReshardLocked)
	// parents are the handles of the shards the plan seals, taken under the
	// store lock, so the file work never reads st.shards without it.
	parents map[uint32]*shard.Shard
	// reserved is how many open shards the plan adds to the account while
	// it runs (endReshardLocked returns them).
	reserved int
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

func (s *Store) newPlanner(st *stream) *planner {
	now := s.opts.Now()
	return &planner{m: st.meta.Clone(), now: now, epoch: max(now.Unix(), s.maxEpochLocked()+1), acct: s.opts.AccountID,
		rng: map[uint32]hashkey.Range{}}
}

// openShard resolves a client's shard id to an open shard, with AWS's errors.
func (p *planner) openShard(id string) (shardMeta, error) {
	idx, ok := datadir.ParseShardID(id)
	if !ok {
		return shardMeta{}, errorf(ErrShardNotFound, fmt.Sprintf("Could not find shard %s in stream %s under account %s.", id, p.m.Name, p.acct))
	}
	i := p.find(idx)
	if i < 0 {
		return shardMeta{}, errorf(ErrShardNotFound, fmt.Sprintf("Shard %s in stream %s under account %s does not exist", shardID(idx), p.m.Name, p.acct))
	}
	if p.m.Shards[i].Closed {
		return shardMeta{}, errorf(ErrInvalidArgument, fmt.Sprintf("Shard %s in stream %s under account %s has already been merged or split, and thus is not eligible for merging or splitting.", shardID(idx), p.m.Name, p.acct))
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

func (p *planner) openCount() int {
	n := 0
	for _, sm := range p.m.Shards {
		if !sm.Closed {
			n++
		}
	}
	return n
}

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

// merge closes a and b (adjacent) and adds their union.
func (p *planner) merge(a, b uint32) uint32 {
	ra, rb := p.rangeOf(p.m.Shards[p.find(a)]), p.rangeOf(p.m.Shards[p.find(b)])
	r := hashkey.Range{Start: ra.Start, End: rb.End}
	if rb.Start.Cmp(ra.Start) < 0 {
		r = hashkey.Range{Start: rb.Start, End: ra.End}
	}
	e := max(p.close(a), p.close(b))
	return p.add(r, e, a, b, true)
}

// uniform reshapes the open shards into hashkey.Split(target): first every
// open shard is split at each target boundary strictly inside it, so every
// open shard lies within one target range; then the pieces of each target
// range are merged left to right.
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
