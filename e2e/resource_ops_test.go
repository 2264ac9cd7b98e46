package e2e

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

const arnPrefix = "arn:aws:kinesis:us-east-1:000000000000:stream/"

func tagMap(t *testing.T, c *kinesis.Client, arn string) map[string]string {
	t.Helper()
	out, err := c.ListTagsForResource(context.Background(), &kinesis.ListTagsForResourceInput{ResourceARN: aws.String(arn)})
	if err != nil {
		t.Fatalf("ListTagsForResource(%s): %v", arn, err)
	}
	m := map[string]string{}
	for _, tg := range out.Tags {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

// TestTagsByResourceWithTheSDK: CreateStream's and RegisterStreamConsumer's
// tags are listed by ListTagsForResource; TagResource and UntagResource
// change a stream's tags (the ones ListTagsForStream sees) and a
// consumer's, which survive a restart; the SDK gets AWS's error types.
func TestTagsByResourceWithTheSDK(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, t.TempDir())
	c := srv.client(1)
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("tagged"), ShardCount: aws.Int32(1),
		Tags: map[string]string{"team": "data", "env": "test"}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "tagged")
	stream := arnPrefix + "tagged"
	if got := tagMap(t, c, stream); !maps.Equal(got, map[string]string{"team": "data", "env": "test"}) {
		t.Fatalf("CreateStream's tags: %v", got)
	}
	reg, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(stream), ConsumerName: aws.String("app"),
		Tags: map[string]string{"owner": "me"}})
	if err != nil {
		t.Fatal(err)
	}
	consumer := aws.ToString(reg.Consumer.ConsumerARN)
	if got := tagMap(t, c, consumer); !maps.Equal(got, map[string]string{"owner": "me"}) {
		t.Fatalf("RegisterStreamConsumer's tags: %v", got)
	}
	for _, step := range []struct {
		arn  string
		tag  map[string]string
		drop []string
	}{
		{stream, map[string]string{"cost": "1"}, []string{"env"}},
		{consumer, map[string]string{"tier": "gold", "x": "y"}, []string{"x", "absent"}},
	} {
		if _, err := c.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(step.arn), Tags: step.tag}); err != nil {
			t.Fatalf("TagResource(%s): %v", step.arn, err)
		}
		if _, err := c.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: aws.String(step.arn), TagKeys: step.drop}); err != nil {
			t.Fatalf("UntagResource(%s): %v", step.arn, err)
		}
	}
	srv.restart()
	c = srv.client(1)
	if got := tagMap(t, c, stream); !maps.Equal(got, map[string]string{"team": "data", "cost": "1"}) {
		t.Fatalf("stream tags after restart: %v", got)
	}
	lts, err := c.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("tagged")})
	if err != nil || len(lts.Tags) != 2 {
		t.Fatalf("ListTagsForStream: %v %+v", err, lts)
	}
	if got := tagMap(t, c, consumer); !maps.Equal(got, map[string]string{"owner": "me", "tier": "gold"}) {
		t.Fatalf("consumer tags after restart: %v", got)
	}

	many := map[string]string{}
	for i := range 50 {
		many[fmt.Sprint("k", i)] = "v"
	}
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"missing stream", func() error {
			_, err := c.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: aws.String(arnPrefix + "nope")})
			return err
		}, "ResourceNotFoundException"},
		{"stale consumer ARN", func() error {
			_, err := c.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(consumer + "9"), Tags: map[string]string{"a": "b"}})
			return err
		}, "ResourceNotFoundException"},
		{"reserved prefix", func() error {
			_, err := c.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(stream), Tags: map[string]string{"aws:a": "b"}})
			return err
		}, "InvalidArgumentException"},
		{"51 consumer tags", func() error {
			_, err := c.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(consumer), Tags: many})
			return err
		}, "InvalidArgumentException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); apiErr(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
}

// TestRecordDistributionWithTheSDK: an ON_DEMAND stream switched to AUTO
// takes records without partition keys, spreads them evenly over its four
// shards (ignoring keys and explicit hash keys), reads them back without a
// key, and keeps the strategy over a restart; a PROVISIONED stream refuses
// AUTO.
func TestRecordDistributionWithTheSDK(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, t.TempDir())
	c := srv.client(1)
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	createStream(t, c, "prov", 1)
	waitActive(t, c, "od")
	_, err := c.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String(arnPrefix + "prov"), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
	if apiErr(err) != "InvalidArgumentException" {
		t.Fatalf("AUTO on a provisioned stream: %v", err)
	}
	if _, err := c.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String(arnPrefix + "od"), RecordDistributionStrategy: types.RecordDistributionStrategyAuto}); err != nil {
		t.Fatal(err)
	}
	srv.restart()
	c = srv.client(1)
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("od")})
	if err != nil || sum.StreamDescriptionSummary.RecordDistributionStrategy != types.RecordDistributionStrategyAuto {
		t.Fatalf("after restart: %v %+v", err, sum)
	}

	const n = 100 // 25 per shard
	perShard := map[string]int{}
	for i := 0; i < n; i += 10 {
		var recs []types.PutRecordsRequestEntry
		for j := range 10 {
			e := types.PutRecordsRequestEntry{Data: fmt.Appendf(nil, "r%03d", i+j)}
			if j%2 == 1 {
				e.PartitionKey, e.ExplicitHashKey = aws.String("same"), aws.String("0")
			}
			recs = append(recs, e)
		}
		out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("od"), Records: recs})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords: %v %+v", err, out)
		}
		for _, r := range out.Records {
			perShard[aws.ToString(r.ShardId)]++
		}
	}
	if len(perShard) != 4 {
		t.Fatalf("records went to %v", perShard)
	}
	keyless := 0
	for id, count := range perShard {
		if count != n/4 {
			t.Fatalf("%s took %d of %d records: %v", id, count, n, perShard)
		}
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("od"), ShardId: aws.String(id),
			ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil || len(got.Records) != n/4 {
			t.Fatalf("GetRecords(%s): %v, %d records", id, err, len(got.Records))
		}
		for _, r := range got.Records {
			if r.PartitionKey == nil {
				keyless++
			} else if *r.PartitionKey != "same" {
				t.Fatalf("partition key %q", *r.PartitionKey)
			}
		}
	}
	if keyless != n/2 {
		t.Fatalf("%d records read back without a key, want %d", keyless, n/2)
	}
	if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("od"), Data: []byte("one")}); err != nil {
		t.Fatalf("PutRecord without a key: %v", err)
	}
	if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("prov"), Data: []byte("one")}); apiErr(err) != "ValidationException" {
		t.Fatalf("PutRecord without a key on a USER_PARTITION_KEY stream: %v", err)
	}
}
