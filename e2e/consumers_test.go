package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/storage"
)

const consumerStreamARN = "arn:aws:kinesis:us-east-1:000000000000:stream/efo"

func registerConsumer(t *testing.T, c *kinesis.Client, name string) *types.Consumer {
	t.Helper()
	out, err := c.RegisterStreamConsumer(context.Background(), &kinesis.RegisterStreamConsumerInput{
		StreamARN: aws.String(consumerStreamARN), ConsumerName: aws.String(name)})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return out.Consumer
}

// waitConsumer waits (bounded by the test's timeout) until the consumer
// with this ARN is in status want, or, with want "", gone.
func waitConsumer(t *testing.T, c *kinesis.Client, arn string, want types.ConsumerStatus) {
	t.Helper()
	for {
		out, err := c.DescribeStreamConsumer(context.Background(), &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(arn)})
		switch {
		case want == "" && apiErr(err) == "ResourceNotFoundException":
			return
		case err != nil:
			t.Fatalf("describe %s: %v", arn, err)
		case out.ConsumerDescription.ConsumerStatus == want:
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsumersWithTheSDK: register, describe by ARN and by StreamARN +
// ConsumerName, list with pagination, CREATING → ACTIVE → DELETING → gone.
func TestConsumersWithTheSDK(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{ConsumerDelay: 100 * time.Millisecond})
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "efo", 1)
	var arns []string
	for i := range 3 {
		con := registerConsumer(t, c, fmt.Sprintf("app-%d", i))
		if con.ConsumerStatus != types.ConsumerStatusCreating || con.ConsumerCreationTimestamp == nil {
			t.Fatalf("registered %+v", con)
		}
		want := consumerStreamARN + "/consumer/app-" + strconv.Itoa(i) + ":" + strconv.FormatInt(con.ConsumerCreationTimestamp.Unix(), 10)
		if *con.ConsumerARN != want {
			t.Fatalf("ARN %s, want %s", *con.ConsumerARN, want)
		}
		arns = append(arns, *con.ConsumerARN)
	}
	byName, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: aws.String(consumerStreamARN), ConsumerName: aws.String("app-1")})
	if err != nil || *byName.ConsumerDescription.ConsumerARN != arns[1] || *byName.ConsumerDescription.StreamARN != consumerStreamARN {
		t.Fatalf("describe by name: %v %+v", err, byName)
	}
	for _, arn := range arns {
		waitConsumer(t, c, arn, types.ConsumerStatusActive)
	}
	checkConsumerPages(t, c, arns)
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("efo")})
	if err != nil || aws.ToInt32(sum.StreamDescriptionSummary.ConsumerCount) != 3 {
		t.Fatalf("ConsumerCount: %v %+v", err, sum)
	}
	if _, err := c.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: aws.String(arns[0])}); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(arns[0])})
	if err != nil || d.ConsumerDescription.ConsumerStatus != types.ConsumerStatusDeleting {
		t.Fatalf("after deregister: %v %+v", err, d)
	}
	waitConsumer(t, c, arns[0], "")
	// Registered again, the name gets a new ARN; the old one names nothing.
	again := registerConsumer(t, c, "app-0")
	if *again.ConsumerARN == arns[0] {
		t.Fatalf("re-registered consumer kept the ARN %s", arns[0])
	}
	_, err = c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(arns[0])})
	wantAPIError(t, err, "ResourceNotFoundException", "Consumer app-0 under stream efo")
}

// checkConsumerPages lists with MaxResults 2: two pages, in registration order.
func checkConsumerPages(t *testing.T, c *kinesis.Client, arns []string) {
	t.Helper()
	var got []string
	var token *string
	for pages := 0; ; pages++ {
		in := &kinesis.ListStreamConsumersInput{StreamARN: aws.String(consumerStreamARN), MaxResults: aws.Int32(2), NextToken: token}
		out, err := c.ListStreamConsumers(context.Background(), in)
		if err != nil || pages > 2 {
			t.Fatalf("list: %v (page %d)", err, pages)
		}
		for _, con := range out.Consumers {
			got = append(got, *con.ConsumerARN)
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	if strings.Join(got, " ") != strings.Join(arns, " ") {
		t.Fatalf("listed %v, want %v", got, arns)
	}
}

func TestConsumerLimitsWithTheSDK(t *testing.T) {
	ctx := context.Background()
	t.Run("20 per stream", func(t *testing.T) {
		srv := startServerWith(t, t.TempDir(), storage.Options{})
		c := srv.client(1)
		createStream(t, c, "efo", 1)
		for i := range 20 {
			registerConsumer(t, c, fmt.Sprintf("c%d", i))
		}
		_, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(consumerStreamARN), ConsumerName: aws.String("c20")})
		wantAPIError(t, err, "LimitExceededException", "maximum of 20 registered consumers")
	})
	t.Run("5 creating and duplicates", func(t *testing.T) {
		srv := startServerWith(t, t.TempDir(), storage.Options{ConsumerDelay: time.Hour})
		c := srv.client(1)
		createStream(t, c, "efo", 1)
		for i := range 5 {
			registerConsumer(t, c, fmt.Sprintf("c%d", i))
		}
		_, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(consumerStreamARN), ConsumerName: aws.String("c5")})
		wantAPIError(t, err, "LimitExceededException", "Only 5 consumers can be created at the same time")
		_, err = c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(consumerStreamARN), ConsumerName: aws.String("c0")})
		wantAPIError(t, err, "ResourceInUseException", "Consumer c0 under stream efo and account 000000000000 already exists.")
	})
}

// TestConsumersSurviveRestartWithTheSDK: consumers are in meta.db; after a
// restart they are listed with the same ARNs and states.
func TestConsumersSurviveRestartWithTheSDK(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{})
	c := srv.client(1)
	createStream(t, c, "efo", 1)
	con := registerConsumer(t, c, "app")
	srv.restart()
	c = srv.client(1)
	d, err := c.DescribeStreamConsumer(context.Background(), &kinesis.DescribeStreamConsumerInput{ConsumerARN: con.ConsumerARN})
	if err != nil || d.ConsumerDescription.ConsumerStatus != types.ConsumerStatusActive ||
		!d.ConsumerDescription.ConsumerCreationTimestamp.Equal(*con.ConsumerCreationTimestamp) {
		t.Fatalf("after restart: %v %+v (registered %+v)", err, d, con)
	}
}

// TestConsumersDeletedWithTheStream: DeleteStream needs
// EnforceConsumerDeletion while consumers are registered; then they go with
// the stream, and a stream created again under the name has none.
func TestConsumersDeletedWithTheStream(t *testing.T) {
	srv := startServerWith(t, t.TempDir(), storage.Options{})
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "efo", 1)
	con := registerConsumer(t, c, "app")
	_, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("efo")})
	wantAPIError(t, err, "ResourceInUseException", "has 1 registered consumers")
	if _, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("efo"), EnforceConsumerDeletion: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	createStream(t, c, "efo", 1)
	list, err := c.ListStreamConsumers(ctx, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(consumerStreamARN)})
	if err != nil || len(list.Consumers) != 0 {
		t.Fatalf("re-created stream lists %v %+v", err, list)
	}
	_, err = c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: con.ConsumerARN})
	wantAPIError(t, err, "ResourceNotFoundException", "Consumer app under stream efo")
}
