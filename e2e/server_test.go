// Package e2e drives a real shardlog server on 127.0.0.1 with the AWS SDK for
// Go v2, as users' unchanged code would.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// server is a running shardlog: storage on a real directory, the API on a
// loopback port.
type server struct {
	t        *testing.T
	opts     storage.Options
	dir      string
	store    *storage.Store
	http     *http.Server
	endpoint string
	now      func() time.Time
	cfg      api.Config // the API's configuration (Now is set by start)
}

func startServer(t *testing.T, dir string) *server {
	return startServerWith(t, dir, storage.Options{})
}

// startServerWith starts a server with storage options (Dir and FS are set here).
func startServerWith(t *testing.T, dir string, opts storage.Options) *server {
	t.Helper()
	s := &server{t: t, dir: dir, now: time.Now, opts: opts}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	opts := s.opts
	opts.Dir = s.dir
	if opts.FS == nil {
		opts.FS = vfs.OS{}
	}
	st, err := storage.Open(context.Background(), opts)
	if err != nil {
		s.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.store = st
	cfg := s.cfg
	cfg.Now = func() time.Time { return s.now() }
	h := api.New(cfg, api.StoreBackend(st))
	// As cmd/shardlog serves: HTTP/1.1 and cleartext HTTP/2 with prior knowledge
	// (the JavaScript SDK's Kinesis client speaks only HTTP/2), and shutdown
	// ends subscriptions.
	s.http = &http.Server{Handler: h, Protocols: new(http.Protocols)}
	s.http.Protocols.SetHTTP1(true)
	s.http.Protocols.SetUnencryptedHTTP2(true)
	s.http.RegisterOnShutdown(h.Close)
	s.endpoint = "http://" + ln.Addr().String()
	go s.http.Serve(ln)
}

// stop is a graceful shutdown: in-flight requests finish, then the store syncs and closes.
func (s *server) stop() {
	if s.store == nil {
		return
	}
	s.http.Shutdown(context.Background())
	if err := s.store.Close(); err != nil {
		s.t.Errorf("close store: %v", err)
	}
	s.store = nil
}

func (s *server) restart() {
	s.stop()
	s.start()
}

func (s *server) client(retries int) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		HTTPClient:       newHTTPClient(&http.Transport{MaxIdleConnsPerHost: 16}),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint:     aws.String(s.endpoint),
		RetryMaxAttempts: retries,
	})
}

// reader is a client for reads (single attempts, like client(1)); it
// exists so read-heavy tests say what they do.
func (s *server) reader() *kinesis.Client { return s.client(1) }

// sdkTransport works around an AWS SDK race (aws/aws-sdk-go-v2#1825, #2737):
// smithy-go closes a request's body as soon as the response arrives, while
// net/http's writeLoop may still read it for its final EOF check; the
// failed read makes net/http close the connection under the response being
// read ("use of closed network connection"). A fast local server makes the
// race likely. Handing net/http its own in-memory copy of the body leaves
// smithy's Close nothing to interfere with. Every client in these tests
// uses it, so a failure is the server's, never the client library's.
type sdkTransport struct{ base http.RoundTripper }

func (t sdkTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return t.base.RoundTrip(r)
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return t.base.RoundTrip(r2)
}

// newHTTPClient is an HTTP client for the SDK with its own connection pool.
func newHTTPClient(tr *http.Transport) *http.Client {
	return &http.Client{Transport: sdkTransport{tr}}
}

// apiErr returns the AWS error code of err, or "".
func apiErr(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func createStream(t *testing.T, c *kinesis.Client, name string, shards int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatal(err)
	}
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
