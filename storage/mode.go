package storage

import (
	"context"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// Capacity-mode changes: UpdateStreamMode, UpdateStreamWarmThroughput, and
// the on-demand checks of CreateStream. Each is accepted like a reshard
// (reshard.go): the stream is UPDATING until Options.UpdateDelay has passed,
// with the pre-scaling a warm throughput asks for as its pending reshard, and
// ACTIVE after it.
//
// Switching to ON_DEMAND keeps the shards and hands them to the scaler
// (ondemand.go); switching to PROVISIONED freezes the shard count where it
// is and drops the warm throughput target.

// ModeSwitchesPerDay is AWS's limit of UpdateStreamMode calls per stream
// per rolling 24 hours (developer guide: a stream switches capacity mode at
// most twice in 24 hours).
const ModeSwitchesPerDay = 2

// MaxWarmMiBps is AWS's default ceiling on an on-demand stream's warm
// throughput: 10 GiBps.
const MaxWarmMiBps = 10240

// WarmThroughput is a stream's warm throughput: the target asked for, and
// the write rate its open shards give now (1 MiB/s each).
type WarmThroughput struct {
	TargetMiBps, CurrentMiBps int
}

// UpdateStreamMode switches a stream's capacity mode; warm, when not nil, is
// the warm throughput to pre-scale to (ON_DEMAND only). Checks run in this
// order (AWS's is not captured; unverified): the stream exists and is
// ACTIVE; the mode differs from the current one; the stream has switched
// fewer than ModeSwitchesPerDay times in 24 hours; the account's ON_DEMAND
// stream limit; then the warm throughput's own checks (checkWarm).
func (s *Store) UpdateStreamMode(ctx context.Context, name string, mode StreamMode, warm *int) error {
	return s.changeCapacity(name, func(in planInput) (*streamMeta, *reshardPlan, error) {
		if err := CheckModeSwitch(in.account, in.meta, mode, in.now); err != nil {
			return nil, nil, err
		}
		if mode == ModeOnDemand {
			if err := s.checkOnDemandLimitLocked(); err != nil {
				return nil, nil, err
			}
		}
		next := SwitchMode(in.meta, mode, in.now)
		if warm == nil {
			return next, nil, nil
		}
		return s.warmPlan(in, next, *warm)
	})
}

// CheckModeSwitch is UpdateStreamMode's checks of the stream itself, in
// order: it is ACTIVE; the mode differs from the current one; it has
// switched fewer than ModeSwitchesPerDay times in 24 hours. Cluster mode
// shares it.
func CheckModeSwitch(account string, m *datadir.StreamRecord, mode StreamMode, now time.Time) error {
	f := Facts{Account: account, Stream: m.Name}
	switch {
	case m.Status != StatusActive:
		f.State = m.Status
		return newError(ErrResourceInUse, ReasonNotActive, f)
	case m.Mode == mode:
		f.Given = string(mode)
		return newError(ErrInvalidArgument, ReasonSameMode, f)
	case len(recentScalings(m.ModeSwitchNs, now)) >= ModeSwitchesPerDay:
		f.Limit = ModeSwitchesPerDay
		return newError(ErrLimitExceeded, ReasonModeSwitches, f)
	}
	return nil
}

// SwitchMode returns a copy of m switched to mode at now (its Status
// untouched).
func SwitchMode(m *datadir.StreamRecord, mode StreamMode, now time.Time) *datadir.StreamRecord {
	next := m.Clone()
	next.Mode, next.ModeSwitchNs = mode, append(recentScalings(m.ModeSwitchNs, now), now.UnixNano())
	if mode == ModeProvisioned {
		// A PROVISIONED stream has no warm throughput, nor AUTO record
		// distribution (UpdateStreamRecordDistributionStrategy refuses it
		// there): it goes back to partition keys. What AWS does to an AUTO
		// stream switched to PROVISIONED is not documented (unverified).
		next.WarmMiBps, next.Distribution = 0, ""
	}
	return next
}

// UpdateStreamWarmThroughput sets an ON_DEMAND stream's warm throughput and
// pre-scales its shards to it (one shard per MiB/s, at least
// OnDemandShards); a lower target releases shards down to it. It returns the
// target and the rate the shards give before the change.
func (s *Store) UpdateStreamWarmThroughput(ctx context.Context, name string, mibps int) (WarmThroughput, error) {
	var out WarmThroughput
	err := s.changeCapacity(name, func(in planInput) (*streamMeta, *reshardPlan, error) {
		m := in.meta
		f := Facts{Account: in.account, Stream: m.Name}
		switch {
		case m.Mode != ModeOnDemand:
			return nil, nil, newError(ErrInvalidArgument, ReasonWarmProvisioned, f)
		case m.Status != StatusActive:
			f.State = m.Status
			return nil, nil, newError(ErrResourceInUse, ReasonNotActive, f)
		}
		out = WarmThroughput{TargetMiBps: mibps, CurrentMiBps: openCount(m)}
		return s.warmPlan(in, m.Clone(), mibps)
	})
	return out, err
}

// warmPlan checks a warm throughput for next (the stream's metadata as the
// call leaves it, ON_DEMAND) and plans the pre-scaling: next's open shards
// made uniform at max(OnDemandShards, mibps), or no reshard when they
// already number that.
func (s *Store) warmPlan(in planInput, next *streamMeta, mibps int) (*streamMeta, *reshardPlan, error) {
	if err := s.checkWarm(next, mibps); err != nil {
		return nil, nil, err
	}
	next.WarmMiBps = mibps
	in.meta = next
	p, err := planWarm(in, mibps)
	if err != nil {
		return nil, nil, err
	}
	return next, p, nil
}

// planWarm plans the pre-scaling of a warm throughput of mibps for
// in.meta: its open shards made uniform at max(OnDemandShards, mibps); nil
// when they already number that.
func planWarm(in planInput, mibps int) (*reshardPlan, error) {
	target := max(OnDemandShards, mibps)
	if target == openCount(in.meta) {
		return nil, nil
	}
	p, err := newPlanner(in)
	if err != nil {
		return nil, err
	}
	if target > MaxShardsPerStream {
		return nil, newError(ErrLimitExceeded, ReasonMaxShards, Facts{Account: in.account, Stream: in.meta.Name,
			Limit: MaxShardsPerStream, Current: int64(p.openCount()), Target: int64(target)})
	}
	if err := checkShardLimit(in.limits, target-p.openCount(), in.account); err != nil {
		return nil, err
	}
	p.uniform(target)
	return p.result(), nil
}

// checkWarm applies a warm throughput's rules to next: the stream is
// ON_DEMAND, the account's commitment is in force, and the rate is at most
// MaxWarmMiBps.
func (s *Store) checkWarm(next *streamMeta, mibps int) error {
	return CheckWarm(s.opts.AccountID, next.Name, next.Mode, s.commitment(), mibps)
}

// CheckWarm is checkWarm's rule for a stream of mode under the account's
// commitment c; cluster mode shares it.
func CheckWarm(account, stream string, mode StreamMode, c Commitment, mibps int) error {
	f := Facts{Account: account, Stream: stream, N: int64(mibps)}
	switch {
	case mode != ModeOnDemand:
		return newError(ErrInvalidArgument, ReasonWarmProvisioned, f)
	case !c.InForce():
		return newError(ErrInvalidArgument, ReasonNoCommitment, f)
	case mibps > MaxWarmMiBps:
		f.Limit = MaxWarmMiBps
		return newError(ErrLimitExceeded, ReasonWarmMax, f)
	}
	return nil
}

// checkOnDemandLimitLocked fails when the account has its limit of ON_DEMAND
// streams already (DELETING ones no longer count).
func (s *Store) checkOnDemandLimitLocked() error {
	return CheckOnDemandLimit(s.opts.AccountID, s.onDemandCountLocked(), s.opts.OnDemandStreamLimit)
}

// CheckOnDemandLimit fails when an account with current ON_DEMAND streams
// may not have one more under limit.
func CheckOnDemandLimit(account string, current, limit int) error {
	if current < limit {
		return nil
	}
	return newError(ErrLimitExceeded, ReasonOnDemandLimit, Facts{Account: account, Current: int64(current), Limit: int64(limit)})
}

func (s *Store) onDemandCountLocked() int {
	n := 0
	for _, st := range s.streams {
		if st.meta.Mode == ModeOnDemand && st.meta.Status != StatusDeleting {
			n++
		}
	}
	return n
}

// changeCapacity accepts a capacity change: decide returns the stream's next
// metadata (its Status untouched) and, when the change reshards, the plan
// made on it. The stream turns UPDATING, with the plan pending, until
// Options.UpdateDelay has passed; with no delay the change is made within
// the call, as reshard does.
func (s *Store) changeCapacity(name string, decide func(in planInput) (*streamMeta, *reshardPlan, error)) error {
	s.mu.Lock()
	st, err := s.lookupLocked(name)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	in := s.planInputLocked(st)
	in.internal = true
	next, p, err := decide(in)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	prev := st.meta
	next.Status, next.PendingUntilNs = StatusUpdating, s.opts.Now().Add(s.opts.UpdateDelay).UnixNano()
	if p != nil {
		next.Reshard = pendingOf(p)
	}
	if err := s.persistLocked(st, next); err != nil {
		s.mu.Unlock()
		return err
	}
	s.applyLimits(st) // the mode or the warm floor changed the capacity
	if s.opts.UpdateDelay > 0 || p == nil {
		s.resumePending(st)
		s.mu.Unlock()
		return nil
	}
	run := s.beginEffectLocked(st)
	run.prev = prev
	s.mu.Unlock()
	return s.takeEffect(st, run)
}
