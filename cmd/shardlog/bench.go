package main

// `shardlog bench`: a bounded load generator that measures PutRecords,
// PutRecord and GetRecords against any Kinesis endpoint with the AWS SDK for
// Go v2, exactly as users' code would call it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/spf13/cobra"
)

const (
	opPutRecords = "putrecords"
	opPutRecord  = "putrecord"
	opGetRecords = "getrecords"
	opAll        = "all"

	throttleCode = "ProvisionedThroughputExceededException"

	// recordsOnlyDuration bounds a run given only --records, so that a
	// stalled endpoint cannot keep it going forever.
	recordsOnlyDuration = 10 * time.Minute
	// requestTimeout bounds one request; requests run outside the run's
	// cancellation so the end of a run lets in-flight calls finish.
	requestTimeout = 30 * time.Second
	// failurePause keeps a client that is refused or failing from spinning.
	failurePause = 10 * time.Millisecond
	// throttlePause is the GetRecords back-off: Kinesis allows 5 calls/s per shard.
	throttlePause = 200 * time.Millisecond
	// maxReadFailures is how many consecutive failed GetRecords calls (other
	// than throttling) make a reader give up on a shard.
	maxReadFailures = 3
	keyPoolSize     = 4096
	getRecordsLimit = 10000

	putRecordsMaxBytes = 5 << 20 // per request, data plus partition keys
	maxRecordBytes     = 1 << 20 // per record, data plus partition key
	partitionKeyMaxLen = 16      // hex of a uint64
)

// benchOptions are the flags of `shardlog bench`.
type benchOptions struct {
	endpoint   string
	region     string
	stream     string
	shards     int
	op         string
	clients    int
	batch      int
	recordSize int
	duration   time.Duration
	records    int64
	seed       uint64
	json       bool
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure PutRecords, PutRecord and GetRecords throughput and latency against an endpoint",
		Long: `bench drives a Kinesis endpoint with the AWS SDK for Go v2 (retries off) for a bounded time
or number of records, then prints throughput, per-request latency, throttled and failed counts.
getrecords reads every shard of the stream from TRIM_HORIZON to its tip.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.records > 0 && !cmd.Flags().Changed("duration") {
				o.duration = recordsOnlyDuration
			}
			if err := o.check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal kills the process at once
			}()
			rep, err := runBench(ctx, o, progressWriter(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			return rep.write(cmd.OutOrStdout(), o.json)
		},
	}
	addBenchFlags(cmd, &o)
	return cmd
}

func addBenchFlags(cmd *cobra.Command, o *benchOptions) {
	f := cmd.Flags()
	f.StringVar(&o.endpoint, "endpoint", "http://127.0.0.1:4567", "Kinesis endpoint URL")
	f.StringVar(&o.region, "region", "us-east-1", "region to sign requests for")
	f.StringVar(&o.stream, "stream", "shardlog-bench", "stream to use")
	f.IntVar(&o.shards, "shards", 4, "shard count when the stream has to be created")
	f.StringVar(&o.op, "op", opPutRecords, "operation: putrecords, putrecord, getrecords or all (in that order)")
	f.IntVar(&o.clients, "clients", 4, "concurrent clients")
	f.IntVar(&o.batch, "batch", 500, "records per PutRecords request (1-500)")
	f.IntVar(&o.recordSize, "record-size", 1024, "bytes of data per record")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long each operation runs (10m cap if only --records is given)")
	f.Int64Var(&o.records, "records", 0, "stop each operation after this many records (0: no limit)")
	f.Uint64Var(&o.seed, "seed", 1, "seed for record data and partition keys")
	f.BoolVar(&o.json, "json", false, "print the summary as JSON")
}

func (o benchOptions) check() error {
	switch {
	case o.endpoint == "" || o.region == "" || o.stream == "":
		return errors.New("--endpoint, --region and --stream must not be empty")
	case o.op != opPutRecords && o.op != opPutRecord && o.op != opGetRecords && o.op != opAll:
		return fmt.Errorf("--op must be putrecords, putrecord, getrecords or all, got %q", o.op)
	case o.shards < 1 || o.shards > 10000 || o.clients < 1:
		return errors.New("--shards must be 1-10000 and --clients at least 1")
	case o.batch < 1 || o.batch > 500:
		return fmt.Errorf("--batch must be 1-500, got %d", o.batch)
	case o.recordSize < 1 || o.recordSize+partitionKeyMaxLen > maxRecordBytes:
		return fmt.Errorf("--record-size must be 1-%d, got %d", maxRecordBytes-partitionKeyMaxLen, o.recordSize)
	case o.batch*(o.recordSize+partitionKeyMaxLen) > putRecordsMaxBytes:
		return errors.New("--batch × --record-size exceeds the 5 MiB PutRecords limit")
	case o.duration <= 0 || o.records < 0:
		return errors.New("--duration must be positive and --records not negative")
	}
	return nil
}

func (o benchOptions) ops() []string {
	if o.op == opAll {
		return []string{opPutRecords, opPutRecord, opGetRecords}
	}
	return []string{o.op}
}

// benchReport is the whole run: the setup and one result per operation.
type benchReport struct {
	Endpoint   string        `json:"endpoint"`
	Stream     string        `json:"stream"`
	Shards     int           `json:"shards"`
	Batch      int           `json:"batch"`
	RecordSize int           `json:"record_size"`
	Results    []benchResult `json:"results"`
}

// benchResult is one operation's summary. Throttled counts records refused
// with ProvisionedThroughputExceededException (whole calls or per-record
// ErrorCode; for getrecords, calls). Errors counts other failed calls plus
// PutRecords records failed with any other ErrorCode.
type benchResult struct {
	Op            string     `json:"op"`
	Clients       int        `json:"clients"`
	Records       int64      `json:"records"`
	Bytes         int64      `json:"bytes"`
	Requests      int64      `json:"requests"`
	Seconds       float64    `json:"duration_s"`
	RecordsPerSec float64    `json:"records_per_s"`
	MBPerSec      float64    `json:"mb_per_s"`
	Latency       latencyMS  `json:"latency_ms"`
	Throttled     int64      `json:"throttled"`
	Errors        int64      `json:"errors"`
	FirstError    string     `json:"first_error,omitempty"`
	ReadBack      *readBack  `json:"read_back,omitempty"` // getrecords only
	hist          *histogram // nil in a decoded report
}

// readBack tells whether a getrecords run read every shard to its tip, or
// was cut short by --duration or --records.
type readBack struct {
	Shards      int `json:"shards"`
	ShardsAtTip int `json:"shards_at_tip"`
}

// latencyMS is per-request latency of the calls that got an answer.
type latencyMS struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// runBench makes sure the stream exists and is ACTIVE, then runs each
// operation for o.duration or o.records, whichever ends first. A cancelled
// ctx ends the current operation early and skips the rest.
func runBench(ctx context.Context, o benchOptions, progress io.Writer) (*benchReport, error) {
	c := newBenchClient(o)
	shards, err := ensureStream(ctx, c, o)
	if err != nil {
		return nil, err
	}
	rep := &benchReport{Endpoint: o.endpoint, Stream: o.stream, Shards: shards, Batch: o.batch, RecordSize: o.recordSize}
	for _, op := range o.ops() {
		if ctx.Err() != nil {
			break
		}
		r, err := runOp(ctx, c, o, op, progress)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// newBenchClient has retries off so every throttle and error is counted, and
// keeps an idle connection per client (the SDK default keeps 10).
func newBenchClient(o benchOptions) *kinesis.Client {
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 2 * o.clients
		t.MaxIdleConnsPerHost = 2 * o.clients
	})
	return kinesis.New(kinesis.Options{
		Region:           o.region,
		Credentials:      credentials.NewStaticCredentialsProvider("shardlog-bench", "shardlog-bench", ""),
		BaseEndpoint:     aws.String(o.endpoint),
		RetryMaxAttempts: 1,
		HTTPClient:       ownBodyClient{hc},
	})
}

// ownBodyClient hands the transport its own copy of each request body.
// smithy-go closes the request body as soon as Do returns, while the
// transport's write loop may still read it (the server answered before the
// loop finished); the write then fails, the connection is closed, and a
// large response still being read fails with "use of closed network
// connection" (aws/aws-sdk-go-v2#1825, #2737). The SDK retries that error by
// default; with retries off it would be miscounted as a server error.
type ownBodyClient struct{ next kinesis.HTTPClient }

func (c ownBodyClient) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return c.next.Do(req)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c.next.Do(req)
}

// ensureStream creates the stream if it is missing, waits until it is
// ACTIVE, and returns its open shard count.
func ensureStream(ctx context.Context, c *kinesis.Client, o benchOptions) (int, error) {
	name := aws.String(o.stream)
	_, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		_, err = c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(int32(o.shards))})
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s at %s: %w", o.stream, o.endpoint, err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(wo *kinesis.StreamExistsWaiterOptions) {
		wo.MinDelay, wo.MaxDelay = 100*time.Millisecond, time.Second
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, 2*time.Minute); err != nil {
		return 0, fmt.Errorf("wait for stream %s: %w", o.stream, err)
	}
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	if err != nil {
		return 0, err
	}
	return int(aws.ToInt32(sum.StreamDescriptionSummary.OpenShardCount)), nil
}

// listShardIDs returns every shard of the stream, open or closed. (The SDK
// has no ListShards paginator; a NextToken request must omit StreamName.)
func listShardIDs(ctx context.Context, c *kinesis.Client, stream string) ([]string, error) {
	var ids []string
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		page, err := c.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list shards of %s: %w", stream, err)
		}
		for _, s := range page.Shards {
			ids = append(ids, aws.ToString(s.ShardId))
		}
		if page.NextToken == nil {
			return ids, nil
		}
		in = &kinesis.ListShardsInput{NextToken: page.NextToken}
	}
}

// opRun is the state one operation's clients share.
type opRun struct {
	op     string
	o      benchOptions
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

// runOp runs one operation with o.clients concurrent clients until the
// duration ends, the --records budget is spent, or (getrecords) every shard
// has been read to its tip.
func runOp(ctx context.Context, c *kinesis.Client, o benchOptions, op string, progress io.Writer) (benchResult, error) {
	run := &opRun{op: op, o: o, c: c}
	if op == opGetRecords {
		if err := run.queueShards(ctx); err != nil {
			return benchResult{}, err
		}
	}
	workers := make([]*worker, o.clients)
	for i := range workers {
		workers[i] = newWorker(run, i) // outside the timing: it generates the data
	}
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
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
	return run.summary(op, elapsed, workers), nil
}

func (r *opRun) queueShards(ctx context.Context) error {
	ids, err := listShardIDs(ctx, r.c, r.o.stream)
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
	if r.o.records == 0 {
		return n
	}
	over := r.claimed.Add(int64(n)) - r.o.records
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
	if r.o.records == 0 {
		return getRecordsLimit
	}
	return int(min(getRecordsLimit, r.o.records-r.records.Load()))
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

func (r *opRun) summary(op string, elapsed time.Duration, workers []*worker) benchResult {
	h := &histogram{}
	for _, w := range workers {
		h.merge(&w.hist)
	}
	secs := elapsed.Seconds()
	res := benchResult{
		Op: op, Clients: r.o.clients, Records: r.records.Load(), Bytes: r.bytes.Load(), Requests: r.requests.Load(),
		Seconds: secs, Throttled: r.throttled.Load(), Errors: r.errors.Load(), FirstError: r.firstMsg, hist: h,
	}
	if op == opGetRecords {
		res.ReadBack = &readBack{Shards: r.shardCount, ShardsAtTip: int(r.shardsAtTip.Load())}
	}
	res.RecordsPerSec = float64(res.Records) / secs
	res.MBPerSec = float64(res.Bytes) / 1e6 / secs
	res.Latency = latencyMS{P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
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
	rng := rand.New(rand.NewPCG(run.o.seed, uint64(id)))
	w := &worker{run: run, rng: rng}
	if run.op == opGetRecords {
		return w
	}
	// Random (incompressible) data: the worst case for the store's zstd.
	w.data = make([]byte, run.o.batch*run.o.recordSize)
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
	case opPutRecords:
		w.putRecords(ctx)
	case opPutRecord:
		w.putRecord(ctx)
	case opGetRecords:
		w.getRecords(ctx)
	}
}

func (w *worker) key() *string { return w.keys[w.rng.IntN(len(w.keys))] }

func (w *worker) record(i int) []byte {
	n := w.run.o.recordSize
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
	entries := make([]types.PutRecordsRequestEntry, w.run.o.batch)
	for i := range entries {
		entries[i].Data = w.record(i)
	}
	stream := aws.String(w.run.o.stream)
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
	stream := aws.String(w.run.o.stream)
	for i := 0; ctx.Err() == nil && w.run.take(1) == 1; i = (i + 1) % w.run.o.batch {
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
			StreamName: aws.String(w.run.o.stream), ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
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

// write prints the report as JSON or as a table.
func (rep *benchReport) write(out io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(out, "endpoint %s  stream %s (%d shards)  %d-byte records  batch %d\n",
		rep.Endpoint, rep.Stream, rep.Shards, rep.RecordSize, rep.Batch)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tclients\trecords\tbytes\tduration\trecords/s\tMB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tthrottled\terrors\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2fs\t%.0f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t\n",
			r.Op, r.Clients, r.Records, r.Bytes, r.Seconds, r.RecordsPerSec, r.MBPerSec,
			r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Throttled, r.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Results {
		if r.ReadBack != nil {
			fmt.Fprintf(out, "%s: %d of %d shards read to the tip\n", r.Op, r.ReadBack.ShardsAtTip, r.ReadBack.Shards)
		}
		if r.FirstError != "" {
			fmt.Fprintf(out, "%s: first error: %s\n", r.Op, r.FirstError)
		}
	}
	return nil
}

// histSubBits sets the histogram's precision: 2^6 sub-buckets per power of
// two put every reported percentile within 1/64 (~1.6%) of the true value,
// in constant memory however long the run (HDR-histogram style).
const histSubBits = 6

// histogram counts latencies in nanoseconds in log-linear buckets.
type histogram struct {
	counts [64 << histSubBits]uint64
	n      uint64
	max    time.Duration
}

func (h *histogram) record(d time.Duration) {
	h.counts[histBucket(uint64(max(d, 0)))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at rank ceil(q·n), as its bucket's midpoint.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.n))), 1)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(time.Duration(histValue(i)), h.max)
		}
	}
	return h.max
}

// histBucket maps v to its bucket: values below 2^histSubBits exactly, larger
// ones by their top histSubBits+1 bits and their magnitude.
func histBucket(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return (shift+1)<<histSubBits | int(v>>shift)&(1<<histSubBits-1)
}

// histValue is the midpoint of bucket i, the inverse of histBucket.
func histValue(i int) uint64 {
	s := i >> histSubBits
	if s == 0 {
		return uint64(i)
	}
	shift := s - 1
	low := uint64(1<<histSubBits|i&(1<<histSubBits-1)) << shift
	return low + (uint64(1)<<shift)/2
}
