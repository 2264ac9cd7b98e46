package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// monitorRig is a real store (on a MemFS) behind a Server, with an SDK
// client; reopen restarts both over the same data.
type monitorRig struct {
	t    *testing.T
	dir  string
	fs   *vfs.MemFS
	now  *atomic.Int64 // the store's clock (unix ns)
	st   *storage.Store
	srv  *Server
	c    *kinesis.Client
	opts storage.Options
}

func newMonitorRig(t *testing.T, opts storage.Options) *monitorRig {
	r := &monitorRig{t: t, dir: t.TempDir(), fs: vfs.NewMemFS(), now: new(atomic.Int64)}
	r.now.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	r.opts = opts
	r.reopen(opts)
	return r
}

func (r *monitorRig) reopen(opts storage.Options) {
	t := r.t
	if r.st != nil {
		r.st.Close()
	}
	opts.Dir, opts.FS, opts.Now = r.dir, r.fs, func() time.Time { return time.Unix(0, r.now.Load()) }
	st, err := storage.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	r.srv = New(Config{}, StoreBackend(st))
	hs := httptest.NewServer(r.srv)
	t.Cleanup(hs.Close)
	r.c = kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""), RetryMaxAttempts: 1})
}

// scrape parses the server's /metrics with Prometheus's own parser.
func (r *monitorRig) scrape() map[string]*dto.MetricFamily {
	r.t.Helper()
	w := httptest.NewRecorder()
	r.srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		r.t.Fatalf("GET /metrics: %d %s", w.Code, w.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(w.Body)
	if err != nil {
		r.t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// seriesValue is the value of the series of name with exactly labels; ok
// is false when there is none.
func seriesValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// shardSeriesOf counts the shardlog_shard_* series of stream.
func shardSeriesOf(fams map[string]*dto.MetricFamily, stream string) int {
	n := 0
	for name, f := range fams {
		if len(name) < 14 || name[:14] != "shardlog_shard" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stream" && l.GetValue() == stream {
					n++
				}
			}
		}
	}
	return n
}

type shardWant struct {
	name  string
	shard string
	value float64 // < 0: the series must not exist
}

func checkShardSeries(t *testing.T, fams map[string]*dto.MetricFamily, stream string, wants []shardWant) {
	t.Helper()
	for _, w := range wants {
		got, ok := seriesValue(fams, w.name, map[string]string{"stream": stream, "shard": w.shard})
		switch {
		case w.value < 0 && ok:
			t.Errorf("%s{%s} = %v, want no series", w.name, w.shard, got)
		case w.value >= 0 && (!ok || got != w.value):
			t.Errorf("%s{%s} = %v (exists %v), want %v", w.name, w.shard, got, ok, w.value)
		}
	}
}

const (
	shard0 = "shardId-000000000000"
	shard1 = "shardId-000000000001"
	// hash keys in the first and second half of a two-shard stream's range.
	key0 = "0"
	key1 = "340282366920938463463374607431768211455"
)

func (r *monitorRig) putRecords(stream string, keys ...string) *kinesis.PutRecordsOutput {
	r.t.Helper()
	entries := make([]types.PutRecordsRequestEntry, len(keys))
	for i, k := range keys {
		entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("pk"), ExplicitHashKey: aws.String(k), Data: []byte("hello")}
	}
	out, err := r.c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *monitorRig) enable(stream string, enable bool, metrics ...types.MetricsName) (current, desired []types.MetricsName) {
	r.t.Helper()
	ctx := context.Background()
	if enable {
		out, err := r.c.EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: aws.String(stream), ShardLevelMetrics: metrics})
		if err != nil {
			r.t.Fatal(err)
		}
		return out.CurrentShardLevelMetrics, out.DesiredShardLevelMetrics
	}
	out, err := r.c.DisableEnhancedMonitoring(ctx, &kinesis.DisableEnhancedMonitoringInput{StreamName: aws.String(stream), ShardLevelMetrics: metrics})
	if err != nil {
		r.t.Fatal(err)
	}
	return out.CurrentShardLevelMetrics, out.DesiredShardLevelMetrics
}

func names(ms []types.MetricsName) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return out
}

var allMetrics = []string{"IncomingBytes", "OutgoingRecords", "IteratorAgeMilliseconds", "IncomingRecords",
	"ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded", "OutgoingBytes"}

// TestEnhancedMonitoringOps: Enable and Disable report the metrics before
// and after in AWS's order, DescribeStream and DescribeStreamSummary report
// them, they survive a restart, and the stream is UPDATING meanwhile.
func TestEnhancedMonitoringOps(t *testing.T) {
	r := newMonitorRig(t, storage.Options{})
	ctx := context.Background()
	if err := r.st.CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		enable        bool
		metrics       []types.MetricsName
		current, want []string
	}{
		{true, []types.MetricsName{"IncomingRecords", "IncomingBytes", "IncomingRecords"}, []string{}, []string{"IncomingBytes", "IncomingRecords"}},
		{true, []types.MetricsName{"ALL"}, []string{"IncomingBytes", "IncomingRecords"}, allMetrics},
		{false, []types.MetricsName{"OutgoingBytes", "IncomingBytes", "IteratorAgeMilliseconds"}, allMetrics,
			[]string{"OutgoingRecords", "IncomingRecords", "ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded"}},
		{false, []types.MetricsName{"OutgoingBytes"}, []string{"OutgoingRecords", "IncomingRecords", "ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded"},
			[]string{"OutgoingRecords", "IncomingRecords", "ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded"}},
	}
	for i, s := range steps {
		cur, des := r.enable("s", s.enable, s.metrics...)
		if !slices.Equal(names(cur), s.current) || !slices.Equal(names(des), s.want) {
			t.Fatalf("step %d: current %v desired %v, want %v and %v", i, cur, des, s.current, s.want)
		}
		d, err := r.c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := r.c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
		if err != nil {
			t.Fatal(err)
		}
		em, ems := d.StreamDescription.EnhancedMonitoring, sum.StreamDescriptionSummary.EnhancedMonitoring
		if len(em) != 1 || !slices.Equal(names(em[0].ShardLevelMetrics), s.want) || len(ems) != 1 || !slices.Equal(names(ems[0].ShardLevelMetrics), s.want) {
			t.Fatalf("step %d: DescribeStream %v, DescribeStreamSummary %v, want %v", i, em, ems, s.want)
		}
	}
	r.reopen(storage.Options{UpdateDelay: time.Hour})
	info, err := r.st.DescribeStream(ctx, "s")
	if err != nil || !slices.Equal(info.ShardLevelMetrics, steps[len(steps)-1].want) {
		t.Fatalf("after a restart: %v %v", info.ShardLevelMetrics, err)
	}
	r.enable("s", true, "IncomingBytes")
	d, err := r.c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	if err != nil || d.StreamDescriptionSummary.StreamStatus != types.StreamStatusUpdating {
		t.Fatalf("after Enable: %v %v, want UPDATING", d, err)
	}
	_, err = r.c.DisableEnhancedMonitoring(ctx, &kinesis.DisableEnhancedMonitoringInput{StreamName: aws.String("s"), ShardLevelMetrics: []types.MetricsName{"ALL"}})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ResourceInUseException" {
		t.Fatalf("Disable while UPDATING: %v, want ResourceInUseException", err)
	}
	r.now.Add(int64(time.Hour))
	r.reopen(storage.Options{}) // UPDATING ended while it was down
	if info, _ := r.st.DescribeStream(ctx, "s"); info.Status != storage.StatusActive {
		t.Fatalf("status %s after UPDATING's end", info.Status)
	}
}

// TestShardLevelMetricsMatchWhatWasDone puts and reads records on two
// shards and forces throttles, and checks /metrics' shard-level series
// against exactly that: only the metrics enabled, from the enabled set kept
// across a restart, gone after Disable, with a shard that retention
// removes, and with the stream.
func TestShardLevelMetricsMatchWhatWasDone(t *testing.T) {
	r := newMonitorRig(t, storage.Options{})
	ctx := context.Background()
	if err := r.st.CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	r.enable("s", true, "IncomingRecords", "IncomingBytes", "OutgoingRecords", "IteratorAgeMilliseconds")
	r.putRecords("s", key0, key1, key0, key0, key1)
	if _, err := r.c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), ExplicitHashKey: aws.String(key1), Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	it, err := r.c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shard0), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator}); err != nil || len(out.Records) != 3 {
		t.Fatalf("GetRecords: %v %v", out, err)
	}
	const rec = 2 + 5 // partition key "pk" and "hello"
	checkShardSeries(t, r.scrape(), "s", []shardWant{
		{"shardlog_shard_incoming_records_total", shard0, 3},
		{"shardlog_shard_incoming_records_total", shard1, 3},
		{"shardlog_shard_incoming_bytes_total", shard0, 3 * rec},
		{"shardlog_shard_incoming_bytes_total", shard1, 2*rec + 1 + 3},
		{"shardlog_shard_outgoing_records_total", shard0, 3},
		{"shardlog_shard_iterator_age_milliseconds", shard0, 0},
		{"shardlog_shard_outgoing_bytes_total", shard0, -1}, // not enabled
		{"shardlog_shard_write_provisioned_throughput_exceeded_total", shard0, -1},
	})

	// A restart with every data-plane call throttled: the enabled set comes
	// back from meta.db, and throttles are counted on their shards.
	r.reopen(storage.Options{InjectThrottleRate: 1})
	r.enable("s", true, "WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded")
	if out := r.putRecords("s", key0, key1, key0); aws.ToInt32(out.FailedRecordCount) != 3 {
		t.Fatalf("PutRecords: %d failed, want 3 throttled", aws.ToInt32(out.FailedRecordCount))
	}
	if _, err := r.c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), ExplicitHashKey: aws.String(key1), Data: []byte("abc")}); err == nil {
		t.Fatal("PutRecord was not throttled")
	}
	if _, err := r.c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator}); err == nil {
		t.Fatal("GetRecords was not throttled")
	}
	checkShardSeries(t, r.scrape(), "s", []shardWant{
		{"shardlog_shard_write_provisioned_throughput_exceeded_total", shard0, 2},
		{"shardlog_shard_write_provisioned_throughput_exceeded_total", shard1, 2},
		{"shardlog_shard_read_provisioned_throughput_exceeded_total", shard0, 1},
		{"shardlog_shard_read_provisioned_throughput_exceeded_total", shard1, 0}, // every shard has its series once scraped
		{"shardlog_shard_incoming_records_total", shard0, 0},
		{"shardlog_shard_outgoing_records_total", shard1, 0},
		{"shardlog_shard_outgoing_bytes_total", shard0, -1},
	})

	r.reopen(storage.Options{})
	r.enable("s", false, "ALL")
	r.putRecords("s", key0, key1)
	if fams := r.scrape(); shardSeriesOf(fams, "s") != 0 {
		t.Errorf("%d shard-level series after Disable ALL, want none", shardSeriesOf(fams, "s"))
	}

	// A split closes shard 0; once retention has expired it, its series go.
	r.enable("s", true, "ALL")
	r.putRecords("s", key0)
	if _, err := r.c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("s"), ShardToSplit: aws.String(shard0), NewStartingHashKey: aws.String("1000")}); err != nil {
		t.Fatal(err)
	}
	r.putRecords("s", key0)
	fams := r.scrape()
	checkShardSeries(t, fams, "s", []shardWant{
		{"shardlog_shard_incoming_records_total", shard0, 1},
		{"shardlog_shard_incoming_records_total", "shardId-000000000002", 1},
	})
	r.now.Add(int64(25 * time.Hour))
	r.st.EnforceRetention()
	fams = r.scrape()
	checkShardSeries(t, fams, "s", []shardWant{
		{"shardlog_shard_incoming_records_total", shard0, -1},
		{"shardlog_shard_incoming_records_total", "shardId-000000000002", 1},
	})
	if n := shardSeriesOf(fams, "s"); n != 7*3 {
		t.Errorf("%d shard-level series, want 7 metrics × 3 shards", n)
	}
	if _, err := r.c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("s")}); err != nil {
		t.Fatal(err)
	}
	if fams := r.scrape(); shardSeriesOf(fams, "s") != 0 {
		t.Errorf("%d shard-level series after DeleteStream, want none", shardSeriesOf(fams, "s"))
	}
}

// TestEngineStatsMetrics: segments and bytes on disk per stream, read-only
// shards, recovery and retention deletions are on /metrics, and agree with
// storage.
func TestEngineStatsMetrics(t *testing.T) {
	r := newMonitorRig(t, storage.Options{SegmentSize: 4 << 10})
	m := NewMetrics()
	ctx := context.Background()
	if err := r.st.CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r.putRecords("s", key0, key0, key0, key0)
	}
	opts := storage.Options{SegmentSize: 4 << 10, Observer: m.Engine()}
	r.reopen(opts)
	r.srv = New(Config{Metrics: m}, StoreBackend(r.st))
	fams := r.scrape()
	st := r.st.Stats()
	sh := st.Streams[0].Shards[0]
	if sh.Segments < 2 {
		t.Fatalf("%d segments: the test needs several", sh.Segments)
	}
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"shardlog_stream_segments", map[string]string{"stream": "s"}, float64(sh.Segments)},
		{"shardlog_stream_segment_bytes", map[string]string{"stream": "s"}, float64(sh.Bytes)},
		{"shardlog_stream_read_only_shards", map[string]string{"stream": "s", "reason": "poisoned"}, 0},
		{"shardlog_stream_read_only_shards", map[string]string{"stream": "s", "reason": "corrupt"}, 0},
		{"shardlog_recovery_segments", map[string]string{"how": "trusted"}, float64(st.Recovery.TrustedSegments)},
		{"shardlog_recovery_scanned_bytes", nil, float64(st.Recovery.ScannedBytes)},
		{"shardlog_retention_deleted_segments_total", nil, 0},
	}
	for _, w := range want {
		if got, ok := seriesValue(fams, w.name, w.labels); !ok || got != w.value {
			t.Errorf("%s%v = %v (exists %v), want %v", w.name, w.labels, got, ok, w.value)
		}
	}
	if st.Recovery.TrustedSegments+st.Recovery.ScannedSegments < sh.Segments-1 { // the new active one was not recovered
		t.Errorf("recovery saw %+v, the shard has %d segments", st.Recovery, sh.Segments)
	}
	r.now.Add(int64(25 * time.Hour))
	r.st.EnforceRetention()
	after := r.st.Stats().Streams[0].Shards[0]
	fams = r.scrape()
	gotSegs, _ := seriesValue(fams, "shardlog_retention_deleted_segments_total", nil)
	gotBytes, _ := seriesValue(fams, "shardlog_retention_deleted_bytes_total", nil)
	if int(gotSegs) != sh.Segments-after.Segments || int64(gotBytes) != sh.Bytes-after.Bytes || gotSegs == 0 {
		t.Errorf("retention deleted %v segments, %v bytes; want %d, %d", gotSegs, gotBytes, sh.Segments-after.Segments, sh.Bytes-after.Bytes)
	}
}

// TestMetricsAuth: with MetricsAuth, GET /metrics needs a valid signature
// by a key allowed shardlog:GetMetrics; without it, /metrics stays open.
func TestMetricsAuth(t *testing.T) {
	st, err := storage.Open(context.Background(), storage.Options{Dir: t.TempDir(), FS: vfs.NewMemFS()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	verifier := authFileOf(t)
	tests := []struct {
		name        string
		metricsAuth bool
		key, secret string // "": unsigned
		status      int
		errType     string
	}{
		{"open without --metrics-auth", false, "", "", http.StatusOK, ""},
		{"unsigned", true, "", "", http.StatusBadRequest, "MissingAuthenticationTokenException"},
		{"signed, allowed", true, "scraper", "secret", http.StatusOK, ""},
		{"signed, kinesis:* only", true, "admin", "secret", http.StatusBadRequest, "AccessDeniedException"},
		{"wrong secret", true, "scraper", "nope", http.StatusBadRequest, "InvalidSignatureException"},
		{"unknown key", true, "stranger", "secret", http.StatusBadRequest, "UnrecognizedClientException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := httptest.NewServer(New(Config{Auth: verifier, MetricsAuth: tc.metricsAuth}, StoreBackend(st)))
			defer hs.Close()
			req, _ := http.NewRequest(http.MethodGet, hs.URL+"/metrics", nil)
			if tc.key != "" {
				signGet(t, req, tc.key, tc.secret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tc.status == http.StatusOK {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				p := expfmt.NewTextParser(model.UTF8Validation)
				if _, err := p.TextToMetricFamilies(resp.Body); err != nil {
					t.Fatalf("parse: %v", err)
				}
				return
			}
			var body struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			_ = decodeJSON(resp, &body)
			if resp.StatusCode != tc.status || body.Type != tc.errType {
				t.Fatalf("got %d %s %q, want %d %s", resp.StatusCode, body.Type, body.Message, tc.status, tc.errType)
			}
		})
	}
}

// signGet signs a GET (no body) as the SDKs sign Kinesis requests.
func signGet(t *testing.T, req *http.Request, key, secret string) {
	t.Helper()
	emptySum := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	creds := aws.Credentials{AccessKeyID: key, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, emptySum, "kinesis", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
