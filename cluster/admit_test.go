package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// newFakeClock is every node's Config.Now in the throttling tests: frozen,
// so a bucket refills only when the test advances it.
func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// throttleCluster is three nodes sharing clk, throttling as tune says.
func throttleCluster(t *testing.T, clk *fakeClock, tune func(*Config)) *testCluster {
	return newTestClusterWith(t, 3, func(c *testCluster) {
		c.now = clk.Now
		c.tune = func(cfg *Config) {
			cfg.Throttle = true
			// A longer election timeout than the other tests': a leader
			// change resets the shard's write bucket (see leaderRun).
			cfg.ElectionTicks = 60
			if tune != nil {
				tune(cfg)
			}
		}
	})
}

// shardRoles is one shard's group, its leader and its term, and the other
// nodes: the replicas that follow, and those holding no replica.
type shardRoles struct {
	group, leader, term uint64
	followers, outside  []uint64
}

func (c *testCluster) rolesOf(stream string) shardRoles {
	var r shardRoles
	eventually(c.t, "shard 0 of "+stream+" has a leader", func() error {
		r = shardRoles{group: c.node(1).Status().Shards[stream+"/shardId-000000000000"]}
		for id := uint64(1); id <= uint64(len(c.nodes)); id++ {
			if st := c.node(id).host.Status(r.group); c.node(id).servesReads(r.group) && st.Leader != 0 {
				r.leader = st.Leader
			}
		}
		if r.group == 0 || r.leader == 0 {
			return errors.New("none yet")
		}
		r.term = c.node(r.leader).host.Status(r.group).Term
		for id := uint64(1); id <= uint64(len(c.nodes)); id++ {
			switch {
			case id == r.leader:
			case c.node(id).servesReads(r.group):
				r.followers = append(r.followers, id)
			default:
				r.outside = append(r.outside, id)
			}
		}
		return nil
	})
	return r
}

// leaderRun runs a scenario on a fresh one-shard stream until one run
// keeps the same leader throughout. A leader change starts the new leader
// with a full bucket (as documented), so a run that saw one proves
// nothing either way; one that did not must pass.
func (c *testCluster) leaderRun(prefix string, tags map[string]string, run func(stream string, r shardRoles) error) {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		stream := fmt.Sprintf("%s-%d", prefix, attempt)
		if err := c.node(1).CreateStream(context.Background(), storage.CreateStreamInput{Name: stream, ShardCount: 1, Tags: tags}); err != nil {
			c.t.Fatal(err)
		}
		c.waitActive(stream, 1, 2, 3)
		r := c.rolesOf(stream)
		err := run(stream, r)
		if st := c.node(r.leader).host.Status(r.group); st.Leader == r.leader && st.Term == r.term {
			if err != nil {
				c.t.Fatal(err)
			}
			return
		}
		if attempt == 4 {
			c.t.Fatalf("shard 0's leader changed during each of 5 runs; last run: %v", err)
		}
	}
}

// putSized puts count records of size bytes (data + partition key) in
// PutRecords-sized requests through node id.
func (c *testCluster) putSized(id uint64, stream string, count, size int) []storage.PutResult {
	var out []storage.PutResult
	for len(out) < count {
		var entries []storage.PutEntry
		for i := len(out); i < min(count, len(out)+500); i++ {
			key := fmt.Sprintf("k%05d", i)
			entries = append(entries, storage.PutEntry{PartitionKey: key, Data: make([]byte, size-len(key))})
		}
		res, err := c.node(id).Put(context.Background(), stream, entries)
		if err != nil {
			c.t.Fatalf("put through node %d: %v", id, err)
		}
		out = append(out, res...)
	}
	return out
}

// admittedPrefix checks that the first want results were stored and the
// rest throttled with single-node mode's error.
func admittedPrefix(stream string, res []storage.PutResult, want int) error {
	for i, r := range res {
		if i < want {
			if r.Err != nil || r.SequenceNumber == "" {
				return fmt.Errorf("record %d of %d not stored: %v (want the first %d stored)", i, len(res), r.Err, want)
			}
			continue
		}
		if err := isThrottled(r.Err, stream); err != nil {
			return fmt.Errorf("record %d of %d (want the first %d stored, the rest throttled): %w", i, len(res), want, err)
		}
	}
	return nil
}

func isThrottled(err error, stream string) error {
	var se *storage.Error
	if !errors.As(err, &se) || !errors.Is(err, storage.ErrThrottled) || se.Reason != storage.ReasonThrottled ||
		se.Stream != stream || se.Shard != "shardId-000000000000" || se.Account != "123456789012" {
		return fmt.Errorf("got %v (%+v), want a throttled error of %s/shardId-000000000000", err, se, stream)
	}
	return nil
}

// TestClusterWriteThrottle: a put through a node that does not lead the
// shard is admitted by the leader's bucket, record by record; the limit is
// the shard's (the leader itself then refuses too), the rates are single-
// node mode's, scaled by Config.ThrottleMultiplier and the stream's
// multiplier tag, and Config.Throttle false admits everything. The clock is
// frozen: buckets refill only when the test advances it.
func TestClusterWriteThrottle(t *testing.T) {
	mult2 := func(c *Config) { c.ThrottleMultiplier = 2 }
	off := func(c *Config) { c.Throttle = false }
	tests := []struct {
		name      string
		config    string // which cluster: "", "x2" or "off"
		tags      map[string]string
		size      int // bytes per record (data + key)
		offered   int
		admitted  int
		refillFor time.Duration // then this much later, this many more are admitted
		refilled  int
	}{
		{"1,000 records/s: an idle shard takes half a second's records", "", nil, 100, 1200, 500, 100 * time.Millisecond, 100},
		// 5 records of 100 KiB leave 12 KiB of the 512 KiB; the 6th is
		// taken and overdraws them by 88 KiB; 100 ms repay 100 KiB.
		{"1 MiB/s: half a second's bytes, then one record that overdraws them", "", nil, 100 << 10, 10, 6, 100 * time.Millisecond, 1},
		{"the stream's multiplier tag scales the rates", "", map[string]string{storage.MultiplierTag: "4"}, 100, 2500, 2000, 10 * time.Millisecond, 40},
		{"Config.ThrottleMultiplier scales them", "x2", nil, 100, 1200, 1000, 10 * time.Millisecond, 20},
		{"the multiplier tag and Config.ThrottleMultiplier multiply", "x2", map[string]string{storage.MultiplierTag: "0.5"}, 100, 600, 500, 0, 0},
		{"Config.Throttle false admits everything", "off", nil, 100, 1200, 1200, 0, 0},
	}
	clk := newFakeClock()
	tunes := map[string]func(*Config){"": nil, "x2": mult2, "off": off}
	var c *testCluster
	config := "none"
	for i, tt := range tests {
		if tt.config != config { // the cases are in runs of one configuration
			if c != nil {
				for id := range c.nodes {
					c.stop(id)
				}
			}
			c, config = throttleCluster(t, clk, tunes[tt.config]), tt.config
		}
		top := c.t
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			defer func() { c.t = top }()
			c.leaderRun(fmt.Sprintf("w%d", i), tt.tags, func(stream string, r shardRoles) error {
				// Through a node that does not lead the shard: forwarded.
				res := c.putSized(r.followers[0], stream, tt.offered, tt.size)
				if err := admittedPrefix(stream, res, tt.admitted); err != nil {
					return fmt.Errorf("through node %d (leader %d): %w", r.followers[0], r.leader, err)
				}
				if tt.admitted == tt.offered {
					return nil
				}
				// The bucket is the shard's: its leader refuses as well.
				if err := admittedPrefix(stream, c.putSized(r.leader, stream, 1, tt.size), 0); err != nil {
					return fmt.Errorf("through the leader: %w", err)
				}
				if tt.refillFor == 0 {
					return nil
				}
				clk.Add(tt.refillFor)
				other := r.followers[len(r.followers)-1]
				if err := admittedPrefix(stream, c.putSized(other, stream, tt.refilled+1, tt.size), tt.refilled); err != nil {
					return fmt.Errorf("%v later, through node %d: %w", tt.refillFor, other, err)
				}
				return nil
			})
		})
	}
}

// TestClusterReadThrottle: GetRecords and GetShardIterator are admitted by
// the node that serves them: each replica has the shard's read budget (5
// calls/s; bytes charged after the read), and a node holding no replica
// forwards the read to one, which refuses it once its budget is spent.
func TestClusterReadThrottle(t *testing.T) {
	clk := newFakeClock()
	c := throttleCluster(t, clk, func(cfg *Config) { cfg.Replicas = 2 })
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "r", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("r", 1, 2, 3)
	r := c.rolesOf("r")
	if len(r.followers) != 1 || len(r.outside) != 1 {
		t.Fatalf("roles %+v, want one follower and one node without a replica", r)
	}
	const shard = "shardId-000000000000"
	iterator := func(id uint64) (storage.Position, error) {
		return c.node(id).Position(ctx, "r", shard, storage.TrimHorizon, "", time.Time{})
	}
	read := func(id uint64, pos storage.Position) error {
		_, err := c.node(id).Read(ctx, pos, 100, 1<<20)
		return err
	}
	pos := map[uint64]storage.Position{}
	t.Run("GetShardIterator: 5 calls per node", func(t *testing.T) {
		for _, id := range []uint64{r.leader, r.followers[0], r.outside[0]} {
			for call := range 6 {
				p, err := iterator(id)
				if call < 5 && err != nil {
					t.Fatalf("node %d, call %d: %v", id, call, err)
				}
				if call == 5 {
					if err := isThrottled(err, "r"); err != nil {
						t.Fatalf("node %d, call 6: %v", id, err)
					}
				}
				if err == nil {
					pos[id] = p
				}
			}
		}
	})
	t.Run("GetRecords: 5 calls per serving node, forwarded reads refused by the replica", func(t *testing.T) {
		for _, id := range []uint64{r.leader, r.followers[0]} {
			for call := range 6 {
				err := read(id, pos[id])
				if call < 5 && err != nil {
					t.Fatalf("node %d, call %d: %v", id, call, err)
				}
				if call == 5 {
					if err := isThrottled(err, "r"); err != nil {
						t.Fatalf("node %d, call 6: %v", id, err)
					}
				}
			}
		}
		// Both replicas' budgets are spent: whichever serves it refuses.
		if err := isThrottled(read(r.outside[0], pos[r.outside[0]]), "r"); err != nil {
			t.Fatalf("forwarded read: %v", err)
		}
		clk.Add(time.Second)
		if err := read(r.outside[0], pos[r.outside[0]]); err != nil {
			t.Fatalf("forwarded read a second later: %v", err)
		}
	})
	t.Run("GetRecords: bytes are charged after the read, by the serving node", func(t *testing.T) {
		clk.Add(time.Second)
		if err := admittedPrefix("r", c.putSized(r.leader, "r", 10, 1000), 10); err != nil {
			t.Fatalf("put: %v", err)
		}
		// The read-byte bucket holds no credit: the 10 KB a read returns
		// leave it overdrawn until 10 KB / 2 MiB/s (under 5 ms) have passed.
		// The node without a replica reads on one replica, which is charged:
		// then of the two replicas exactly that one refuses a read.
		replicas := []uint64{r.leader, r.followers[0]}
		var refused []uint64
		for _, id := range append([]uint64{r.outside[0]}, replicas...) {
			res, err := c.node(id).Read(ctx, pos[id], 100, 1<<20)
			switch {
			case id != r.outside[0] && isThrottled(err, "r") == nil:
				refused = append(refused, id)
			case err != nil || len(res.Records) != 10:
				t.Fatalf("node %d: read %d records, %v; want 10", id, len(res.Records), err)
			}
		}
		if len(refused) != 1 {
			t.Fatalf("replicas %v refused a read after the forwarded one, want exactly one", refused)
		}
		for _, id := range replicas {
			if err := isThrottled(read(id, pos[id]), "r"); err != nil {
				t.Fatalf("node %d, read after 10 KB: %v", id, err)
			}
		}
		clk.Add(10 * time.Millisecond)
		for _, id := range replicas {
			if err := read(id, pos[id]); err != nil {
				t.Fatalf("node %d, read 10 ms later: %v", id, err)
			}
		}
	})
	t.Run("Stats: every shard, with segments where this node holds a replica", func(t *testing.T) {
		for id := uint64(1); id <= 3; id++ {
			st := c.node(id).Stats()
			if len(st.Streams) != 1 || st.Streams[0].Name != "r" || st.Streams[0].Status != storage.StatusActive ||
				!st.NoSegmentBytes || !st.NoRecoveryScan || st.Recovery.Duration <= 0 {
				t.Fatalf("node %d: %+v", id, st)
			}
			shards := st.Streams[0].Shards
			if id == r.outside[0] { // listed for its shard-level series (stats.go), with no segments here
				if len(shards) != 1 || shards[0] != (storage.ShardStats{ID: shard}) {
					t.Fatalf("node %d holds no replica but reports %+v", id, shards)
				}
				continue
			}
			if len(shards) != 1 || shards[0].ID != shard || shards[0].Segments < 1 || shards[0].Poisoned || shards[0].Corrupt {
				t.Fatalf("node %d reports %+v", id, shards)
			}
		}
	})
	t.Run("a deleted stream's controllers are forgotten", func(t *testing.T) {
		if err := c.node(1).DeleteStreamWith(ctx, "r", storage.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for id := uint64(1); id <= 3; id++ {
			eventually(t, fmt.Sprintf("node %d forgets shard 0's controller", id), func() error {
				c.node(id).sweepLimiters()
				if _, ok := c.node(id).limiters.Load(r.group); ok {
					return errors.New("still held")
				}
				return nil
			})
		}
	})
}

// TestPutReplyThrottled: a leader's answer to a forwarded put names the
// throttled entries and the ordinals of the others; a malformed answer is
// refused.
func TestPutReplyThrottled(t *testing.T) {
	tests := []struct {
		name  string
		res   admittedWrite
		reply putReply
	}{
		{"all stored", admittedWrite{ords: []uint64{7, 8}, arrival: 5}, putReply{Ordinals: []uint64{7, 8}, ArrivalMs: 5}},
		{"some throttled", admittedWrite{ords: []uint64{7, 0, 8}, refused: []bool{false, true, false}, arrival: 5},
			putReply{Ordinals: []uint64{7, 8}, ArrivalMs: 5, Throttled: []int{1}}},
		{"all throttled", admittedWrite{ords: []uint64{0, 0}, refused: []bool{true, true}}, putReply{Throttled: []int{0, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replyOf(tt.res); !reflect.DeepEqual(got, tt.reply) {
				t.Fatalf("replyOf = %+v, want %+v", got, tt.reply)
			}
			back, err := admittedOf(tt.reply, len(tt.res.ords))
			if err != nil || !reflect.DeepEqual(back, tt.res) {
				t.Fatalf("admittedOf = %+v, %v; want %+v", back, err, tt.res)
			}
		})
	}
	for _, bad := range []putReply{{Ordinals: []uint64{1}}, {Throttled: []int{0, 0}}, {Ordinals: []uint64{1}, Throttled: []int{2}}} {
		if _, err := admittedOf(bad, 2); err == nil || !strings.Contains(err.Error(), "leader answered") {
			t.Fatalf("admittedOf(%+v, 2) = %v, want a refusal", bad, err)
		}
	}
}
