package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestClusterEncryptionProcesses: three `serve --cluster --keyring`
// processes, each with the same keyring file, and the Go SDK.
// StartStreamEncryption through node 1 makes the stream UPDATING, then
// ACTIVE with EncryptionType KMS and the KeyId on every node; records put
// through nodes 2 and 3 answer KMS and are read through another node with
// EncryptionType KMS on exactly them; the KMS errors come with single-node
// mode's texts; StopStreamEncryption leaves them encrypted; after every
// process restarts the reads are the same, and no node's cluster directory
// holds an encrypted record's data in clear (but does hold the plaintext
// one's).
func TestClusterEncryptionProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	mat := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	ring := filepath.Join(t.TempDir(), "keyring.yaml")
	text := "keys:\n  - key_id: " + e2eKeyID + "\n    aliases: [alias/orders]\n    material: " + mat(1) +
		"\n  - key_id: disabled-key\n    state: Disabled\n    material: " + mat(2) + "\n"
	if err := os.WriteFile(ring, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterProcs(t, "--keyring", ring, "--update-stream-delay", "300ms")
	client := func(id uint64) *kinesis.Client { return c.procs[id].client() }
	ctx := context.Background()
	stream := aws.String("sec")
	if _, err := client(1).CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: stream, ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(client, stream)
	putVia := func(id uint64, data string, want types.EncryptionType) {
		t.Helper()
		out, err := client(id).PutRecord(ctx, &kinesis.PutRecordInput{StreamName: stream, PartitionKey: aws.String("k"), Data: []byte(data)})
		if err != nil || out.EncryptionType != want {
			t.Fatalf("PutRecord %s through node %d: %v, EncryptionType %q, want %q", data, id, err, out.EncryptionType, want)
		}
	}
	putVia(2, "plainmark-1", "")

	start := func(keyID string) error {
		_, err := client(3).StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: stream, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String(keyID)})
		return err
	}
	wantExactError(t, "an unknown alias", start("alias/nope"), "KMSNotFoundException", "Alias arn:aws:kms:us-east-1:000000000000:alias/nope is not found.")
	wantExactError(t, "a disabled key", start("disabled-key"), "KMSDisabledException", "arn:aws:kms:us-east-1:000000000000:key/disabled-key is disabled.")

	if _, err := client(1).StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: stream, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/orders")}); err != nil {
		t.Fatal(err)
	}
	if d, err := client(2).DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: stream}); err != nil || d.StreamDescription.StreamStatus != types.StreamStatusUpdating {
		t.Fatalf("after Start: %v %+v", err, d)
	}
	c.waitStreamActive(client, stream)
	for id := uint64(1); id <= 3; id++ {
		s, err := client(id).DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: stream})
		if err != nil || s.StreamDescriptionSummary.EncryptionType != types.EncryptionTypeKms || aws.ToString(s.StreamDescriptionSummary.KeyId) != "alias/orders" {
			t.Fatalf("node %d describes %+v, %v", id, s, err)
		}
	}
	putVia(2, "secretmark-2", types.EncryptionTypeKms)
	pr, err := client(3).PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: stream, Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: []byte("secretmark-3")}}})
	if err != nil || pr.EncryptionType != types.EncryptionTypeKms || aws.ToInt32(pr.FailedRecordCount) != 0 {
		t.Fatalf("PutRecords: %v %+v", err, pr)
	}
	if _, err := client(2).StopStreamEncryption(ctx, &kinesis.StopStreamEncryptionInput{StreamName: stream, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/orders")}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(client, stream)
	putVia(1, "plainmark-4", "")

	want := "plainmark-1:NONE secretmark-2:KMS secretmark-3:KMS plainmark-4:NONE"
	c.wantModes(want)
	for id := uint64(1); id <= 3; id++ {
		c.procs[id].terminate()
	}
	for id := uint64(1); id <= 3; id++ {
		c.start(id)
	}
	c.wantModes(want)
	for id := uint64(1); id <= 3; id++ {
		dir := filepath.Join(c.dirs[id], "cluster")
		if p := findInFiles(t, dir, "secretmark"); p != "" {
			t.Fatalf("node %d: %s holds an encrypted record in clear", id, p)
		}
		if p := findInFiles(t, dir, "plainmark-1"); p == "" {
			t.Fatalf("node %d: no file holds the plaintext record (is the search looking in the right place?)", id)
		}
	}
}

// wantModes reads the stream through every node until each gives want
// (data:EncryptionType per record).
func (c *clusterProcs) wantModes(want string) {
	for id := uint64(1); id <= 3; id++ {
		waitFor(c.t, fmt.Sprintf("GetRecords through node %d", id), func() error {
			got, err := clusterReadModes(c.procs[id].client())
			if err == nil && got != want {
				err = fmt.Errorf("read %s, want %s", got, want)
			}
			return err
		})
	}
}

func clusterReadModes(c *kinesis.Client) (string, error) {
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("sec"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		return "", err
	}
	out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		return "", err
	}
	var parts []string
	for _, r := range out.Records {
		mode := r.EncryptionType
		if mode == "" {
			mode = types.EncryptionTypeNone
		}
		parts = append(parts, string(r.Data)+":"+string(mode))
	}
	return strings.Join(parts, " "), nil
}
