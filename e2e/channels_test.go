package e2e

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/storage"
)

func createOnDemand(t *testing.T, c *kinesis.Client, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}}); err != nil {
		t.Fatal(err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return "arn:aws:kinesis:us-east-1:000000000000:stream/" + name
}

func channelInput(name, streamARN string) *kinesis.CreateChannelInput {
	return &kinesis.CreateChannelInput{
		ChannelName:             aws.String(name),
		ServiceExecutionRoleARN: aws.String("arn:aws:iam::000000000000:role/delivery"),
		StreamConfigurationList: []types.ChannelStreamConfiguration{{StreamARN: aws.String(streamARN),
			RecordConfiguration: &types.RecordConfiguration{RecordFormatType: types.RecordFormatTypeJson}}},
		S3DestinationConfiguration: &types.S3DestinationConfiguration{
			StorageConfiguration: &types.S3StorageConfiguration{BucketARN: aws.String("arn:aws:s3:::lake"),
				CompressionType: types.S3CompressionTypeGzip, ExpectedBucketOwner: aws.String("000000000000"),
				OutputKeyTemplate: aws.String("raw/!{channel-name}/!{yyyy}/data!{extension}")},
		},
		Tags: map[string]string{"team": "data"},
	}
}

// waitChannel waits (bounded by the test's timeout) until the channel is in
// status want, or, with want "", gone.
func waitChannel(t *testing.T, c *kinesis.Client, arn string, want types.ChannelStatus) *types.ChannelDescription {
	t.Helper()
	for {
		out, err := c.DescribeChannel(context.Background(), &kinesis.DescribeChannelInput{ChannelARN: aws.String(arn)})
		switch {
		case want == "" && apiErr(err) == "ResourceNotFoundException":
			return nil
		case err != nil:
			t.Fatalf("describe %s: %v", arn, err)
		case out.ChannelDescription.ChannelStatus == want:
			return out.ChannelDescription
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChannelsWithTheSDK: the five channel operations through the Go SDK,
// their lifecycle, and records put while the channel is ACTIVE delivered
// (gzip, the channel's key template) to the local directory.
func TestChannelsWithTheSDK(t *testing.T) {
	out := t.TempDir()
	s := startServerWith(t, t.TempDir(), storage.Options{ChannelDelay: 50 * time.Millisecond})
	m := channel.Start(channel.StoreSource(s.store), channel.Options{Dest: channel.Dir(out), FlushEvery: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	t.Cleanup(func() { m.Close() })
	c := s.client(3)
	ctx := context.Background()
	lake := createOnDemand(t, c, "lake")
	other := createOnDemand(t, c, "other")
	createStream(t, c, "provisioned", 1)

	created, err := c.CreateChannel(ctx, channelInput("to-lake", lake))
	if err != nil {
		t.Fatal(err)
	}
	d := created.ChannelDescription
	arn := "arn:aws:kinesis:us-east-1:000000000000:channel/to-lake"
	if aws.ToString(d.ChannelARN) != arn || d.ChannelStatus != types.ChannelStatusCreating || len(aws.ToString(d.ChannelId)) != 36 ||
		aws.ToString(d.StreamConfigurationList[0].StreamARN) != lake || aws.ToInt32(d.S3DestinationConfiguration.DataFreshnessInSeconds) != 300 {
		t.Fatalf("created: %+v", d)
	}
	if _, err := c.CreateChannel(ctx, channelInput("to-lake", other)); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("same name again: %v", err)
	}
	if _, err := c.CreateChannel(ctx, channelInput("second", lake)); apiErr(err) != "LimitExceededException" {
		t.Fatalf("second channel of a stream: %v", err)
	}
	if _, err := c.CreateChannel(ctx, channelInput("p", "arn:aws:kinesis:us-east-1:000000000000:stream/provisioned")); apiErr(err) != "InvalidArgumentException" {
		t.Fatalf("provisioned stream: %v", err)
	}
	if _, err := c.CreateChannel(ctx, channelInput("o", other)); err != nil {
		t.Fatal(err)
	}
	waitChannel(t, c, arn, types.ChannelStatusActive)
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamARN: aws.String(lake)})
	if err != nil || aws.ToInt32(sum.StreamDescriptionSummary.ChannelCount) != 1 {
		t.Fatalf("summary's ChannelCount: %+v %v", sum, err)
	}
	limits, err := c.DescribeLimits(ctx, &kinesis.DescribeLimitsInput{})
	if err != nil || aws.ToInt32(limits.ChannelCount) != 2 || limits.ChannelCountLimit != nil {
		t.Fatalf("DescribeLimits' ChannelCount: %+v %v", limits, err)
	}

	var names []string
	in := &kinesis.ListChannelsInput{MaxResults: aws.Int32(1)}
	for {
		page, err := c.ListChannels(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range page.ChannelSummaries {
			names = append(names, aws.ToString(cs.ChannelName))
		}
		if page.NextToken == nil {
			break
		}
		in = &kinesis.ListChannelsInput{NextToken: page.NextToken}
	}
	if strings.Join(names, ",") != "o,to-lake" {
		t.Fatalf("listed %v", names)
	}
	filtered, err := c.ListChannels(ctx, &kinesis.ListChannelsInput{StreamFilter: []types.StreamFilter{{StreamARN: aws.String(lake)}}})
	if err != nil || len(filtered.ChannelSummaries) != 1 || aws.ToString(filtered.ChannelSummaries[0].ChannelName) != "to-lake" {
		t.Fatalf("filtered: %+v %v", filtered, err)
	}

	for i := range 20 {
		data, _ := json.Marshal(map[string]int{"n": i})
		if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String(lake), PartitionKey: aws.String("k"), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitObjects(t, filepath.Join(out, "lake"), 20); len(got) != 20 {
		t.Fatalf("delivered %d records, want 20", len(got))
	}

	upd, err := c.UpdateChannel(ctx, &kinesis.UpdateChannelInput{ChannelARN: aws.String(arn),
		S3DestinationConfiguration: &types.S3DestinationUpdateInput{DataFreshnessInSeconds: aws.Int32(600)}})
	if err != nil || upd.ChannelDescription.ChannelStatus != types.ChannelStatusUpdating {
		t.Fatalf("update: %+v %v", upd, err)
	}
	if d := waitChannel(t, c, arn, types.ChannelStatusActive); aws.ToInt32(d.S3DestinationConfiguration.DataFreshnessInSeconds) != 600 {
		t.Fatalf("after update: %+v", d.S3DestinationConfiguration)
	}

	if _, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("lake"), EnforceConsumerDeletion: aws.Bool(true)}); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("delete a stream with a channel: %v", err)
	}
	if _, err := c.DeleteChannel(ctx, &kinesis.DeleteChannelInput{ChannelARN: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	waitChannel(t, c, arn, "")
	if _, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("lake")}); err != nil {
		t.Fatalf("delete the stream once its channel is gone: %v", err)
	}

	m.Close()
	s.restart() // channels are kept in meta.db
	c = s.client(3)
	m = channel.Start(channel.StoreSource(s.store), channel.Options{Dest: channel.Dir(out), FlushEvery: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	d = waitChannel(t, c, "arn:aws:kinesis:us-east-1:000000000000:channel/o", types.ChannelStatusActive)
	if aws.ToString(d.StreamConfigurationList[0].StreamARN) != other {
		t.Fatalf("after restart: %+v", d)
	}
}

// waitObjects reads every gzip object under dir (bounded by the test's
// timeout) until it holds n records.
func waitObjects(t *testing.T, dir string, n int) []map[string]int {
	t.Helper()
	for {
		var got []map[string]int
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
				return nil
			}
			if !strings.HasPrefix(filepath.Base(p), "data-") || !strings.HasSuffix(p, ".json.gz") ||
				!strings.Contains(p, filepath.Join("raw", "to-lake", strconv.Itoa(time.Now().UTC().Year()))) {
				t.Fatalf("object %s is not named by the template", p)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			z, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(z)
			for sc.Scan() {
				var r map[string]int
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				got = append(got, r)
			}
			return nil
		})
		if len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
