package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// opRun is the state one operation's clients share.
type opRun struct {
	op     string
	o      Config
	c      *kinesis.Client
	shards chan string // getrecords: shards not yet claimed by a reader

	shardCount  int          // getrecords: shards in the stream
	shardsAtTip atomic.Int64 // getrecords: shards read to their tip or end

	claimed   atomic.Int64 // records handed out against --records
	records   atomic.Int64
	bytes     atomic.Int64
	requests  atomic.Int64
	throttled atomic.Int64
	errors    atomic.Int64
	firstErr  sync.Once
	firstMsg  string
}

// runOp runs one operation with o.Clients concurrent clients until the
// duration ends, the --records budget is spent, or (getrecords) every shard
// has been read to its tip.
func runOp(ctx context.Context, c *kinesis.Client, o Config, op string, progress io.Writer) (Result, error) {
	run := &opRun{op: op, o: o, c: c}
	if op == OpGetRecords {
		if err := run.queueShards(ctx); err != nil {
			return Result{}, err
		}
	}
	workers := make([]*worker, o.Clients)
	for i := range workers {
		workers[i] = newWorker(run, i) // outside the timing: it generates the data
	}
	probe := newCostProbe(o)
	var before costReading
	if probe != nil {
		before = probe.read(ctx)
	}
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	stopProgress := startProgress(progress, op, run, start)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(runCtx) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	res := run.summary(op, elapsed, workers)
	if probe != nil {
		res.Server = probe.cost(before, probe.read(ctx), res.Records)
	}
	return res, nil
}

func (r *opRun) queueShards(ctx context.Context) error {
	ids, err := listShardIDs(ctx, r.c, r.o.Stream)
	if err != nil {
		return err
	}
	r.shardCount = len(ids)
	r.shards = make(chan string, len(ids))
	for _, id := range ids {
		r.shards <- id
	}
	close(r.shards)
	return nil
}

// take claims up to n records of the --records budget and returns how many
// it got; 0 means the budget is spent.
func (r *opRun) take(n int) int {
	if r.o.Records == 0 {
		return n
	}
	over := r.claimed.Add(int64(n)) - r.o.Records
	switch {
	case over >= int64(n):
		return 0
	case over > 0:
		return n - int(over)
	}
	return n
}

// readLimit is the GetRecords Limit that keeps a read-back within --records
// (concurrent readers may overshoot by one page each).
func (r *opRun) readLimit() int {
	if r.o.Records == 0 {
		return getRecordsLimit
	}
	return int(min(getRecordsLimit, r.o.Records-r.records.Load()))
}

func (r *opRun) acked(records, bytes int64) {
	r.records.Add(records)
	r.bytes.Add(bytes)
}

// failed counts a failed call: n throttled records, or one error.
func (r *opRun) failed(err error, n int64) {
	if isThrottle(err) {
		r.throttled.Add(n)
		return
	}
	r.errors.Add(1)
	r.firstErr.Do(func() { r.firstMsg = err.Error() })
}

func isThrottle(err error) bool {
	var t *types.ProvisionedThroughputExceededException
	return errors.As(err, &t)
}

func (r *opRun) summary(op string, elapsed time.Duration, workers []*worker) Result {
	h := &histogram{}
	for _, w := range workers {
		h.merge(&w.hist)
	}
	secs := elapsed.Seconds()
	res := Result{
		Op: op, Clients: r.o.Clients, Records: r.records.Load(), Bytes: r.bytes.Load(), Requests: r.requests.Load(),
		Seconds: secs, Throttled: r.throttled.Load(), Errors: r.errors.Load(), FirstError: r.firstMsg, hist: h,
	}
	if op == OpGetRecords {
		res.ReadBack = &ReadBack{Shards: r.shardCount, ShardsAtTip: int(r.shardsAtTip.Load())}
	}
	res.RecordsPerSec = float64(res.Records) / secs
	res.MBPerSec = float64(res.Bytes) / 1e6 / secs
	res.Latency = LatencyMS{P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
	return res
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// worker is one client: its own random source, record data and latency
// histogram, so the hot loop shares nothing but atomic counters.
type worker struct {
	run  *opRun
	rng  *rand.Rand
	data []byte    // batch records of record-size random bytes
	keys []*string // partition keys, drawn at random per record
	hist histogram
}

func newWorker(run *opRun, id int) *worker {
	rng := rand.New(rand.NewPCG(run.o.Seed, uint64(id)))
	w := &worker{run: run, rng: rng}
	if run.op == OpGetRecords {
		return w
	}
	// Random (incompressible) data: the worst case for the store's zstd.
	w.data = make([]byte, run.o.Batch*run.o.RecordSize)
	for i := range w.data {
		w.data[i] = byte(rng.Uint32())
	}
	w.keys = make([]*string, keyPoolSize)
	for i := range w.keys {
		w.keys[i] = aws.String(strconv.FormatUint(rng.Uint64(), 16))
	}
	return w
}

func (w *worker) loop(ctx context.Context) {
	switch w.run.op {
	case OpPutRecords:
		w.putRecords(ctx)
	case OpPutRecord:
		w.putRecord(ctx)
	case OpGetRecords:
		w.getRecords(ctx)
	}
}

func (w *worker) key() *string { return w.keys[w.rng.IntN(len(w.keys))] }

func (w *worker) record(i int) []byte {
	n := w.run.o.RecordSize
	return w.data[i*n : (i+1)*n]
}

// timed runs one request outside ctx's cancellation (the end of the run lets
// it finish rather than counting it as an error) and records its latency
// when it got an answer.
func (w *worker) timed(ctx context.Context, call func(context.Context) error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	start := time.Now()
	err := call(rctx)
	w.run.requests.Add(1)
	var re interface{ HTTPStatusCode() int }
	if err == nil || errors.As(err, &re) {
		w.hist.record(time.Since(start))
	}
	return err
}

func (w *worker) putRecords(ctx context.Context) {
	entries := make([]types.PutRecordsRequestEntry, w.run.o.Batch)
	for i := range entries {
		entries[i].Data = w.record(i)
	}
	stream := aws.String(w.run.o.Stream)
	for ctx.Err() == nil {
		n := w.run.take(len(entries))
		if n == 0 {
			return
		}
		batch := entries[:n]
		for i := range batch {
			batch[i].PartitionKey = w.key()
		}
		var out *kinesis.PutRecordsOutput
		err := w.timed(ctx, func(c context.Context) (err error) {
			out, err = w.run.c.PutRecords(c, &kinesis.PutRecordsInput{StreamName: stream, Records: batch})
			return err
		})
		if !w.countPutRecords(batch, out, err) {
			pause(ctx, failurePause)
		}
	}
}

// countPutRecords counts a PutRecords answer record by record and reports
// whether every record was accepted.
func (w *worker) countPutRecords(batch []types.PutRecordsRequestEntry, out *kinesis.PutRecordsOutput, err error) bool {
	r := w.run
	if err != nil {
		r.failed(err, int64(len(batch)))
		return false
	}
	if len(out.Records) != len(batch) {
		r.failed(fmt.Errorf("PutRecords answered %d results for %d records", len(out.Records), len(batch)), int64(len(batch)))
		return false
	}
	var ok, bytes int64
	for i, rec := range out.Records {
		switch code := aws.ToString(rec.ErrorCode); code {
		case "":
			ok++
			bytes += int64(len(batch[i].Data))
		case throttleCode:
			r.throttled.Add(1)
		default:
			r.failed(fmt.Errorf("PutRecords record: %s: %s", code, aws.ToString(rec.ErrorMessage)), 1)
		}
	}
	r.acked(ok, bytes)
	return ok == int64(len(batch))
}

func (w *worker) putRecord(ctx context.Context) {
	stream := aws.String(w.run.o.Stream)
	for i := 0; ctx.Err() == nil && w.run.take(1) == 1; i = (i + 1) % w.run.o.Batch {
		in := &kinesis.PutRecordInput{StreamName: stream, PartitionKey: w.key(), Data: w.record(i)}
		err := w.timed(ctx, func(c context.Context) error {
			_, err := w.run.c.PutRecord(c, in)
			return err
		})
		if err != nil {
			w.run.failed(err, 1)
			pause(ctx, failurePause)
			continue
		}
		w.run.acked(1, int64(len(in.Data)))
	}
}

// getRecords claims shards one at a time and reads each to its tip.
func (w *worker) getRecords(ctx context.Context) {
	for ctx.Err() == nil {
		shard, ok := <-w.run.shards
		if !ok {
			return
		}
		if w.readShard(ctx, shard) {
			w.run.shardsAtTip.Add(1)
		}
	}
}

// readShard reads shard from TRIM_HORIZON, following NextShardIterator,
// until a page comes back empty with MillisBehindLatest 0 (the tip) or the
// iterator is null (the end of a closed shard), and reports whether it got
// there. Throttled calls are retried after a pause; other failures give up on
// the shard after a few in a row.
func (w *worker) readShard(ctx context.Context, shard string) bool {
	iter, err := w.trimHorizon(ctx, shard)
	if err != nil {
		w.run.failed(err, 1)
		return false
	}
	for failures := 0; iter != nil && failures < maxReadFailures && ctx.Err() == nil; {
		limit := w.run.readLimit() // once: other readers move it
		if limit <= 0 {
			break
		}
		out, err := w.getPage(ctx, iter, limit)
		if err != nil {
			w.run.failed(err, 1)
			if !isThrottle(err) {
				failures++
			}
			pause(ctx, throttlePause)
			continue
		}
		failures = 0
		w.countPage(out.Records)
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			return true
		}
		if iter = out.NextShardIterator; iter == nil {
			return true
		}
	}
	return false
}

func (w *worker) getPage(ctx context.Context, iter *string, limit int) (out *kinesis.GetRecordsOutput, err error) {
	in := &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(int32(limit))}
	err = w.timed(ctx, func(c context.Context) (err error) {
		out, err = w.run.c.GetRecords(c, in)
		return err
	})
	return out, err
}

func (w *worker) trimHorizon(ctx context.Context, shard string) (*string, error) {
	var out *kinesis.GetShardIteratorOutput
	err := w.timed(ctx, func(c context.Context) (err error) {
		out, err = w.run.c.GetShardIterator(c, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(w.run.o.Stream), ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.ShardIterator, nil
}

func (w *worker) countPage(recs []types.Record) {
	var bytes int64
	for _, r := range recs {
		bytes += int64(len(r.Data))
	}
	w.run.acked(int64(len(recs)), bytes)
}

// pause sleeps for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// startProgress rewrites one status line on w every second until the
// returned stop is called; with a nil w it does nothing.
func startProgress(w io.Writer, op string, r *opRun, start time.Time) (stop func()) {
	if w == nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				n := r.records.Load()
				fmt.Fprintf(w, "\r\033[K%s %4.0fs  %d records  %.0f records/s now  %.1f MB  throttled %d  errors %d",
					op, time.Since(start).Seconds(), n, float64(n-last), float64(r.bytes.Load())/1e6, r.throttled.Load(), r.errors.Load())
				last = n
			}
		}
	}()
	return func() { close(done); <-finished }
}
