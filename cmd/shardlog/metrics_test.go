package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs url and parses it with Prometheus's own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// value is the value of the family's series whose labels include want
// (a histogram's sample count); -1 when there is no such series.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

type expect struct {
	name   string
	labels map[string]string
	want   float64
}

func checkMetrics(t *testing.T, families map[string]*dto.MetricFamily, cases []expect) {
	t.Helper()
	for _, c := range cases {
		if got := value(families, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestMetricsMatchWhatWasDone puts records (PutRecord and PutRecords), reads
// them and forces throttles, and checks that /metrics reports exactly that:
// first on the main listener, then, after a restart over the same data with
// every data-plane call throttled, on --metrics-listen.
func TestMetricsMatchWhatWasDone(t *testing.T) {
	dir := t.TempDir()
	stream := map[string]string{"stream": "metered"}
	var iterator *string
	t.Run("main listener", func(t *testing.T) {
		o := fastOptions()
		o.dataDir = dir
		ep := serveFor(t, o, nil)
		c, _ := sdkClient("http://"+ep.plain.String(), http.DefaultTransport)
		ctx := context.Background()
		createActiveStream(t, c, "metered")
		for range 3 {
			if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("metered"), PartitionKey: aws.String("k"), Data: []byte("abc")}); err != nil {
				t.Fatal(err)
			}
		}
		entries := make([]types.PutRecordsRequestEntry, 5)
		for i := range entries {
			entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("pk"), Data: []byte("hello")}
		}
		if out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("metered"), Records: entries}); err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords: %v %v", out, err)
		}
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("metered"), ShardId: aws.String("shardId-000000000000"),
			ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iterator = it.ShardIterator
		res, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil || len(res.Records) != 8 {
			t.Fatalf("GetRecords: %d records, %v", len(res.Records), err)
		}
		if _, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("missing")}); err == nil {
			t.Fatal("DescribeStream of a missing stream succeeded")
		}
		families := scrape(t, "http://"+ep.plain.String()+"/metrics")
		checkEngine(t, families, 8)
		checkMetrics(t, families, []expect{
			{"shardlog_stream_incoming_records_total", stream, 8},
			{"shardlog_stream_incoming_bytes_total", stream, 3*4 + 5*7},
			{"shardlog_stream_put_record_success_total", stream, 3},
			{"shardlog_stream_put_record_bytes_total", stream, 12},
			{"shardlog_stream_put_record_latency_seconds", stream, 3},
			{"shardlog_stream_put_records_success_total", stream, 1},
			{"shardlog_stream_put_records_total_records_total", stream, 5},
			{"shardlog_stream_put_records_successful_records_total", stream, 5},
			{"shardlog_stream_put_records_throttled_records_total", stream, 0},
			{"shardlog_stream_put_records_bytes_total", stream, 35},
			{"shardlog_stream_put_records_latency_seconds", stream, 1},
			{"shardlog_stream_get_records_success_total", stream, 1},
			{"shardlog_stream_get_records_records_total", stream, 8},
			{"shardlog_stream_get_records_bytes_total", stream, 47},
			{"shardlog_stream_get_records_latency_seconds", stream, 1},
			{"shardlog_stream_get_records_iterator_age_milliseconds", stream, 0},
			{"shardlog_stream_write_provisioned_throughput_exceeded_total", stream, 0},
			{"shardlog_requests_total", map[string]string{"operation": "PutRecord", "error": ""}, 3},
			{"shardlog_requests_total", map[string]string{"operation": "GetRecords", "error": ""}, 1},
			{"shardlog_requests_total", map[string]string{"operation": "DescribeStream", "error": "ResourceNotFoundException"}, 1},
			{"shardlog_request_duration_seconds", map[string]string{"operation": "PutRecords"}, 1},
			{"shardlog_requests_in_flight", nil, 1}, // the scrape itself
		})
	})
	t.Run("metrics listener, every call throttled", func(t *testing.T) {
		o := fastOptions()
		o.dataDir, o.injectThrottleRate, o.metricsListen = dir, 1, "127.0.0.1:0"
		ep := serveFor(t, o, nil)
		c, _ := sdkClient("http://"+ep.plain.String(), http.DefaultTransport)
		ctx := context.Background()
		for range 2 {
			if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("metered"), PartitionKey: aws.String("k"), Data: []byte("abc")}); err == nil {
				t.Fatal("PutRecord was not throttled")
			}
		}
		entries := make([]types.PutRecordsRequestEntry, 4)
		for i := range entries {
			entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("pk"), Data: []byte("hello")}
		}
		if out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("metered"), Records: entries}); err != nil || aws.ToInt32(out.FailedRecordCount) != 4 {
			t.Fatalf("PutRecords: %v %v", out, err)
		}
		if _, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iterator}); err == nil {
			t.Fatal("GetRecords was not throttled")
		}
		checkMetrics(t, scrape(t, "http://"+ep.metrics.String()+"/metrics"), []expect{
			{"shardlog_stream_incoming_records_total", stream, 0},
			{"shardlog_stream_put_record_failure_total", stream, 2},
			{"shardlog_stream_put_records_failure_total", stream, 1},
			{"shardlog_stream_put_records_throttled_records_total", stream, 4},
			{"shardlog_stream_write_provisioned_throughput_exceeded_total", stream, 2 + 4},
			{"shardlog_stream_read_provisioned_throughput_exceeded_total", stream, 1},
			{"shardlog_stream_get_records_failure_total", stream, 1},
			{"shardlog_requests_total", map[string]string{"operation": "PutRecord", "error": "ProvisionedThroughputExceededException"}, 2},
			{"shardlog_requests_total", map[string]string{"operation": "GetRecords", "error": "ProvisionedThroughputExceededException"}, 1},
			{"shardlog_requests_in_flight", nil, 0},
		})
		// The main listener now answers /metrics as AWS answers any GET.
		main := get(t, "http://"+ep.plain.String()+"/metrics")
		other := get(t, "http://"+ep.plain.String()+"/elsewhere")
		if main.status != other.status || main.body != other.body || main.status == http.StatusOK {
			t.Errorf("main listener GET /metrics = %d %q; GET /elsewhere = %d %q", main.status, main.body, other.status, other.body)
		}
	})
}

type answer struct {
	status int
	body   string
}

func get(t *testing.T, url string) answer {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, string(b)}
}

// checkEngine checks the engine's metrics after records were committed with
// --sync always: every record is in a commit, and commits were synced.
func checkEngine(t *testing.T, families map[string]*dto.MetricFamily, records float64) {
	t.Helper()
	commits := families["shardlog_commit_records"].GetMetric()
	if len(commits) != 1 || commits[0].GetHistogram().GetSampleSum() != records {
		t.Errorf("shardlog_commit_records = %v, want a sum of %v records", commits, records)
	}
	if n := value(families, "shardlog_fdatasync_duration_seconds", nil); n < 1 {
		t.Errorf("shardlog_fdatasync_duration_seconds has %v samples, want at least 1", n)
	}
	if raw, stored := value(families, "shardlog_commit_raw_bytes_total", nil), value(families, "shardlog_commit_stored_bytes_total", nil); raw <= 0 || stored <= 0 {
		t.Errorf("committed bytes raw %v, stored %v: want both positive", raw, stored)
	}
}

// authWithScraper is authYAML plus a key that may only scrape /metrics.
const authWithScraper = authYAML + `  - access_key_id: AKIDSCRAPER
    secret_access_key: scraper-secret
    account_id: "111122223333"
    user: prometheus
    policies:
      - {"Statement": [{"Effect": "Allow", "Action": "shardlog:GetMetrics", "Resource": "*"}]}
`

// TestMetricsAuthShardLevel runs the server with --auth-file and
// --metrics-auth: the Go SDK enables enhanced monitoring and puts records;
// an unsigned GET /metrics and one by a key without shardlog:GetMetrics are
// refused; a signed one parses, and its shard-level series count exactly
// the records put, per shard, until DisableEnhancedMonitoring removes them.
func TestMetricsAuthShardLevel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(authWithScraper), 0o600); err != nil {
		t.Fatal(err)
	}
	o := fastOptions()
	o.authFile, o.metricsAuth = path, true
	ep := serveFor(t, o, nil)
	url := "http://" + ep.plain.String() + "/metrics"
	c := client("http://"+ep.plain.String(), "AKIDADMIN", "admin-secret")
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("watched"), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: aws.String("watched"),
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameIncomingRecords, types.MetricsNameIncomingBytes}}); err != nil {
		t.Fatal(err)
	}
	shards, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("watched")})
	if err != nil {
		t.Fatal(err)
	}
	perShard := map[string]int{}
	for i := range 6 {
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("watched"), PartitionKey: aws.String(fmt.Sprint("key-", i)), Data: []byte("abc")})
		if err != nil {
			t.Fatal(err)
		}
		perShard[aws.ToString(out.ShardId)]++
	}
	for _, tc := range []struct {
		name        string
		key, secret string
		want        int
	}{
		{"unsigned", "", "", http.StatusBadRequest},
		{"no shardlog:GetMetrics", "AKIDADMIN", "admin-secret", http.StatusBadRequest},
		{"wrong secret", "AKIDSCRAPER", "nope", http.StatusBadRequest},
	} {
		if got := signedGet(t, url, tc.key, tc.secret); got.status != tc.want {
			t.Errorf("%s: GET /metrics = %d %s, want %d", tc.name, got.status, got.body, tc.want)
		}
	}
	fams := parseMetrics(t, signedGet(t, url, "AKIDSCRAPER", "scraper-secret"))
	for _, sh := range shards.Shards {
		id := aws.ToString(sh.ShardId)
		labels := map[string]string{"stream": "watched", "shard": id}
		checkMetrics(t, fams, []expect{
			{"shardlog_shard_incoming_records_total", labels, float64(perShard[id])},
			{"shardlog_shard_incoming_bytes_total", labels, float64(perShard[id] * (len("key-0") + 3))},
			{"shardlog_shard_outgoing_records_total", labels, -1}, // not enabled
		})
	}
	if _, err := c.DisableEnhancedMonitoring(ctx, &kinesis.DisableEnhancedMonitoringInput{StreamName: aws.String("watched"),
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameAll}}); err != nil {
		t.Fatal(err)
	}
	fams = parseMetrics(t, signedGet(t, url, "AKIDSCRAPER", "scraper-secret"))
	if f := fams["shardlog_shard_incoming_records_total"]; len(f.GetMetric()) != 0 {
		t.Errorf("shard-level series after DisableEnhancedMonitoring: %v", f.GetMetric())
	}
}

// signedGet GETs url signed with key and secret (SigV4, service kinesis),
// or unsigned when key is "".
func signedGet(t *testing.T, url, key, secret string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		creds := aws.Credentials{AccessKeyID: key, SecretAccessKey: secret}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, v4Hash(nil), "kinesis", "eu-central-1", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, string(b)}
}

func parseMetrics(t *testing.T, a answer) map[string]*dto.MetricFamily {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", a.status, a.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(a.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}
