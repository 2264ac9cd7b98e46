package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/hashicorp/go-hclog"
)

// serveFor runs runServe with o over the real storage engine until the test
// ends and returns its endpoints. o.dataDir defaults to a temporary one.
func serveFor(t *testing.T, o serveOptions, log hclog.Logger) endpoints {
	t.Helper()
	if o.dataDir == "unused" || o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	epc := make(chan endpoints, 1)
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, openStore, log, func(e endpoints) { epc <- e }) }()
	select {
	case ep := <-epc:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return ep
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return endpoints{}
}

// fastOptions are testOptions with streams and consumers ACTIVE at once.
func fastOptions() serveOptions {
	o := testOptions()
	o.createDelay, o.deleteDelay, o.updateDelay, o.consumerDelay = 0, 0, 0, 0
	return o
}

// trusting is a TLS client config that trusts the PEM CA in caFile.
func trusting(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool}
}

// protoTransport records the protocol of every response (ALPN over TLS,
// else the HTTP version) and hands net/http its own copy of each body:
// smithy-go closes a body as soon as the response arrives, which races
// with net/http's final read of it (aws/aws-sdk-go-v2#1825).
type protoTransport struct {
	base  http.RoundTripper
	mu    sync.Mutex
	proto map[string]bool
}

func (p *protoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	res, err := p.base.RoundTrip(r)
	if err == nil {
		proto := res.Proto
		if res.TLS != nil {
			proto = "tls:" + res.TLS.NegotiatedProtocol
		}
		p.mu.Lock()
		p.proto[proto] = true
		p.mu.Unlock()
	}
	return res, err
}

func (p *protoTransport) protocols() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s []string
	for k := range p.proto {
		s = append(s, k)
	}
	return strings.Join(s, ",")
}

// sdkClient is an SDK client for endpoint over tr (single attempts: a
// failure is the server's answer, not hidden by a retry).
func sdkClient(endpoint string, tr http.RoundTripper) (*kinesis.Client, *protoTransport) {
	pt := &protoTransport{base: tr, proto: map[string]bool{}}
	return kinesis.New(kinesis.Options{
		HTTPClient:       &http.Client{Transport: pt},
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint:     aws.String(endpoint),
		RetryMaxAttempts: 1,
	}), pt
}

// Each transport gets its own copy of tc: net/http adds its ALPN protocols
// to the config it is given.
//
// h1Transport speaks only HTTP/1.1 (over TLS it offers ALPN http/1.1).
func h1Transport(tc *tls.Config) *http.Transport {
	tr := &http.Transport{TLSClientConfig: tc.Clone(), Protocols: new(http.Protocols)}
	if tc != nil {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	tr.Protocols.SetHTTP1(true)
	return tr
}

// h2Transport speaks only HTTP/2: over TLS by ALPN, in cleartext with prior
// knowledge.
func h2Transport(tc *tls.Config) *http.Transport {
	tr := &http.Transport{TLSClientConfig: tc.Clone(), Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return tr
}

// createActiveStream creates a one-shard stream and waits for it.
func createActiveStream(t *testing.T, c *kinesis.Client, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 20 * time.Millisecond
		o.MaxDelay = 100 * time.Millisecond
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// putAndCount puts one record and returns how many records the stream's
// only shard holds.
func putAndCount(t *testing.T, c *kinesis.Client, name, data string) int {
	t.Helper()
	ctx := context.Background()
	if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(name), PartitionKey: aws.String("k"), Data: []byte(data)}); err != nil {
		t.Fatalf("PutRecord: %v", err)
	}
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(name), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Records)
}

// syncBuffer is a log destination tests can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds; the test's timeout bounds the wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Failed() {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
