package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/shard"
)

// Resharding: SplitShard, MergeShards and UpdateShardCount.
//
// Every reshard is planned in memory as a sequence of steps, each a split
// (one parent, two children) or a merge (two adjacent parents, one child).
// As on AWS, it takes effect when the stream's UPDATING ends, not when the
// call returns (captured from AWS responses, aws-fidelity.md F1; unverified
// against the current service). It has two moments:
//
// Accepted (the call, under the store lock): the plan is made (reshard_plan.go:
// pure functions of the stream's metadata, the clock and the limits) and one
// meta.db transaction stores the stream as UPDATING until now +
// Options.UpdateDelay (PendingUntilNs), with the plan as its pending reshard
// (StreamRecord.Reshard: the shards to seal, the shards to add, the next
// shard index; pendingOf) and the UpdateShardCount call recorded. Nothing
// else changes: DescribeStream, ListShards and GetRecords show the old
// shards, parents open, and writes go on landing in them. Another reshard or
// metadata change is refused with ResourceInUse (UPDATING); the account's
// shard limit reserves the open shards the plan will add (pendingGrowth).
//
// Taking effect (when UPDATING ends: the timer resumePending set, or Open if
// the time passed while the server was down, or at once within the call when
// UpdateDelay is 0, so that a client sees no UPDATING):
//
//  0. under the store lock the plan is stamped with the clock (stampReshard:
//     parents close now, children's epochs are now's second + 1) and the
//     stream is claimed (st.resharding); steps 1 and 2 run without the store
//     lock, so requests to other streams go on;
//  1. under the stream's gate (so no Append is in flight), the parents are
//     sealed in place (shard.Seal): their writers commit every queued
//     append and stop, and they go on serving reads. A Put that meets a
//     sealed parent waits for the reshard and is re-routed to the children
//     (Store.rerouteClosed);
//  2. the children are opened, which creates their directories and first
//     segments, 16 at a time (a crash here leaves empty, unlisted directories
//     under indexes not yet taken; the next attempt removes them first);
//  3. under the store lock again, one meta.db transaction closes the
//     parents, adds the children, clears the pending reshard and makes the
//     stream ACTIVE: this is the commit point;
//  4. the new handles and routing table are installed. A failure before the
//     commit unseals the parents instead (shard.Unseal) and removes the
//     children: the stream stays UPDATING with the plan pending, parents
//     writable, and the change is tried again after reshardRetry; within a
//     call (UpdateDelay 0) the call fails instead and the stream is restored
//     as it was before it (ACTIVE, no plan).
//
// What a crash leaves: before the acceptance commits, the stream as it was
// (ACTIVE, old shards). During UPDATING, the plan in meta.db, the parents
// open and writable, no children: after a restart the stream is still
// UPDATING until PendingUntilNs, and the change happens then (at Open if the
// time has passed). During steps 0-2, the same (sealing a parent leaves
// nothing on disk but its synced records) plus perhaps leftover child
// directories, which the next attempt removes; Open carries the change out
// again (C is then the restart's second), so an accepted reshard is never
// lost. After step 3, the new shard set, ACTIVE. Every record a parent
// acknowledged is in its files before it is sealed, so none is lost either
// way.
//
// DeleteStream during UPDATING deletes the stream and drops the pending
// reshard (it waits only for one that is taking effect). Close leaves a pending
// reshard in meta.db for the next Open (it waits for one that is taking
// effect). Retention goes on during UPDATING (the plan names open shards only,
// which retention never removes) but skips a stream whose reshard is taking
// effect.
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
// ("accept" before the plan is stored; "begin", "sealed", "children",
// "committed" while it takes effect). An error it returns fails the reshard
// like a real failure at that point (rolled back before the commit), except
// errCrashStop, which stops it at once with nothing rolled back, as a crash
// would.
var reshardHook func(step string) error

// errCrashStop is what a test hook returns to simulate a crash.
var errCrashStop = errors.New("reshard stopped by a simulated crash")

func runHook(step string) error {
	if reshardHook == nil {
		return nil
	}
	return reshardHook(step)
}

// reshardRetry is how long a pending reshard whose taking effect failed (a
// full disk, say) waits before it is tried again.
const reshardRetry = time.Second

// UpdateShardCountResult is UpdateShardCount's answer.
type UpdateShardCountResult struct {
	Current, Target int
}

// SplitShard splits an open shard at newStart (planSplit). The id resolves
// before the stream is looked up, as on AWS.
func (s *Store) SplitShard(ctx context.Context, name, shardToSplit, newStart string) error {
	if err := resolveShardIDs(s.opts.AccountID, name, shardToSplit); err != nil {
		return err
	}
	return s.reshard(name, func(in planInput) (*reshardPlan, error) {
		return planSplit(in, shardToSplit, newStart)
	})
}

// MergeShards merges two adjacent open shards (planMerge). The ids resolve
// before the stream is looked up, as on AWS.
func (s *Store) MergeShards(ctx context.Context, name, shardToMerge, adjacentShard string) error {
	if err := resolveShardIDs(s.opts.AccountID, name, shardToMerge, adjacentShard); err != nil {
		return err
	}
	return s.reshard(name, func(in planInput) (*reshardPlan, error) {
		return planMerge(in, shardToMerge, adjacentShard)
	})
}

// UpdateShardCount reshards the open shards into target uniform ranges
// (planUpdateShardCount), taking effect as one transaction.
func (s *Store) UpdateShardCount(ctx context.Context, name string, target int) (UpdateShardCountResult, error) {
	var res UpdateShardCountResult
	err := s.reshard(name, func(in planInput) (*reshardPlan, error) {
		plan, r, err := planUpdateShardCount(in, target)
		res = r
		return plan, err
	})
	return res, err
}

// checkShardLimitLocked fails when add more open shards would exceed the
// account's shard limit.
func (s *Store) checkShardLimitLocked(add int) error {
	return checkShardLimit(s.limitsLocked(), add, s.opts.AccountID)
}

func (s *Store) limitsLocked() planLimits {
	return planLimits{shardLimit: s.opts.ShardLimit, openShards: s.openShardsLocked(),
		scalingCallsPerDay: s.opts.ScalingCallsPerDay}
}

// planInputLocked is what the planners may read of the store, now.
func (s *Store) planInputLocked(st *stream) planInput {
	return planInput{meta: st.meta, now: s.opts.Now(), account: s.opts.AccountID, minEpoch: s.maxEpochLocked() + 1,
		limits: s.limitsLocked()}
}

// reshardRun is a reshard taking effect.
type reshardRun struct {
	*reshardPlan
	// parents are the handles of the shards the plan seals, taken under the
	// store lock, so the file work never reads st.shards without it.
	parents map[uint32]*shard.Shard
	// prev, set when the reshard takes effect within its call, is the
	// stream's metadata before the call, restored if it fails.
	prev *streamMeta
}

// reshard accepts a change (see the top of this file): it plans and stores
// it under the store lock, and the stream is UPDATING until it takes effect.
// With no UPDATING delay it takes effect before the call returns.
func (s *Store) reshard(name string, plan func(in planInput) (*reshardPlan, error)) error {
	return s.reshardWith(name, false, plan)
}

// reshardWith is reshard; internal plans may reshard an ON_DEMAND stream
// (planInput.internal).
func (s *Store) reshardWith(name string, internal bool, plan func(in planInput) (*reshardPlan, error)) error {
	s.mu.Lock()
	st, p, err := s.planLocked(name, internal, plan)
	if err == nil && p != nil {
		err = runHook("accept")
	}
	if err != nil || p == nil {
		s.mu.Unlock()
		return err
	}
	prev := st.meta
	if err := s.acceptLocked(st, p); err != nil {
		s.mu.Unlock()
		return err
	}
	if s.opts.UpdateDelay > 0 {
		s.resumePending(st)
		s.mu.Unlock()
		return nil
	}
	run := s.beginEffectLocked(st)
	run.prev = prev
	s.mu.Unlock()
	return s.takeEffect(st, run)
}

// planLocked plans a reshard. A plan that adds no shard (UpdateShardCount to
// the current count) only records the call; it returns a nil plan.
func (s *Store) planLocked(name string, internal bool, plan func(in planInput) (*reshardPlan, error)) (*stream, *reshardPlan, error) {
	st, err := s.lookupLocked(name)
	if err != nil {
		return nil, nil, err
	}
	in := s.planInputLocked(st)
	in.internal = internal
	p, err := plan(in)
	if err != nil {
		return nil, nil, err
	}
	if len(p.added) == 0 {
		if len(p.meta.ScalingNs) != len(st.meta.ScalingNs) {
			return nil, nil, s.persistLocked(st, p.meta)
		}
		return nil, nil, nil
	}
	return st, p, nil
}

// acceptLocked stores p as st's pending reshard: the stream turns UPDATING
// with its shards unchanged, and the UpdateShardCount call (if it is one) is
// recorded.
func (s *Store) acceptLocked(st *stream, p *reshardPlan) error {
	m := st.meta.Clone()
	m.Status, m.PendingUntilNs = StatusUpdating, s.opts.Now().Add(s.opts.UpdateDelay).UnixNano()
	m.ScalingNs = p.meta.ScalingNs
	m.Reshard = pendingOf(p)
	return s.persistLocked(st, m)
}

func (s *Store) persistLocked(st *stream, m *streamMeta) error {
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	return nil
}

// endUpdating makes st's pending reshard take effect, when its UPDATING ends
// (resumePending's timer; Open when the time passed while the server was
// down). A failure leaves it pending, to be tried again after reshardRetry.
func (s *Store) endUpdating(st *stream) error {
	s.mu.Lock()
	run := s.beginEffectLocked(st)
	s.mu.Unlock()
	if run == nil {
		return nil
	}
	return s.takeEffect(st, run)
}

// beginEffectLocked stamps st's pending reshard with the clock and claims the
// stream for it; it returns nil when there is nothing to do (the stream was
// deleted, the store is closing, or the reshard is taking effect already).
// The children's epochs are reserved, so a stream created meanwhile takes a
// later one.
func (s *Store) beginEffectLocked(st *stream) *reshardRun {
	if cur, ok := s.streams[st.name]; !ok || cur != st || s.closed || st.resharding != nil ||
		st.meta.Reshard == nil || st.meta.Status != StatusUpdating {
		return nil
	}
	p := stampReshard(st.meta, s.opts.Now(), s.maxEpochLocked()+1)
	run := &reshardRun{reshardPlan: p, parents: map[uint32]*shard.Shard{}}
	for _, sm := range p.sealed {
		run.parents[sm.Index] = st.shards[sm.Index]
	}
	st.resharding = make(chan struct{})
	for _, sm := range p.added {
		s.reservedEpoch = max(s.reservedEpoch, sm.CreateSecs)
	}
	return run
}

// takeEffect does a claimed reshard's file work without the store lock, then
// commits it under the lock.
func (s *Store) takeEffect(st *stream, run *reshardRun) error {
	sealed, kids, err := s.prepare(st, run)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.endReshardLocked(st)
	return s.commitLocked(st, run, sealed, kids, err)
}

func (s *Store) endReshardLocked(st *stream) {
	close(st.resharding)
	st.resharding = nil
}

// prepare does a reshard's file work, without the store lock; see the
// comment at the top of this file.
func (s *Store) prepare(st *stream, p *reshardRun) (sealed, kids map[uint32]*shard.Shard, err error) {
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
	kids, err = s.openChildren(st, p.meta, p.added)
	if err == nil {
		err = runHook("children")
	}
	return sealed, kids, err
}

// commitLocked commits a prepared reshard (one meta.db transaction) and
// installs it, or undoes it after a failure before the commit; a hook's
// simulated crash (errCrashStop) leaves the files as they are.
func (s *Store) commitLocked(st *stream, p *reshardRun, sealed, kids map[uint32]*shard.Shard, err error) error {
	if err == nil {
		err = s.persist(p.meta)
	}
	if err != nil {
		if errors.Is(err, errCrashStop) {
			closeAll(sealed)
			closeAll(kids)
			return err
		}
		s.discardChildren(st, p.added, kids)
		return s.afterFailureLocked(st, p, s.rollback(st, p, err))
	}
	if err := runHook("committed"); err != nil {
		closeAll(kids)
		closeAll(sealed)
		return err
	}
	s.install(st, p.meta, sealed, kids)
	return nil
}

// afterFailureLocked decides what becomes of a reshard that failed to take
// effect (its parents rolled back): within its call the stream is restored as
// it was before the call, and the call fails; otherwise it stays pending and
// is tried again after reshardRetry.
func (s *Store) afterFailureLocked(st *stream, p *reshardRun, err error) error {
	if p.prev != nil {
		if perr := s.persistLocked(st, p.prev); perr != nil {
			s.retryLocked(st) // the plan is still stored; it will take effect
			return errors.Join(err, perr)
		}
		return err
	}
	s.log.Error("reshard could not take effect; it stays pending and will be tried again", "stream", st.name,
		"retry", reshardRetry, "error", err)
	s.retryLocked(st)
	return err
}

func (s *Store) retryLocked(st *stream) {
	if s.closed {
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	st.timer = time.AfterFunc(reshardRetry, func() { s.endUpdating(st) })
}

// rollback unseals the parents after a failure before the commit
// (shard.Unseal: the same handles, nothing re-read, writable again even if
// the failure was a full disk). A parent whose writer failed (a Seal whose
// fsync failed) stays sealed, readable and refusing writes, until a restart.
func (s *Store) rollback(st *stream, p *reshardRun, err error) error {
	errs := []error{err}
	for _, sm := range p.sealed {
		if uerr := st.shards[sm.Index].Unseal(); uerr != nil && !errors.Is(uerr, shard.ErrReadOnly) {
			errs = append(errs, fmt.Errorf("unseal %s: %w", shardID(sm.Index), uerr))
		}
	}
	return errors.Join(errs...)
}

// install makes a committed reshard live: the stream is ACTIVE.
func (s *Store) install(st *stream, m *streamMeta, sealed, kids map[uint32]*shard.Shard) {
	st.meta = m
	for i, sh := range sealed {
		st.shards[i] = sh
	}
	// The children were opened without the store lock, with the key the
	// keyring had then; healKey may have run since, for the shards installed
	// at the time only. The key is settled again here, under the lock, so no
	// child of an encrypted stream writes plaintext.
	key, keyErr := s.encryptionOf(m)
	if keyErr != nil {
		st.keyMissing.Store(true)
	}
	for i, sh := range kids {
		if keyErr == nil {
			sh.SetEncryption(key)
		}
		st.shards[i] = sh
	}
	st.rebuildRoutes()
	if m.Mode == ModeOnDemand { // its capacity is spread over a new number of shards
		s.applyLimits(st)
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	st.wake() // subscribers at a parent's end now see it closed
}

// awaitReshard waits until no reshard of the named stream is taking effect,
// or ctx ends.
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
func (s *Store) sealParents(st *stream, p *reshardRun) (map[uint32]*shard.Shard, error) {
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
	return kids, s.opts.FS.SyncDir(datadir.StreamPath(s.opts.Dir, st.dir))
}

// reshardParallel bounds the shards a reshard creates or seals at once.
const reshardParallel = 16

// removeLeftovers deletes what a reshard that crashed before its commit
// left of the new shards (directories and catalog entries under the same
// indexes, which were never listed and never took a record), so every new
// shard starts empty.
func (s *Store) removeLeftovers(st *stream, added []shardMeta) error {
	dir := datadir.StreamPath(s.opts.Dir, st.dir)
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
		if err := s.opts.FS.RemoveAll(datadir.ShardPath(s.opts.Dir, key)); err != nil {
			s.log.Warn("cannot remove uncommitted shard", "shard", key, "error", err)
		}
		s.idx.Submit(index.Update{Shard: key, Drop: true})
	}
	if err := s.opts.FS.SyncDir(datadir.StreamPath(s.opts.Dir, st.dir)); err != nil {
		s.log.Warn("cannot sync the stream directory", "stream", st.name, "error", err)
	}
}

func closeAll(shards map[uint32]*shard.Shard) {
	for _, sh := range shards {
		sh.Close()
	}
}
