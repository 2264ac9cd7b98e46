package loadgen

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// reader is one subscription (a consumer on a shard) or one poller (a
// shard). Only its goroutine writes its fields; received is atomic because
// the drain reads it meanwhile, the rest is read after the goroutine ends.
type reader struct {
	shard    *benchShard
	received atomic.Int64 // this run's records, each counted once
	hist     histogram    // send-to-receive latency
	bytes    int64
	last     uint64 // counter of the newest record received (counters start at 1)
	disorder int64  // records received again or out of order
	foreign  int64  // records too short to carry a stamp
	calls    int64  // SubscribeToShard or GetRecords calls
	throttle int64
	errs     int64
	firstErr string
}

// keptUp reports whether the reader has every record its shard acknowledged.
func (r *reader) keptUp() bool { return r.received.Load() >= r.shard.acked.Load() }

// deliver counts records received at now.
func (r *reader) deliver(recs []types.Record, now time.Time) {
	for _, rec := range recs {
		sent, n, ok := readStamp(rec.Data)
		switch {
		case !ok:
			r.foreign++
		case n <= r.last:
			r.disorder++
		default:
			r.last = n
			r.received.Add(1)
			r.bytes += int64(len(rec.Data))
			r.hist.record(now.Sub(sent))
		}
	}
}

func (r *reader) failed(err error) {
	if isThrottle(err) {
		r.throttle++
		return
	}
	if r.errs++; r.firstErr == "" {
		r.firstErr = err.Error()
	}
}

// subscribe holds a subscription to the reader's shard for consumerARN from
// LATEST until ctx ends, resubscribing after the ContinuationSequenceNumber
// when the server ends a subscription (its 5-minute lifetime) or it fails.
// The first call's outcome goes to ready; if it failed, subscribe returns.
func (r *reader) subscribe(ctx context.Context, c *kinesis.Client, consumerARN string, ready chan<- error) {
	// A client of its own: the SDK's JSON protocol keeps one event-stream
	// decode buffer per client, which concurrent subscriptions would share
	// (the race detector flags it inside smithy-go); New makes a new one.
	c = kinesis.New(c.Options())
	pos := &types.StartingPosition{Type: types.ShardIteratorTypeLatest}
	for first := true; ctx.Err() == nil; first = false {
		out, err := c.SubscribeToShard(ctx, subscribeInput(consumerARN, r.shard.id, pos))
		if first {
			ready <- err
			if err != nil {
				return
			}
		}
		r.calls++
		if err == nil {
			pos, err = r.readEvents(ctx, out.GetStream(), pos)
		}
		switch {
		case ctx.Err() != nil || errors.Is(err, errShardEnd):
			return
		case err != nil:
			r.failed(err)
			pause(ctx, resubscribePause)
		}
	}
}

func subscribeInput(consumerARN, shard string, pos *types.StartingPosition) *kinesis.SubscribeToShardInput {
	return &kinesis.SubscribeToShardInput{ConsumerARN: aws.String(consumerARN), ShardId: aws.String(shard), StartingPosition: pos}
}

// readEvents reads one subscription's events until it ends and returns the
// position to resubscribe from.
func (r *reader) readEvents(ctx context.Context, es *kinesis.SubscribeToShardEventStream, pos *types.StartingPosition) (*types.StartingPosition, error) {
	defer es.Close()
	for {
		select {
		case <-ctx.Done():
			return pos, nil
		case ev, ok := <-es.Events():
			if !ok {
				return pos, es.Err()
			}
			e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !isEvent {
				continue
			}
			r.deliver(e.Value.Records, time.Now())
			cont := aws.ToString(e.Value.ContinuationSequenceNumber)
			if cont == "" {
				return pos, errShardEnd
			}
			pos = &types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(cont)}
		}
	}
}

// poll reads the reader's shard with GetRecords every pollInterval from iter
// until ctx ends or the shard ends. A throttled or failed call is retried
// with the same iterator at the next tick.
func (r *reader) poll(ctx context.Context, c *kinesis.Client, iter *string) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for iter != nil {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		r.calls++
		if err != nil {
			if ctx.Err() == nil {
				r.failed(err)
			}
			continue
		}
		r.deliver(out.Records, time.Now())
		iter = out.NextShardIterator
	}
}

// writeFor runs one paced writer per shard for o.Duration (or until
// o.Records are acknowledged in all) and returns their putrecords result.
func writeFor(ctx context.Context, c *kinesis.Client, o Config, shards []*benchShard, progress io.Writer) Result {
	wo := o
	wo.Batch = 500 // the most one call may carry; a call sends what is due
	wo.Clients = len(shards)
	run := &opRun{op: OpPutRecords, o: wo, c: c}
	workers := make([]*worker, len(shards))
	for i := range workers {
		workers[i] = newWorker(run, i)
	}
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	stop := startProgress(progress, "subscribe: writing", run, start)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { w.writeShard(runCtx, shards[i]) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	return run.summary(OpPutRecords, elapsed, workers)
}

// writeShard puts o.Rate records/s into one shard: at every tick, what is due
// since the start (at most a batch per call), so a slow call is made up for.
func (w *worker) writeShard(ctx context.Context, sh *benchShard) {
	entries := make([]types.PutRecordsRequestEntry, w.run.o.Batch)
	for i := range entries {
		entries[i].Data = w.record(i)
		entries[i].ExplicitHashKey = aws.String(sh.hashKey)
		entries[i].PartitionKey = aws.String("k")
	}
	t := time.NewTicker(writeTick)
	defer t.Stop()
	start, sent, counter := time.Now(), int64(0), uint64(0)
	for ctx.Err() == nil {
		due := int64(time.Since(start).Seconds()*float64(w.run.o.Rate)) - sent
		if due <= 0 {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			continue
		}
		n := w.run.take(int(min(due, int64(len(entries)))))
		if n == 0 {
			return
		}
		batch := entries[:n]
		now := time.Now()
		for i := range batch {
			counter++
			stamp(batch[i].Data, now, counter)
		}
		w.putShard(ctx, sh, batch)
		sent += int64(n)
	}
}

// putShard sends one batch and counts what the shard acknowledged.
func (w *worker) putShard(ctx context.Context, sh *benchShard, batch []types.PutRecordsRequestEntry) {
	stream := aws.String(w.run.o.Stream)
	var out *kinesis.PutRecordsOutput
	err := w.timed(ctx, func(c context.Context) (err error) {
		out, err = w.run.c.PutRecords(c, &kinesis.PutRecordsInput{StreamName: stream, Records: batch})
		return err
	})
	if !w.countPutRecords(batch, out, err) && err != nil {
		pause(ctx, failurePause)
	}
	if err != nil || len(out.Records) != len(batch) {
		return
	}
	for _, rec := range out.Records {
		if rec.ErrorCode == nil && aws.ToString(rec.ShardId) == sh.id {
			sh.acked.Add(1)
		}
	}
}

// summarize is the result of a group of readers: latency is send-to-receive.
func summarize(op string, rs []*reader, elapsed, drained time.Duration) Result {
	h := &histogram{}
	res := Result{Op: op, Clients: len(rs), Seconds: elapsed.Seconds(), hist: h,
		Delivery: &Delivery{Readers: len(rs), DrainSeconds: drained.Seconds()}}
	d := res.Delivery
	for _, r := range rs {
		h.merge(&r.hist)
		got, want := r.received.Load(), r.shard.acked.Load()
		res.Records += got
		res.Bytes += r.bytes
		res.Requests += r.calls
		res.Throttled += r.throttle
		res.Errors += r.errs
		if res.FirstError == "" {
			res.FirstError = r.firstErr
		}
		d.Expected += want
		d.Delivered += got
		d.Disorder += r.disorder
		d.Foreign += r.foreign
		if got >= want {
			d.KeptUp++
		}
	}
	if op == OpSubscribe {
		d.Resubscribes = res.Requests - int64(len(rs))
	}
	res.RecordsPerSec = float64(res.Records) / res.Seconds
	res.MBPerSec = float64(res.Bytes) / 1e6 / res.Seconds
	res.Latency = LatencyMS{P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
	return res
}
