package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// fakeClock is the cluster's clock in tests: it moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// TestSetRetention: Increase/DecreaseStreamRetentionPeriod change the
// period in the metadata group, with single-node mode's errors, and every
// node describes the same period.
func TestSetRetention(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	for _, tc := range []struct {
		node     uint64
		stream   string
		hours    int
		increase bool
		kind     error
		reason   storage.Reason
		want     int // the period every node then describes
	}{
		{1, "s", 24, true, nil, "", 24}, // the same period: accepted, as single-node mode does
		{2, "s", 48, true, nil, "", 48},
		{3, "s", 24, true, storage.ErrInvalidArgument, storage.ReasonRetentionLower, 48},
		{1, "s", 72, false, storage.ErrInvalidArgument, storage.ReasonRetentionRaise, 48},
		{2, "s", 23, false, storage.ErrInvalidArgument, storage.ReasonRetentionMin, 48},
		{3, "s", 8761, true, storage.ErrInvalidArgument, storage.ReasonRetentionMax, 48},
		{1, "missing", 48, true, storage.ErrStreamNotFound, storage.ReasonStreamNotFound, 48},
		{3, "s", 30, false, nil, "", 30},
	} {
		name := fmt.Sprintf("node %d %s %d increase=%v", tc.node, tc.stream, tc.hours, tc.increase)
		var err error
		eventually(t, name+": an answer other than ServiceUnavailable", func() error {
			// No metadata leader for a moment (a loaded machine) is not
			// what this test is about.
			if err = c.node(tc.node).SetRetention(ctx, tc.stream, tc.hours, tc.increase); errors.Is(err, storage.ErrUnavailable) {
				return err
			}
			return nil
		})
		if tc.kind == nil && err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tc.kind != nil {
			wantReason(t, name, err, tc.kind, tc.reason)
		}
		for id := uint64(1); id <= 3; id++ {
			info, err := c.node(id).DescribeStream(ctx, "s")
			if err != nil || info.RetentionHours != tc.want {
				t.Fatalf("%s: node %d describes %d hours (%v), want %d", name, id, info.RetentionHours, err, tc.want)
			}
		}
	}
}

// TestRetentionEverywhere: with a fake clock, records older than the
// retention period are read by no node (GetRecords from TRIM_HORIZON and
// AT_TIMESTAMP, SubscribeToShard), every replica deletes the whole segments
// that hold only expired records, and a restarted node agrees: its deleted
// segments stay deleted and it reads the same records.
func TestRetentionEverywhere(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	trims := map[uint64]*trimRecorder{1: {}, 2: {}, 3: {}}
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.now, c.segSize = clock.Now, 1<<10
		c.tune = func(cfg *Config) {
			// Only the test's own trims: the observer's sums are theirs.
			cfg.RetentionObserver, cfg.RetentionEvery = trims[cfg.NodeID], 24*time.Hour
		}
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	old, fresh := acked{}, acked{}
	for round := range 10 {
		if failed, err := c.put(1+uint64(round%3), "s", round, 20, old); err != nil || failed > 0 {
			t.Fatalf("put round %d: %d failed, %v", round, failed, err)
		}
	}
	clock.Add(12 * time.Hour)
	for round := 10; round < 20; round++ {
		if failed, err := c.put(1+uint64(round%3), "s", round, 20, fresh); err != nil || failed > 0 {
			t.Fatalf("put round %d: %d failed, %v", round, failed, err)
		}
	}
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	c.waitApplied(group, 400)

	clock.Add(12*time.Hour + time.Minute) // the first 200 records are past 24 hours
	c.checkLive("before the trim", fresh, start)
	before := map[uint64]int{}
	for id := uint64(1); id <= 3; id++ {
		before[id] = c.node(id).host.Segments(group)
		res := c.node(id).EnforceRetention()
		after := c.node(id).host.Segments(group)
		if res.Segments == 0 || after != before[id]-res.Segments || after == 0 {
			t.Fatalf("node %d: %d segments, trim deleted %d, %d left", id, before[id], res.Segments, after)
		}
		if got := trims[id].get(); got != res {
			t.Fatalf("node %d: the retention observer was told %+v, the trim deleted %+v", id, got, res)
		}
		if n := len(c.node(id).host.Records(group)); n >= 400 || n < 200 {
			t.Fatalf("node %d holds %d records after the trim, want fewer than 400 and every unexpired one", id, n)
		}
	}
	c.checkLive("after the trim", fresh, start)
	trimmed := c.node(2).host.Segments(group)
	applied := c.node(2).host.Status(group).Applied
	c.stop(2)
	c.start(2)
	if got := c.node(2).host.Segments(group); got != trimmed {
		t.Fatalf("node 2 restarted with %d segments, had %d after its trim", got, trimmed)
	}
	if got := c.node(2).host.Status(group).Applied; got < applied {
		t.Fatalf("node 2 restarted at applied index %d, had %d", got, applied)
	}
	c.checkLive("after node 2's restart", fresh, start)

	clock.Add(12 * time.Hour) // everything expired
	c.checkLive("once everything expired", acked{}, start)
	for id := uint64(1); id <= 3; id++ {
		c.node(id).EnforceRetention()
		if got := c.node(id).host.Segments(group); got != 1 {
			t.Fatalf("node %d keeps %d segments once everything expired, want the newest only", id, got)
		}
	}
}

// waitApplied waits until every node's replica of group holds at least
// records records.
func (c *testCluster) waitApplied(group uint64, records int) {
	for id := uint64(1); id <= 3; id++ {
		eventually(c.t, fmt.Sprintf("node %d applied %d records", id, records), func() error {
			if n := len(c.node(id).host.Records(group)); n < records {
				return fmt.Errorf("%d", n)
			}
			return nil
		})
	}
}

// checkLive reads the stream on every node from TRIM_HORIZON, from
// AT_TIMESTAMP at start, and through a subscription from TRIM_HORIZON, and
// checks that exactly want is read.
func (c *testCluster) checkLive(when string, want acked, start time.Time) {
	c.t.Helper()
	for id := uint64(1); id <= 3; id++ {
		for _, typ := range []storage.IteratorType{storage.TrimHorizon, storage.AtTimestamp} {
			read, err := c.readFrom(id, "s", typ, start)
			if err == nil {
				err = sameRecords(want, read)
			}
			if err != nil {
				c.t.Fatalf("%s: node %d from %s: %v", when, id, typ, err)
			}
		}
		if err := c.subscribedRecords(id, want); err != nil {
			c.t.Fatalf("%s: node %d subscription: %v", when, id, err)
		}
	}
}

// readFrom reads shard 0 from an iterator to the tip, page by page; a page
// may be empty (all expired) while its iterator moves on.
func (c *testCluster) readFrom(id uint64, stream string, typ storage.IteratorType, ts time.Time) (acked, error) {
	ctx := context.Background()
	n := c.node(id)
	pos, err := n.Position(ctx, stream, "shardId-000000000000", typ, "", ts)
	if err != nil {
		return nil, err
	}
	out := acked{}
	for {
		res, err := n.Read(ctx, pos, 7, 1<<20)
		if err != nil {
			return nil, err
		}
		for _, r := range res.Records {
			if r.Arrival.Before(n.cfg.Now().Add(-24 * time.Hour)) {
				return nil, fmt.Errorf("read %s, which arrived at %v", r.SequenceNumber, r.Arrival)
			}
			out[r.SequenceNumber] = r.PartitionKey + "=" + string(r.Data)
		}
		if res.Next.Ordinal == pos.Ordinal {
			return out, nil
		}
		pos = *res.Next
	}
}

// subscribedRecords subscribes from TRIM_HORIZON through node id until it
// has delivered len(want) records, and checks they are exactly want. A
// subscription that ends (a leader change, as after a restart: it ends by
// design) is made again, a few times.
func (c *testCluster) subscribedRecords(id uint64, want acked) error {
	if len(want) == 0 {
		return nil // nothing to wait for; the reads above cover it
	}
	var err error
	for range 20 {
		var recs []storage.Record
		if recs, err = c.subscribeOnce(id, len(want)); err == nil {
			got := acked{}
			for _, r := range recs {
				got[r.SequenceNumber] = r.PartitionKey + "=" + string(r.Data)
			}
			return sameRecords(want, got)
		}
	}
	return err
}

// subscribeOnce reads n records through one subscription; any error
// (no leader for a moment on a loaded machine, a leader change) is returned
// for the caller to try again.
func (c *testCluster) subscribeOnce(id uint64, n int) ([]storage.Record, error) {
	ctx := context.Background()
	node := c.node(id)
	info, err := node.DescribeConsumer(ctx, "s", "efo")
	if err != nil {
		return nil, err
	}
	_, gone, err := node.ActiveConsumer(ctx, "s", "efo", info.Created)
	if err != nil {
		return nil, err
	}
	sub, err := node.Subscribe(ctx, storage.SubscribeInput{Stream: "s", ShardID: "shardId-000000000000", Type: storage.TrimHorizon, Consumer: "efo"}, gone)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	var recs []storage.Record
	for idle := 0; len(recs) < n; {
		ev, err := sub.Next(ctx, 1<<20, 100*time.Millisecond)
		if err != nil {
			return nil, err
		}
		if len(ev.Records) == 0 {
			if idle++; idle > 600 { // about a minute of empty events: only bounds a hung test
				return nil, fmt.Errorf("%d of %d records delivered", len(recs), n)
			}
		}
		recs = append(recs, ev.Records...)
	}
	return recs, nil
}

// trimRecorder is a Config.RetentionObserver: what it was told, summed.
type trimRecorder struct {
	mu  sync.Mutex
	sum replica.TrimResult
}

func (r *trimRecorder) Trimmed(segments int, bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.Segments += segments
	r.sum.Bytes += bytes
}

func (r *trimRecorder) get() replica.TrimResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sum
}
