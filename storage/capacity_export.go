package storage

import (
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/ratelimit"
)

// The on-demand and account-settings rules as pure functions for other
// backends: cluster mode computes capacity, records peaks, decides and plans
// its scaler's reshards and keeps the commitment with them, so both modes
// follow one rule (ondemand.go, account.go, mode.go).

// AccountCommitment is the commitment an account record r stands for at
// now (a scheduled end that has passed has happened).
func AccountCommitment(r datadir.AccountRecord, now time.Time) Commitment {
	return commitmentOf(commitmentAt(r, now))
}

// SwitchedCommitment is the account record after an UpdateAccountSettings
// (enable or disable) at now, by AWS's rules (account.go).
func SwitchedCommitment(r datadir.AccountRecord, enable bool, now time.Time) datadir.AccountRecord {
	return switchCommitment(commitmentAt(r, now), enable, now)
}

// OnDemandLimits are the per-shard limits of an ON_DEMAND stream with open
// shards, a warm target of warmMiBps (0: none) and peaks, whose one shard's
// rates are unit: limitsFor's rule (admission.go).
func OnDemandLimits(unit ratelimit.Limits, open, warmMiBps int, peaks []datadir.PeakRecord, now time.Time) ratelimit.Limits {
	l := unit
	n := float64(max(open, 1))
	cb, cr := onDemandCapacity(peaks, warmMiBps, unit, now)
	fb, fr := max(1, cb/(n*l.WriteBytes)), max(1, cr/(n*l.WriteRecords))
	l.WriteBytes, l.ReadBytes, l.ReadCalls, l.IteratorCalls = l.WriteBytes*fb, l.ReadBytes*fb, l.ReadCalls*fb, l.IteratorCalls*fb
	l.WriteRecords *= fr
	return l
}

// RaisePeak returns peaks with today's entry raised to bytes and records
// per second (entries older than 30 days dropped) and whether it changed.
func RaisePeak(peaks []datadir.PeakRecord, now time.Time, bytes, records int64) ([]datadir.PeakRecord, bool) {
	return raisePeak(peaks, now, bytes, records)
}

// WithDefaults is o with its zero fields at the scaler's defaults.
func (o ScalerOptions) WithDefaults() ScalerOptions {
	o.setDefaults()
	return o
}

// ShardLoad is one open shard's measured write rate, as the scaler reads
// it: Measured when the rate covers some time, FullWindow when it covers a
// whole ScalerOptions.Window (only such shards are merged).
type ShardLoad struct {
	Index                uint32
	Range                hashkey.Range
	Bytes, Records       float64 // per second
	Measured, FullWindow bool
}

// ScaleSplit splits shard Index at At.
type ScaleSplit struct {
	Index uint32
	At    hashkey.Key
}

// ScaleDecision is what one scaler pass wants for a stream: splits or
// merges (lower, upper), never both. Mergeable reports that the stream has
// pairs to merge now; the caller merges them once that has held for
// ScalerOptions.MergeAfter.
type ScaleDecision struct {
	Splits    []ScaleSplit
	Merges    [][2]uint32
	Mergeable bool
}

// DecideScale is the scaler's policy (ondemand.go) over a stream's open
// shards' loads, in hash-range order: unit is one shard's rates, floor the
// fewest open shards merges may leave (max(OnDemandShards, the warm
// target)), room the open shards the account may still add.
func DecideScale(loads []ShardLoad, unit ratelimit.Limits, opts ScalerOptions, floor, room int) ScaleDecision {
	in := scaleInput{unit: unit, opts: opts.WithDefaults(), floor: floor, room: room}
	for _, l := range loads {
		in.loads = append(in.loads, shardLoad{index: l.Index, rng: l.Range, bytes: l.Bytes, records: l.Records,
			measured: l.Measured, fullWindow: l.FullWindow})
	}
	d := decideScale(in)
	out := ScaleDecision{Merges: d.merges, Mergeable: d.mergeable}
	for _, sp := range d.splits {
		out.Splits = append(out.Splits, ScaleSplit{Index: sp.index, At: sp.at})
	}
	return out
}

// PlanScale plans a scaler decision's splits or merges on an ON_DEMAND
// stream as single-node mode's scaler does (planInput.internal: the scaler
// may reshard it, users may not). A plan that no longer fits the stream (a
// shard closed meanwhile) fails, and the next pass measures again.
func PlanScale(in ReshardInput, d ScaleDecision) (ReshardPlan, error) {
	pi := in.plan()
	pi.internal = true
	p, err := planScale(pi, func(p *planner) error {
		if len(d.Splits) == 0 {
			return p.mergeAll(d.Merges)
		}
		splits := make([]splitAt, 0, len(d.Splits))
		for _, sp := range d.Splits {
			splits = append(splits, splitAt{index: sp.Index, at: sp.At})
		}
		return p.splitAll(splits)
	})
	if err != nil {
		return ReshardPlan{}, err
	}
	return exported(p), nil
}

// PlanWarm plans the pre-scaling of a warm throughput of mibps on the
// ON_DEMAND stream in.Stream as UpdateStreamWarmThroughput does
// (planInput.internal set); ok is false when its open shards already number
// max(OnDemandShards, mibps).
func PlanWarm(in ReshardInput, mibps int) (plan ReshardPlan, ok bool, err error) {
	pi := in.plan()
	pi.internal = true
	p, err := planWarm(pi, mibps)
	if err != nil || p == nil {
		return ReshardPlan{}, false, err
	}
	return exported(p), true, nil
}

// RateSample is a reading, at At, of a shard's cumulative admitted write
// bytes and records.
type RateSample struct {
	At             time.Time
	Bytes, Records int64
}

// WindowRate is the scaler's measure (ondemand.go) over a shard's readings,
// oldest first, the newest last: the readings still needed (those within
// window of the newest, and the newest one at or before its start as the
// base) and the rate over them, Index and Range unset.
func WindowRate(smp []RateSample, window time.Duration) ([]RateSample, ShardLoad) {
	if len(smp) == 0 {
		return nil, ShardLoad{}
	}
	in := make([]sample, len(smp))
	for i, x := range smp {
		in[i] = sample{at: x.At, bytes: x.Bytes, records: x.Records}
	}
	in = trimSamples(in, smp[len(smp)-1].At.Add(-window))
	l := loadOf(route{}, in, window)
	return smp[len(smp)-len(in):], ShardLoad{Bytes: l.bytes, Records: l.records, Measured: l.measured, FullWindow: l.fullWindow}
}
