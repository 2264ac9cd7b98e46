package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

func TestEveryOperationWithTheSDK(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "ops", 2)

	put, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("ops"), PartitionKey: aws.String("a"), Data: []byte("one")})
	if err != nil || len(*put.SequenceNumber) != 56 {
		t.Fatalf("PutRecord: %v %+v", err, put)
	}
	puts, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("ops"), Records: []types.PutRecordsRequestEntry{
		{PartitionKey: aws.String("a"), Data: []byte("two")},
		{PartitionKey: aws.String("b"), Data: []byte("three"), ExplicitHashKey: aws.String("0")},
	}})
	if err != nil || aws.ToInt32(puts.FailedRecordCount) != 0 || len(puts.Records) != 2 {
		t.Fatalf("PutRecords: %v %+v", err, puts)
	}
	if *puts.Records[1].ShardId != "shardId-000000000000" {
		t.Fatalf("ExplicitHashKey 0 went to %s", *puts.Records[1].ShardId)
	}

	shards, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("ops")})
	if err != nil || len(shards.Shards) != 2 {
		t.Fatalf("ListShards: %v %+v", err, shards)
	}
	if got := *shards.Shards[0].HashKeyRange.EndingHashKey; got != "170141183460469231731687303715884105727" {
		t.Fatalf("shard 0 ends at %s", got)
	}
	page, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("ops"), MaxResults: aws.Int32(1)})
	if err != nil || len(page.Shards) != 1 || page.NextToken == nil {
		t.Fatalf("ListShards page: %v %+v", err, page)
	}
	page2, err := c.ListShards(ctx, &kinesis.ListShardsInput{NextToken: page.NextToken})
	if err != nil || len(page2.Shards) != 1 || *page2.Shards[0].ShardId != "shardId-000000000001" {
		t.Fatalf("ListShards next page: %v %+v", err, page2)
	}

	// Every iterator type on the shard holding partition key "a".
	shardA := *put.ShardId
	for _, tc := range []struct {
		typ   types.ShardIteratorType
		seq   *string
		ts    *time.Time
		first string
	}{
		{types.ShardIteratorTypeTrimHorizon, nil, nil, "one"},
		{types.ShardIteratorTypeAtSequenceNumber, put.SequenceNumber, nil, "one"},
		{types.ShardIteratorTypeAfterSequenceNumber, put.SequenceNumber, nil, "two"},
		{types.ShardIteratorTypeAtTimestamp, nil, aws.Time(time.Now().Add(-time.Minute)), "one"},
		{types.ShardIteratorTypeLatest, nil, nil, ""},
	} {
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("ops"), ShardId: aws.String(shardA),
			ShardIteratorType: tc.typ, StartingSequenceNumber: tc.seq, Timestamp: tc.ts})
		if err != nil {
			t.Fatalf("GetShardIterator %s: %v", tc.typ, err)
		}
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatalf("GetRecords %s: %v", tc.typ, err)
		}
		if out.NextShardIterator == nil {
			t.Fatalf("%s: open shard returned no NextShardIterator", tc.typ)
		}
		got := ""
		if len(out.Records) > 0 {
			got = string(out.Records[0].Data)
			if out.Records[0].ApproximateArrivalTimestamp == nil || *out.Records[0].PartitionKey != "a" {
				t.Fatalf("%s: record fields %+v", tc.typ, out.Records[0])
			}
		}
		if got != tc.first {
			t.Fatalf("%s: first record %q, want %q", tc.typ, got, tc.first)
		}
	}

	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("ops")})
	if err != nil || aws.ToInt32(sum.StreamDescriptionSummary.OpenShardCount) != 2 || sum.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
		t.Fatalf("DescribeStreamSummary: %v %+v", err, sum)
	}
	arn := *sum.StreamDescriptionSummary.StreamARN
	if arn != "arn:aws:kinesis:us-east-1:000000000000:stream/ops" {
		t.Fatalf("ARN %s", arn)
	}
	desc, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamARN: aws.String(arn)})
	if err != nil || len(desc.StreamDescription.Shards) != 2 {
		t.Fatalf("DescribeStream by ARN: %v", err)
	}
	ls, err := c.ListStreams(ctx, &kinesis.ListStreamsInput{})
	if err != nil || len(ls.StreamNames) != 1 || len(ls.StreamSummaries) != 1 {
		t.Fatalf("ListStreams: %v %+v", err, ls)
	}

	if _, err := c.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("ops"), Tags: map[string]string{"env": "test", "team": "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveTagsFromStream(ctx, &kinesis.RemoveTagsFromStreamInput{StreamName: aws.String("ops"), TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	tags, err := c.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("ops")})
	if err != nil || len(tags.Tags) != 1 || *tags.Tags[0].Key != "env" {
		t.Fatalf("ListTagsForStream: %v %+v", err, tags)
	}
	if _, err := c.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String("ops"), RetentionPeriodHours: aws.Int32(48)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecreaseStreamRetentionPeriod(ctx, &kinesis.DecreaseStreamRetentionPeriodInput{StreamName: aws.String("ops"), RetentionPeriodHours: aws.Int32(24)}); err != nil {
		t.Fatal(err)
	}
	lim, err := c.DescribeLimits(ctx, &kinesis.DescribeLimitsInput{})
	if err != nil || aws.ToInt32(lim.OpenShardCount) != 2 || aws.ToInt32(lim.ShardLimit) != 500 {
		t.Fatalf("DescribeLimits: %v %+v", err, lim)
	}
	if _, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("ops")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("ops")}); apiErr(err) != "ResourceNotFoundException" {
		t.Fatalf("deleted stream: %v", err)
	}
}

func TestErrorsWithTheSDK(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "errs", 1)
	put, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("errs"), PartitionKey: aws.String("k"), Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("errs"), ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	forged := []byte(*it.ShardIterator)
	forged[len(forged)/2] ^= 1
	tests := []struct {
		name string
		call func() error
		code string
		msg  string
	}{
		{"stream not found", func() error {
			_, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("nope")})
			return err
		}, "ResourceNotFoundException", "Stream nope under account 000000000000 not found."},
		{"stream in use", func() error {
			_, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("errs"), ShardCount: aws.Int32(1)})
			return err
		}, "ResourceInUseException", "Stream errs under account 000000000000 already exists."},
		{"shard not found", func() error {
			_, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("errs"), ShardId: aws.String("shardId-000000000007"), ShardIteratorType: types.ShardIteratorTypeLatest})
			return err
		}, "ResourceNotFoundException", "Shard shardId-000000000007 in stream errs under account 000000000000 does not exist"},
		{"sequence number from nowhere", func() error {
			_, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("errs"), ShardId: aws.String("shardId-000000000000"),
				ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: aws.String("1234")})
			return err
		}, "InvalidArgumentException", "Invalid StartingSequenceNumber. It encodes shardId-000000001234, while it was used in a call to a shard with shardId-000000000000"}, // a version-0 number (A15)
		{"forged iterator", func() error {
			_, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(string(forged))})
			return err
		}, "InvalidArgumentException", "Invalid ShardIterator."},
		{"expired iterator", func() error {
			srv.now = func() time.Time { return time.Now().Add(6 * time.Minute) }
			defer func() { srv.now = time.Now }()
			_, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
			return err
		}, "ExpiredIteratorException", "Iterator expired."},
		{"oversize record", func() error {
			_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("errs"), PartitionKey: aws.String("k"), Data: bytes.Repeat([]byte{1}, 1<<20)})
			return err
		}, "", "1048576"},
		{"oversize batch", func() error {
			recs := make([]types.PutRecordsRequestEntry, 501)
			for i := range recs {
				recs[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("k"), Data: []byte("x")}
			}
			_, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("errs"), Records: recs})
			return err
		}, "", "500"},
		{"too many bytes in a batch", func() error {
			recs := make([]types.PutRecordsRequestEntry, 11) // 11 MB: over PutRecords' 10 MiB
			for i := range recs {
				recs[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("k"), Data: bytes.Repeat([]byte{2}, 1000*1000)}
			}
			_, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("errs"), Records: recs})
			return err
		}, "InvalidArgumentException", "Records size exceeds 10 MB limit"},
		{"bad explicit hash key", func() error {
			_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("errs"), PartitionKey: aws.String("k"), Data: []byte("x"),
				ExplicitHashKey: aws.String("340282366920938463463374607431768211456")})
			return err
		}, "InvalidArgumentException", "Invalid ExplicitHashKey."},
		{"retention below minimum", func() error {
			_, err := c.DecreaseStreamRetentionPeriod(ctx, &kinesis.DecreaseStreamRetentionPeriodInput{StreamName: aws.String("errs"), RetentionPeriodHours: aws.Int32(12)})
			return err
		}, "InvalidArgumentException", "Minimum allowed retention period is 24 hours."},
		{"sequence number of another stream", func() error {
			createStream(t, c, "other", 1)
			_, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("other"), ShardId: aws.String("shardId-000000000000"),
				ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: put.SequenceNumber})
			return err
		}, "InvalidArgumentException", "is invalid because it did not come from this stream."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.code != "" && apiErr(err) != tt.code {
				t.Fatalf("code %q (%v), want %s", apiErr(err), err, tt.code)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("message %q does not contain %q", err, tt.msg)
			}
		})
	}
}
