package loadgen

// Subscribe mode (`shardlog bench --op subscribe`): enhanced fan-out latency.
//
// One paced writer per open shard puts --rate records/s into it (routed with
// ExplicitHashKey), each record stamped with its send time and a per-shard
// counter. --consumers registered consumers each hold a SubscribeToShard
// subscription to every shard (the SDK's event stream), and, on the same
// load, one GetRecords poller per shard reads at 5 calls/s. Every reader
// records send-to-receive latency and checks that it got each acknowledged
// record of its shard once, in order. After the writers stop, the run waits
// (bounded) until every reader has caught up.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

const (
	// OpPoll names the pollers' result in a subscribe run.
	OpPoll = "getrecords-poll"

	maxConsumers = 20 // AWS's registered consumers per stream
	// stampSize is the head of every subscribe-mode record: the send time
	// (Unix nanoseconds) and the shard's record counter, big-endian.
	stampSize = 16
	// writeTick paces the writers: each tick sends what is due by then.
	writeTick = 10 * time.Millisecond
	// pollInterval holds each poller to Kinesis's 5 GetRecords calls/s per shard.
	pollInterval = 200 * time.Millisecond
	// resubscribePause follows a failed subscription: SubscribeToShard allows
	// one call per second per consumer and shard.
	resubscribePause = time.Second
	// drainTimeout bounds the wait for readers to catch up after the writers stop.
	drainTimeout = 30 * time.Second
	// drainCheck is how often the drain looks at the readers' counts.
	drainCheck = 20 * time.Millisecond
	// consumerPrefix names the registered consumers; they are kept after the
	// run and reused by the next one.
	consumerPrefix = "shardlog-bench-"
	consumerWait   = 2 * time.Minute
)

// errShardEnd ends a subscription whose shard was closed by a reshard.
var errShardEnd = errors.New("shard ended")

// benchShard is one open shard: where its writer aims and how many records
// it acknowledged.
type benchShard struct {
	id      string
	hashKey string // StartingHashKey: ExplicitHashKey routes records here
	acked   atomic.Int64
}

// runSubscribe runs subscribe mode against the (ACTIVE) stream and adds the
// writers', subscribers' and pollers' results to rep.
func runSubscribe(ctx context.Context, c *kinesis.Client, o Config, rep *Report, progress io.Writer) error {
	shards, streamARN, err := openShards(ctx, c, o.Stream)
	if err != nil {
		return err
	}
	consumers, err := registerConsumers(ctx, c, streamARN, o.Consumers)
	if err != nil {
		return err
	}
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	rs, err := startReaders(readCtx, c, o, shards, consumers)
	if err != nil {
		stopReaders()
		rs.wg.Wait()
		return err
	}
	usage := startUsage(o.ServerPID)
	start := time.Now()
	writes := writeFor(ctx, c, o, shards, progress)
	drainStart := time.Now()
	drain(ctx, append(rs.subs, rs.polls...))
	drained := time.Since(drainStart)
	stopReaders()
	rs.wg.Wait()
	rep.Server = usage()
	elapsed := time.Since(start)
	rep.Results = append(rep.Results, writes, summarize(OpSubscribe, rs.subs, elapsed, drained))
	if o.Poll {
		rep.Results = append(rep.Results, summarize(OpPoll, rs.polls, elapsed, drained))
	}
	return nil
}

// openShards returns the stream's open shards and its ARN.
func openShards(ctx context.Context, c *kinesis.Client, stream string) ([]*benchShard, string, error) {
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
	if err != nil {
		return nil, "", fmt.Errorf("describe %s: %w", stream, err)
	}
	var shards []*benchShard
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		page, err := c.ListShards(ctx, in)
		if err != nil {
			return nil, "", fmt.Errorf("list shards of %s: %w", stream, err)
		}
		for _, s := range page.Shards {
			if s.SequenceNumberRange.EndingSequenceNumber == nil {
				shards = append(shards, &benchShard{id: aws.ToString(s.ShardId), hashKey: aws.ToString(s.HashKeyRange.StartingHashKey)})
			}
		}
		if page.NextToken == nil {
			return shards, aws.ToString(sum.StreamDescriptionSummary.StreamARN), nil
		}
		in = &kinesis.ListShardsInput{NextToken: page.NextToken}
	}
}

// registerConsumers registers (or finds, from an earlier run) n consumers
// named consumerPrefix0.. and waits until each is ACTIVE; it returns their ARNs.
func registerConsumers(ctx context.Context, c *kinesis.Client, streamARN string, n int) ([]string, error) {
	arns := make([]string, n)
	for i := range arns {
		name := fmt.Sprintf("%s%d", consumerPrefix, i)
		_, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: &streamARN, ConsumerName: &name})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return nil, fmt.Errorf("register consumer %s: %w", name, err)
		}
		if arns[i], err = waitConsumerActive(ctx, c, streamARN, name); err != nil {
			return nil, err
		}
	}
	return arns, nil
}

func waitConsumerActive(ctx context.Context, c *kinesis.Client, streamARN, name string) (string, error) {
	deadline := time.Now().Add(consumerWait)
	for {
		out, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: &streamARN, ConsumerName: &name})
		if err != nil {
			return "", fmt.Errorf("describe consumer %s: %w", name, err)
		}
		d := out.ConsumerDescription
		if d.ConsumerStatus == types.ConsumerStatusActive {
			return aws.ToString(d.ConsumerARN), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("consumer %s still %s after %s", name, d.ConsumerStatus, consumerWait)
		}
		pause(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
}

// readers are the run's subscriptions and pollers and the group they run in.
type readers struct {
	subs, polls []*reader
	wg          sync.WaitGroup
}

// startReaders subscribes every consumer to every shard and points a poller
// at every shard, all at LATEST, and returns once each subscription has its
// initial response, so that the writers' first record reaches every reader.
func startReaders(ctx context.Context, c *kinesis.Client, o Config, shards []*benchShard, consumers []string) (*readers, error) {
	rs := &readers{}
	ready := make(chan error, len(shards)*len(consumers))
	for _, arn := range consumers {
		for _, sh := range shards {
			r := &reader{shard: sh}
			rs.subs = append(rs.subs, r)
			rs.wg.Go(func() { r.subscribe(ctx, c, arn, ready) })
		}
	}
	var first error
	for range rs.subs {
		if err := <-ready; err != nil && first == nil {
			first = fmt.Errorf("SubscribeToShard: %w", err)
		}
	}
	if first == nil && o.Poll {
		first = rs.startPollers(ctx, c, o.Stream, shards)
	}
	return rs, first
}

func (rs *readers) startPollers(ctx context.Context, c *kinesis.Client, stream string, shards []*benchShard) error {
	for _, sh := range shards {
		out, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: aws.String(sh.id), ShardIteratorType: types.ShardIteratorTypeLatest,
		})
		if err != nil {
			return fmt.Errorf("GetShardIterator %s: %w", sh.id, err)
		}
		r := &reader{shard: sh}
		rs.polls = append(rs.polls, r)
		rs.wg.Go(func() { r.poll(ctx, c, out.ShardIterator) })
	}
	return nil
}

// drain waits until every reader has received every record its shard
// acknowledged, or drainTimeout passes, or ctx ends.
func drain(ctx context.Context, rs []*reader) {
	deadline := time.Now().Add(drainTimeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		behind := 0
		for _, r := range rs {
			if !r.keptUp() {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		pause(ctx, drainCheck)
	}
}

// stamp writes a record's head: its send time and counter.
func stamp(b []byte, sent time.Time, n uint64) {
	binary.BigEndian.PutUint64(b, uint64(sent.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], n)
}

// readStamp reads a record's head; ok is false for a record too short to be
// one of this run's.
func readStamp(b []byte) (sent time.Time, n uint64, ok bool) {
	if len(b) < stampSize {
		return time.Time{}, 0, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), binary.BigEndian.Uint64(b[8:]), true
}
