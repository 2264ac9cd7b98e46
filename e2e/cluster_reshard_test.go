package e2e

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/shardlog/shardlog/hashkey"
)

// TestClusterReshard: resharding through the Go SDK against three `shardlog
// serve --cluster` processes. SplitShard through node 2 turns the stream
// UPDATING, then ACTIVE; ListShards answers the same on every node, the
// parent with an EndingSequenceNumber, the children naming it;
// GetRecords at the parent's end returns no NextShardIterator and the
// ChildShards; UpdateShardCount 3 → 4 answers the counts; every
// acknowledged record is read exactly once from every node, closed
// shards included. A split key outside the shard is refused as in
// single-node mode.
func TestClusterReshard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t)
	ctx := context.Background()
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("cl"), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	c.waitStatus(t, types.StreamStatusActive)
	for round := range 5 {
		if !c.put(1, round, 50) {
			t.Fatalf("PutRecords round %d failed", round)
		}
	}
	cl := c.procs[2].client()
	_, err := cl.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("cl"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("1")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InvalidArgumentException" {
		t.Fatalf("split key outside the shard: %v", err)
	}
	mid := hashkey.Split(4)[1].Start.String()
	if _, err := cl.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("cl"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(mid)}); err != nil {
		t.Fatal(err)
	}
	c.waitStatus(t, types.StreamStatusActive)
	for round := 100; round < 105; round++ {
		if !c.put(3, round, 50) {
			t.Fatalf("PutRecords round %d after the split failed", round)
		}
	}
	shards := c.sameShards(t)
	if len(shards) != 4 || shards[0].SequenceNumberRange.EndingSequenceNumber == nil ||
		aws.ToString(shards[2].ParentShardId) != "shardId-000000000000" || aws.ToString(shards[3].ParentShardId) != "shardId-000000000000" {
		t.Fatalf("shards after the split: %+v", shards)
	}
	if kids := c.childrenAtEnd(t, 3, "shardId-000000000000"); !slices.Equal(kids, []string{"shardId-000000000002", "shardId-000000000003"}) {
		t.Fatalf("ChildShards at the parent's end: %v", kids)
	}

	out, err := c.procs[3].client().UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("cl"),
		TargetShardCount: aws.Int32(4), ScalingType: types.ScalingTypeUniformScaling})
	if err != nil || aws.ToInt32(out.CurrentShardCount) != 3 || aws.ToInt32(out.TargetShardCount) != 4 {
		t.Fatalf("UpdateShardCount: %+v, %v", out, err)
	}
	c.waitStatus(t, types.StreamStatusActive)
	for round := 200; round < 205; round++ {
		if !c.put(2, round, 50) {
			t.Fatalf("PutRecords round %d after UpdateShardCount failed", round)
		}
	}
	c.sameShards(t)
	for id := uint64(1); id <= 3; id++ {
		if err := c.verify(id); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
	}
}

// waitStatus waits until every node describes the stream with status.
func (c *clusterProcs) waitStatus(t *testing.T, status types.StreamStatus) {
	for id := uint64(1); id <= 3; id++ {
		waitFor(t, fmt.Sprintf("stream %s through node %d", status, id), func() error {
			out, err := c.procs[id].client().DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("cl")})
			if err == nil && out.StreamDescriptionSummary.StreamStatus != status {
				err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
			}
			return err
		})
	}
}

// sameShards checks that ListShards answers the same on every node.
func (c *clusterProcs) sameShards(t *testing.T) []types.Shard {
	var want []types.Shard
	for id := uint64(1); id <= 3; id++ {
		out, err := c.procs[id].client().ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("cl")})
		if err != nil {
			t.Fatal(err)
		}
		if id == 1 {
			want = out.Shards
		} else if !reflect.DeepEqual(out.Shards, want) {
			t.Fatalf("node %d lists %+v, node 1 %+v", id, out.Shards, want)
		}
	}
	return want
}

// childrenAtEnd reads a closed shard through node id to its end.
func (c *clusterProcs) childrenAtEnd(t *testing.T, id uint64, shard string) []string {
	ctx := context.Background()
	cl := c.procs[id].client()
	it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("cl"), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	for iter, pages := it.ShardIterator, 0; pages < 1000; pages++ {
		out, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(100)})
		if err != nil {
			t.Fatal(err)
		}
		if out.NextShardIterator == nil {
			var kids []string
			for _, k := range out.ChildShards {
				kids = append(kids, aws.ToString(k.ShardId))
			}
			return kids
		}
		iter = out.NextShardIterator
	}
	t.Fatalf("%s never ended", shard)
	return nil
}
