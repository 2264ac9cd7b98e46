package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/shardlog/shardlog/storage"
)

// TestAutoDistribution: AUTO record distribution in cluster mode spreads a
// receiving node's records over the open shards in turn whatever their
// keys, every node describes it, SequenceNumberForOrdering is refused, and
// USER_PARTITION_KEY, or a switch to PROVISIONED, routes by key again.
func TestAutoDistribution(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	in := storage.CreateStreamInput{Name: "a", Mode: storage.ModeOnDemand, ShardCount: storage.OnDemandShards, Distribution: storage.DistributionAuto}
	if err := c.node(1).CreateStream(ctx, in); err != nil {
		t.Fatal(err)
	}
	c.waitActive("a", 1, 2, 3)
	for id := uint64(1); id <= 3; id++ {
		if info, err := c.node(id).DescribeStream(ctx, "a"); err != nil || info.Distribution != storage.DistributionAuto {
			t.Fatalf("node %d describes %q, %v", id, info.Distribution, err)
		}
	}
	spread := func(via uint64, n int) map[string]int {
		t.Helper()
		entries := make([]storage.PutEntry, n)
		for i := range entries {
			entries[i] = storage.PutEntry{PartitionKey: "same", Data: []byte(fmt.Sprint(i))}
		}
		res, err := c.node(via).Put(ctx, "a", entries)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("put through node %d: %v", via, r.Err)
			}
			got[r.ShardID]++
		}
		return got
	}
	for via := uint64(1); via <= 3; via++ {
		got := spread(via, 4*storage.OnDemandShards)
		if len(got) != storage.OnDemandShards {
			t.Fatalf("AUTO through node %d: one key's records went to %v, want all %d shards", via, got, storage.OnDemandShards)
		}
		for id, k := range got {
			if k != 4 {
				t.Fatalf("AUTO through node %d: %s took %d of 16 records, want 4 (%v)", via, id, k, got)
			}
		}
	}
	_, err := c.node(2).Put(ctx, "a", []storage.PutEntry{{PartitionKey: "k", Data: []byte("x"), SequenceNumberForOrdering: "1"}})
	var se *storage.Error
	if !errors.As(err, &se) || se.Reason != storage.ReasonOrderingAuto {
		t.Fatalf("ordering on an AUTO stream: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func() error
	}{
		{"USER_PARTITION_KEY", func() error { return c.node(3).SetRecordDistribution(ctx, "a", storage.DistributionUserKey) }},
		{"PROVISIONED", func() error {
			if err := c.node(1).SetRecordDistribution(ctx, "a", storage.DistributionAuto); err != nil {
				return err
			}
			return c.node(2).UpdateStreamMode(ctx, "a", storage.ModeProvisioned, nil)
		}},
	} {
		if err := tc.change(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c.waitActive("a", 1, 2, 3)
		for via := uint64(1); via <= 3; via++ {
			if got := spread(via, 8); len(got) != 1 {
				t.Fatalf("after %s, one key's records through node %d went to %v, want one shard", tc.name, via, got)
			}
			if info, _ := c.node(via).DescribeStream(ctx, "a"); info.Distribution != storage.DistributionUserKey {
				t.Fatalf("after %s node %d describes %q", tc.name, via, info.Distribution)
			}
		}
	}
}
