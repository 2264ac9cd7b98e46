package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestClusterOnDemandProcesses: three `serve --cluster` processes and the
// Go SDK. CreateStream ON_DEMAND through node 1 makes 4 shards;
// UpdateStreamMode to PROVISIONED through node 2 and back through node 3
// are described alike by every node (DescribeStreamSummary), and a third
// switch within 24 hours is refused with single-node mode's answer; the
// account's commitment enabled through node 1 is described by node 3, and
// then DescribeStreamSummary shows the warm throughput everywhere;
// DescribeLimits counts the ON_DEMAND stream under --on-demand-stream-limit.
func TestClusterOnDemandProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t, "--on-demand-stream-limit", "3")
	cl := func(id uint64) *kinesis.Client { return c.procs[id].client() }
	ctx := context.Background()
	stream := aws.String("od")
	arn := aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/od")
	if _, err := cl(1).CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: stream,
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(cl, stream)
	c.waitMode(stream, types.StreamModeOnDemand, 4, nil)
	lim, err := cl(2).DescribeLimits(ctx, &kinesis.DescribeLimitsInput{})
	if err != nil || aws.ToInt32(lim.OnDemandStreamCount) != 1 || aws.ToInt32(lim.OnDemandStreamCountLimit) != 3 {
		t.Fatalf("DescribeLimits: %v %+v", err, lim)
	}

	mode := func(id uint64, m types.StreamMode) error {
		_, err := cl(id).UpdateStreamMode(ctx, &kinesis.UpdateStreamModeInput{StreamARN: arn, StreamModeDetails: &types.StreamModeDetails{StreamMode: m}})
		return err
	}
	if err := mode(2, types.StreamModeProvisioned); err != nil {
		t.Fatal(err)
	}
	c.waitMode(stream, types.StreamModeProvisioned, 4, nil)
	if err := mode(3, types.StreamModeOnDemand); err != nil {
		t.Fatal(err)
	}
	c.waitMode(stream, types.StreamModeOnDemand, 4, nil)
	wantExactError(t, "a third switch within 24 hours", mode(1, types.StreamModeProvisioned), "LimitExceededException",
		"Exceeded the limit of 2 UpdateStreamMode calls per rolling 24 hours for stream od under account 000000000000.")

	if _, err := cl(1).UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{
		MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{Status: types.MinimumThroughputBillingCommitmentInputStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	acct, err := cl(3).DescribeAccountSettings(ctx, &kinesis.DescribeAccountSettingsInput{})
	if err != nil || acct.MinimumThroughputBillingCommitment == nil ||
		acct.MinimumThroughputBillingCommitment.Status != types.MinimumThroughputBillingCommitmentOutputStatusEnabled {
		t.Fatalf("DescribeAccountSettings through node 3: %v %+v", err, acct)
	}
	c.waitMode(stream, types.StreamModeOnDemand, 4, aws.Int32(4))
}

// waitMode waits until every node's DescribeStreamSummary shows the stream
// ACTIVE in mode with open shards, and warm (nil: none) as its
// WarmThroughput's CurrentMiBps.
func (c *clusterProcs) waitMode(stream *string, mode types.StreamMode, open int32, warm *int32) {
	for id := uint64(1); id <= 3; id++ {
		waitFor(c.t, fmt.Sprintf("%s with %d shards through node %d", mode, open, id), func() error {
			out, err := c.procs[id].client().DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: stream})
			if err != nil {
				return err
			}
			s := out.StreamDescriptionSummary
			var cur *int32
			if s.WarmThroughput != nil {
				cur = s.WarmThroughput.CurrentMiBps
			}
			if s.StreamStatus != types.StreamStatusActive || s.StreamModeDetails == nil || s.StreamModeDetails.StreamMode != mode ||
				aws.ToInt32(s.OpenShardCount) != open || aws.ToInt32(cur) != aws.ToInt32(warm) || (cur == nil) != (warm == nil) {
				return fmt.Errorf("%s, %+v, %d open, warm current %v", s.StreamStatus, s.StreamModeDetails, aws.ToInt32(s.OpenShardCount), cur)
			}
			return nil
		})
	}
}
