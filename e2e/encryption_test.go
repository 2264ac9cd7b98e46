package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/storage"
)

const e2eKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"

// testKeyring writes a keyring file with e2eKeyID (aliased alias/orders)
// and a disabled key, and opens it for the server's account.
func testKeyring(t *testing.T, dir string) *keyring.Keyring {
	t.Helper()
	mat := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	p := filepath.Join(dir, "keyring.yaml")
	text := "keys:\n  - key_id: " + e2eKeyID + "\n    aliases: [alias/orders]\n    material: " + mat(1) +
		"\n  - key_id: disabled-key\n    state: Disabled\n    material: " + mat(2) + "\n"
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := keyring.Open(keyring.Options{File: p, DataDir: dir, Account: storage.DefaultAccountID})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// activeSummary waits for the stream to be ACTIVE (again, after an update)
// and returns its summary.
func activeSummary(t *testing.T, c *kinesis.Client, name string) *types.StreamDescriptionSummary {
	t.Helper()
	waitActive(t, c, name)
	out, err := c.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return out.StreamDescriptionSummary
}

// TestEncryptionWithSDK drives Start/StopStreamEncryption through the Go
// SDK against a real server: UPDATING then ACTIVE, DescribeStream and
// DescribeStreamSummary report EncryptionType and KeyId, PutRecord(s) report
// KMS for records written encrypted, GetRecords and SubscribeToShard report
// each record's own mode (across a restart too), and the KMS errors come as
// the SDK's typed exceptions. The data directory holds no record in clear.
func TestEncryptionWithSDK(t *testing.T) {
	dir := t.TempDir()
	srv := &server{t: t, dir: dir, now: time.Now, opts: storage.Options{UpdateDelay: 200 * time.Millisecond, Keyring: testKeyring(t, dir)}}
	srv.start()
	t.Cleanup(srv.stop)
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "sec", 1)
	name := aws.String("sec")
	put := func(data string) *kinesis.PutRecordOutput {
		t.Helper()
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: name, PartitionKey: aws.String("k"), Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := put("plain-1"); out.EncryptionType != "" {
		t.Fatalf("unencrypted PutRecord reports %q", out.EncryptionType)
	}
	if s := activeSummary(t, c, "sec"); s.EncryptionType != types.EncryptionTypeNone || s.KeyId != nil {
		t.Fatalf("before Start: %s %v", s.EncryptionType, s.KeyId)
	}

	for _, tc := range []struct {
		keyID, want string
	}{
		{"alias/nope", "KMSNotFoundException"},
		{"arn:aws:kms:eu-west-1:" + storage.DefaultAccountID + ":key/" + e2eKeyID, "KMSNotFoundException"},
		{"disabled-key", "KMSDisabledException"},
	} {
		_, err := c.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: name, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String(tc.keyID)})
		if apiErr(err) != tc.want {
			t.Fatalf("Start with %s: %v, want %s", tc.keyID, err, tc.want)
		}
	}
	_, err := c.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: name, EncryptionType: types.EncryptionTypeNone, KeyId: aws.String("alias/orders")})
	if apiErr(err) != "InvalidArgumentException" {
		t.Fatalf("Start with NONE: %v", err)
	}
	if _, err := c.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: aws.String("missing"), EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/orders")}); apiErr(err) != "ResourceNotFoundException" {
		t.Fatalf("Start on a missing stream: %v", err)
	}

	arnKey := "arn:aws:kms:us-east-1:" + storage.DefaultAccountID + ":alias/orders"
	if _, err := c.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: name, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String(arnKey)}); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: name})
	if err != nil || d.StreamDescription.StreamStatus != types.StreamStatusUpdating {
		t.Fatalf("after Start: %v %+v", err, d)
	}
	if _, err := c.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: name, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String(arnKey)}); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("Start while UPDATING: %v", err)
	}
	if s := activeSummary(t, c, "sec"); s.EncryptionType != types.EncryptionTypeKms || aws.ToString(s.KeyId) != arnKey {
		t.Fatalf("after Start: %s %v", s.EncryptionType, aws.ToString(s.KeyId))
	}
	if d, _ := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: name}); d.StreamDescription.EncryptionType != types.EncryptionTypeKms || aws.ToString(d.StreamDescription.KeyId) != arnKey {
		t.Fatalf("DescribeStream: %+v", d.StreamDescription)
	}
	if out := put("secret-2"); out.EncryptionType != types.EncryptionTypeKms {
		t.Fatalf("encrypted PutRecord reports %q", out.EncryptionType)
	}
	pr, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: name, Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: []byte("secret-3")}}})
	if err != nil || pr.EncryptionType != types.EncryptionTypeKms {
		t.Fatalf("PutRecords: %v %q", err, pr.EncryptionType)
	}
	if _, err := c.StopStreamEncryption(ctx, &kinesis.StopStreamEncryptionInput{StreamName: name, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String(arnKey)}); err != nil {
		t.Fatal(err)
	}
	if s := activeSummary(t, c, "sec"); s.EncryptionType != types.EncryptionTypeNone || s.KeyId != nil {
		t.Fatalf("after Stop: %s %v", s.EncryptionType, s.KeyId)
	}
	put("plain-4")

	want := "plain-1:NONE secret-2:KMS secret-3:KMS plain-4:NONE"
	if got := readModes(t, c); got != want {
		t.Fatalf("GetRecords: %s, want %s", got, want)
	}
	srv.restart()
	c = srv.client(1)
	if got := readModes(t, c); got != want {
		t.Fatalf("GetRecords after restart: %s, want %s", got, want)
	}
	for _, secret := range []string{"secret-2", "secret-3"} {
		if p := findInFiles(t, filepath.Join(dir, "streams"), secret); p != "" {
			t.Fatalf("%s holds %q in clear", p, secret)
		}
	}
}

// readModes reads shard 0 from TRIM_HORIZON and renders each record as
// data:EncryptionType (NONE when the member is absent).
func readModes(t *testing.T, c *kinesis.Client) string {
	t.Helper()
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("sec"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range out.Records {
		mode := r.EncryptionType
		if mode == "" {
			mode = types.EncryptionTypeNone
		}
		parts = append(parts, string(r.Data)+":"+string(mode))
	}
	return strings.Join(parts, " ")
}

// findInFiles returns a file under root whose bytes contain s, or "".
func findInFiles(t *testing.T, root, s string) string {
	t.Helper()
	var found string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return err
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	return found
}

// TestSubscribeReportsEncryption: SubscribeToShard events mark encrypted
// records KMS, like GetRecords.
func TestSubscribeReportsEncryption(t *testing.T) {
	e := startEFO(t, api.Config{}, storage.Options{}, 1, "app")
	ctx := context.Background()
	e.put(t, "plain")
	if _, err := e.c.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: aws.String("efo"),
		EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/aws/kinesis")}); err != nil {
		t.Fatal(err)
	}
	e.put(t, "secret")
	st := e.mustSubscribe(t, "app", "shardId-000000000000", types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
	var got []string
	for len(got) < 2 {
		ev, ok := <-st.Events()
		if !ok {
			t.Fatalf("stream ended: %v", st.Err())
		}
		for _, r := range ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value.Records {
			got = append(got, string(r.Data)+":"+string(r.EncryptionType))
		}
	}
	if strings.Join(got, " ") != "plain: secret:KMS" {
		t.Fatalf("subscription records %v", got)
	}
}
