package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestSubscribeCrash is enhanced fan-out under kill -9: the real binary is
// started over one data directory, writers put records and log every
// acknowledgement while a registered consumer holds a SubscribeToShard
// subscription to every shard, and the server is killed with SIGKILL at a
// random moment, again and again. After every restart each subscription is
// taken up again AFTER_SEQUENCE_NUMBER of the last ContinuationSequenceNumber
// it received. At the end every shard's records as received, over all the
// subscriptions, must hold every acknowledged record exactly once, at its
// sequence number, in increasing sequence order, and nothing never sent.
// (Records whose PutRecords got no answer because of the kill may appear,
// once.)
//
// SHARDLOG_EFO_CRASH_CYCLES (default 4) and SHARDLOG_CRASH_SEED (default 1)
// set the run; `make crash-test-efo CYCLES=100` runs it longer.
func TestSubscribeCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop with subscribers")
	}
	cycles, seed := envInt(t, "SHARDLOG_EFO_CRASH_CYCLES", 4), envInt(t, "SHARDLOG_CRASH_SEED", 1)
	bin := buildBinary(t)
	dir := t.TempDir()
	ec := &efoCrash{t: t, rng: rand.New(rand.NewPCG(uint64(seed), 12)), sent: map[string]bool{}, acked: map[string]efoRec{}}
	for cycle := range cycles {
		p := startProcess(t, bin, dir, "--consumer-delay", "0")
		c := p.client()
		if cycle == 0 {
			ec.setUp(c)
		}
		done := ec.subscribeAll(c, nil)
		ec.writeAndKill(c, p, cycle)
		done.Wait()
	}
	p := startProcess(t, bin, dir, "--consumer-delay", "0")
	ec.catchUp(p.client())
	p.terminate()
	ec.verify()
	t.Logf("efo crash test: seed %d, %d kill -9 cycles, %d records acknowledged, %d delivered over %d subscriptions: 0 lost, 0 duplicated, 0 phantom",
		seed, cycles, len(ec.acked), ec.delivered(), ec.subscriptions)
}

const (
	efoStream    = "efo-crash"
	efoConsumer  = "crash-consumer"
	efoWriters   = 2
	efoBatch     = 20
	efoCatchUp   = 2 * time.Minute
	efoKillAfter = 300 * time.Millisecond // plus up to as much again, at random
)

// efoRec is one record as acknowledged or received.
type efoRec struct{ shard, seq, data string }

// efoShard is one shard's subscriber state, carried across restarts.
type efoShard struct {
	id       string
	cont     string   // last ContinuationSequenceNumber received; "" before the first
	received []efoRec // in arrival order, over every subscription
}

type efoCrash struct {
	t           *testing.T
	rng         *rand.Rand
	consumerARN string
	shards      []*efoShard

	mu            sync.Mutex
	sent          map[string]bool   // data of every record ever sent
	acked         map[string]efoRec // by data
	subscriptions int
}

// setUp creates the stream and registers the consumer (instantly ACTIVE
// with --consumer-delay 0, but waited for as a client would).
func (ec *efoCrash) setUp(c *kinesis.Client) {
	ec.t.Helper()
	createStream(ec.t, c, efoStream, 2)
	ec.consumerARN = registerActiveConsumer(ec.t, c, efoStream, efoConsumer)
	out, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(efoStream)})
	if err != nil {
		ec.t.Fatal(err)
	}
	for _, s := range out.Shards {
		ec.shards = append(ec.shards, &efoShard{id: aws.ToString(s.ShardId)})
	}
}

// registerConsumer registers a consumer on stream and waits until it is ACTIVE.
func registerActiveConsumer(t *testing.T, c *kinesis.Client, stream, name string) string {
	t.Helper()
	ctx := context.Background()
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	arn := sum.StreamDescriptionSummary.StreamARN
	if _, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: arn, ConsumerName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	for {
		out, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: arn, ConsumerName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if out.ConsumerDescription.ConsumerStatus == types.ConsumerStatusActive {
			return aws.ToString(out.ConsumerDescription.ConsumerARN)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subscribeAll subscribes to every shard, each from where its last
// subscription left off, and reads until the subscription ends (the server
// dies) or, if caughtUp is set, until it reports the shard caught up. The
// returned group ends when every subscriber has.
func (ec *efoCrash) subscribeAll(c *kinesis.Client, caughtUp func(*efoShard) bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	ready := make(chan error, len(ec.shards))
	n := 0
	for _, sh := range ec.shards {
		if caughtUp != nil && caughtUp(sh) {
			continue // already has it all: an idle subscription would wait for a heartbeat
		}
		n++
		wg.Go(func() { ec.subscribe(c, sh, ready, caughtUp) })
	}
	for range n {
		if err := <-ready; err != nil {
			ec.t.Fatalf("SubscribeToShard: %v", err)
		}
	}
	return &wg
}

func (ec *efoCrash) subscribe(c *kinesis.Client, sh *efoShard, ready chan<- error, caughtUp func(*efoShard) bool) {
	pos := &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
	if sh.cont != "" {
		pos = &types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(sh.cont)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), efoCatchUp)
	defer cancel()
	// A client of its own per subscription: the SDK's JSON protocol keeps one
	// event-stream decode buffer per client (a data race between concurrent
	// subscriptions inside smithy-go); New makes a new one.
	c = kinesis.New(c.Options())
	out, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: aws.String(ec.consumerARN), ShardId: aws.String(sh.id), StartingPosition: pos})
	ready <- err
	if err != nil {
		return
	}
	ec.mu.Lock()
	ec.subscriptions++
	ec.mu.Unlock()
	es := out.GetStream()
	defer es.Close()
	for ev := range es.Events() {
		e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
		if !ok {
			continue
		}
		// An event is taken whole: its records, then its continuation, as a
		// consumer that checkpoints the continuation after processing would.
		for _, r := range e.Value.Records {
			sh.received = append(sh.received, efoRec{sh.id, aws.ToString(r.SequenceNumber), string(r.Data)})
		}
		sh.cont = aws.ToString(e.Value.ContinuationSequenceNumber)
		if caughtUp != nil && caughtUp(sh) {
			return
		}
	}
}

// writeAndKill runs the writers until the server is killed, at a random
// moment while the subscribers read.
func (ec *efoCrash) writeAndKill(c *kinesis.Client, p *process, cycle int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range efoWriters {
		wg.Go(func() { ec.writer(c, cycle, w, stop) })
	}
	time.Sleep(efoKillAfter + time.Duration(ec.rng.Int64N(int64(efoKillAfter))))
	p.kill()
	close(stop)
	wg.Wait()
}

// writer puts batches until stop, logging what it sent before each call and
// what was acknowledged after it. A failed call (the kill) ends it.
func (ec *efoCrash) writer(c *kinesis.Client, cycle, w int, stop <-chan struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		entries := make([]types.PutRecordsRequestEntry, efoBatch)
		ec.mu.Lock()
		for i := range entries {
			data := fmt.Sprintf("c%d-w%d-b%d-r%d", cycle, w, n, i)
			ec.sent[data] = true
			entries[i] = types.PutRecordsRequestEntry{Data: []byte(data), PartitionKey: aws.String(data)}
		}
		ec.mu.Unlock()
		out, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(efoStream), Records: entries})
		if err != nil {
			return
		}
		ec.mu.Lock()
		for i, r := range out.Records {
			if r.ErrorCode == nil {
				data := string(entries[i].Data)
				ec.acked[data] = efoRec{aws.ToString(r.ShardId), aws.ToString(r.SequenceNumber), data}
			}
		}
		ec.mu.Unlock()
	}
}

// catchUp subscribes again until every shard has delivered every
// acknowledged record routed to it.
func (ec *efoCrash) catchUp(c *kinesis.Client) {
	ec.t.Helper()
	want := map[string]int{}
	for _, r := range ec.acked {
		want[r.shard]++
	}
	caughtUp := func(sh *efoShard) bool {
		got := 0
		for _, r := range sh.received {
			if _, ok := ec.acked[r.data]; ok {
				got++
			}
		}
		return got >= want[sh.id]
	}
	ec.subscribeAll(c, caughtUp).Wait()
	for _, sh := range ec.shards {
		if !caughtUp(sh) {
			ec.t.Errorf("%s: not caught up within %s", sh.id, efoCatchUp)
		}
	}
}

// verify checks every shard's received records: increasing sequence
// numbers, nothing twice, nothing never sent, every acknowledged record at
// its shard and sequence number.
func (ec *efoCrash) verify() {
	ec.t.Helper()
	seen := map[string]bool{}
	for _, sh := range ec.shards {
		prev := ""
		for _, r := range sh.received {
			var errs []error
			if prev != "" && !lessSeq(prev, r.seq) {
				errs = append(errs, fmt.Errorf("sequence %s after %s", r.seq, prev))
			}
			if seen[r.data] {
				errs = append(errs, errors.New("delivered twice"))
			}
			if !ec.sent[r.data] {
				errs = append(errs, errors.New("never sent (phantom)"))
			}
			if a, ok := ec.acked[r.data]; ok && a != r {
				errs = append(errs, fmt.Errorf("acknowledged as %+v", a))
			}
			if err := errors.Join(errs...); err != nil {
				ec.t.Errorf("%s: record %q at %s: %v", sh.id, r.data, r.seq, err)
			}
			seen[r.data], prev = true, r.seq
		}
	}
	for data, a := range ec.acked {
		if !seen[data] {
			ec.t.Errorf("acknowledged record %+v never delivered (lost)", a)
		}
	}
}

func (ec *efoCrash) delivered() int {
	n := 0
	for _, sh := range ec.shards {
		n += len(sh.received)
	}
	return n
}
