package cluster

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// The on-demand scaler in cluster mode (docs/cluster.md §12). Its policy is
// single-node mode's (storage.DecideScale, storage.RaisePeak,
// storage.PlanScale); what a cluster adds is where the rates are measured
// and who decides:
//   - a shard's writes are admitted by its leader only (admit.go), so each
//     node counts what it admits for the groups it leads (rateMeter) and,
//     every Config.OnDemand.Interval, measures each led group's rate over
//     the window from its own readings, and posts them to the metadata
//     leader (POST /_cluster/v1/rates). A node that starts leading a group
//     (in a new term: also one it led before) starts its readings afresh:
//     its rate covers a whole window only once it has led the group that
//     long.
//   - the metadata leader keeps the newest report per group (rateBoard). A
//     group without a report within the window is unmeasured: the scaler
//     never merges a pair it cannot measure over a whole window, nor splits
//     a shard on no measure.
//   - the metadata leader's pass records each ON_DEMAND stream's daily peak
//     in its record (a compare-and-set) and splits or merges through the
//     reshard path users' calls take (reshard.go), planned with the
//     scaler's bypass of the ON_DEMAND refusal. The planner takes only an
//     ACTIVE stream, and a reshard leaves it UPDATING until it took effect:
//     one reshard at a time per stream.
// Everything the pass keeps in memory (the board, since when a stream has
// had a mergeable pair) is lost with a leader change: the new metadata
// leader waits for fresh reports and a whole MergeAfter again, so a change
// only delays scaling, never makes an unmeasured decision.

// rateMeter is this node's count of admitted writes per shard group and
// its readings of the groups it leads.
type rateMeter struct {
	counts sync.Map // group → *groupCount
	mu     sync.Mutex
	seen   map[uint64]termReadings // the led groups' readings
}

// termReadings are a led group's readings, oldest first, all taken in one
// Raft term: a leadership lost and regained between two passes (another
// node admitted the writes meanwhile) starts them afresh, as at a first
// lead, so the counter's rise across the gap is never taken for a rate.
type termReadings struct {
	term uint64
	smp  []storage.RateSample
}

// ledGroup is a group this node leads, in its leader term.
type ledGroup struct {
	group, term uint64
}

type groupCount struct {
	bytes, records atomic.Int64
}

// count adds the entries of a proposal that were not refused.
func (m *rateMeter) count(group uint64, entries []entry, refused []bool) {
	var bytes, records int64
	for j, e := range entries {
		if refused == nil || !refused[j] {
			bytes, records = bytes+int64(len(e.key)+len(e.data)), records+1
		}
	}
	v, ok := m.counts.Load(group)
	if !ok {
		v, _ = m.counts.LoadOrStore(group, &groupCount{})
	}
	c := v.(*groupCount)
	c.bytes.Add(bytes)
	c.records.Add(records)
}

// groupRate is one group's rate as its leader measured it.
type groupRate struct {
	Group      uint64  `json:"group"`
	Bytes      float64 `json:"bytes"`
	Records    float64 `json:"records"`
	Measured   bool    `json:"measured"`
	FullWindow bool    `json:"fullWindow"`
}

// measure reads the counters of the groups led here and returns their
// rates; the readings of groups no longer led, or led in another term, are
// dropped.
func (m *rateMeter) measure(led []ledGroup, now time.Time, window time.Duration) []groupRate {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[uint64]termReadings{}
	out := make([]groupRate, 0, len(led))
	for _, lg := range led {
		g := lg.group
		var bytes, records int64
		if v, ok := m.counts.Load(g); ok {
			bytes, records = v.(*groupCount).bytes.Load(), v.(*groupCount).records.Load()
		}
		var before []storage.RateSample
		if r, ok := m.seen[g]; ok && r.term == lg.term {
			before = r.smp
		}
		smp, l := storage.WindowRate(append(before, storage.RateSample{At: now, Bytes: bytes, Records: records}), window)
		keep[g] = termReadings{term: lg.term, smp: smp}
		out = append(out, groupRate{Group: g, Bytes: l.Bytes, Records: l.Records, Measured: l.Measured, FullWindow: l.FullWindow})
	}
	m.seen = keep
	return out
}

// rateBoard is the metadata leader's view of the shards' rates: the newest
// report per group, and since when each stream has had a mergeable pair.
type rateBoard struct {
	mu       sync.Mutex
	rates    map[uint64]boardEntry
	lowSince map[string]time.Time // by periodKey
}

type boardEntry struct {
	rate groupRate
	at   time.Time // when this node received it, by its clock
}

func (b *rateBoard) put(rates []groupRate, now time.Time, window time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rates == nil {
		b.rates = map[uint64]boardEntry{}
	}
	for g, e := range b.rates {
		if now.Sub(e.at) > window {
			delete(b.rates, g)
		}
	}
	for _, r := range rates {
		b.rates[r.Group] = boardEntry{rate: r, at: now}
	}
}

// loads are rec's open shards' loads, in hash-range order: a shard whose
// group has no report within window is unmeasured.
func (b *rateBoard) loads(rec streamRec, now time.Time, window time.Duration) []storage.ShardLoad {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []storage.ShardLoad
	for _, sh := range rec.Shards {
		if isClosed(sh) {
			continue
		}
		l := storage.ShardLoad{Index: shardIndex(sh.ID), Range: shardInfo(rec, sh).HashRange}
		if e, ok := b.rates[sh.Group]; ok && sh.Group != 0 && now.Sub(e.at) <= window {
			l.Bytes, l.Records, l.Measured, l.FullWindow = e.rate.Bytes, e.rate.Records, e.rate.Measured, e.rate.FullWindow
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, c storage.ShardLoad) int { return a.Range.Start.Cmp(c.Range.Start) })
	return out
}

// lowSinceOr returns since when a stream (its periodKey) has had mergeable
// pairs, starting the period at now if it had none; setLow sets it (zero:
// none).
func (b *rateBoard) lowSinceOr(stream string, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lowSince == nil {
		b.lowSince = map[string]time.Time{}
	}
	if t, ok := b.lowSince[stream]; ok {
		return t
	}
	b.lowSince[stream] = now
	return now
}

func (b *rateBoard) setLow(stream string, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.IsZero() {
		delete(b.lowSince, stream)
		return
	}
	b.lowSince[stream] = t
}

// keepLow forgets the periods of streams not in live.
func (b *rateBoard) keepLow(live map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.lowSince {
		if !live[s] {
			delete(b.lowSince, s)
		}
	}
}

// scaleLoop runs a scaler pass every Config.OnDemand.Interval.
func (n *Node) scaleLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.OnDemand.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.scaleTick(ctx)
		}
	}
}

// scaleTick is one pass: this node reports its led groups' rates, and the
// metadata leader scales. Each step that waits (the report, each stream's
// transactions) has its own election-timeout budget: with one for the pass,
// slow transactions of the first streams (name order) spent it and the
// later streams were never scaled.
func (n *Node) scaleTick(ctx context.Context) {
	rates := n.meter.measure(n.ledOnDemandGroups(), n.cfg.Now(), n.cfg.OnDemand.Window)
	if len(rates) > 0 {
		n.bounded(ctx, func(ctx context.Context) {
			if err := n.reportRates(ctx, rates); err != nil {
				n.cfg.Logger.Debug("reporting on-demand rates", "error", err)
			}
		})
	}
	if n.host.Status(metaGroup).Leader == n.cfg.NodeID {
		n.scaleStreams(ctx)
	}
}

// ledOnDemandGroups are the groups of ON_DEMAND streams' open shards that
// this node leads, with its terms.
func (n *Node) ledOnDemandGroups() []ledGroup {
	var out []ledGroup
	for _, rec := range n.streams() {
		if rec.mode() != storage.ModeOnDemand {
			continue
		}
		for _, sh := range rec.Shards {
			if st := n.host.Status(sh.Group); sh.Group != 0 && !isClosed(sh) && st.Leader == n.cfg.NodeID {
				out = append(out, ledGroup{group: sh.Group, term: st.Term})
			}
		}
	}
	return out
}

// reportRates gives rates to the metadata leader (this node or a peer).
func (n *Node) reportRates(ctx context.Context, rates []groupRate) error {
	return n.onLeader(ctx, metaGroup,
		func(context.Context) error {
			if n.host.Status(metaGroup).Leader != n.cfg.NodeID {
				return &notLeaderError{hint: n.knownLeader(metaGroup)}
			}
			n.board.put(rates, n.cfg.Now(), n.cfg.OnDemand.Window)
			return nil
		},
		func(ctx context.Context, addr string) error {
			var ok struct{}
			return n.post(ctx, addr, "rates", mustJSON(rates), &ok)
		})
}

// serveRates takes a peer's report (reportRates) if this node leads the
// metadata group.
func (n *Node) serveRates(w http.ResponseWriter, r *http.Request) {
	var rates []groupRate
	if err := json.NewDecoder(io.LimitReader(r.Body, maxForwardBody)).Decode(&rates); err != nil {
		http.Error(w, "malformed rates", http.StatusBadRequest)
		return
	}
	if n.host.Status(metaGroup).Leader != n.cfg.NodeID {
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: n.knownLeader(metaGroup)})
		return
	}
	n.board.put(rates, n.cfg.Now(), n.cfg.OnDemand.Window)
	writeJSON(w, http.StatusOK, struct{}{})
}

// scaleStreams is the metadata leader's pass over the ON_DEMAND streams,
// each transaction within its own budget (bounded).
func (n *Node) scaleStreams(ctx context.Context) {
	now := n.cfg.Now()
	live := map[string]bool{}
	for _, rec := range n.streams() {
		if rec.mode() != storage.ModeOnDemand || rec.Status == string(storage.StatusCreating) {
			continue
		}
		live[periodKey(rec)] = true
		loads := n.board.loads(rec, now, n.cfg.OnDemand.Window)
		if rec.Reshard == nil {
			n.bounded(ctx, func(ctx context.Context) { n.recordPeak(ctx, rec.Name, loads, now) })
		}
		if rec.Status != string(storage.StatusActive) || rec.Reshard != nil {
			continue
		}
		d := storage.DecideScale(loads, n.unitLimits(rec), n.cfg.OnDemand,
			max(storage.OnDemandShards, rec.WarmMiBps), n.cfg.ShardLimit-n.openShards())
		n.bounded(ctx, func(ctx context.Context) { n.applyScale(ctx, rec, d, now) })
	}
	n.board.keepLow(live)
}

// recordPeak raises today's peak of the stream to its current total rate
// (a compare-and-set; a lost race waits for the next pass).
func (n *Node) recordPeak(ctx context.Context, name string, loads []storage.ShardLoad, now time.Time) {
	var bytes, records float64
	for _, l := range loads {
		bytes, records = bytes+l.Bytes, records+l.Records
	}
	rec, v, ok := n.stream(name)
	if !ok || rec.mode() != storage.ModeOnDemand || rec.Reshard != nil {
		return
	}
	peaks, changed := storage.RaisePeak(rec.WritePeaks, now, int64(bytes), int64(records))
	if !changed {
		return
	}
	rec.WritePeaks = peaks
	key := replica.StreamKey(name)
	if _, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}); err != nil {
		n.cfg.Logger.Debug("recording an on-demand peak", "stream", name, "error", err)
	}
}

// applyScale carries out a pass's decision as single-node mode does:
// splits at once, merges once the stream has had mergeable pairs at every
// pass for MergeAfter.
func (n *Node) applyScale(ctx context.Context, rec streamRec, d storage.ScaleDecision, now time.Time) {
	key := periodKey(rec)
	if len(d.Splits) == 0 {
		if !d.Mergeable {
			n.board.setLow(key, time.Time{})
			return
		}
		if now.Sub(n.board.lowSinceOr(key, now)) < n.cfg.OnDemand.MergeAfter {
			return
		}
	}
	n.board.setLow(key, time.Time{}) // the next merge waits a whole period again
	err := n.reshard(ctx, rec.Name, func(in storage.ReshardInput) (storage.ReshardPlan, error) {
		return storage.PlanScale(in, d)
	})
	if err != nil {
		n.cfg.Logger.Debug("on-demand scaling skipped", "stream", rec.Name, "error", err)
		return
	}
	n.cfg.Logger.Info("on-demand stream rescaled", "stream", rec.Name, "splits", len(d.Splits), "merges", len(d.Merges))
}

// periodKey names a stream's merge period: a stream created again under
// the name starts without its predecessor's.
func periodKey(rec streamRec) string {
	return rec.Name + "@" + strconv.FormatInt(rec.CreatedNs, 10)
}
