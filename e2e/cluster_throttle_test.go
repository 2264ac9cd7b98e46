package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestClusterThrottleProcesses: three `shardlog serve --cluster
// --throttle=true` processes. Bursts of PutRecords beyond 1,000 records/s
// to a one-shard stream, sent through a node that does not lead the shard,
// are admitted by the leader's bucket: some records come back with
// ProvisionedThroughputExceededException and single-node mode's message,
// and that node's /metrics counts them, besides the engine series a
// cluster node reports (shardlog_stream_segments, the recovery time) and
// not those it leaves out (segment bytes, what recovery scanned).
func TestClusterThrottleProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t, "--throttle=true")
	createStream(t, c.procs[1].client(), "cl", 1)
	var via uint64
	waitFor(t, "shard 0 has a leader", func() error {
		st := c.status(1)
		leader := st.Groups[fmt.Sprint(st.Shards["cl/shardId-000000000000"])].Leader
		if leader == 0 {
			return fmt.Errorf("no leader: %+v", st)
		}
		via = leader%3 + 1
		return nil
	})
	cl := c.procs[via].client()
	// Four concurrent requests of 500 records (2,000 at once, four times
	// the bucket of half a second's records), until one comes back
	// throttled: with no timed assertion, a slow machine only takes more
	// rounds.
	var throttled, refusedCalls int
	for round := 0; throttled == 0 && round < 50; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for r := range 4 {
			wg.Go(func() {
				entries := make([]types.PutRecordsRequestEntry, 500)
				for i := range entries {
					entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("k%d-%d-%d", round, r, i)), Data: []byte("x")}
				}
				out, err := cl.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String("cl"), Records: entries})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refusedCalls++ // a leader change, say; the metric may count records of it
					return
				}
				for _, rec := range out.Records {
					if rec.ErrorCode == nil || *rec.ErrorCode != "ProvisionedThroughputExceededException" {
						continue
					}
					throttled++
					want := regexp.MustCompile(`^Rate exceeded for shard shardId-000000000000 in stream cl under account \d{12}\.$`)
					if !want.MatchString(aws.ToString(rec.ErrorMessage)) {
						t.Errorf("ErrorMessage %q", aws.ToString(rec.ErrorMessage))
					}
				}
			})
		}
		wg.Wait()
	}
	if throttled == 0 {
		t.Fatalf("no record throttled in 50 rounds of 2,000 records through node %d (%d calls failed)", via, refusedCalls)
	}
	metrics := scrape(t, c.procs[via].endpoint)
	got := metricValue(t, metrics, `shardlog_stream_write_provisioned_throughput_exceeded_total{stream="cl"}`)
	// The client does not retry (RetryMaxAttempts 1): the node counted
	// exactly the throttled records it answered.
	if got < float64(throttled) || (refusedCalls == 0 && got != float64(throttled)) {
		t.Fatalf("node %d counts %v throttled records, the client saw %d (%d calls failed)", via, got, throttled, refusedCalls)
	}
	if segs := metricValue(t, metrics, `shardlog_stream_segments{stream="cl"}`); segs < 1 {
		t.Fatalf("node %d reports %v segments of its replica", via, segs)
	}
	metricValue(t, metrics, "shardlog_recovery_duration_seconds")
	for _, unknown := range []string{"shardlog_stream_segment_bytes{", "shardlog_recovery_scanned_bytes ", "shardlog_recovery_segments{"} {
		if strings.Contains(metrics, unknown) {
			t.Fatalf("a cluster node reports %s, which it does not know", strings.TrimRight(unknown, "{ "))
		}
	}
}

func scrape(t *testing.T, endpoint string) string {
	t.Helper()
	resp, err := http.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	return string(b)
}

// metricValue is the value of one series in a Prometheus exposition.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}
