package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// channelLine is a BYTE_ARRAY record as a channel delivers it.
type channelLine struct {
	SequenceNumber, PartitionKey, ShardId string
	Data                                  []byte
}

// channelObjects reads every object of bucket b under dir in delivery order
// (the number each key ends with, under the default key template).
func channelObjects(t *testing.T, dir string) []channelLine {
	t.Helper()
	keyRE := regexp.MustCompile(`^kinesis-channel/to-lake/[0-9a-f-]{36}/\d{4}/\d{2}/\d{2}/\d{2}/to-lake-[0-9a-f-]{36}-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-(\d{20})\.json$`)
	root := filepath.Join(dir, "lake")
	byNumber := map[string]string{}
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		m := keyRE.FindStringSubmatch(filepath.ToSlash(rel))
		if m == nil {
			t.Fatalf("object %s is not named by the default key template", rel)
		}
		byNumber[m[1]] = p
		return nil
	})
	var nums []string
	for k := range byNumber {
		nums = append(nums, k)
	}
	sort.Strings(nums)
	var out []channelLine
	for _, k := range nums {
		b, err := os.ReadFile(byNumber[k])
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			var l channelLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %q: %v", byNumber[k], sc.Text(), err)
			}
			out = append(out, l)
		}
	}
	return out
}

// checkChannelOnce: every acknowledged record delivered once, nothing
// delivered that was not sent, each shard's records in order.
func (c *clusterProcs) checkChannelOnce(lines []channelLine) error {
	seen := map[string]bool{}
	last := map[string]string{}
	for _, l := range lines {
		switch {
		case seen[l.SequenceNumber]:
			return fmt.Errorf("record %s (%s) delivered twice", l.SequenceNumber, l.Data)
		case !c.attempted[string(l.Data)]:
			return fmt.Errorf("phantom record %q delivered", l.Data)
		case !lessSeq(last[l.ShardId], l.SequenceNumber):
			return fmt.Errorf("shard %s: %s delivered after %s", l.ShardId, l.SequenceNumber, last[l.ShardId])
		}
		seen[l.SequenceNumber], last[l.ShardId] = true, l.SequenceNumber
	}
	for seq, data := range c.acked {
		if !seen[seq] {
			return fmt.Errorf("acknowledged %s (%s) not delivered; %d delivered, %d acknowledged", seq, data, len(seen), len(c.acked))
		}
	}
	return nil
}

// TestClusterChannels: three `shardlog serve --cluster` processes sharing
// one --channel-dir. A channel created with the SDK through node 1 is
// described and listed through the others; records put through every node
// are delivered once each, in order, with single-node mode's keys and
// layout; the metadata leader (the delivering node) is killed with SIGKILL
// and the new one delivers the rest, none lost and none twice; DeleteChannel
// through a survivor ends the channel and lets the stream be deleted.
func TestClusterChannels(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	out := t.TempDir()
	c := startClusterProcs(t, "--channel-dir", out, "--channel-delay", "100ms", "--channel-flush-every", "200ms")
	ctx := context.Background()
	arn := createOnDemand(t, c.procs[1].client(), "cl")
	in := channelInput("to-lake", arn)
	in.StreamConfigurationList[0].RecordConfiguration.RecordFormatType = types.RecordFormatTypeByteArray
	in.S3DestinationConfiguration.StorageConfiguration = &types.S3StorageConfiguration{BucketARN: aws.String("arn:aws:s3:::lake"),
		CompressionType: types.S3CompressionTypeNone, ExpectedBucketOwner: aws.String("000000000000")}
	created, err := c.procs[1].client().CreateChannel(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	chARN := aws.ToString(created.ChannelDescription.ChannelARN)
	if _, err := c.procs[2].client().CreateChannel(ctx, in); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("the same channel again through node 2: %v", err)
	}
	d := waitChannel(t, c.procs[2].client(), chARN, types.ChannelStatusActive)
	if aws.ToString(d.ChannelId) != aws.ToString(created.ChannelDescription.ChannelId) {
		t.Fatalf("node 2 describes %+v", d)
	}
	list, err := c.procs[3].client().ListChannels(ctx, &kinesis.ListChannelsInput{})
	if err != nil || len(list.ChannelSummaries) != 1 || aws.ToString(list.ChannelSummaries[0].ChannelARN) != chARN {
		t.Fatalf("node 3 lists %+v, %v", list, err)
	}
	sum, err := c.procs[3].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamARN: aws.String(arn)})
	if err != nil || aws.ToInt32(sum.StreamDescriptionSummary.ChannelCount) != 1 {
		t.Fatalf("ChannelCount: %+v, %v", sum, err)
	}
	if limits, err := c.procs[2].client().DescribeLimits(ctx, &kinesis.DescribeLimitsInput{}); err != nil || aws.ToInt32(limits.ChannelCount) != 1 {
		t.Fatalf("DescribeLimits' ChannelCount: %+v, %v", limits, err)
	}

	for round := range 6 {
		if !c.put(uint64(round%3+1), round, 20) {
			t.Fatalf("round %d not acknowledged", round)
		}
	}
	waitFor(t, "every record delivered", func() error { return c.checkChannelOnce(channelObjects(t, out)) })

	leader := c.status(1).Groups["1"].Leader
	if leader == 0 {
		t.Fatal("no metadata leader")
	}
	survivors := []uint64{leader%3 + 1, (leader+1)%3 + 1}
	for round := 10; round < 13; round++ {
		if !c.put(survivors[0], round, 20) {
			t.Fatalf("round %d not acknowledged", round)
		}
	}
	c.procs[leader].kill() // mid-stream: a batch may be read, pending or half written
	for round := 20; round < 26; round++ {
		if !c.put(survivors[round%2], round, 20) {
			t.Fatalf("round %d after the kill not acknowledged", round)
		}
	}
	waitFor(t, "every record delivered after the metadata leader's kill", func() error {
		return c.checkChannelOnce(channelObjects(t, out))
	})

	cl := c.procs[survivors[1]].client()
	if _, err := cl.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("cl"), EnforceConsumerDeletion: aws.Bool(true)}); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("delete a stream with a channel: %v", err)
	}
	if _, err := cl.DeleteChannel(ctx, &kinesis.DeleteChannelInput{ChannelARN: aws.String(chARN)}); err != nil {
		t.Fatal(err)
	}
	waitChannel(t, c.procs[survivors[0]].client(), chARN, "")
	if _, err := cl.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("cl")}); err != nil {
		t.Fatalf("delete the stream once its channel is gone: %v", err)
	}
}
