package e2e

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
)

const account = "000000000000"

// waitActive polls until the stream is ACTIVE.
func waitActive(t *testing.T, c *kinesis.Client, name string) {
	t.Helper()
	for range 300 {
		out, err := c.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("stream %s never became ACTIVE", name)
}

// TestReshardWithTheSDK: a split, a split of a child, a merge, and
// UpdateShardCount 1→2→4→3→1 (3→1 is refused as below half, as AWS does, so
// it goes 3→2→1) while four writers keep writing; a consumer that follows
// lineage reads every acknowledged record exactly once, each partition key's
// records in order.
func TestReshardWithTheSDK(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{UpdateDelay: 100 * time.Millisecond})
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "rs", 1)

	w := startWriters(srv, "rs", 4)
	step := func(what string, call func() error) {
		t.Helper()
		time.Sleep(50 * time.Millisecond)
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		waitActive(t, c, "rs")
	}
	split := func(id string, at hashkey.Key) func() error {
		return func() error {
			_, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("rs"), ShardToSplit: aws.String(id), NewStartingHashKey: aws.String(at.String())})
			return err
		}
	}
	scale := func(n int32) func() error {
		return func() error {
			out, err := c.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("rs"), TargetShardCount: aws.Int32(n), ScalingType: types.ScalingTypeUniformScaling})
			if err == nil && aws.ToInt32(out.TargetShardCount) != n {
				err = fmt.Errorf("response %+v", out)
			}
			return err
		}
	}
	quarters := hashkey.Split(4)
	step("split", split("shardId-000000000000", quarters[2].Start))
	if _, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("rs"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("5")}); apiErr(err) != "InvalidArgumentException" ||
		!strings.Contains(err.Error(), "has already been merged or split") {
		t.Fatalf("split of a closed shard: %v", err)
	}
	step("split a child", split("shardId-000000000001", quarters[1].Start))
	step("merge", func() error {
		_, err := c.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("rs"), ShardToMerge: aws.String("shardId-000000000004"), AdjacentShardToMerge: aws.String("shardId-000000000002")})
		return err
	})
	step("2→1", scale(1))
	for _, n := range []int32{2, 4, 3} {
		step(fmt.Sprintf("to %d", n), scale(n))
	}
	if err := scale(1)(); apiErr(err) != "LimitExceededException" || !strings.Contains(err.Error(), "cannot scale down below half") {
		t.Fatalf("3→1: %v", err)
	}
	step("3→2", scale(2))
	step("2→1", scale(1))
	time.Sleep(50 * time.Millisecond)
	acked, attempted := w.stop(t)

	checkListings(t, c, "rs")
	read := followLineage(t, srv.reader(), "rs")
	checkExactlyOnce(t, read, acked, attempted)

	// The resharded data directory is clean to fsck, intermediate shards included.
	srv.stop()
	verifyClean(t, srv.dir, "after resharding")
}

// writers put records under keys "w-k" with data "w-i-j" until stopped.
type writers struct {
	stopFlag  atomic.Bool
	wg        sync.WaitGroup
	mu        sync.Mutex
	acked     map[string]bool
	attempted map[string]bool
	errs      []error
}

func startWriters(srv *server, stream string, n int) *writers {
	w := &writers{acked: map[string]bool{}, attempted: map[string]bool{}}
	for i := range n {
		w.wg.Add(1)
		go w.run(srv.client(1), stream, i)
	}
	return w
}

func (w *writers) run(c *kinesis.Client, stream string, id int) {
	defer w.wg.Done()
	for i := 0; !w.stopFlag.Load(); i++ {
		entries := make([]types.PutRecordsRequestEntry, 5)
		w.mu.Lock()
		for j := range entries {
			d := fmt.Sprintf("%d-%d-%d", id, i, j)
			entries[j] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("%d-%d", id, j%3)), Data: []byte(d)}
			w.attempted[d] = true
		}
		w.mu.Unlock()
		out, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		w.mu.Lock()
		if err != nil {
			w.errs = append(w.errs, err)
		}
		for j := range entries {
			if err == nil && out.Records[j].ErrorCode == nil {
				w.acked[string(entries[j].Data)] = true
			} else if err == nil {
				w.errs = append(w.errs, fmt.Errorf("%s: %s", *out.Records[j].ErrorCode, aws.ToString(out.Records[j].ErrorMessage)))
			}
		}
		w.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// stop ends the writers; a failed write during a reshard is a bug (Put
// re-routes records whose shard closed under them).
func (w *writers) stop(t *testing.T) (acked, attempted map[string]bool) {
	t.Helper()
	w.stopFlag.Store(true)
	w.wg.Wait()
	for _, err := range w.errs {
		t.Errorf("write failed: %v", err)
	}
	return w.acked, w.attempted
}

// readRecord is a record as the consumer saw it.
type readRecord struct {
	shard, seq, key, data string
}

// followLineage is a KCL-like consumer: it starts at the shards open at the
// trim horizon, reads each to SHARD_END (NextShardIterator null) or, for an
// open shard, to its tip, and starts a child only when every parent the
// child names has ended.
func followLineage(t *testing.T, c *kinesis.Client, stream string) []readRecord {
	t.Helper()
	ctx := context.Background()
	roots, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtTrimHorizon}})
	if err != nil {
		t.Fatal(err)
	}
	var queue []types.ChildShard
	for _, sh := range roots.Shards {
		queue = append(queue, types.ChildShard{ShardId: sh.ShardId})
	}
	ended := map[string]bool{}
	var out []readRecord
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		id := *next.ShardId
		if ended[id] || !parentsEnded(next, ended) {
			if !ended[id] {
				queue = append(queue, next)
			}
			continue
		}
		recs, children := readShardToEnd(t, c, stream, id)
		out = append(out, recs...)
		ended[id] = true
		queue = append(queue, children...)
	}
	all, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range all.Shards {
		if !ended[*sh.ShardId] {
			t.Fatalf("lineage never reached %s", *sh.ShardId)
		}
	}
	return out
}

func parentsEnded(cs types.ChildShard, ended map[string]bool) bool {
	for _, p := range cs.ParentShards {
		if !ended[p] {
			return false
		}
	}
	return true
}

// readShardToEnd reads a shard from TRIM_HORIZON. A closed shard must end
// with a null NextShardIterator and ChildShards; an open one is read until a
// page is empty and caught up.
func readShardToEnd(t *testing.T, c *kinesis.Client, stream, id string) ([]readRecord, []types.ChildShard) {
	t.Helper()
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(stream), ShardId: aws.String(id), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	iter := it.ShardIterator
	var out []readRecord
	for range 10000 {
		page, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(100)})
		if err != nil {
			t.Fatalf("GetRecords %s: %v", id, err)
		}
		for _, r := range page.Records {
			out = append(out, readRecord{id, *r.SequenceNumber, *r.PartitionKey, string(r.Data)})
		}
		if page.NextShardIterator == nil {
			if len(page.ChildShards) == 0 {
				t.Fatalf("%s ended without ChildShards", id)
			}
			return out, page.ChildShards
		}
		if len(page.ChildShards) > 0 {
			t.Fatalf("%s: ChildShards before the end", id)
		}
		if len(page.Records) == 0 && aws.ToInt64(page.MillisBehindLatest) == 0 {
			return out, nil
		}
		iter = page.NextShardIterator
	}
	t.Fatalf("%s never ended", id)
	return nil, nil
}

// checkExactlyOnce: every acknowledged record read once, nothing read that
// was never attempted, and each key's sequence numbers increasing in the
// order read.
func checkExactlyOnce(t *testing.T, read []readRecord, acked, attempted map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]*big.Int{}
	for _, r := range read {
		seen[r.data]++
		if !attempted[r.data] {
			t.Fatalf("phantom record %q on %s", r.data, r.shard)
		}
		n, _ := new(big.Int).SetString(r.seq, 10)
		if p := last[r.key]; p != nil && p.Cmp(n) >= 0 {
			t.Fatalf("key %s: %s (%s) read after %s", r.key, r.seq, r.shard, p)
		}
		last[r.key] = n
	}
	for d := range seen {
		if seen[d] != 1 {
			t.Fatalf("record %q read %d times", d, seen[d])
		}
	}
	for d := range acked {
		if seen[d] != 1 {
			t.Fatalf("acknowledged record %q read %d times", d, seen[d])
		}
	}
	t.Logf("%d acknowledged records read once each, in key order", len(acked))
}

// checkListings: DescribeStream and ListShards show closed parents with
// EndingSequenceNumber and children with their parents; the ShardFilter
// types select as the reference says.
func checkListings(t *testing.T, c *kinesis.Client, stream string) {
	t.Helper()
	ctx := context.Background()
	desc, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	shards := desc.StreamDescription.Shards
	open := 0
	for _, sh := range shards {
		if sh.SequenceNumberRange.EndingSequenceNumber == nil {
			open++
		}
		if *sh.ShardId != "shardId-000000000000" && sh.ParentShardId == nil {
			t.Fatalf("%s has no parent", *sh.ShardId)
		}
	}
	if open != 1 {
		t.Fatalf("%d open shards, want 1", open)
	}
	count := func(f *types.ShardFilter) int {
		out, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream), ShardFilter: f})
		if err != nil {
			t.Fatalf("ListShards %+v: %v", f, err)
		}
		return len(out.Shards)
	}
	past, future := aws.Time(time.Now().Add(-time.Hour)), aws.Time(time.Now().Add(time.Hour))
	for _, tc := range []struct {
		f    *types.ShardFilter
		want int
	}{
		{nil, len(shards)},
		{&types.ShardFilter{Type: types.ShardFilterTypeFromTrimHorizon}, len(shards)},
		{&types.ShardFilter{Type: types.ShardFilterTypeAtLatest}, 1},
		{&types.ShardFilter{Type: types.ShardFilterTypeAtTrimHorizon}, 1},
		{&types.ShardFilter{Type: types.ShardFilterTypeAfterShardId, ShardId: aws.String("shardId-000000000002")}, len(shards) - 3},
		{&types.ShardFilter{Type: types.ShardFilterTypeAtTimestamp, Timestamp: past}, 1},
		{&types.ShardFilter{Type: types.ShardFilterTypeFromTimestamp, Timestamp: past}, len(shards)},
		{&types.ShardFilter{Type: types.ShardFilterTypeFromTimestamp, Timestamp: future}, 1},
	} {
		if got := count(tc.f); got != tc.want {
			t.Fatalf("ListShards %+v: %d shards, want %d", tc.f, got, tc.want)
		}
	}
	// GetShardIterator on a closed shard at its EndingSequenceNumber.
	end := shards[0].SequenceNumberRange.EndingSequenceNumber
	_, err = c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(stream), ShardId: shards[0].ShardId, ShardIteratorType: types.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: end})
	if apiErr(err) != "InvalidArgumentException" {
		t.Fatalf("AFTER_SEQUENCE_NUMBER at the end of a closed shard: %v", err)
	}
}

// TestReshardErrorsWithTheSDK: AWS's answers to invalid resharding requests.
func TestReshardErrorsWithTheSDK(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{ShardLimit: 7, UpdateDelay: time.Hour})
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "e", 2)
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"), StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "od")
	splitReq := func(stream, id, key string) func() error {
		return func() error {
			_, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(stream), ShardToSplit: aws.String(id), NewStartingHashKey: aws.String(key)})
			return err
		}
	}
	mergeReq := func(a, b string) func() error {
		return func() error {
			_, err := c.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("e"), ShardToMerge: aws.String(a), AdjacentShardToMerge: aws.String(b)})
			return err
		}
	}
	scaleReq := func(stream string, n int32) func() error {
		return func() error {
			_, err := c.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String(stream), TargetShardCount: aws.Int32(n), ScalingType: types.ScalingTypeUniformScaling})
			return err
		}
	}
	half := hashkey.Split(2)[1].Start
	tests := []struct {
		name string
		call func() error
		code string
		msg  string
	}{
		{"hash key at the shard's start", splitReq("e", "shardId-000000000001", half.String()), "InvalidArgumentException",
			"NewStartingHashKey " + half.String() + " used in SplitShard() on shard shardId-000000000001 in stream e under account " + account + " is not both greater than one plus the shard's StartingHashKey"},
		{"hash key past the shard's end", splitReq("e", "shardId-000000000000", half.String()), "InvalidArgumentException", "is not both greater than one plus"},
		{"hash key not a number", splitReq("e", "shardId-000000000000", "12x"), "ValidationException", "newStartingHashKey"},
		{"missing shard", splitReq("e", "shardId-000000000009", "5"), "ResourceNotFoundException", "Could not find shard shardId-000000000009 in stream e under account " + account + "."},
		{"missing stream", splitReq("nope", "shardId-000000000000", "5"), "ResourceNotFoundException", "Stream nope under account " + account + " not found."},
		{"on-demand stream", splitReq("od", "shardId-000000000000", "5"), "ValidationException", "ON_DEMAND"},
		{"merge with itself", mergeReq("shardId-000000000000", "shardId-000000000000"), "InvalidArgumentException", "are not an adjacent pair of shards eligible for merging"},
		{"more than double", scaleReq("e", 5), "LimitExceededException", "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: 2, Target shard count: 5"},
		{"shard limit", scaleReq("e", 4), "LimitExceededException", "This request would exceed the shard limit for the account " + account + " in us-east-1."},
		{"on-demand scaling", scaleReq("od", 5), "ValidationException", "ON_DEMAND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantAPIError(t, tt.call(), tt.code, tt.msg) })
	}
	if err := splitReq("e", "shardId-000000000000", "5")(); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, mergeReq("shardId-000000000002", "shardId-000000000003")(), "ResourceInUseException", "Stream e under account "+account+" not ACTIVE, instead in state UPDATING")
}

func wantAPIError(t *testing.T, err error, code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if apiErr(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("got %q %v, want %s containing %q", apiErr(err), err, code, msg)
	}
}

// TestReshardRestartDuringUpdating: crash scenario "restart while a split is
// UPDATING". The split takes effect when UPDATING ends, restart or not: after
// the restart the stream is still UPDATING with its old shard (open, taking
// writes), then turns ACTIVE with the children; records written before the
// split, during UPDATING and after are all there.
func TestReshardRestartDuringUpdating(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{UpdateDelay: 3 * time.Second}) // longer than a restart takes
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "u", 1)
	put := func(d, wantShard string) {
		t.Helper()
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("u"), PartitionKey: aws.String(d), Data: []byte(d), ExplicitHashKey: aws.String("1")})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(out.ShardId) != wantShard {
			t.Fatalf("put %s landed on %s, want %s", d, aws.ToString(out.ShardId), wantShard)
		}
	}
	put("before", "shardId-000000000000")
	if _, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("u"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(hashkey.Split(2)[1].Start.String())}); err != nil {
		t.Fatal(err)
	}
	srv.restart()
	c = srv.client(1)
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("u")})
	if err != nil || sum.StreamDescriptionSummary.StreamStatus != types.StreamStatusUpdating || aws.ToInt32(sum.StreamDescriptionSummary.OpenShardCount) != 1 {
		t.Fatalf("after restart: %v %+v, want UPDATING with the one old shard open", err, sum.StreamDescriptionSummary)
	}
	put("during", "shardId-000000000000")
	waitActive(t, c, "u")
	put("after", "shardId-000000000001")
	read := followLineage(t, srv.reader(), "u")
	var got []string
	for _, r := range read {
		got = append(got, r.data)
	}
	sort.Strings(got)
	if fmt.Sprint(got) != "[after before during]" {
		t.Fatalf("read %v", got)
	}
}
