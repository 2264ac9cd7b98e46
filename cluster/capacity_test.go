package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// capacityCluster is three nodes sharing clk with the scaler's loop off
// (the tests run its passes: scalePass), tuned further by tune.
func capacityCluster(t *testing.T, clk *fakeClock, tune func(*Config)) *testCluster {
	return newTestClusterWith(t, 3, func(c *testCluster) {
		c.now = clk.Now
		c.tune = func(cfg *Config) {
			cfg.OnDemand.Interval = -1
			if tune != nil {
				tune(cfg)
			}
		}
	})
}

// scalePass runs one scaler pass: every node reports the rates of the
// shards it leads, then the metadata leader scales.
func (c *testCluster) scalePass() {
	ctx := context.Background()
	lead := c.node(1).host.Status(metaGroup).Leader
	for id := range c.nodes {
		if id != lead {
			c.node(id).scaleTick(ctx)
		}
	}
	if lead != 0 {
		c.node(lead).scaleTick(ctx)
	}
}

// capacityErr checks err is single-node mode's error of kind and reason.
func capacityErr(err, kind error, reason storage.Reason) error {
	var se *storage.Error
	if reason == "" {
		return err
	}
	if !errors.As(err, &se) || !errors.Is(err, kind) || se.Reason != reason || se.Account != "123456789012" {
		return fmt.Errorf("got %v, want %v / %q", err, kind, reason)
	}
	return nil
}

// modeEverywhere waits until every node describes stream in mode with
// warm target warm and open shards open, ACTIVE.
func (c *testCluster) modeEverywhere(stream string, mode storage.StreamMode, warm, open int) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("%s %s, warm %d, %d open shards on every node", stream, mode, warm, open), func() error {
		info, err := c.sameEverywhere(stream, 1, 2, 3)
		switch {
		case err != nil:
			return err
		case info.Status != storage.StatusActive || info.Mode != mode || info.WarmMiBps != warm || info.OpenShardCount() != open:
			return fmt.Errorf("%s %s warm %d, %d open", info.Status, info.Mode, info.WarmMiBps, info.OpenShardCount())
		}
		return nil
	})
}

// TestClusterCapacityOperations: CreateStream ON_DEMAND, UpdateStreamMode
// both ways with the two-switches-per-24h rule, warm throughput with and
// without the account's commitment, account settings set through one node
// and read through another, and the ON_DEMAND stream limit, each step
// through a different node, with single-node mode's errors.
func TestClusterCapacityOperations(t *testing.T) {
	clk := newFakeClock()
	c := capacityCluster(t, clk, func(cfg *Config) { cfg.OnDemandStreamLimit = 2 })
	ctx := context.Background()
	od := storage.CreateStreamInput{Name: "od", Mode: storage.ModeOnDemand, ShardCount: storage.OnDemandShards}
	warm := func(n int) *int { return &n }
	steps := []struct {
		name   string
		node   uint64
		call   func(n *Node) error
		kind   error
		reason storage.Reason
		check  func() // after a step that succeeded
	}{
		{"CreateStream ON_DEMAND makes 4 shards", 1, func(n *Node) error { return n.CreateStream(ctx, od) }, nil, "",
			func() { c.modeEverywhere("od", storage.ModeOnDemand, 0, 4) }},
		{"SplitShard of an ON_DEMAND stream", 2, func(n *Node) error {
			return n.SplitShard(ctx, "od", "shardId-000000000000", "1")
		}, storage.ErrValidation, storage.ReasonOnDemand, nil},
		{"warm throughput without the commitment", 3, func(n *Node) error {
			_, err := n.UpdateStreamWarmThroughput(ctx, "od", 6)
			return err
		}, storage.ErrInvalidArgument, storage.ReasonNoCommitment, nil},
		{"CreateStream with warm throughput without the commitment", 1, func(n *Node) error {
			return n.CreateStream(ctx, storage.CreateStreamInput{Name: "w", Mode: storage.ModeOnDemand, ShardCount: 4, WarmMiBps: warm(5)})
		}, storage.ErrInvalidArgument, storage.ReasonNoCommitment, nil},
		{"UpdateAccountSettings through node 2, read through node 3", 2, func(n *Node) error {
			set, err := n.UpdateAccountSettings(ctx, true)
			if err != nil {
				return err
			}
			got, err := c.node(3).AccountSettings(ctx)
			if err == nil && (got != set || got.Status != storage.CommitmentEnabled || !got.Started.Equal(clk.Now().Truncate(time.Millisecond))) {
				err = fmt.Errorf("node 3 reads %+v, node 2 set %+v", got, set)
			}
			return err
		}, nil, "", nil},
		{"warm throughput above the maximum", 3, func(n *Node) error {
			_, err := n.UpdateStreamWarmThroughput(ctx, "od", storage.MaxWarmMiBps+1)
			return err
		}, storage.ErrLimitExceeded, storage.ReasonWarmMax, nil},
		{"warm throughput 6 pre-scales to 6 shards", 3, func(n *Node) error {
			w, err := n.UpdateStreamWarmThroughput(ctx, "od", 6)
			if err == nil && w != (storage.WarmThroughput{TargetMiBps: 6, CurrentMiBps: 4}) {
				err = fmt.Errorf("answered %+v", w)
			}
			return err
		}, nil, "", func() { c.modeEverywhere("od", storage.ModeOnDemand, 6, 6) }},
		{"warm throughput of a PROVISIONED stream", 1, func(n *Node) error {
			if err := n.CreateStream(ctx, storage.CreateStreamInput{Name: "p", ShardCount: 1}); err != nil {
				return err
			}
			c.waitActive("p", 1, 2, 3)
			_, err := n.UpdateStreamWarmThroughput(ctx, "p", 6)
			return err
		}, storage.ErrInvalidArgument, storage.ReasonWarmProvisioned, nil},
		{"a second ON_DEMAND stream", 2, func(n *Node) error {
			return n.CreateStream(ctx, storage.CreateStreamInput{Name: "od2", Mode: storage.ModeOnDemand, ShardCount: 4})
		}, nil, "",
			func() { c.modeEverywhere("od2", storage.ModeOnDemand, 0, 4) }},
		{"a third ON_DEMAND stream: the account's limit", 3, func(n *Node) error {
			return n.CreateStream(ctx, storage.CreateStreamInput{Name: "od3", Mode: storage.ModeOnDemand, ShardCount: 4})
		},
			storage.ErrLimitExceeded, storage.ReasonOnDemandLimit, nil},
		{"UpdateStreamMode to ON_DEMAND beyond the limit", 1, func(n *Node) error { return n.UpdateStreamMode(ctx, "p", storage.ModeOnDemand, nil) },
			storage.ErrLimitExceeded, storage.ReasonOnDemandLimit, nil},
		{"UpdateStreamMode to PROVISIONED drops the warm target", 2, func(n *Node) error { return n.UpdateStreamMode(ctx, "od", storage.ModeProvisioned, nil) }, nil, "",
			func() { c.modeEverywhere("od", storage.ModeProvisioned, 0, 6) }},
		{"UpdateStreamMode to the mode it has", 3, func(n *Node) error { return n.UpdateStreamMode(ctx, "od", storage.ModeProvisioned, nil) },
			storage.ErrInvalidArgument, storage.ReasonSameMode, nil},
		{"UpdateStreamMode back to ON_DEMAND with warm throughput 8", 3, func(n *Node) error { return n.UpdateStreamMode(ctx, "od", storage.ModeOnDemand, warm(8)) }, nil, "",
			func() { c.modeEverywhere("od", storage.ModeOnDemand, 8, 8) }},
		{"a third switch within 24 hours", 1, func(n *Node) error { return n.UpdateStreamMode(ctx, "od", storage.ModeProvisioned, nil) },
			storage.ErrLimitExceeded, storage.ReasonModeSwitches, nil},
		{"24 hours later it may switch again", 2, func(n *Node) error {
			clk.Add(24 * time.Hour)
			return n.UpdateStreamMode(ctx, "od", storage.ModeProvisioned, nil)
		}, nil, "", func() { c.modeEverywhere("od", storage.ModeProvisioned, 0, 8) }},
		{"a missing stream", 3, func(n *Node) error { return n.UpdateStreamMode(ctx, "nope", storage.ModeOnDemand, nil) },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound, nil},
	}
	for _, st := range steps {
		err := st.call(c.node(st.node))
		if st.reason == "" && err != nil {
			t.Fatalf("%s (node %d): %v", st.name, st.node, err)
		}
		if err := capacityErr(err, st.kind, st.reason); err != nil {
			t.Fatalf("%s (node %d): %v", st.name, st.node, err)
		}
		if st.check != nil {
			st.check()
		}
	}
	if got := c.node(3).OnDemandStreamLimit(); got != 2 {
		t.Fatalf("OnDemandStreamLimit %d", got)
	}
}

// TestClusterOnDemandThrottle: an ON_DEMAND stream's shards take its
// capacity (at least 4 shards' worth, spread over its open shards) on
// their leaders: a one-shard stream switched to ON_DEMAND takes four times
// a PROVISIONED shard's records, whichever node the writes come through,
// and beyond that its leader throttles. The clock is frozen.
func TestClusterOnDemandThrottle(t *testing.T) {
	clk := newFakeClock()
	c := throttleCluster(t, clk, func(cfg *Config) { cfg.OnDemand.Interval = -1 })
	c.leaderRun("od", nil, func(stream string, r shardRoles) error {
		if err := admittedPrefix(stream, c.putSized(r.followers[0], stream, 1200, 100), 500); err != nil {
			return fmt.Errorf("PROVISIONED: %w", err)
		}
		if err := c.node(r.outsideOr()).UpdateStreamMode(context.Background(), stream, storage.ModeOnDemand, nil); err != nil {
			return err
		}
		eventually(c.t, "every node sees the mode", func() error {
			for id := range c.nodes {
				if rec, _, _ := c.node(id).stream(stream); rec.mode() != storage.ModeOnDemand {
					return fmt.Errorf("node %d: %s", id, rec.mode())
				}
			}
			return nil
		})
		// 4,000 records/s on the one shard: half a second's burst.
		if err := admittedPrefix(stream, c.putSized(r.followers[0], stream, 2500, 100), 2000); err != nil {
			return fmt.Errorf("ON_DEMAND through node %d: %w", r.followers[0], err)
		}
		if err := admittedPrefix(stream, c.putSized(r.leader, stream, 1, 100), 0); err != nil {
			return fmt.Errorf("ON_DEMAND through the leader: %w", err)
		}
		return nil
	})
}

// outsideOr is a node holding no replica of the shard, or a follower.
func (r shardRoles) outsideOr() uint64 {
	if len(r.outside) > 0 {
		return r.outside[0]
	}
	return r.followers[len(r.followers)-1]
}

// keysIn returns count partition keys (prefixed) that hash into rng.
func keysIn(rng hashkey.Range, prefix string, count int) []string {
	var out []string
	for i := 0; len(out) < count; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if rng.Contains(hashkey.FromPartitionKey(k)) {
			out = append(out, k)
		}
	}
	return out
}

// putKeys puts one record per key through node id in PutRecords-sized
// calls and records what was acknowledged.
func (c *testCluster) putKeys(id uint64, stream string, keys []string, got acked) {
	c.t.Helper()
	for len(keys) > 0 {
		batch := keys[:min(500, len(keys))]
		keys = keys[len(batch):]
		var entries []storage.PutEntry
		for _, k := range batch {
			entries = append(entries, storage.PutEntry{PartitionKey: k, Data: []byte("d" + k)})
		}
		res, err := c.node(id).Put(context.Background(), stream, entries)
		if err != nil {
			c.t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil {
				c.t.Fatalf("record %d through node %d: %v", i, id, r.Err)
			}
			got[r.SequenceNumber] = entries[i].PartitionKey + "=" + string(entries[i].Data)
		}
	}
}

// slowWriter is a writer (members_test.go) that puts 5 records through
// each node in turn every 20 ms of real time: with the scaler's clock
// moved 10 s a pass, far below any shard's split rate however slow the
// machine, yet writing the whole time the stream is UPDATING.
func (c *testCluster) slowWriter(stream string) *writer {
	w := &writer{acked: acked{}, failed: map[string]bool{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	w.through(c, 1, 2, 3)
	go func() {
		defer close(w.stopped)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			w.put(c.t, w.nodes[i%3], stream, i, 5)
		}
	}()
	return w
}

// TestClusterOnDemandSplit: a shard of an ON_DEMAND stream written at
// 900 records/s (over 0.8 of one shard's 1,000) for a whole window is split
// at its middle by the metadata leader's scaler; the stream's daily peak is
// in its record on every node; with a writer putting through every node
// before, during and after the split, every acknowledged record is read
// once, in order, through the lineage, on every node.
func TestClusterOnDemandSplit(t *testing.T) {
	clk := newFakeClock()
	const window = 10 * time.Second
	c := capacityCluster(t, clk, func(cfg *Config) {
		cfg.OnDemand.Window, cfg.OnDemand.MergeAfter = window, time.Hour
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "hot", Mode: storage.ModeOnDemand, ShardCount: 4}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("hot", 1, 2, 3)
	first := hashkey.Split(4)[0]
	hot := acked{}
	w := c.slowWriter("hot")
	w.waitRounds(t, 3)
	c.scalePass() // the base readings
	for round := 0; ; round++ {
		// 9,000 records over a window: 900 records/s. A leader change
		// restarts its readings, so the pass is repeated until it splits.
		c.putKeys(2, "hot", keysIn(first, fmt.Sprintf("hot%d", round), 9000), hot)
		clk.Add(window)
		c.scalePass()
		rec, _, _ := c.node(1).stream("hot")
		if rec.Reshard != nil || len(rec.Shards) > 4 {
			break
		}
		if round == 4 {
			t.Fatal("no split after 5 hot windows")
		}
	}
	c.waitActive("hot", 1, 2, 3)
	w.waitRounds(t, 3)
	got, failed := w.halt()
	maps.Copy(got, hot)
	info, err := c.sameEverywhere("hot", 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	split := hashkey.Split(8)
	want := []hashkey.Range{split[0], split[1], hashkey.Split(4)[1], hashkey.Split(4)[2], hashkey.Split(4)[3]}
	open := openRanges(info)
	slices.SortFunc(open, func(a, b hashkey.Range) int { return a.Start.Cmp(b.Start) })
	if fmt.Sprint(open) != fmt.Sprint(want) {
		t.Fatalf("open ranges %v, want shard 0 split at its middle: %v", open, want)
	}
	for id := range c.nodes {
		rec, _, _ := c.node(id).stream("hot")
		if len(rec.WritePeaks) != 1 || rec.WritePeaks[0].Records < 900 {
			t.Fatalf("node %d: peaks %+v, want today's at 900 records/s or more", id, rec.WritePeaks)
		}
	}
	t.Logf("%d records acknowledged, %d failed", len(got), len(failed))
	for id := range c.nodes {
		read, err := c.readLineage(id, "hot")
		if err == nil {
			err = checkRead(got, failed, read)
		}
		if err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
	}
}

// TestClusterOnDemandMerge: an idle ON_DEMAND stream of 8 shards (a
// PROVISIONED one switched) has its adjacent pairs merged once they have
// been cold, measured over whole windows, for MergeAfter, never before,
// and never below 4 open shards.
func TestClusterOnDemandMerge(t *testing.T) {
	clk := newFakeClock()
	const window, after = 10 * time.Second, 30 * time.Second
	c := capacityCluster(t, clk, func(cfg *Config) {
		cfg.OnDemand.Window, cfg.OnDemand.MergeAfter = window, after
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "idle", ShardCount: 8}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("idle", 1, 2, 3)
	if err := c.node(2).UpdateStreamMode(ctx, "idle", storage.ModeOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	for pass := 0; ; pass++ {
		c.scalePass()
		if rec, _, _ := c.node(1).stream("idle"); rec.Reshard != nil || len(rec.Shards) > 8 {
			// The first pass to see whole idle windows starts the period.
			if since := clk.Now().Sub(start); since < window+after {
				t.Fatalf("merged %v after the first reading, before a window and MergeAfter (%v)", since, window+after)
			}
			break
		}
		if pass == 30 {
			t.Fatal("no merge after 30 idle passes")
		}
		clk.Add(window)
	}
	c.modeEverywhere("idle", storage.ModeOnDemand, 0, 4)
	// At the floor: no more merges however long it stays idle.
	for range 6 {
		clk.Add(window)
		c.scalePass()
	}
	if info, err := c.node(3).DescribeStream(ctx, "idle"); err != nil || info.OpenShardCount() != 4 || info.Status != storage.StatusActive {
		t.Fatalf("after more idle passes: %v, %d open, %s", err, info.OpenShardCount(), info.Status)
	}
}

// TestShardLimits: each shard's limits on its leader follow single-node
// mode's rule from the stream's record alone: a PROVISIONED shard's rates;
// an ON_DEMAND stream's capacity (twice its 30-day peak, at least 4 shards'
// worth, the warm target as a floor) spread over its open shards, never
// below one shard's rates.
func TestShardLimits(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n := &Node{cfg: Config{Now: func() time.Time { return now }}.withDefaults()}
	day := now.Unix() / 86400
	shards := func(open, closed int) (out []replica.MetaShard) {
		for i := range open + closed {
			sh := replica.MetaShard{ID: datadir.ShardID(uint32(i)), Group: uint64(i + 2)}
			if i >= open {
				sh.ClosedMs = 1
			}
			out = append(out, sh)
		}
		return out
	}
	tests := []struct {
		name          string
		rec           streamRec
		bytes, record float64 // per second, per shard
	}{
		{"PROVISIONED: one shard's rates", streamRec{MetaStream: replica.MetaStream{Shards: shards(1, 0)}}, 1 << 20, 1000},
		{"ON_DEMAND, one open shard: 4 shards' worth", streamRec{MetaStream: replica.MetaStream{Shards: shards(1, 2)}, Mode: storage.ModeOnDemand}, 4 << 20, 4000},
		{"ON_DEMAND, 4 open shards: one shard's each", streamRec{MetaStream: replica.MetaStream{Shards: shards(4, 0)}, Mode: storage.ModeOnDemand}, 1 << 20, 1000},
		{"ON_DEMAND, 8 open shards: never below one shard's", streamRec{MetaStream: replica.MetaStream{Shards: shards(8, 0)}, Mode: storage.ModeOnDemand}, 1 << 20, 1000},
		{"ON_DEMAND, warm 8 over 2 shards", streamRec{MetaStream: replica.MetaStream{Shards: shards(2, 0)}, Mode: storage.ModeOnDemand, WarmMiBps: 8}, 4 << 20, 4000},
		{"ON_DEMAND, twice a peak of 3 MiB/s and 6,000 records/s over 2 shards",
			streamRec{MetaStream: replica.MetaStream{Shards: shards(2, 0)}, Mode: storage.ModeOnDemand,
				WritePeaks: []datadir.PeakRecord{{Day: day - 3, Bytes: 3 << 20, Records: 6000}, {Day: day, Bytes: 1, Records: 1}}}, 3 << 20, 6000},
		{"ON_DEMAND, a peak older than 30 days is forgotten",
			streamRec{MetaStream: replica.MetaStream{Shards: shards(2, 0)}, Mode: storage.ModeOnDemand,
				WritePeaks: []datadir.PeakRecord{{Day: day - 30, Bytes: 30 << 20, Records: 60000}}}, 2 << 20, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := n.shardLimits(tt.rec)
			if l.WriteBytes != tt.bytes || l.WriteRecords != tt.record {
				t.Fatalf("write limits %v B/s, %v records/s; want %v, %v", l.WriteBytes, l.WriteRecords, tt.bytes, tt.record)
			}
		})
	}
}

// TestOnDemandLimitConcurrent: concurrent UpdateStreamMode calls to
// ON_DEMAND through different nodes, each on its own stream, never pass the
// account's ON_DEMAND stream limit together (each transaction is
// conditional on keyOnDemand's version, not only on its stream's).
func TestOnDemandLimitConcurrent(t *testing.T) {
	c := capacityCluster(t, newFakeClock(), func(cfg *Config) { cfg.OnDemandStreamLimit = 2 })
	ctx := context.Background()
	errs := make([]error, 4)
	for i := range errs {
		if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: fmt.Sprint("s", i), ShardCount: 1}); err != nil {
			t.Fatal(err)
		}
		c.waitActive(fmt.Sprint("s", i), 1, 2, 3)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			errs[i] = c.node(uint64(i%3+1)).UpdateStreamMode(ctx, fmt.Sprint("s", i), storage.ModeOnDemand, nil)
		})
	}
	close(start)
	wg.Wait()
	switched := 0
	for i, err := range errs {
		if err == nil {
			switched++
			continue
		}
		if err := capacityErr(err, storage.ErrLimitExceeded, storage.ReasonOnDemandLimit); err != nil {
			t.Fatalf("UpdateStreamMode s%d: %v", i, err)
		}
	}
	if switched != 2 || c.node(1).onDemandCount() != 2 {
		t.Fatalf("%d switched (%d in the metadata), want the limit, 2: %v", switched, c.node(1).onDemandCount(), errs)
	}
}

// TestCapacityUpdating: with an update delay, UpdateStreamMode leaves the
// stream UPDATING on every node (a second call is refused as single-node
// mode refuses it) until the metadata leader ends it by its clock.
func TestCapacityUpdating(t *testing.T) {
	clk := newFakeClock()
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.now, c.update = clk.Now, time.Hour
		c.tune = func(cfg *Config) { cfg.OnDemand.Interval = -1 }
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "u", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("u", 1, 2, 3)
	if err := c.node(2).UpdateStreamMode(ctx, "u", storage.ModeOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	for id := range c.nodes {
		info, err := c.node(id).DescribeStream(ctx, "u")
		if err != nil || info.Status != storage.StatusUpdating || info.Mode != storage.ModeOnDemand {
			t.Fatalf("node %d: %v, %s %s; want UPDATING ON_DEMAND", id, err, info.Status, info.Mode)
		}
	}
	err := c.node(3).UpdateStreamMode(ctx, "u", storage.ModeProvisioned, nil)
	if err := capacityErr(err, storage.ErrResourceInUse, storage.ReasonNotActive); err != nil {
		t.Fatalf("a switch while UPDATING: %v", err)
	}
	clk.Add(time.Hour)
	c.modeEverywhere("u", storage.ModeOnDemand, 0, 2)
}
