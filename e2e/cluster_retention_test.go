package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestClusterRetentionProcesses: three `serve --cluster` processes and the
// Go SDK. Increase/DecreaseStreamRetentionPeriod change the period on every
// node, with AWS's texts; `fsck verify` of each stopped node's data
// directory is clean; restarted with their clocks 25 hours ahead, no node
// returns the old records, every node deletes its replica's expired
// segments (all but the newest), and records written afterwards are read.
func TestClusterRetentionProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t)
	ctx := context.Background()
	stream := aws.String("cl")
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: stream, ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream ACTIVE through node 3", func() error {
		out, err := c.procs[3].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: stream})
		if err == nil && out.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
		}
		return err
	})
	c.checkRetentionCalls(stream)

	// Small segments (the last --segment-size wins), so the data spans several.
	segFlags := []string{"--segment-size", "4096"}
	for id := uint64(1); id <= 3; id++ {
		c.procs[id].terminate()
		c.procs[id] = startProcess(t, c.bin, c.dirs[id], append(c.clusterArgs(id), segFlags...)...)
	}
	for round := range 12 {
		if !c.put(1+uint64(round%3), round, 50) {
			t.Fatalf("PutRecords round %d failed", round)
		}
	}
	if err := c.verify(2); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		c.procs[id].terminate()
		out, err := exec.Command(c.bin, "fsck", "verify", c.dirs[id]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "\ngroup cluster/groups/0000000000000002/") || !strings.HasSuffix(string(out), "OK\n") {
			t.Fatalf("fsck verify of node %d: %v\n%s", id, err, out)
		}
		if n := c.segments(id); n < 3 {
			t.Fatalf("node %d holds %d segments of the shard; the test needs several", id, n)
		}
	}

	old := c.acked
	c.acked = map[string]string{}
	later := append(segFlags, "--debug-clock-offset", "25h", "--debug-retention-interval", "100ms")
	for id := uint64(1); id <= 3; id++ {
		c.procs[id] = startProcess(t, c.bin, c.dirs[id], append(c.clusterArgs(id), later...)...)
	}
	for id := uint64(1); id <= 3; id++ {
		waitFor(t, fmt.Sprintf("node %d deletes its expired segments", id), func() error {
			if n := c.segments(id); n != 1 {
				return fmt.Errorf("%d segments", n)
			}
			return nil
		})
	}
	for round := 100; round < 103; round++ {
		if !c.put(1+uint64(round%3), round, 50) {
			t.Fatalf("PutRecords round %d failed", round)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		if err := c.verify(id); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
		if got := c.readData(id); len(got) != len(c.acked) {
			t.Fatalf("node %d reads %d records, %d written after the restart (%d expired before)", id, len(got), len(c.acked), len(old))
		}
	}
}

func (c *clusterProcs) clusterArgs(id uint64) []string {
	return []string{"--cluster", "--node-id", fmt.Sprint(id), "--peers", c.peers, "--cluster-token", clusterToken}
}

// segments counts node id's segment files of the stream's one shard (group
// 2: the first after the metadata group).
func (c *clusterProcs) segments(id uint64) int {
	names, err := filepath.Glob(filepath.Join(c.dirs[id], "cluster", "groups", "0000000000000002", "*", "*.seg"))
	if err != nil {
		c.t.Fatal(err)
	}
	return len(names)
}

// readData reads shard 0 through node id from TRIM_HORIZON to the tip.
func (c *clusterProcs) readData(id uint64) []string {
	cl := c.procs[id].client()
	ctx := context.Background()
	it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("cl"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for iter := it.ShardIterator; iter != nil; {
		res, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(100)})
		if err != nil {
			c.t.Fatal(err)
		}
		for _, r := range res.Records {
			out = append(out, string(r.Data))
		}
		if len(res.Records) == 0 && aws.ToInt64(res.MillisBehindLatest) == 0 {
			break
		}
		iter = res.NextShardIterator
	}
	return out
}

// checkRetentionCalls: the period changes through any node and every node
// describes it; a wrong direction is refused with AWS's text.
func (c *clusterProcs) checkRetentionCalls(stream *string) {
	ctx := context.Background()
	if _, err := c.procs[2].client().IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: stream, RetentionPeriodHours: aws.Int32(48)}); err != nil {
		c.t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		out, err := c.procs[id].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: stream})
		if err != nil || aws.ToInt32(out.StreamDescriptionSummary.RetentionPeriodHours) != 48 {
			c.t.Fatalf("node %d: %v, %+v", id, err, out)
		}
	}
	_, err := c.procs[3].client().IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: stream, RetentionPeriodHours: aws.Int32(30)})
	var ae interface {
		ErrorCode() string
		ErrorMessage() string
	}
	want := "Requested retention period (30 hours) for stream cl can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API."
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidArgumentException" || ae.ErrorMessage() != want {
		c.t.Fatalf("increase to a lower period: %v", err)
	}
	if _, err := c.procs[1].client().DecreaseStreamRetentionPeriod(ctx, &kinesis.DecreaseStreamRetentionPeriodInput{StreamName: stream, RetentionPeriodHours: aws.Int32(24)}); err != nil {
		c.t.Fatal(err)
	}
}
