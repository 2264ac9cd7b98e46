package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// TestReview4StatsShardLevel: Stats, which every /metrics scrape applies to
// the shard-level series, reports a stream's enabled metrics and every one
// of its shards on every node, also on a node without a replica of some of
// them (one replica per shard here): without them a scrape drops the series
// of a node that serves puts and reads for those shards.
func TestReview4StatsShardLevel(t *testing.T) {
	c := newTestClusterWith(t, 3, func(c *testCluster) { c.tune = func(cfg *Config) { cfg.Replicas = 1 } })
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 3}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).SetShardLevelMetrics(ctx, "s", []string{"IncomingBytes"}, true); err != nil {
		t.Fatal(err)
	}
	shards := []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002"}
	check := func(id uint64) error {
		for _, s := range c.node(id).Stats().Streams {
			if s.Name != "s" {
				continue
			}
			var ids []string
			for _, sh := range s.Shards {
				ids = append(ids, sh.ID)
			}
			if !reflect.DeepEqual(s.ShardLevelMetrics, []string{"IncomingBytes"}) || !reflect.DeepEqual(ids, shards) {
				return fmt.Errorf("node %d: metrics %v, shards %v", id, s.ShardLevelMetrics, ids)
			}
			return nil
		}
		return fmt.Errorf("node %d: no stream s", id)
	}
	if err := check(1); err != nil { // the node that took the change: at once
		t.Fatal(err)
	}
	for id := uint64(2); id <= 3; id++ {
		eventually(t, "Stats on another node", func() error { return check(id) })
	}
}

// TestReview4PolicyReadYourWrites: a policy set through a metadata follower
// is read back through it at once (ResourcePolicy reads the applied state
// without a ReadIndex round), every time.
func TestReview4PolicyReadYourWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	target := storage.PolicyTarget{Stream: "s", ConsumerSecs: -1}
	for i := range 50 {
		follower := c.node(1).host.Status(metaGroup).Leader%3 + 1
		want := fmt.Sprint("policy ", i)
		if err := c.node(follower).SetResourcePolicy(ctx, target, want); err != nil {
			t.Fatal(err)
		}
		if got, err := c.node(follower).ResourcePolicy(ctx, target); err != nil || got != want {
			t.Fatalf("iteration %d: node %d reads %q, %v after setting %q", i, follower, got, err, want)
		}
	}
}

// TestReview4UpdateEndsPastBlackHoledPeer: a peer whose API accepts
// connections and never answers makes the metadata leader's activateStreams
// wait out its budget every round (a CREATING stream with shards there).
// The end of another stream's UPDATING, due by the clock, is still made
// within a budget of its own: its transaction is answered, not given up on
// (when the budget was the round's, the proposal went out with the
// deadline passed and came back indeterminate, logged, every round).
func TestReview4UpdateEndsPastBlackHoledPeer(t *testing.T) {
	clock := &settingsClock{}
	logs := &lockedLog{}
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.now, c.update = clock.now, time.Hour
		c.tune = func(cfg *Config) {
			cfg.Replicas = 1
			cfg.ElectionTicks = 100 // a 2 s budget per step: a loaded machine still commits within it
			cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
		}
	})
	ctx := context.Background()
	leader := c.node(1).host.Status(metaGroup).Leader
	if err := c.node(leader).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", leader)
	hole := leader%3 + 1
	c.blackHoleAPI(hole)
	if err := c.node(leader).CreateStream(ctx, storage.CreateStreamInput{Name: "b", ShardCount: 6}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.node(leader).SetShardLevelMetrics(ctx, "s", []string{"IncomingBytes"}, true); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour)
	c.waitActive("s", leader)
	if info, err := c.node(leader).DescribeStream(ctx, "b"); err != nil || info.Status != storage.StatusCreating {
		t.Fatalf("stream b: %v, %v; the test needs it CREATING behind the black-holed node %d", info.Status, err, hole)
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "ending an update") {
			t.Fatalf("the update's end failed behind a black-holed peer: %s", line)
		}
	}
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// blackHoleAPI replaces node id's client API by one that takes requests
// and never answers them (until the node stops); its Raft port still works.
func (c *testCluster) blackHoleAPI(id uint64) {
	tn := c.nodes[id]
	tn.srv.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })}
	go srv.Serve(listen(c.t, tn.apiAddr))
	tn.srv = srv
}

// TestReview4DroppedProposalRefunded: a shard's entries admitted by a node
// whose proposal then fails definitely (it does not lead the group: what
// onLeader retries, here when it leads again or on the leader) give their
// charge back, so the retry is not charged twice. The clock is frozen: no
// refill hides a double charge. A full burst (500 records) is admitted,
// not stored, and admitted again in full.
func TestReview4DroppedProposalRefunded(t *testing.T) {
	c := throttleCluster(t, newFakeClock(), nil)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "r", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("r", 1, 2, 3)
	roles := c.rolesOf("r")
	f := c.node(roles.followers[0])
	rec := f.recordFor("r")
	entries := make([]entry, 500)
	for i := range entries {
		entries[i] = entry{key: fmt.Sprint("k", i), data: []byte("x")}
	}
	if _, err := f.proposeAdmitted(ctx, roles.group, rec, entries); !errors.Is(err, replica.ErrNotLeader) {
		t.Fatalf("a follower's proposal: %v, want ErrNotLeader", err)
	}
	if refused := f.admitWrites(roles.group, rec, entries); refused != nil {
		t.Fatalf("%d of 500 records refused after a proposal that stored none", countTrue(refused))
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// TestReview4ReadChargedForReturnedOnly: a GetRecords page is charged to
// the shard's read-byte bucket (which holds no credit: any charge closes it
// until the clock refills it, and the clock is frozen) for the records it
// returns. A page of expired records returns none and charges nothing, so
// the next read is admitted; a page of live ones closes the bucket.
func TestReview4ReadChargedForReturnedOnly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		age       time.Duration // the clock's advance after the put
		returned  int
		throttled bool // the next read
	}{
		{"live records are charged", 0, 10, true},
		{"expired records are not", 25 * time.Hour, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			c := throttleCluster(t, clk, func(cfg *Config) { cfg.RetentionEvery = 1000 * time.Hour })
			ctx := context.Background()
			if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "e", ShardCount: 1}); err != nil {
				t.Fatal(err)
			}
			c.waitActive("e", 1, 2, 3)
			if failed, err := c.put(1, "e", 0, 10, acked{}); err != nil || failed > 0 {
				t.Fatalf("put: %d failed, %v", failed, err)
			}
			clk.Add(tc.age)
			rec, _, _ := c.node(1).stream("e")
			pos := storage.Position{Stream: "e", StreamCreated: rec.CreatedNs}
			res, err := c.node(1).Read(ctx, pos, 100, 1<<20)
			if err != nil || len(res.Records) != tc.returned {
				t.Fatalf("first read: %d records, %v; want %d", len(res.Records), err, tc.returned)
			}
			_, err = c.node(1).Read(ctx, *res.Next, 100, 1<<20)
			if got := errors.Is(err, storage.ErrThrottled); got != tc.throttled || (err != nil && !got) {
				t.Fatalf("next read: %v, want throttled %v", err, tc.throttled)
			}
		})
	}
}
