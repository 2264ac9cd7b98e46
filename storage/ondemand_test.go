package storage

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/vfs"
)

// The scaler's tests drive a fake clock and call scaleTick themselves
// (Interval -1 keeps the goroutine off). ThrottleMultiplier 0.064 makes one
// shard's rate 64 records/s, so a load of a few shards' worth is a few
// hundred small records per simulated second, and a whole number of them per
// hash key of spread(64): every shard gets the same share every second.

const testUnit = 64 // records/s of one shard at ThrottleMultiplier 0.064

func scalerOptions(c *clock) Options {
	return Options{Now: c.now, ThrottleMultiplier: 0.064, SegmentSize: 64 << 10,
		OnDemand: ScalerOptions{Interval: -1, Window: 10 * time.Second, SplitAt: 0.8, MergeBelow: 0.4, MergeAfter: 30 * time.Second}}
}

func createOnDemand(t *testing.T, s *Store, name string) {
	t.Helper()
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: name, Mode: ModeOnDemand, ShardCount: OnDemandShards}); err != nil {
		t.Fatal(err)
	}
}

// spread is n hash keys evenly spaced over the hash space, so that every
// shard of a uniform layout of up to n shards gets the same share.
func spread(n int) []hashkey.Key {
	step := new(big.Int).Lsh(big.NewInt(1), 128)
	step.Div(step, big.NewInt(int64(n)))
	keys := make([]hashkey.Key, n)
	for i := range keys {
		v := new(big.Int).Mul(step, big.NewInt(int64(i)))
		v.Add(v, big.NewInt(1))
		keys[i], _ = hashkey.Parse(v.String())
	}
	return keys
}

// loadRig writes a stream's load second by second, keeping every record it
// acknowledged, and runs a scaler pass after each second.
type loadRig struct {
	t     *testing.T
	s     *Store
	c     *clock
	name  string
	keys  []hashkey.Key
	n     int
	acked map[string]bool
	open  []int // open shards after each pass
}

func newLoadRig(t *testing.T, s *Store, c *clock, name string) *loadRig {
	return &loadRig{t: t, s: s, c: c, name: name, keys: spread(64), acked: map[string]bool{}}
}

// run writes perSecond records a second, spread over the hash space, for
// seconds seconds.
func (r *loadRig) run(perSecond, seconds int) {
	r.t.Helper()
	for range seconds {
		var entries []PutEntry
		for range perSecond {
			k := r.keys[r.n%len(r.keys)]
			entries = append(entries, PutEntry{PartitionKey: fmt.Sprint(r.n % len(r.keys)), ExplicitHashKey: &k, Data: []byte(fmt.Sprintf("r%d", r.n))})
			r.n++
		}
		if len(entries) > 0 {
			res, err := r.s.Put(context.Background(), r.name, entries)
			if err != nil {
				r.t.Fatal(err)
			}
			for i, x := range res {
				if x.Err != nil {
					r.t.Fatalf("record %s: %v", entries[i].Data, x.Err)
				}
				r.acked[string(entries[i].Data)] = true
			}
		}
		r.c.t = r.c.t.Add(time.Second)
		r.s.scaleTick()
		info, err := r.s.DescribeStream(context.Background(), r.name)
		if err != nil {
			r.t.Fatal(err)
		}
		r.open = append(r.open, info.OpenShardCount())
	}
}

func (r *loadRig) openNow() int { return r.open[len(r.open)-1] }

// TestOnDemandScalerRampsThenMerges: at a quarter of the shards' rate
// nothing changes; at their full rate every shard splits, and again when
// the load doubles; once the load stops, cold pairs merge after MergeAfter,
// one round per period, down to the on-demand minimum. Every acknowledged
// record is read back once, in order, through the lineage.
func TestOnDemandScalerRampsThenMerges(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	s := openReshardStore(t, scalerOptions(c))
	createOnDemand(t, s, "od")
	r := newLoadRig(t, s, c, "od")
	steps := []struct {
		what          string
		perSecond     int
		seconds       int
		open          int
		maxOpenBefore int // the open count may not exceed this before the step ends
	}{
		{"a quarter of 4 shards' rate", OnDemandShards * testUnit / 4, 15, 4, 4},
		{"4 shards at their full rate split once", OnDemandShards * testUnit, 15, 8, 8},
		{"twice that splits again", 2 * OnDemandShards * testUnit, 15, 16, 16},
		{"the same load on 16 shards stays", 2 * OnDemandShards * testUnit, 15, 16, 16},
		{"idle, not yet MergeAfter", 0, 30, 16, 16},
		{"idle: one round of merges", 0, 10, 8, 16},
		{"idle: down to the minimum", 0, 60, 4, 8},
		{"idle: never below it", 0, 60, 4, 4},
	}
	for _, st := range steps {
		before := len(r.open)
		r.run(st.perSecond, st.seconds)
		for _, n := range r.open[before:] {
			if n > st.maxOpenBefore {
				t.Fatalf("%s: %d open shards during the step, want at most %d (history %v)", st.what, n, st.maxOpenBefore, r.open)
			}
		}
		if r.openNow() != st.open {
			t.Fatalf("%s: %d open shards, want %d (history %v)", st.what, r.openNow(), st.open, r.open)
		}
	}
	checkLineage(t, s, "od", r.acked)
}

// checkLineage reads the stream as the KCL does (a child after all its
// parents), checks that every closed shard names children covering its hash
// range, and that every acknowledged record is read exactly once, each
// partition key's in order.
func checkLineage(t *testing.T, s *Store, name string, acked map[string]bool) {
	t.Helper()
	info, err := s.DescribeStream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	ended := map[string]bool{}
	seen := map[string]int{}
	last := map[string]string{}
	queue := []string{}
	for _, sh := range info.Shards {
		if sh.Parent == "" {
			queue = append(queue, sh.ID)
		}
	}
	parents := map[string][]string{}
	for _, sh := range info.Shards {
		if sh.Parent != "" {
			parents[sh.ID] = append([]string{sh.Parent}, nonEmpty(sh.AdjacentParent)...)
		}
	}
	for guard := 0; len(queue) > 0; guard++ {
		if guard > 10000 {
			t.Fatal("lineage walk does not end")
		}
		id := queue[0]
		queue = queue[1:]
		if ended[id] {
			continue
		}
		if !allEnded(parents[id], ended) {
			queue = append(queue, id)
			continue
		}
		recs, kids := readLineageShard(t, s, name, id)
		for _, rec := range recs {
			seen[string(rec.Data)]++
			if p, ok := last[rec.PartitionKey]; ok && seqLess(rec.SequenceNumber, p) {
				t.Fatalf("key %s: %s read after %s", rec.PartitionKey, rec.SequenceNumber, p)
			}
			last[rec.PartitionKey] = rec.SequenceNumber
		}
		ended[id] = true
		checkChildrenCover(t, info, id, kids)
		for _, k := range kids {
			queue = append(queue, k.ShardID)
		}
	}
	for _, sh := range info.Shards {
		if !ended[sh.ID] {
			t.Fatalf("lineage never reached %s", sh.ID)
		}
	}
	for d := range acked {
		if seen[d] != 1 {
			t.Fatalf("acknowledged record %s read %d times", d, seen[d])
		}
	}
	if len(seen) != len(acked) {
		t.Fatalf("read %d records, acknowledged %d", len(seen), len(acked))
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func allEnded(ids []string, ended map[string]bool) bool {
	for _, id := range ids {
		if !ended[id] {
			return false
		}
	}
	return true
}

func seqLess(a, b string) bool { return len(a) < len(b) || (len(a) == len(b) && a < b) }

// readLineageShard reads a shard from its start to its end (closed) or its tip
// (open), with the ChildShards of a closed shard.
func readLineageShard(t *testing.T, s *Store, name, id string) ([]Record, []ChildShard) {
	t.Helper()
	pos, err := s.Position(context.Background(), name, id, TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for range 100000 {
		res, err := s.Read(context.Background(), pos, 1000, 10<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Records...)
		if res.Next == nil {
			return out, res.ChildShards
		}
		if len(res.Records) == 0 {
			return out, nil
		}
		pos = *res.Next
	}
	t.Fatalf("%s never ended", id)
	return nil, nil
}

// checkChildrenCover: a closed shard's children cover its hash range, from
// its start to its end, without a gap.
func checkChildrenCover(t *testing.T, info StreamInfo, id string, kids []ChildShard) {
	t.Helper()
	sh := shardByID(t, info, id)
	if sh.Open() {
		return
	}
	if len(kids) == 0 {
		t.Fatalf("closed %s has no children", id)
	}
	lo, hi := kids[0].HashRange.Start, kids[len(kids)-1].HashRange.End
	for _, k := range kids {
		lo, hi = lowerKey(lo, k.HashRange.Start), higherKey(hi, k.HashRange.End)
	}
	if lo.Cmp(sh.HashRange.Start) > 0 || hi.Cmp(sh.HashRange.End) < 0 {
		t.Fatalf("children of %s cover [%v, %v], not its range %v", id, lo, hi, sh.HashRange)
	}
}

func lowerKey(a, b hashkey.Key) hashkey.Key {
	if a.Cmp(b) < 0 {
		return a
	}
	return b
}

func higherKey(a, b hashkey.Key) hashkey.Key {
	if a.Cmp(b) > 0 {
		return a
	}
	return b
}

// TestOnDemandScalerHotShard: a load on one shard's keys alone splits that
// shard, and only it, until its pieces are cold enough.
func TestOnDemandScalerHotShard(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	s := openReshardStore(t, scalerOptions(c))
	createOnDemand(t, s, "hot")
	r := newLoadRig(t, s, c, "hot")
	r.keys = spread(64)[:16] // shard 0's quarter of the hash space
	r.run(2*testUnit, 20)
	info, err := s.DescribeStream(context.Background(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"shardId-000000000001", "shardId-000000000002", "shardId-000000000003"} {
		if !shardByID(t, info, id).Open() {
			t.Fatalf("cold %s was resharded: %+v", id, info.Shards)
		}
	}
	if shardByID(t, info, "shardId-000000000000").Open() || info.OpenShardCount() < 5 {
		t.Fatalf("hot shard not split: %+v", info.Shards)
	}
	checkLineage(t, s, "hot", r.acked)
}

// TestOnDemandScalerLeavesProvisioned: a PROVISIONED stream at its full rate
// is never resharded by the scaler.
func TestOnDemandScalerLeavesProvisioned(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	s := openReshardStore(t, scalerOptions(c))
	mustCreate(t, s, "p", 2)
	r := newLoadRig(t, s, c, "p")
	r.run(4*testUnit, 20)
	if r.openNow() != 2 {
		t.Fatalf("provisioned stream resharded: %v", r.open)
	}
}

// TestOnDemandScalerRespectsShardLimit: splits stop at the account's shard
// limit; the hottest shards split first.
func TestOnDemandScalerRespectsShardLimit(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	opts := scalerOptions(c)
	opts.ShardLimit = 6
	s := openReshardStore(t, opts)
	createOnDemand(t, s, "lim")
	r := newLoadRig(t, s, c, "lim")
	r.run(8*testUnit, 30)
	if r.openNow() != 6 {
		t.Fatalf("%d open shards, want the limit 6 (history %v)", r.openNow(), r.open)
	}
}

// TestOnDemandScalerPlanSurvivesRestart: a split the scaler accepted is
// pending (UPDATING) across a restart and takes effect when UPDATING ends.
func TestOnDemandScalerPlanSurvivesRestart(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	opts := scalerOptions(c)
	opts.UpdateDelay, opts.Dir, opts.FS = time.Minute, t.TempDir(), vfs.NewMemFS()
	s := openReshardStore(t, opts)
	createOnDemand(t, s, "r")
	r := newLoadRig(t, s, c, "r")
	r.run(OnDemandShards*testUnit, 3)
	info, _ := s.DescribeStream(context.Background(), "r")
	if info.Status != StatusUpdating || info.OpenShardCount() != 4 {
		t.Fatalf("after the split was accepted: %s, %d open", info.Status, info.OpenShardCount())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(2 * time.Minute)
	s = openReshardStore(t, opts)
	info, _ = s.DescribeStream(context.Background(), "r")
	if info.Status != StatusActive || info.OpenShardCount() != 8 {
		t.Fatalf("after the restart: %s, %d open", info.Status, info.OpenShardCount())
	}
	checkLineage(t, s, "r", r.acked)
}

// TestOnDemandCapacity: the capacity is twice the 30-day peak, at least 4
// shards' worth (or the warm target), spread over the open shards.
func TestOnDemandCapacity(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	day := dayOf(now)
	unit := ratelimit.Kinesis
	tests := []struct {
		name           string
		peaks          []datadir.PeakRecord
		warm, open     int
		bytes, records float64 // per-shard write limits
	}{
		{"new stream on 4 shards", nil, 0, 4, 1 << 20, 1000},
		{"new stream on 1 shard takes 4 shards' worth", nil, 0, 1, 4 << 20, 4000},
		{"peak 4 MiB/s doubles it", []datadir.PeakRecord{{Day: day, Bytes: 4 << 20, Records: 100}}, 0, 4, 2 << 20, 1000},
		{"a peak 29 days old counts", []datadir.PeakRecord{{Day: day - 29, Bytes: 8 << 20, Records: 8000}}, 0, 4, 4 << 20, 4000},
		{"a peak 30 days old does not", []datadir.PeakRecord{{Day: day - 30, Bytes: 8 << 20, Records: 8000}}, 0, 4, 1 << 20, 1000},
		{"more shards than the capacity needs keep their own rate", []datadir.PeakRecord{{Day: day, Bytes: 4 << 20}}, 0, 16, 1 << 20, 1000},
		{"a warm target is a floor", nil, 12, 4, 3 << 20, 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Store{opts: Options{Throttle: true, ThrottleMultiplier: 1, Now: func() time.Time { return now }}}
			m := &streamMeta{Mode: ModeOnDemand, WritePeaks: tt.peaks, WarmMiBps: tt.warm}
			for i := range tt.open {
				m.Shards = append(m.Shards, shardMeta{Index: uint32(i)})
			}
			l := s.limitsFor(m)
			if l.WriteBytes != tt.bytes || l.WriteRecords != tt.records {
				t.Fatalf("per-shard limits %v B/s, %v records/s; want %v, %v", l.WriteBytes, l.WriteRecords, tt.bytes, tt.records)
			}
			if l.ReadBytes != unit.ReadBytes*tt.bytes/unit.WriteBytes {
				t.Fatalf("read limit %v does not follow the write capacity", l.ReadBytes)
			}
		})
	}
}

// TestRaisePeak: one entry per day, raised, never lowered; entries older
// than 30 days drop out.
func TestRaisePeak(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	day := dayOf(now)
	tests := []struct {
		name    string
		in      []datadir.PeakRecord
		b, r    int64
		want    []datadir.PeakRecord
		changed bool
	}{
		{"first", nil, 10, 1, []datadir.PeakRecord{{Day: day, Bytes: 10, Records: 1}}, true},
		{"idle adds nothing", nil, 0, 0, []datadir.PeakRecord{}, false},
		{"higher raises", []datadir.PeakRecord{{Day: day, Bytes: 10, Records: 1}}, 20, 1, []datadir.PeakRecord{{Day: day, Bytes: 20, Records: 1}}, true},
		{"lower keeps", []datadir.PeakRecord{{Day: day, Bytes: 10, Records: 5}}, 5, 2, []datadir.PeakRecord{{Day: day, Bytes: 10, Records: 5}}, false},
		{"each field on its own", []datadir.PeakRecord{{Day: day, Bytes: 10, Records: 5}}, 5, 9, []datadir.PeakRecord{{Day: day, Bytes: 10, Records: 9}}, true},
		{"a new day", []datadir.PeakRecord{{Day: day - 1, Bytes: 10, Records: 5}}, 1, 1, []datadir.PeakRecord{{Day: day - 1, Bytes: 10, Records: 5}, {Day: day, Bytes: 1, Records: 1}}, true},
		{"old days drop", []datadir.PeakRecord{{Day: day - 30, Bytes: 10, Records: 5}, {Day: day - 29, Bytes: 3, Records: 3}}, 0, 0, []datadir.PeakRecord{{Day: day - 29, Bytes: 3, Records: 3}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := raisePeak(tt.in, now, tt.b, tt.r)
			if changed != tt.changed || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v (changed %v), want %v (%v)", got, changed, tt.want, tt.changed)
			}
		})
	}
}

// TestOnDemandPeakRaisesCapacity: a stream pushed beyond its capacity is
// throttled; the scaler records what it took as its peak, and the shards'
// limits double.
func TestOnDemandPeakRaisesCapacity(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	opts := scalerOptions(c)
	opts.Throttle, opts.OnDemand.SplitAt = true, 100 // no splits: the capacity alone is under test
	s := openReshardStore(t, opts)
	createOnDemand(t, s, "cap")
	keys := spread(64)
	put := func(n int) (ok int) {
		var entries []PutEntry
		for i := range n {
			k := keys[i%len(keys)]
			entries = append(entries, PutEntry{PartitionKey: "k", ExplicitHashKey: &k, Data: []byte("x")})
		}
		res, err := s.Put(context.Background(), "cap", entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err == nil {
				ok++
			}
		}
		return ok
	}
	const offered = 5 * OnDemandShards * testUnit // records/s, far beyond the capacity
	second := func() (admitted int) {
		for range 10 { // spread over the second, as a steady producer's are
			admitted += put(offered / 10)
			c.t = c.t.Add(100 * time.Millisecond)
		}
		s.scaleTick()
		return admitted
	}
	s.scaleTick()
	if second() >= offered {
		t.Fatal("nothing throttled beyond the capacity")
	}
	for range 9 {
		second()
	}
	s.mu.RLock()
	m := s.streams["cap"].meta
	s.mu.RUnlock()
	pb, pr := peakOf(m.WritePeaks, c.t)
	// What the stream took became its peak, which doubled its capacity, so
	// it took more at the next pass: well above the first capacity, never
	// above what was offered.
	if pr < 2*OnDemandShards*testUnit || pr > offered || pb == 0 {
		t.Fatalf("peak %d records/s, %d B/s; want between twice the first capacity and the %d offered", pr, pb, offered)
	}
	l := s.limitsFor(m)
	if want := max(testUnit, 2*float64(pr)/OnDemandShards); l.WriteRecords != want {
		t.Fatalf("per-shard record limit %v, want twice the peak spread over the shards, %v", l.WriteRecords, want)
	}
}
