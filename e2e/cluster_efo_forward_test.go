package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestClusterSubscribeForwarded: four `shardlog serve --cluster` processes
// (the fourth joined) and the Go SDK. SubscribeToShard through the node
// holding no replica of the one-shard stream is forwarded to a replica:
// it delivers the records written through another node; kill -9 of the
// shard's leader ends it with an InternalFailureException event;
// resubscribing at the same node after the last continuation number
// delivers exactly the rest: every acknowledged record once, in order, and
// nothing never sent.
func TestClusterSubscribeForwarded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs four servers")
	}
	c := startClusterProcs(t)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := ln.Addr().String()
	ln.Close()
	c.dirs[4] = filepath.Join(t.TempDir(), "data")
	c.procs[4] = startProcess(t, c.bin, c.dirs[4], "--cluster", "--node-id", "4", "--peers", "4="+peer,
		"--join", strings.TrimPrefix(c.procs[2].endpoint, "http://"), "--cluster-token", clusterToken)
	waitFor(t, "node 4 a member", func() error {
		nodes, err := c.admin(1).Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.ID == 4 && n.State == "member" {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", nodes)
	})
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("cl"), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	var streamARN string
	waitFor(t, "stream ACTIVE", func() error {
		out, err := c.procs[4].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("cl")})
		if err == nil && out.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
		}
		if err == nil {
			streamARN = *out.StreamDescriptionSummary.StreamARN
		}
		return err
	})
	reg, err := c.procs[1].client().RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(streamARN), ConsumerName: aws.String("efo")})
	if err != nil {
		t.Fatal(err)
	}
	arn := *reg.Consumer.ConsumerARN
	var outside, leader uint64
	waitFor(t, "consumer ACTIVE, the shard on three nodes with a leader", func() error {
		out, err := c.procs[4].client().DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(arn)})
		if err == nil && out.ConsumerDescription.ConsumerStatus != types.ConsumerStatusActive {
			return fmt.Errorf("consumer %s", out.ConsumerDescription.ConsumerStatus)
		}
		if err != nil {
			return err
		}
		var holders []uint64
		outside, leader = 0, 0
		for id := uint64(1); id <= 4; id++ {
			st := c.status(id)
			g := fmt.Sprint(st.Shards["cl/shardId-000000000000"])
			if gs, ok := st.Groups[g]; ok {
				holders = append(holders, id)
				leader = max(leader, gs.Leader)
			} else {
				outside = id
			}
		}
		if len(holders) != 3 || leader == 0 {
			return fmt.Errorf("held by %v, leader %d", holders, leader)
		}
		return nil
	})
	writer := leader%4 + 1
	if writer == outside {
		writer = writer%4 + 1
	}
	t.Logf("shard led by node %d; subscribing at node %d, which holds no replica; writing through node %d", leader, outside, writer)

	var first clusterSub
	stream := c.subscribe(t, outside, arn, types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
	for round := range 5 {
		if !c.put(writer, round, 50) {
			t.Fatalf("PutRecords round %d through node %d failed", round, writer)
		}
	}
	if err := first.drain(t, stream, func() bool { return len(first.datas) >= len(c.acked) }); err != nil {
		t.Fatalf("the forwarded subscription ended early: %v", err)
	}

	c.procs[leader].kill()
	err = first.drain(t, stream, func() bool { return false })
	if apiErr(err) != "InternalFailureException" {
		t.Fatalf("after kill -9 of the leader the forwarded subscription ended with %v, want an InternalFailureException event", err)
	}
	t.Logf("the forwarded subscription ended: %v", err)
	c.resubscribeAfterKill(t, &first, writer, outside, arn)
}
