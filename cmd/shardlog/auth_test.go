package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/hashicorp/go-hclog"
)

const authYAML = `credentials:
  - access_key_id: AKIDADMIN
    secret_access_key: admin-secret
    account_id: "111122223333"
    user: admin
    policies:
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}
`

// startAuthServer serves the real engine with --auth-file set to a file
// holding content, and returns the endpoint and the file's path.
func startAuthServer(t *testing.T, content string) (endpoint, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.dataDir = t.TempDir()
	o.authFile = path
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, o, openStore, hclog.NewNullLogger(), func(e endpoints) { addrc <- e.plain })
	}()
	select {
	case a := <-addrc:
		endpoint = "http://" + a.String()
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return endpoint, path
}

func client(endpoint, akid, secret string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:           "eu-central-1",
		Credentials:      credentials.NewStaticCredentialsProvider(akid, secret, ""),
		BaseEndpoint:     aws.String(endpoint),
		RetryMaxAttempts: 1,
	})
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestAuthFileSDK: with --auth-file, the Go SDK signing with a listed key
// works for control, data and event-stream calls; a wrong secret and an
// unknown key get AWS's errors.
func TestAuthFileSDK(t *testing.T) {
	endpoint, _ := startAuthServer(t, authYAML)
	ctx := context.Background()
	c := client(endpoint, "AKIDADMIN", "admin-secret")
	name := aws.String("auth")
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: name, Records: []types.PutRecordsRequestEntry{
		{Data: []byte("one"), PartitionKey: aws.String("k")}, {Data: []byte("two"), PartitionKey: aws.String("k")},
	}}); err != nil {
		t.Fatal(err)
	}
	subscribeOnce(t, c, d.StreamDescriptionSummary.StreamARN)

	_, err = client(endpoint, "AKIDADMIN", "wrong").ListStreams(ctx, &kinesis.ListStreamsInput{})
	if errorCode(err) != "InvalidSignatureException" {
		t.Fatalf("wrong secret: %v", err)
	}
	_, err = client(endpoint, "AKIDNOBODY", "x").ListStreams(ctx, &kinesis.ListStreamsInput{})
	if errorCode(err) != "UnrecognizedClientException" || !strings.Contains(err.Error(), "The security token included in the request is invalid.") {
		t.Fatalf("unknown key: %v", err)
	}
}

// subscribeOnce registers a consumer and reads the first event of a
// SubscribeToShard, which is verified like every other call.
func subscribeOnce(t *testing.T, c *kinesis.Client, streamARN *string) {
	t.Helper()
	ctx := context.Background()
	reg, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: streamARN, ConsumerName: aws.String("auth")})
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: reg.Consumer.ConsumerARN})
		if err != nil {
			t.Fatal(err)
		}
		if d.ConsumerDescription.ConsumerStatus == types.ConsumerStatusActive {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sub, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String("shardId-000000000000"),
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.GetStream().Close()
	ev, ok := <-sub.GetStream().Events()
	if !ok {
		t.Fatalf("no event: %v", sub.GetStream().Err())
	}
	if e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent); !isEvent || len(e.Value.Records) != 2 {
		t.Fatalf("event %T %+v", ev, ev)
	}
}

// TestAuthFilePresignedURL: a URL presigned by the SDK's signer works once;
// the same URL with another body is refused.
func TestAuthFilePresignedURL(t *testing.T) {
	endpoint, _ := startAuthServer(t, authYAML)
	body := []byte(`{}`)
	post := func(b []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, endpoint+"/?X-Amz-Expires=300", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "Kinesis_20131202.ListStreams")
		creds := aws.Credentials{AccessKeyID: "AKIDADMIN", SecretAccessKey: "admin-secret"}
		u, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, v4Hash(body), "kinesis", "us-east-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
		// The SDK hoisted X-Amz-Target into the signed query; the request
		// still carries its headers, which the server dispatches on.
		got.Header = req.Header.Clone()
		for k, vs := range hdr {
			if !strings.EqualFold(k, "host") {
				got.Header[k] = vs
			}
		}
		res, err := http.DefaultClient.Do(got)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(out)
	}
	if status, out := post(body); status != http.StatusOK || !strings.Contains(out, "StreamNames") {
		t.Fatalf("presigned: %d %s", status, out)
	}
	if status, out := post([]byte(`{"Limit":1}`)); status != http.StatusBadRequest || !strings.Contains(out, "InvalidSignatureException") {
		t.Fatalf("presigned, other body: %d %s", status, out)
	}
}

// TestAuthFileReloadOnSIGHUP: a key added to the file works after SIGHUP
// (sent to this process, where runServe handles it), and a broken file
// keeps the keys in force.
func TestAuthFileReloadOnSIGHUP(t *testing.T) {
	endpoint, path := startAuthServer(t, authYAML)
	ctx := context.Background()
	newKey := client(endpoint, "AKIDNEW", "new-secret")
	if _, err := newKey.ListStreams(ctx, &kinesis.ListStreamsInput{}); errorCode(err) != "UnrecognizedClientException" {
		t.Fatalf("before SIGHUP: %v", err)
	}
	added := authYAML + "  - access_key_id: AKIDNEW\n    secret_access_key: new-secret\n    user: new\n" +
		"    policies: ['{\"Statement\": {\"Effect\": \"Allow\", \"Action\": \"kinesis:*\", \"Resource\": \"*\"}}']\n"
	if err := os.WriteFile(path, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous: wait for it (bounded by the test timeout).
	for {
		_, err := newKey.ListStreams(ctx, &kinesis.ListStreamsInput{})
		if err == nil {
			break
		}
		if errorCode(err) != "UnrecognizedClientException" {
			t.Fatalf("after SIGHUP: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(path, []byte("credentials: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for range 20 { // every call, before and after the reload fails, must pass
		if _, err := newKey.ListStreams(ctx, &kinesis.ListStreamsInput{}); err != nil {
			t.Fatalf("after a broken file: %v", err)
		}
	}
}

// TestAuthFileAWSCLI: the AWS CLI v2 signing with a listed key works, and
// with a wrong secret it reports InvalidSignatureException.
func TestAuthFileAWSCLI(t *testing.T) {
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("%s not installed: %v", cli, err)
	}
	if testing.Short() {
		t.Skip("the AWS CLI starts a Python interpreter per call; skipped with -short")
	}
	endpoint, _ := startAuthServer(t, authYAML)
	run := func(secret string, args ...string) (string, error) {
		cmd := exec.Command(cli, append([]string{"--endpoint-url", endpoint, "kinesis"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDADMIN", "AWS_SECRET_ACCESS_KEY="+secret,
			"AWS_DEFAULT_REGION=us-east-1", "AWS_MAX_ATTEMPTS=1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("admin-secret", "create-stream", "--stream-name", "cli", "--shard-count", "1"); err != nil {
		t.Fatalf("create-stream: %v\n%s", err, out)
	}
	if out, err := run("admin-secret", "list-streams"); err != nil || !strings.Contains(out, `"cli"`) {
		t.Fatalf("list-streams: %v\n%s", err, out)
	}
	if out, err := run("wrong", "list-streams"); err == nil || !strings.Contains(out, "InvalidSignatureException") {
		t.Fatalf("wrong secret: %v\n%s", err, out)
	}
}

func v4Hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
