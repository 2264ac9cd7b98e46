// Package e2e drives a real shardlog server on 127.0.0.1 with the AWS SDK for
// Go v2, as users' unchanged code would.
package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

var _ api.Backend = (*storage.Store)(nil)

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
	s.http = &http.Server{Handler: api.New(api.Config{Now: func() time.Time { return s.now() }}, st)}
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
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint:     aws.String(s.endpoint),
		RetryMaxAttempts: retries,
	})
}

// reader is a client for reads: single attempts, except for the SDK's own
// connection race (readRetryer).
func (s *server) reader() *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String(s.endpoint),
		Retryer:      readRetryer(),
	})
}

// readRetryer retries only "use of closed network connection", and only
// for idempotent reads. The AWS SDK closes a request's body as soon as the
// response arrives, racing net/http's writeLoop, which then closes the
// connection under the response being read (aws/aws-sdk-go-v2#1825, #2737).
// A fast local server makes that race likely; it is the client's, not the
// server's, so reads retry it, and nothing else.
func readRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 3
		o.RateLimiter = ratelimit.None
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if err != nil && strings.Contains(err.Error(), "use of closed network connection") {
				return aws.TrueTernary
			}
			return aws.FalseTernary
		})}
	})
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
