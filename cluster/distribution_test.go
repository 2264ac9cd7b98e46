package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api"
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

// TestAutoDistributionKeylessThroughAPI: through the api over a cluster node,
// a put without partition keys to an AUTO stream is taken (the api asks the
// node's applied metadata, api.DistributionSource, no Raft round), and to a
// USER_PARTITION_KEY stream it is the captured validation error.
func TestAutoDistributionKeylessThroughAPI(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	for _, in := range []storage.CreateStreamInput{
		{Name: "auto", Mode: storage.ModeOnDemand, ShardCount: storage.OnDemandShards, Distribution: storage.DistributionAuto},
		{Name: "keyed", ShardCount: 1},
	} {
		if err := c.node(1).CreateStream(ctx, in); err != nil {
			t.Fatal(err)
		}
		c.waitActive(in.Name, 1, 2, 3)
	}
	srv := httptest.NewServer(api.New(api.Config{Region: "us-east-1"}, c.node(3)))
	defer srv.Close()
	for _, tc := range []struct {
		body, want string
		status     int
	}{
		{`{"StreamName":"auto","Data":"eA=="}`, `"SequenceNumber"`, http.StatusOK},
		{`{"StreamName":"keyed","Data":"eA=="}`, "Value null at 'partitionKey' failed to satisfy constraint: Member must not be null", http.StatusBadRequest},
		{`{"StreamName":"missing","Data":"eA=="}`, "Value null at 'partitionKey' failed to satisfy constraint: Member must not be null", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "Kinesis_20131202.PutRecord")
		// Any credentials pass without --auth-file; a request must carry some.
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00")
		req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Fatalf("%s: %d %s, want %d with %q", tc.body, resp.StatusCode, b, tc.status, tc.want)
		}
	}
}
