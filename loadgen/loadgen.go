// Package loadgen is the load generator behind `shardlog bench`: a bounded
// run of PutRecords, PutRecord and GetRecords against any Kinesis endpoint
// with the AWS SDK for Go v2, exactly as users' code would call it, and a
// summary of throughput, per-request latency, throttled and failed counts.
//
// It is a client: it speaks to the server over HTTP only, and imports none
// of the server's packages.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// The operations a run measures (Config.Op).
const (
	OpPutRecords = "putrecords"
	OpPutRecord  = "putrecord"
	OpGetRecords = "getrecords"
	OpAll        = "all" // the three above, in that order
	// OpSubscribe is the enhanced fan-out run (subscribe.go): paced writers,
	// SubscribeToShard consumers and, on the same load, GetRecords pollers,
	// measuring send-to-receive latency.
	OpSubscribe = "subscribe"
)

// RecordsOnlyDuration bounds a run given only a record budget (the command
// sets it as Duration when --records is given without --duration), so that
// a stalled endpoint cannot keep it going forever.
const RecordsOnlyDuration = 10 * time.Minute

const (
	throttleCode = "ProvisionedThroughputExceededException"

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

// Config is one run's setup; the command fills it from its flags, and Check
// words its refusals in the flags' names.
type Config struct {
	Endpoint   string        // Kinesis endpoint URL
	Region     string        // region to sign requests for
	Stream     string        // the stream to use (created if missing)
	Shards     int           // shard count when the stream has to be created
	Op         string        // OpPutRecords, OpPutRecord, OpGetRecords or OpAll
	Clients    int           // concurrent clients
	Batch      int           // records per PutRecords request (1-500)
	RecordSize int           // bytes of data per record
	Duration   time.Duration // how long each operation runs
	Records    int64         // stop each operation after this many records (0: no limit)
	Seed       uint64        // seed for record data and partition keys

	// Subscribe mode (OpSubscribe) only.
	Consumers int  // registered consumers; each subscribes to every shard
	Rate      int  // records per second written to each shard
	Poll      bool // also poll every shard with GetRecords, 5 calls/s
	ServerPID int  // a local server process whose CPU and RSS to sample from /proc (0: none)

	// ServerCPU reads the server's CPU time (unless ServerPID gives it) and
	// fdatasync count from its /metrics before and after each operation.
	ServerCPU bool
}

// Check refuses a setup the run cannot honour, naming the flag at fault.
func (o Config) Check() error {
	switch {
	case o.Endpoint == "" || o.Region == "" || o.Stream == "":
		return errors.New("--endpoint, --region and --stream must not be empty")
	case o.Op != OpPutRecords && o.Op != OpPutRecord && o.Op != OpGetRecords && o.Op != OpAll && o.Op != OpSubscribe:
		return fmt.Errorf("--op must be putrecords, putrecord, getrecords, all or subscribe, got %q", o.Op)
	case o.Shards < 1 || o.Shards > 10000 || o.Clients < 1:
		return errors.New("--shards must be 1-10000 and --clients at least 1")
	case o.Batch < 1 || o.Batch > 500:
		return fmt.Errorf("--batch must be 1-500, got %d", o.Batch)
	case o.RecordSize < 1 || o.RecordSize+partitionKeyMaxLen > maxRecordBytes:
		return fmt.Errorf("--record-size must be 1-%d, got %d", maxRecordBytes-partitionKeyMaxLen, o.RecordSize)
	case o.Batch*(o.RecordSize+partitionKeyMaxLen) > putRecordsMaxBytes:
		return errors.New("--batch × --record-size exceeds the 5 MiB PutRecords limit")
	case o.Duration <= 0 || o.Records < 0:
		return errors.New("--duration must be positive and --records not negative")
	case o.ServerPID < 0:
		return errors.New("--server-pid must not be negative")
	case o.Op == OpSubscribe:
		return o.checkSubscribe()
	}
	return nil
}

// checkSubscribe refuses a subscribe-mode setup the run cannot honour.
func (o Config) checkSubscribe() error {
	switch {
	case o.Consumers < 1 || o.Consumers > maxConsumers:
		return fmt.Errorf("--consumers must be 1-%d (AWS's consumers per stream), got %d", maxConsumers, o.Consumers)
	case o.Rate < 1:
		return fmt.Errorf("--rate must be at least 1 record/s per shard, got %d", o.Rate)
	case o.RecordSize < stampSize:
		return fmt.Errorf("--record-size must be at least %d in subscribe mode (each record carries its send time), got %d", stampSize, o.RecordSize)
	}
	return nil
}

func (o Config) ops() []string {
	if o.Op == OpAll {
		return []string{OpPutRecords, OpPutRecord, OpGetRecords}
	}
	return []string{o.Op}
}

// Run makes sure the stream exists and is ACTIVE, then runs each
// operation for o.Duration or o.Records, whichever ends first. A cancelled
// ctx ends the current operation early and skips the rest.
func Run(ctx context.Context, o Config, progress io.Writer) (*Report, error) {
	c := newClient(o)
	shards, err := ensureStream(ctx, c, o)
	if err != nil {
		return nil, err
	}
	rep := &Report{Endpoint: o.Endpoint, Stream: o.Stream, Shards: shards, Batch: o.Batch, RecordSize: o.RecordSize}
	if o.Op == OpSubscribe {
		rep.Batch = 0 // writers batch whatever is due
		err := runSubscribe(ctx, c, o, rep, progress)
		if err != nil {
			return nil, err
		}
		return rep, nil
	}
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

// newClient has retries off so every throttle and error is counted, and
// keeps an idle connection per client (the SDK default keeps 10).
func newClient(o Config) *kinesis.Client {
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 2 * o.Clients
		t.MaxIdleConnsPerHost = 2 * o.Clients
	})
	return kinesis.New(kinesis.Options{
		Region:           o.Region,
		Credentials:      credentials.NewStaticCredentialsProvider("shardlog-bench", "shardlog-bench", ""),
		BaseEndpoint:     aws.String(o.Endpoint),
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
func ensureStream(ctx context.Context, c *kinesis.Client, o Config) (int, error) {
	name := aws.String(o.Stream)
	_, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		_, err = c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(int32(o.Shards))})
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s at %s: %w", o.Stream, o.Endpoint, err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(wo *kinesis.StreamExistsWaiterOptions) {
		wo.MinDelay, wo.MaxDelay = 100*time.Millisecond, time.Second
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, 2*time.Minute); err != nil {
		return 0, fmt.Errorf("wait for stream %s: %w", o.Stream, err)
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
