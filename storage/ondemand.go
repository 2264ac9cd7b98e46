package storage

import (
	"math/big"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/ratelimit"
)

// On-demand capacity: what an ON_DEMAND stream takes at once, and the
// scaler that reshapes its shards to its load.
//
// Capacity (admission.go's limitsFor) follows AWS's rule: the stream takes at
// once up to twice the highest write rate it took in the last 30 days, and at
// least OnDemandShards shards' worth (4 MiB/s and 4,000 records/s); a warm
// throughput target raises the floor to that many MiB/s. The capacity is
// spread over the open shards: each shard's write limits are
// max(one shard's rate, capacity / open shards). Beyond it writes are
// throttled with ProvisionedThroughputExceededException; the throughput taken
// then becomes the new peak, which doubles the capacity at the next
// scaler pass.
//
// The scaler (one goroutine owned by the Store) measures every open shard's
// admitted write rate, bytes and records, over a sliding window
// (ScalerOptions.Window), every ScalerOptions.Interval, and for each ACTIVE
// ON_DEMAND stream:
//   - records the stream's rate in its daily peak (StreamRecord.WritePeaks,
//     persisted), which sets the capacity;
//   - splits, at the middle of its hash range, every shard whose rate reaches
//     SplitAt of one shard's rate (1 MiB/s or 1,000 records/s, times
//     --throttle-multiplier and the stream's multiplier tag), hottest first,
//     within the account's shard limit;
//   - otherwise, when some adjacent pairs of shards, each measured over a
//     whole window, together take less than MergeBelow of one shard's rate,
//     and that has held at every pass for MergeAfter, merges those pairs
//     (left to right, never below max(OnDemandShards, the warm target)).
//
// Both go through the reshard machinery (reshard.go): the plan is accepted,
// the stream is UPDATING, and the change takes effect when UPDATING ends,
// crash-safe and with AWS's lineage. Users' SplitShard, MergeShards and
// UpdateShardCount on an ON_DEMAND stream are still refused (ReasonOnDemand):
// the scaler plans with planInput.internal.

// ScalerOptions configures the on-demand scaler. Zero fields take the
// defaults below.
type ScalerOptions struct {
	// Interval is how often the scaler looks at the streams; negative turns
	// it off (tests call scaleTick themselves).
	Interval time.Duration
	// Window is how far back a shard's write rate is averaged.
	Window time.Duration
	// SplitAt is the fraction of one shard's write rate at which a shard is
	// split.
	SplitAt float64
	// MergeBelow is the fraction of one shard's write rate under which two
	// adjacent shards together are merged, once the stream has had such a
	// pair for MergeAfter.
	MergeBelow float64
	MergeAfter time.Duration
}

// The scaler's defaults.
const (
	DefaultScaleInterval   = 10 * time.Second
	DefaultScaleWindow     = time.Minute
	DefaultScaleSplitAt    = 0.8
	DefaultScaleMergeBelow = 0.4
	DefaultScaleMergeAfter = 15 * time.Minute
)

func (o *ScalerOptions) setDefaults() {
	if o.Interval == 0 {
		o.Interval = DefaultScaleInterval
	}
	if o.Window <= 0 {
		o.Window = DefaultScaleWindow
	}
	if o.SplitAt <= 0 {
		o.SplitAt = DefaultScaleSplitAt
	}
	if o.MergeBelow <= 0 {
		o.MergeBelow = DefaultScaleMergeBelow
	}
	if o.MergeAfter <= 0 {
		o.MergeAfter = DefaultScaleMergeAfter
	}
}

// peakDays is how many days of peaks an ON_DEMAND stream's capacity
// remembers.
const peakDays = 30

// traffic counts what one shard admitted: written by Put without the store
// lock, read by the scaler.
type traffic struct {
	bytes, records atomic.Int64
}

func (t *traffic) add(bytes, records int) {
	t.bytes.Add(int64(bytes))
	t.records.Add(int64(records))
}

// trafficOf returns shard i's counter, made on first use; callers hold
// Store.mu (or own st exclusively), as rebuildRoutes does.
func (st *stream) trafficOf(i uint32) *traffic {
	if st.traffic == nil {
		st.traffic = map[uint32]*traffic{}
	}
	t := st.traffic[i]
	if t == nil {
		t = &traffic{}
		st.traffic[i] = t
	}
	return t
}

// scaler is the scaler's memory between passes, guarded by mu: the samples of
// each open shard's counters, and since when each stream has had a mergeable
// pair. It is rebuilt from nothing after a restart (the peaks are persisted).
type scaler struct {
	mu      sync.Mutex
	streams map[*stream]*streamScale
}

type streamScale struct {
	shards   map[uint32][]sample // samples within the window, oldest first
	lowSince time.Time           // zero: no mergeable pair at the last pass
}

type sample struct {
	at             time.Time
	bytes, records int64
}

// scaleTick is one pass of the scaler over every ON_DEMAND stream.
func (s *Store) scaleTick() {
	now := s.opts.Now()
	live := map[*stream]bool{}
	for _, st := range s.sortedStreams() {
		live[st] = true
		s.scaleStream(st, now)
	}
	s.scale.mu.Lock()
	for st := range s.scale.streams {
		if !live[st] {
			delete(s.scale.streams, st)
		}
	}
	s.scale.mu.Unlock()
}

// scaleStream samples st's shards, records its peak and, when it is ACTIVE,
// splits or merges.
func (s *Store) scaleStream(st *stream, now time.Time) {
	s.mu.RLock()
	m, routes, busy := st.meta, st.routes, st.resharding != nil
	s.mu.RUnlock()
	if m.Mode != ModeOnDemand || m.Status == StatusCreating || m.Status == StatusDeleting {
		s.scale.forget(st)
		return
	}
	loads := s.scale.measure(st, routes, now, s.opts.OnDemand.Window)
	if !busy {
		s.recordPeak(st, loads, now)
	}
	if m.Status != StatusActive || busy {
		return
	}
	d := decideScale(scaleInput{loads: loads, unit: s.baseLimits(m), opts: s.opts.OnDemand,
		floor: max(OnDemandShards, m.WarmMiBps), room: s.shardRoom()})
	s.applyDecision(st, d, now)
}

// shardRoom is how many open shards the account may still add.
func (s *Store) shardRoom() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.opts.ShardLimit - s.openShardsLocked()
}

func (sc *scaler) forget(st *stream) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.streams, st)
}

// measure samples the counters of the open shards in routes and returns each
// one's rate over the window (or over what it has of it).
func (sc *scaler) measure(st *stream, routes []route, now time.Time, window time.Duration) []shardLoad {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ss := sc.streams[st]
	if ss == nil {
		ss = &streamScale{shards: map[uint32][]sample{}}
		sc.streams[st] = ss
	}
	open := map[uint32]bool{}
	loads := make([]shardLoad, 0, len(routes))
	for _, r := range routes {
		open[r.index] = true
		smp := append(ss.shards[r.index], sample{at: now, bytes: r.traffic.bytes.Load(), records: r.traffic.records.Load()})
		smp = trimSamples(smp, now.Add(-window))
		ss.shards[r.index] = smp
		loads = append(loads, loadOf(r, smp, window))
	}
	for i := range ss.shards {
		if !open[i] {
			delete(ss.shards, i)
		}
	}
	return loads
}

// trimSamples drops the samples older than the newest one at or before
// cutoff, which stays as the window's base.
func trimSamples(smp []sample, cutoff time.Time) []sample {
	base := 0
	for i, x := range smp {
		if !x.at.After(cutoff) {
			base = i
		}
	}
	return smp[base:]
}

// shardLoad is one open shard's measured write rate.
type shardLoad struct {
	index          uint32
	rng            hashkey.Range
	bytes, records float64 // per second; 0 when not measured yet
	measured       bool    // at least two samples
	fullWindow     bool    // the rate covers a whole window
}

func loadOf(r route, smp []sample, window time.Duration) shardLoad {
	l := shardLoad{index: r.index, rng: r.rng}
	first, last := smp[0], smp[len(smp)-1]
	span := last.at.Sub(first.at)
	if span <= 0 {
		return l
	}
	l.measured, l.fullWindow = true, span >= window
	l.bytes = float64(last.bytes-first.bytes) / span.Seconds()
	l.records = float64(last.records-first.records) / span.Seconds()
	return l
}

// scaleInput is what a scaling decision reads.
type scaleInput struct {
	loads []shardLoad // the open shards, by hash range
	unit  ratelimit.Limits
	opts  ScalerOptions
	floor int // the fewest open shards merges may leave
	room  int // open shards the account may still add
}

// scaleDecision is the reshard a pass wants: splits (shard index, key) or
// merges (lower, upper), never both; mergeable reports whether the stream
// has a pair to merge now, whatever the time it has had one.
type scaleDecision struct {
	splits    []splitAt
	merges    [][2]uint32
	mergeable bool
}

type splitAt struct {
	index uint32
	at    hashkey.Key
}

// use is a shard's load as a fraction of one shard's write rate: the larger
// of its byte and record fractions.
func (in scaleInput) use(l shardLoad) float64 {
	return max(l.bytes/in.unit.WriteBytes, l.records/in.unit.WriteRecords)
}

// decideScale is the scaler's policy (see the top of this file), a pure
// function of the measured loads. Merges are returned whenever pairs
// qualify; applyDecision holds them back until MergeAfter has passed.
func decideScale(in scaleInput) scaleDecision {
	hot := make([]shardLoad, 0)
	for _, l := range in.loads {
		if l.measured && in.use(l) >= in.opts.SplitAt {
			hot = append(hot, l)
		}
	}
	if len(hot) > 0 {
		sort.SliceStable(hot, func(i, j int) bool { return in.use(hot[i]) > in.use(hot[j]) })
		var d scaleDecision // empty when the account or the stream has no room: no merges either
		for _, l := range hot[:max(0, min(len(hot), in.room, MaxShardsPerStream-len(in.loads)))] {
			d.splits = append(d.splits, splitAt{index: l.index, at: middle(l.rng)})
		}
		return d
	}
	return decideMerges(in)
}

// decideMerges pairs cold adjacent shards left to right.
func decideMerges(in scaleInput) scaleDecision {
	var d scaleDecision
	n := len(in.loads)
	for i := 0; i+1 < len(in.loads) && n > in.floor; i++ {
		a, b := in.loads[i], in.loads[i+1]
		if !a.fullWindow || !b.fullWindow || !adjacent(a.rng, b.rng) || in.use(a)+in.use(b) >= in.opts.MergeBelow {
			continue
		}
		d.merges = append(d.merges, [2]uint32{a.index, b.index})
		d.mergeable = true
		n--
		i++
	}
	return d
}

// middle is the key that splits r into two halves.
func middle(r hashkey.Range) hashkey.Key {
	m := new(big.Int).Add(r.Start.Big(), r.End.Big())
	m.Add(m, big.NewInt(1)).Rsh(m, 1)
	k, _ := hashkey.Parse(m.String())
	return k
}

// applyDecision carries out a pass's decision: splits at once; merges once
// the stream has had mergeable pairs at every pass for MergeAfter.
func (s *Store) applyDecision(st *stream, d scaleDecision, now time.Time) {
	if len(d.splits) > 0 {
		s.scale.setLow(st, time.Time{})
		s.scalerReshard(st, func(p *planner) error { return p.splitAll(d.splits) })
		return
	}
	if !d.mergeable {
		s.scale.setLow(st, time.Time{})
		return
	}
	since := s.scale.lowSinceOr(st, now)
	if now.Sub(since) < s.opts.OnDemand.MergeAfter {
		return
	}
	s.scale.setLow(st, time.Time{}) // the next merge waits a whole period again
	s.scalerReshard(st, func(p *planner) error { return p.mergeAll(d.merges) })
}

func (sc *scaler) setLow(st *stream, t time.Time) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if ss := sc.streams[st]; ss != nil {
		ss.lowSince = t
	}
}

// lowSinceOr returns since when st has had mergeable pairs, starting the
// period at now if it had none.
func (sc *scaler) lowSinceOr(st *stream, now time.Time) time.Time {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ss := sc.streams[st]
	if ss == nil {
		return now
	}
	if ss.lowSince.IsZero() {
		ss.lowSince = now
	}
	return ss.lowSince
}

// scalerReshard accepts the scaler's reshard of st as a user's would be
// (reshard.go), on the stream's current metadata. A plan that no longer fits
// (a shard closed meanwhile, the stream deleted) is dropped: the next pass
// measures again.
func (s *Store) scalerReshard(st *stream, steps func(p *planner) error) {
	err := s.reshardWith(st.name, true, func(in planInput) (*reshardPlan, error) { return planScale(in, steps) })
	if err != nil && err != errNoScale {
		s.log.Debug("on-demand scaling skipped", "stream", st.name, "error", err)
		return
	}
	if err == nil {
		s.log.Info("on-demand stream rescaled", "stream", st.name)
	}
}

// planScale plans the scaler's steps on in.meta, an ON_DEMAND stream
// (in.internal set: the scaler may reshard it).
func planScale(in planInput, steps func(p *planner) error) (*reshardPlan, error) {
	if in.meta.Mode != ModeOnDemand {
		return nil, errNoScale
	}
	p, err := newPlanner(in)
	if err != nil {
		return nil, err
	}
	if err := steps(p); err != nil {
		return nil, err
	}
	return p.result(), nil
}

// errNoScale drops a scaler plan for a stream that is no longer ON_DEMAND.
var errNoScale = newError(ErrValidation, ReasonOnDemand, Facts{})

// splitAll splits each shard at its key, if it is still open and the key
// still inside it.
func (p *planner) splitAll(splits []splitAt) error {
	for _, sp := range splits {
		i := p.find(sp.index)
		if i < 0 || p.m.Shards[i].Closed || !splitsInside(p.rangeOf(p.m.Shards[i]), sp.at) {
			return newError(ErrInvalidArgument, ReasonMerged, Facts{Account: p.acct, Stream: p.m.Name, Shard: shardID(sp.index)})
		}
		p.split(sp.index, sp.at)
	}
	return nil
}

// mergeAll merges each pair, if both are still open and adjacent.
func (p *planner) mergeAll(pairs [][2]uint32) error {
	for _, pr := range pairs {
		a, b := p.find(pr[0]), p.find(pr[1])
		if a < 0 || b < 0 || p.m.Shards[a].Closed || p.m.Shards[b].Closed ||
			!adjacent(p.rangeOf(p.m.Shards[a]), p.rangeOf(p.m.Shards[b])) {
			return newError(ErrInvalidArgument, ReasonNotAdjacent, Facts{Account: p.acct, Stream: p.m.Name,
				Shard: shardID(pr[0]), Shard2: shardID(pr[1])})
		}
		p.merge(pr[0], pr[1])
	}
	return nil
}

// recordPeak raises today's peak of st to its current total rate, persisting
// it, and gives the shards their new limits when the capacity changed.
func (s *Store) recordPeak(st *stream, loads []shardLoad, now time.Time) {
	var bytes, records float64
	for _, l := range loads {
		bytes, records = bytes+l.bytes, records+l.records
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.streams[st.name]; !ok || cur != st || s.closed || st.resharding != nil || st.meta.Mode != ModeOnDemand {
		return
	}
	peaks, changed := raisePeak(st.meta.WritePeaks, now, int64(bytes), int64(records))
	if !changed {
		return
	}
	old, m := st.meta, st.meta.Clone()
	m.WritePeaks = peaks
	if err := s.persistLocked(st, m); err != nil {
		s.log.Error("cannot record an on-demand stream's peak", "stream", st.name, "error", err)
		return
	}
	if s.limitsFor(old) != nil && *s.limitsFor(old) != *s.limitsFor(m) {
		s.applyLimits(st)
	}
}

// raisePeak returns peaks with today's entry raised to bytes and records
// (per second) and the entries older than peakDays dropped; changed reports
// whether anything changed.
func raisePeak(peaks []datadir.PeakRecord, now time.Time, bytes, records int64) ([]datadir.PeakRecord, bool) {
	day := dayOf(now)
	out := make([]datadir.PeakRecord, 0, len(peaks)+1)
	changed := false
	for _, p := range peaks {
		if p.Day <= day-peakDays {
			changed = true
			continue
		}
		out = append(out, p)
	}
	if n := len(out); n == 0 || out[n-1].Day != day {
		if bytes <= 0 && records <= 0 {
			return out, changed
		}
		out = append(out, datadir.PeakRecord{Day: day})
	}
	last := &out[len(out)-1]
	if bytes > last.Bytes || records > last.Records {
		last.Bytes, last.Records = max(last.Bytes, bytes), max(last.Records, records)
		changed = true
	}
	return out, changed
}

// peakOf is the highest rate in peaks within the last peakDays days.
func peakOf(peaks []datadir.PeakRecord, now time.Time) (bytes, records int64) {
	day := dayOf(now)
	for _, p := range peaks {
		if p.Day > day-peakDays {
			bytes, records = max(bytes, p.Bytes), max(records, p.Records)
		}
	}
	return bytes, records
}

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

// onDemandCapacity is what an ON_DEMAND stream takes at once (see the top of
// this file), in bytes and records per second, from its peaks and warm
// target; unit is one shard's rates.
func onDemandCapacity(peaks []datadir.PeakRecord, warmMiBps int, unit ratelimit.Limits, now time.Time) (bytes, records float64) {
	pb, pr := peakOf(peaks, now)
	floor := float64(max(OnDemandShards, warmMiBps))
	return max(floor*unit.WriteBytes, 2*float64(pb)), max(floor*unit.WriteRecords, 2*float64(pr))
}
