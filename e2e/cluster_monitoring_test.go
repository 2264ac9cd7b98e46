package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestClusterShardMetricsProcesses: three `shardlog serve --cluster`
// processes. Enhanced monitoring enabled through node 1 exports the
// shard-level series on node 1 at once and on node 2 once it has applied
// the change; each node counts, for both shards, exactly the records put
// through it, and a scrape (which brings the series in line with the node's
// Stats) keeps them.
func TestClusterShardMetricsProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t)
	client := func(id uint64) *kinesis.Client { return c.procs[id].client() }
	ctx := context.Background()
	stream := aws.String("mon")
	if _, err := client(1).CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: stream, ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(client, stream)
	if _, err := client(1).EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: stream,
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameIncomingRecords}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{1, 2} {
		if id == 1 {
			// Node 1 took the call: it exports the series from its answer on.
			if m := scrape(t, c.procs[1].endpoint); !strings.Contains(m, shardSeries(0)) || !strings.Contains(m, shardSeries(1)) {
				t.Fatal("node 1 does not export the shard-level series of the monitoring it enabled")
			}
		}
		// Node 2 applies the change a moment later.
		waitFor(t, fmt.Sprintf("node %d exports the shard-level series", id), func() error {
			if m := scrape(t, c.procs[id].endpoint); !strings.Contains(m, shardSeries(0)) || !strings.Contains(m, shardSeries(1)) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		entries := []types.PutRecordsRequestEntry{
			{PartitionKey: aws.String("a"), ExplicitHashKey: aws.String("0"), Data: []byte("x")},
			{PartitionKey: aws.String("b"), ExplicitHashKey: aws.String("0"), Data: []byte("x")},
			{PartitionKey: aws.String("c"), ExplicitHashKey: aws.String("340282366920938463463374607431768211455"), Data: []byte("x")},
		}
		out, err := client(id).PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: stream, Records: entries})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords through node %d: %v, %v", id, out, err)
		}
		m := scrape(t, c.procs[id].endpoint)
		if got0, got1 := metricValue(t, m, shardSeries(0)), metricValue(t, m, shardSeries(1)); got0 != 2 || got1 != 1 {
			t.Fatalf("node %d counts %v and %v records put to shards 0 and 1, want 2 and 1", id, got0, got1)
		}
	}
}

func shardSeries(idx int) string {
	return fmt.Sprintf(`shardlog_shard_incoming_records_total{shard="shardId-00000000000%d",stream="mon"}`, idx)
}
