package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// clusterSub is one SDK subscription's delivery: data in order, and the
// last continuation number.
type clusterSub struct {
	datas []string
	seqs  []string
	cont  string
}

// drain reads events until want reports it has enough, or the stream ends
// (its error returned: the exception event, if any).
func (s *clusterSub) drain(t *testing.T, st *kinesis.SubscribeToShardEventStream, want func() bool) error {
	t.Helper()
	for !want() {
		select {
		case ev, ok := <-st.Events():
			if !ok {
				return st.Err()
			}
			v := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value
			for _, r := range v.Records {
				s.datas = append(s.datas, string(r.Data))
				s.seqs = append(s.seqs, *r.SequenceNumber)
			}
			s.cont = aws.ToString(v.ContinuationSequenceNumber)
		case <-time.After(90 * time.Second): // only bounds a hung test
			t.Fatalf("no event for 90 s; %d records so far", len(s.datas))
		}
	}
	return nil
}

func (c *clusterProcs) subscribe(t *testing.T, id uint64, arn string, pos types.StartingPosition) *kinesis.SubscribeToShardEventStream {
	t.Helper()
	var out *kinesis.SubscribeToShardOutput
	waitFor(t, fmt.Sprintf("SubscribeToShard at node %d", id), func() (err error) {
		out, err = c.procs[id].client().SubscribeToShard(context.Background(), &kinesis.SubscribeToShardInput{
			ConsumerARN: aws.String(arn), ShardId: aws.String("shardId-000000000000"), StartingPosition: &pos})
		return err
	})
	t.Cleanup(func() { out.GetStream().Close() })
	return out.GetStream()
}

// TestClusterSubscribeToShard: three `shardlog serve --cluster` processes
// and the Go SDK. A consumer registered through node 1 is ACTIVE through
// node 3; a subscription at a follower of the shard delivers the records
// written through the third node; kill -9 of the shard's leader ends it with
// an InternalFailureException event; resubscribing at another node after the
// last continuation number delivers exactly the rest: every acknowledged
// record once, in order, and nothing never sent.
func TestClusterSubscribeToShard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t)
	ctx := context.Background()
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("cl"), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	var streamARN string
	waitFor(t, "stream ACTIVE", func() error {
		out, err := c.procs[1].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("cl")})
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
	waitFor(t, "consumer ACTIVE through node 3", func() error {
		out, err := c.procs[3].client().DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(arn)})
		if err == nil && out.ConsumerDescription.ConsumerStatus != types.ConsumerStatusActive {
			err = fmt.Errorf("status %s", out.ConsumerDescription.ConsumerStatus)
		}
		return err
	})

	st := c.status(1)
	leader := st.Groups[fmt.Sprint(st.Shards["cl/shardId-000000000000"])].Leader
	if leader == 0 {
		t.Fatalf("no leader for shard 0: %+v", st)
	}
	follower, writer := leader%3+1, (leader+1)%3+1
	var first clusterSub
	stream := c.subscribe(t, follower, arn, types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
	for round := range 5 {
		if !c.put(writer, round, 50) {
			t.Fatalf("PutRecords round %d through node %d failed", round, writer)
		}
	}
	if err := first.drain(t, stream, func() bool { return len(first.datas) >= len(c.acked) }); err != nil {
		t.Fatalf("the subscription ended early: %v", err)
	}

	c.procs[leader].kill()
	err = first.drain(t, stream, func() bool { return false })
	if apiErr(err) != "InternalFailureException" {
		t.Fatalf("after kill -9 of the leader the subscription ended with %v, want an InternalFailureException event", err)
	}
	t.Logf("the subscription at node %d ended: %v", follower, err)
	c.resubscribeAfterKill(t, &first, writer, writer, arn)
}

// resubscribeAfterKill waits for writes through writer to resume after a
// leader's kill -9 ended first, resubscribes through node via after first's
// last continuation, and checks that the two subscriptions together
// delivered every acknowledged record exactly once, in order, and no record
// that was never written.
func (c *clusterProcs) resubscribeAfterKill(t *testing.T, first *clusterSub, writer, via uint64, arn string) {
	t.Helper()
	round := 100
	waitFor(t, "writes resume", func() error {
		round++
		if !c.put(writer, round, 50) {
			return fmt.Errorf("round %d not fully acknowledged", round)
		}
		return nil
	})

	var second clusterSub
	stream := c.subscribe(t, via, arn, types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(first.cont)})
	allAcked := func() bool {
		got := map[string]bool{}
		for _, d := range append(append([]string(nil), first.datas...), second.datas...) {
			got[d] = true
		}
		for _, data := range c.acked {
			if !got[data] {
				return false
			}
		}
		return true
	}
	if err := second.drain(t, stream, allAcked); err != nil {
		t.Fatalf("the second subscription ended early: %v", err)
	}
	datas := append(first.datas, second.datas...)
	seqs := append(first.seqs, second.seqs...)
	seen := map[string]string{}
	for i, data := range datas {
		switch {
		case i > 0 && !lessSeq(seqs[i-1], seqs[i]):
			t.Fatalf("%s delivered after %s", seqs[i], seqs[i-1])
		case !c.attempted[data]:
			t.Fatalf("phantom record %q", data)
		}
		seen[data] = seqs[i]
	}
	for seq, data := range c.acked {
		if seen[data] != seq {
			t.Fatalf("acknowledged %q (%s) delivered as %q; %d delivered, %d acknowledged", data, seq, seen[data], len(datas), len(c.acked))
		}
	}
}
