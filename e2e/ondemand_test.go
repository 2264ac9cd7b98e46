package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/storage"
)

// rampOptions make the on-demand scaler act within seconds: it looks every
// 100 ms at half a second of writes, splits a shard at 20% of 1 MiB/s (so a
// machine too loaded to reach the ramp's rates still sees splits) and merges
// pairs under 10% after half a second. The account's shard limit bounds the
// splits at 16 shards.
func rampOptions() storage.Options {
	return storage.Options{UpdateDelay: 50 * time.Millisecond, ShardLimit: 16,
		OnDemand: storage.ScalerOptions{Interval: 100 * time.Millisecond, Window: 500 * time.Millisecond, SplitAt: 0.2, MergeBelow: 0.1,
			MergeAfter: 500 * time.Millisecond}}
}

// TestOnDemandRampWithTheSDK ramps an ON_DEMAND stream's writes 1 → 2 → 4 →
// 8 MiB/s and back, a second at each rate, then stops: the scaler splits
// shards while the load grows and merges them once it is gone, down to the
// 4 shards an on-demand stream starts with. A KCL-like reader then reads
// every acknowledged record exactly once, each key's in order, through the
// lineage (ChildShards). The rates are the writers' targets: on a slow
// machine they fall short, and the thresholds leave room for that.
func TestOnDemandRampWithTheSDK(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), rampOptions())
	c := srv.client(3)
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "od")
	r := newRamp(srv, "od")
	for _, mibps := range []int{1, 2, 4, 8, 4, 2, 1} {
		r.write(mibps<<20, time.Second)
	}
	acked, attempted := r.finish(t)

	// The stream settles back at 4 open shards once its idle pairs merged.
	var shards []types.Shard
	for i := 0; ; i++ {
		shards = odShards(t, c, "od")
		if odOpen(shards) == 4 && odMerged(shards) > 0 && r.settled(c) {
			break
		}
		if i == 600 {
			t.Fatalf("never settled at 4 open shards after merges: %d open, %d merge children", odOpen(shards), odMerged(shards))
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkSplitsThenMerges(t, shards)
	read := followLineage(t, srv.reader(), "od")
	checkExactlyOnce(t, read, acked, attempted)

	// The scaler's reshards leave a data directory clean to fsck.
	srv.stop()
	verifyClean(t, srv.dir, "after on-demand scaling")
}

// ramp writes 8 KiB records (each starting with its number, so each is
// unique) under 64 partition keys, paced to a target rate
// in 50 ms slices, from 4 concurrent writers.
type ramp struct {
	srv       *server
	stream    string
	batches   chan []types.PutRecordsRequestEntry
	wg        sync.WaitGroup
	mu        sync.Mutex
	n         int
	acked     map[string]bool
	attempted map[string]bool
	errs      []error
}

const rampRecord = 8 << 10

func newRamp(srv *server, stream string) *ramp {
	r := &ramp{srv: srv, stream: stream, batches: make(chan []types.PutRecordsRequestEntry, 4), acked: map[string]bool{}, attempted: map[string]bool{}}
	for range 4 {
		r.wg.Add(1)
		go r.writer(srv.client(3))
	}
	return r
}

// write offers bytesPerSec for d: a batch every 50 ms. When the writers lag,
// the batches wait, and the rate falls short of the target.
func (r *ramp) write(bytesPerSec int, d time.Duration) {
	const slice = 50 * time.Millisecond
	per := max(1, bytesPerSec/int(time.Second/slice)/rampRecord)
	tick := time.NewTicker(slice)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		batch := make([]types.PutRecordsRequestEntry, per)
		r.mu.Lock()
		for i := range batch {
			data := make([]byte, rampRecord)
			copy(data, fmt.Sprintf("%d-", r.n))
			batch[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("k%d", r.n%64)), Data: data}
			r.attempted[string(data)] = true
			r.n++
		}
		r.mu.Unlock()
		r.batches <- batch
	}
}

func (r *ramp) writer(c *kinesis.Client) {
	defer r.wg.Done()
	for batch := range r.batches {
		for len(batch) > 0 {
			n := min(len(batch), 100)
			r.put(c, batch[:n])
			batch = batch[n:]
		}
	}
}

func (r *ramp) put(c *kinesis.Client, entries []types.PutRecordsRequestEntry) {
	out, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(r.stream), Records: entries})
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
		return
	}
	for i, e := range entries {
		if out.Records[i].ErrorCode == nil {
			r.acked[string(e.Data)] = true
		} else {
			r.errs = append(r.errs, fmt.Errorf("%s: %s", *out.Records[i].ErrorCode, aws.ToString(out.Records[i].ErrorMessage)))
		}
	}
}

// finish stops the writers; with throttling off, no write may fail.
func (r *ramp) finish(t *testing.T) (acked, attempted map[string]bool) {
	t.Helper()
	close(r.batches)
	r.wg.Wait()
	for _, err := range r.errs {
		t.Errorf("write failed: %v", err)
	}
	t.Logf("%d records of %d KiB acknowledged", len(r.acked), rampRecord>>10)
	return r.acked, r.attempted
}

// settled reports whether the stream is ACTIVE (no reshard pending).
func (r *ramp) settled(c *kinesis.Client) bool {
	out, err := c.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(r.stream)})
	return err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive
}

func odShards(t *testing.T, c *kinesis.Client, stream string) []types.Shard {
	t.Helper()
	var out []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		page, err := c.ListShards(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Shards...)
		if page.NextToken == nil {
			return out
		}
		in = &kinesis.ListShardsInput{NextToken: page.NextToken}
	}
}

func odOpen(shards []types.Shard) int {
	n := 0
	for _, sh := range shards {
		if sh.SequenceNumberRange.EndingSequenceNumber == nil {
			n++
		}
	}
	return n
}

// odMerged counts merge children: shards with two parents.
func odMerged(shards []types.Shard) int {
	n := 0
	for _, sh := range shards {
		if sh.AdjacentParentShardId != nil {
			n++
		}
	}
	return n
}

// checkSplitsThenMerges: the lineage holds split children (one parent),
// then merge children, every one created after the first split's.
func checkSplitsThenMerges(t *testing.T, shards []types.Shard) {
	t.Helper()
	firstSplit, firstMerge := "", ""
	for _, sh := range shards { // ListShards lists by shard id, which grows with creation
		id := aws.ToString(sh.ShardId)
		switch {
		case sh.ParentShardId != nil && sh.AdjacentParentShardId == nil && firstSplit == "":
			firstSplit = id
		case sh.AdjacentParentShardId != nil && firstMerge == "":
			firstMerge = id
		}
	}
	if firstSplit == "" || firstMerge == "" || firstMerge < firstSplit {
		t.Fatalf("want splits, then merges: first split child %q, first merge child %q", firstSplit, firstMerge)
	}
	t.Logf("%d shards in the lineage, first split child %s, first merge child %s", len(shards), firstSplit, firstMerge)
}

// TestCapacityOperationsWithTheSDK: UpdateStreamMode both ways with its
// limits, the account's commitment, warm throughput pre-scaling a stream,
// and the on-demand stream limit, through the SDK.
func TestCapacityOperationsWithTheSDK(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{UpdateDelay: 50 * time.Millisecond, OnDemandStreamLimit: 3,
		OnDemand: storage.ScalerOptions{Interval: -1}})
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "p", 2)
	arn := aws.String("arn:aws:kinesis:us-east-1:" + account + ":stream/p")
	mode := func(m types.StreamMode, warm *int32) error {
		_, err := c.UpdateStreamMode(ctx, &kinesis.UpdateStreamModeInput{StreamARN: arn, StreamModeDetails: &types.StreamModeDetails{StreamMode: m},
			WarmThroughputMiBps: warm})
		if err == nil {
			waitActive(t, c, "p")
		}
		return err
	}
	odWantErr(t, "same mode", mode(types.StreamModeProvisioned, nil), "InvalidArgumentException")
	if err := mode(types.StreamModeOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	sum := odSummary(t, c, "p")
	if sum.StreamModeDetails.StreamMode != types.StreamModeOnDemand || aws.ToInt32(sum.OpenShardCount) != 2 {
		t.Fatalf("after the switch: %+v", sum)
	}
	_, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("p"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("5")})
	odWantErr(t, "split an on-demand stream", err, "ValidationException")
	if err := mode(types.StreamModeProvisioned, nil); err != nil {
		t.Fatal(err)
	}
	odWantErr(t, "third switch in a day", mode(types.StreamModeOnDemand, nil), "LimitExceededException")

	// Warm throughput needs the account's commitment.
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "od")
	warm := func(n int32) (*kinesis.UpdateStreamWarmThroughputOutput, error) {
		return c.UpdateStreamWarmThroughput(ctx, &kinesis.UpdateStreamWarmThroughputInput{StreamName: aws.String("od"), WarmThroughputMiBps: aws.Int32(n)})
	}
	_, err = warm(8)
	odWantErr(t, "warm throughput without a commitment", err, "InvalidArgumentException")
	acct, err := c.DescribeAccountSettings(ctx, &kinesis.DescribeAccountSettingsInput{})
	if err != nil || acct.MinimumThroughputBillingCommitment.Status != types.MinimumThroughputBillingCommitmentOutputStatusDisabled {
		t.Fatalf("account settings: %+v, %v", acct, err)
	}
	up, err := c.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusEnabled}})
	if err != nil {
		t.Fatal(err)
	}
	mc := up.MinimumThroughputBillingCommitment
	if mc.Status != types.MinimumThroughputBillingCommitmentOutputStatusEnabled || mc.StartedAt == nil || mc.EarliestAllowedEndAt == nil ||
		mc.EarliestAllowedEndAt.Sub(*mc.StartedAt) != 24*time.Hour || mc.EndedAt != nil {
		t.Fatalf("enabled: %+v", mc)
	}
	out, err := warm(8)
	if err != nil || aws.ToInt32(out.WarmThroughput.TargetMiBps) != 8 || aws.ToInt32(out.WarmThroughput.CurrentMiBps) != 4 || aws.ToString(out.StreamName) != "od" {
		t.Fatalf("warm 8: %+v, %v", out, err)
	}
	waitActive(t, c, "od")
	sum = odSummary(t, c, "od")
	if aws.ToInt32(sum.OpenShardCount) != 8 || sum.WarmThroughput == nil || aws.ToInt32(sum.WarmThroughput.TargetMiBps) != 8 ||
		aws.ToInt32(sum.WarmThroughput.CurrentMiBps) != 8 {
		t.Fatalf("after warm 8: %+v", sum)
	}
	lineage := odShards(t, c, "od")
	if odOpen(lineage) != 8 || len(lineage) <= 8 {
		t.Fatalf("pre-scaling left no lineage: %d shards, %d open", len(lineage), odOpen(lineage))
	}
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("w"), WarmThroughputMiBps: aws.Int32(6),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "w")
	if n := aws.ToInt32(odSummary(t, c, "w").OpenShardCount); n != 6 {
		t.Fatalf("created with warm 6: %d shards", n)
	}
	_, err = c.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusDisabled}})
	if err != nil {
		t.Fatal(err)
	}
	acct, _ = c.DescribeAccountSettings(ctx, &kinesis.DescribeAccountSettingsInput{})
	if acct.MinimumThroughputBillingCommitment.Status != types.MinimumThroughputBillingCommitmentOutputStatusEnabledUntilEarliestAllowedEnd {
		t.Fatalf("disabled within 24 h: %+v", acct.MinimumThroughputBillingCommitment)
	}

	// The on-demand stream limit (3 here): od, w, then x; a fourth is refused.
	lim, err := c.DescribeLimits(ctx, &kinesis.DescribeLimitsInput{})
	if err != nil || aws.ToInt32(lim.OnDemandStreamCountLimit) != 3 || aws.ToInt32(lim.OnDemandStreamCount) != 2 {
		t.Fatalf("limits: %+v, %v", lim, err)
	}
	onDemand := &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("x"), StreamModeDetails: onDemand}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("y"), StreamModeDetails: onDemand})
	odWantErr(t, "a fourth on-demand stream", err, "LimitExceededException")
}

func odSummary(t *testing.T, c *kinesis.Client, name string) *types.StreamDescriptionSummary {
	t.Helper()
	out, err := c.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return out.StreamDescriptionSummary
}

func odWantErr(t *testing.T, what string, err error, code string) {
	t.Helper()
	if apiErr(err) != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}
