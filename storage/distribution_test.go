package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shardlog/shardlog/hashkey"
)

// newAutoRig is a consumerRig (reopenable) with an ON_DEMAND stream "od" of
// OnDemandShards shards beside its PROVISIONED stream "s".
func newAutoRig(t *testing.T) *consumerRig {
	t.Helper()
	r := newConsumerRig(t, 0)
	if err := r.s.CreateStream(context.Background(), CreateStreamInput{Name: "od", ShardCount: OnDemandShards, Mode: ModeOnDemand}); err != nil {
		t.Fatal(err)
	}
	return r
}

func distribution(t *testing.T, s *Store, name string) RecordDistribution {
	t.Helper()
	info, err := s.DescribeStream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Distribution
}

// perShard puts n records to "od", in requests of the given sizes in turn,
// every one with the same partition key and explicit hash key (which AUTO
// ignores), and counts the records each shard took.
func perShard(t *testing.T, s *Store, n int, sizes []int) map[string]int {
	t.Helper()
	ehk := hashkey.Split(1)[0].Start // shard 0's, were it honoured
	got := map[string]int{}
	for i, done := 0, 0; done < n; i++ {
		size := min(sizes[i%len(sizes)], n-done)
		entries := make([]PutEntry, size)
		for j := range entries {
			entries[j] = PutEntry{PartitionKey: "same", ExplicitHashKey: &ehk, Data: []byte(fmt.Sprint(done + j))}
		}
		if i%2 == 1 {
			for j := range entries {
				entries[j] = PutEntry{Data: entries[j].Data} // no partition key at all
			}
		}
		res, err := s.Put(context.Background(), "od", entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			got[r.ShardID]++
		}
		done += size
	}
	return got
}

// TestAutoDistributionSpreadsEvenly: with AUTO, records ignore their
// partition and explicit hash keys and take turns over the open shards, so
// each shard takes exactly its share, whatever the request sizes; the
// strategy survives a reopen, and USER_PARTITION_KEY puts records back by
// key.
func TestAutoDistributionSpreadsEvenly(t *testing.T) {
	ctx := context.Background()
	r := newAutoRig(t)
	if d := distribution(t, r.s, "od"); d != DistributionUserKey {
		t.Fatalf("new stream: %q", d)
	}
	if err := r.s.SetRecordDistribution(ctx, "od", DistributionAuto); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"one at a time", []int{1}},
		{"mixed batches", []int{3, 1, 7, 5, 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 400 * OnDemandShards
			got := perShard(t, r.s, n, tc.sizes)
			if len(got) != OnDemandShards {
				t.Fatalf("records went to %d shards: %v", len(got), got)
			}
			for id, c := range got {
				if c != n/OnDemandShards {
					t.Fatalf("%s took %d of %d records: %v", id, c, n, got)
				}
			}
		})
	}
	r.reopen()
	if d := distribution(t, r.s, "od"); d != DistributionAuto {
		t.Fatalf("after reopen: %q", d)
	}
	if got := perShard(t, r.s, 4*OnDemandShards, []int{2}); len(got) != OnDemandShards {
		t.Fatalf("after reopen, records went to %v", got)
	}
	if err := r.s.SetRecordDistribution(ctx, "od", DistributionUserKey); err != nil {
		t.Fatal(err)
	}
	if got := perShard(t, r.s, 8, []int{8}); got["shardId-000000000000"] != 8 {
		t.Fatalf("USER_PARTITION_KEY honours the explicit hash key no more: %v", got)
	}
}

// TestAutoDistributionRules: AUTO needs an ON_DEMAND stream, refuses
// SequenceNumberForOrdering, and a record without a partition key reads
// back without one.
func TestAutoDistributionRules(t *testing.T) {
	ctx := context.Background()
	r := newAutoRig(t)
	wantConsumerErr(t, r.s.SetRecordDistribution(ctx, "s", DistributionAuto), ErrInvalidArgument, ReasonAutoProvisioned)
	if err := r.s.SetRecordDistribution(ctx, "s", DistributionUserKey); err != nil {
		t.Fatalf("USER_PARTITION_KEY on a provisioned stream: %v", err)
	}
	wantConsumerErr(t, r.s.SetRecordDistribution(ctx, "nope", DistributionAuto), ErrStreamNotFound, ReasonStreamNotFound)
	if err := r.s.SetRecordDistribution(ctx, "od", DistributionAuto); err != nil {
		t.Fatal(err)
	}
	_, err := r.s.Put(ctx, "od", []PutEntry{{PartitionKey: "k", Data: []byte("x"), SequenceNumberForOrdering: "1"}})
	wantConsumerErr(t, err, ErrInvalidArgument, ReasonOrderingAuto)

	res, err := r.s.Put(ctx, "od", []PutEntry{{Data: []byte("keyless")}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	pos, err := r.s.Position(ctx, "od", res[0].ShardID, AtSequenceNumber, res[0].SequenceNumber, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := r.s.Read(ctx, pos, 10, 1<<20)
	if err != nil || len(rr.Records) != 1 || rr.Records[0].PartitionKey != "" || string(rr.Records[0].Data) != "keyless" {
		t.Fatalf("read back: %+v %v", rr, err)
	}
}

// TestCreateWithAutoDistribution: CreateStream's strategy is stored.
func TestCreateWithAutoDistribution(t *testing.T) {
	r := newConsumerRig(t, 0)
	in := CreateStreamInput{Name: "a", ShardCount: OnDemandShards, Mode: ModeOnDemand, Distribution: DistributionAuto}
	if err := r.s.CreateStream(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	r.reopen()
	if d := distribution(t, r.s, "a"); d != DistributionAuto {
		t.Fatalf("got %q", d)
	}
}

// TestAutoDistributionEndsWithOnDemand: AUTO needs ON_DEMAND, so a switch to
// PROVISIONED takes the stream back to partition keys (and a put then needs
// one again, which the api checks against this).
func TestAutoDistributionEndsWithOnDemand(t *testing.T) {
	r := newConsumerRig(t, 0)
	ctx := context.Background()
	in := CreateStreamInput{Name: "a", ShardCount: OnDemandShards, Mode: ModeOnDemand, Distribution: DistributionAuto}
	if err := r.s.CreateStream(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := r.s.UpdateStreamMode(ctx, "a", ModeProvisioned, nil); err != nil {
		t.Fatal(err)
	}
	r.reopen()
	if d := distribution(t, r.s, "a"); d != DistributionUserKey {
		t.Fatalf("after the switch to PROVISIONED: %q", d)
	}
}
