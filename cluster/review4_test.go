package cluster

import (
	"context"
	"fmt"
	"reflect"
	"testing"

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
