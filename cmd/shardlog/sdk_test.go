package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/hashicorp/go-hclog"
)

// startServer runs `shardlog serve` over the real storage engine in a
// temporary directory and returns an AWS SDK client pointed at it.
func startServer(t testing.TB) *kinesis.Client {
	t.Helper()
	o := testOptions()
	o.dataDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, o, openStore, hclog.NewNullLogger(), func(e endpoints) { addrc <- e.plain })
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return kinesis.New(kinesis.Options{
		Region:       "eu-central-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String("http://" + addr.String()),
	})
}

// TestSDKSmoke drives the main operations with the AWS SDK for Go v2 against
// the real engine: the wire format, as the SDK parses it, end to end.
func TestSDKSmoke(t *testing.T) {
	c := startServer(t)
	ctx := context.Background()
	name := aws.String("smoke")
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var entries []types.PutRecordsRequestEntry
	for i := range 20 {
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprint("pk", i)), Data: []byte(fmt.Sprint("data", i))})
	}
	pr, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: name, Records: entries})
	if err != nil || aws.ToInt32(pr.FailedRecordCount) != 0 || len(pr.Records) != 20 {
		t.Fatalf("PutRecords: %+v %v", pr, err)
	}
	one, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String("arn:aws:kinesis:eu-central-1:000000000000:stream/smoke"), PartitionKey: aws.String("x"), Data: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	shards, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: name})
	if err != nil || len(shards.Shards) != 2 {
		t.Fatalf("ListShards: %+v %v", shards, err)
	}
	got := 0
	for _, sh := range shards.Shards {
		got += readShard(t, c, name, sh.ShardId)
	}
	if got != 21 {
		t.Fatalf("read %d records, want 21", got)
	}
	after, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: one.ShardId,
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: one.SequenceNumber})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: after.ShardIterator})
	if err != nil || len(rec.Records) != 1 || !bytes.Equal(rec.Records[0].Data, []byte("one")) || rec.Records[0].ApproximateArrivalTimestamp == nil {
		t.Fatalf("AT_SEQUENCE_NUMBER: %+v %v", rec, err)
	}
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	if err != nil || aws.ToInt32(sum.StreamDescriptionSummary.OpenShardCount) != 2 || sum.StreamDescriptionSummary.StreamCreationTimestamp == nil {
		t.Fatalf("summary: %+v %v", sum, err)
	}

	var notFound *types.ResourceNotFoundException
	if _, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("nope")}); !errors.As(err, &notFound) {
		t.Fatalf("missing stream: %v", err)
	}
	var invalid *types.InvalidArgumentException
	if _, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String("AAAAAAAAAAEforged")}); !errors.As(err, &invalid) {
		t.Fatalf("forged iterator: %v", err)
	}
	if _, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: name}); err != nil {
		t.Fatal(err)
	}
}

func readShard(t *testing.T, c *kinesis.Client, name, shard *string) int {
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: shard, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil || res.NextShardIterator == nil {
		t.Fatalf("GetRecords: %+v %v", res, err)
	}
	return len(res.Records)
}

// BenchmarkSDKPutRecords measures PutRecords of 500 × 1 KiB records end to
// end (SDK client, HTTP, API, durable storage) with 4 concurrent clients.
func BenchmarkSDKPutRecords(b *testing.B) {
	c := startServer(b)
	ctx := context.Background()
	name := aws.String("bench")
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(4)}); err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte{'x'}, 1024)
	entries := make([]types.PutRecordsRequestEntry, 500)
	for i := range entries {
		entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprint("pk-", i)), Data: data}
	}
	b.SetParallelism(2) // 2 × GOMAXPROCS(2) = 4 clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: name, Records: entries})
			if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
				b.Errorf("PutRecords: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
}
