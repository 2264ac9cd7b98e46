package api

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// reshardFake adds resharding to the fake backend, recording the calls.
type reshardFake struct {
	*fakeBackend
	calls []string
	err   error
}

func (f *reshardFake) SplitShard(ctx context.Context, stream, id, key string) error {
	f.calls = append(f.calls, "split "+stream+" "+id+" "+key)
	return f.err
}

func (f *reshardFake) MergeShards(ctx context.Context, stream, a, b string) error {
	f.calls = append(f.calls, "merge "+stream+" "+a+" "+b)
	return f.err
}

func (f *reshardFake) UpdateShardCount(ctx context.Context, stream string, n int) (storage.UpdateShardCountResult, error) {
	f.calls = append(f.calls, "scale "+stream+" "+strconv.Itoa(n))
	return storage.UpdateShardCountResult{Current: 2, Target: n}, f.err
}

func newReshardHarness(t *testing.T) (*harness, *reshardFake) {
	h := newHarness(t)
	f := &reshardFake{fakeBackend: h.fake}
	h.srv = New(Config{Now: h.clock}, f)
	return h, f
}

func TestReshardValidation(t *testing.T) {
	h, f := newReshardHarness(t)
	for _, tc := range []struct{ op, body, msg string }{
		{"SplitShard", `{"StreamName":"s","NewStartingHashKey":"5"}`, "1 validation error detected: Value null at 'shardToSplit' failed to satisfy constraint: Member must not be null"},
		{"SplitShard", `{"StreamName":"s","ShardToSplit":"shardId-000000000000","NewStartingHashKey":"05"}`, "1 validation error detected: Value '05' at 'newStartingHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: " + wire.PatternHashKey},
		{"MergeShards", `{"StreamName":"s","ShardToMerge":"a b","AdjacentShardToMerge":"x"}`, "1 validation error detected: Value 'a b' at 'shardToMerge' failed to satisfy constraint: Member must satisfy regular expression pattern: " + wire.PatternName},
		{"UpdateShardCount", `{"StreamName":"s","TargetShardCount":2}`, "1 validation error detected: Value null at 'scalingType' failed to satisfy constraint: Member must not be null"},
		{"UpdateShardCount", `{"StreamName":"s","TargetShardCount":0,"ScalingType":"X"}`, "2 validation errors detected: Value '0' at 'targetShardCount' failed to satisfy constraint: Member must have value greater than or equal to 1; Value 'X' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]"},
	} {
		wantError(t, h.call(tc.op, tc.body), http.StatusBadRequest, wire.TypeValidation, tc.msg)
	}
	if len(f.calls) != 0 {
		t.Fatalf("invalid requests reached the backend: %v", f.calls)
	}
}

func TestReshardCalls(t *testing.T) {
	h, f := newReshardHarness(t)
	h.ok("SplitShard", `{"StreamName":"s","ShardToSplit":"shardId-000000000000","NewStartingHashKey":"5"}`)
	h.ok("MergeShards", `{"StreamARN":"arn:aws:kinesis:eu-west-1:123456789012:stream/s","ShardToMerge":"1","AdjacentShardToMerge":"2"}`)
	r := h.ok("UpdateShardCount", `{"StreamName":"s","TargetShardCount":3,"ScalingType":"UNIFORM_SCALING"}`)
	if r.body["CurrentShardCount"] != 2.0 || r.body["TargetShardCount"] != 3.0 || r.body["StreamName"] != "s" ||
		r.body["StreamARN"] != "arn:aws:kinesis:eu-west-1:123456789012:stream/s" {
		t.Fatalf("UpdateShardCount response: %s", r.raw)
	}
	want := "[split s shardId-000000000000 5, merge s 1 2, scale s 3]"
	if got := fmtList(f.calls); got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	f.err = &storage.Error{Kind: storage.ErrLimitExceeded, Reason: storage.ReasonShardLimit, Facts: storage.Facts{Account: "000000000000", Current: 499, Limit: 500, N: 2}}
	wantError(t, h.call("UpdateShardCount", `{"StreamName":"s","TargetShardCount":3,"ScalingType":"UNIFORM_SCALING"}`),
		http.StatusBadRequest, wire.TypeLimitExceeded, "This request would exceed the shard limit for the account 000000000000 in eu-west-1. "+
			"Current shard count for the account: 499. Limit: 500. Number of additional shards that would have resulted from this request: 2. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.")
	f.err = &storage.Error{Kind: storage.ErrValidation, Reason: storage.ReasonOnDemand, Facts: storage.Facts{Account: "000000000000", Stream: "s"}}
	wantError(t, h.call("SplitShard", `{"StreamName":"s","ShardToSplit":"0","NewStartingHashKey":"5"}`), http.StatusBadRequest, wire.TypeValidation,
		"Resharding is not supported for stream s under account 000000000000 because it is in ON_DEMAND capacity mode.")
}

func fmtList(l []string) string { return wire.RenderList(l) }
