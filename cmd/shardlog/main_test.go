package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/storage"
)

// stubBackend is enough of a Backend to serve /health and report errors.
type stubBackend struct{ api.Backend }

func (stubBackend) IteratorKey() []byte { return make([]byte, 32) }
func (stubBackend) AccountID() string   { return "000000000000" }
func (stubBackend) ListStreams(context.Context) ([]storage.StreamInfo, error) {
	return nil, nil
}

type countingCloser struct{ n atomic.Int32 }

func (c *countingCloser) Close() error { c.n.Add(1); return nil }

func testOptions() serveOptions {
	return serveOptions{listen: "127.0.0.1:0", dataDir: "unused", accountID: "000000000000", region: "us-east-1", shardLimit: 500, sync: "always", throttleMultiplier: 1, segmentSize: 64 << 20, segmentAge: time.Hour, scalingPerDay: 10, cacheWindow: 32 << 20, subscriptionLifetime: 5 * time.Minute, hardening: defaultHardening(), onDemand: defaultOnDemand()}
}

func TestServeHealthAndShutdown(t *testing.T) {
	closer := &countingCloser{}
	open := func(context.Context, serveOptions, hclog.Logger) (api.Backend, io.Closer, error) {
		return stubBackend{}, closer, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, testOptions(), open, hclog.NewNullLogger(), func(e endpoints) { addrc <- e.plain })
	}()
	addr := <-addrc

	res, err := http.Get("http://" + addr.String() + "/health")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("health: %v %v", res, err)
	}
	res.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr.String()+"/", strings.NewReader(`{}`))
	req.Header.Set("X-Amz-Target", "Kinesis_20131202.ListStreams")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=a/20240101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=x")
	req.Header.Set("X-Amz-Date", "20240101T000000Z")
	res, err = http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 || res.Header.Get("X-Amzn-Requestid") == "" {
		t.Fatalf("ListStreams: %v %v", res, err)
	}
	res.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runServe did not return after cancel")
	}
	if closer.n.Load() != 1 {
		t.Fatalf("store closed %d times", closer.n.Load())
	}
	if _, err := http.Get("http://" + addr.String() + "/health"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestServeOpenError(t *testing.T) {
	open := func(context.Context, serveOptions, hclog.Logger) (api.Backend, io.Closer, error) {
		return nil, nil, errors.New("locked")
	}
	err := runServe(context.Background(), testOptions(), open, hclog.NewNullLogger(), nil)
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("err = %v", err)
	}
}

func TestServeFlags(t *testing.T) {
	cmd := newServeCmd(nil)
	want := map[string]string{
		"listen": "127.0.0.1:4567", "data-dir": "./shardlog-data", "create-stream-delay": "500ms",
		"delete-stream-delay": "500ms", "update-stream-delay": "500ms", "consumer-delay": "500ms", "shard-limit": "500",
		"account-id": "000000000000", "region": "us-east-1", "log-level": "info", "log-format": "text", "sync": "always",
		"cache-window": "33554432", "tls-listen": "127.0.0.1:4568", "tls-only": "false", "tls-self-signed": "false",
		"read-header-timeout": "10s", "read-timeout": "2m0s", "idle-timeout": "2m0s", "max-connections": "0",
		"max-header-bytes": "65536", "http2-max-streams": "250",
		"channel-delay": "500ms", "channel-dir": "", "channel-flush-every": "0s", "channel-any-mode": "false",
		"on-demand-stream-limit": "50", "on-demand-scale-interval": "10s", "on-demand-window": "1m0s", "on-demand-split-at": "0.8",
		"on-demand-merge-below": "0.4", "on-demand-merge-after": "15m0s",
	}
	for name, def := range want {
		f := cmd.Flags().Lookup(name)
		if f == nil || f.DefValue != def {
			t.Errorf("--%s: %+v, want default %q", name, f, def)
		}
	}
	if err := cmd.Flags().Parse([]string{"--create-stream-delay=0", "--shard-limit=7"}); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, mut := range []func(*serveOptions){
		func(o *serveOptions) { o.accountID = "123" },
		func(o *serveOptions) { o.accountID = "12345678901x" },
		func(o *serveOptions) { o.shardLimit = 0 },
		func(o *serveOptions) { o.createDelay = -time.Second },
		func(o *serveOptions) { o.consumerDelay = -time.Second },
		func(o *serveOptions) { o.subscriptionLifetime = 0 },
		func(o *serveOptions) { o.region = "" },
		func(o *serveOptions) { o.throttleMultiplier = 0 },
		func(o *serveOptions) { o.injectThrottleRate = 1.5 },
		func(o *serveOptions) { o.cacheWindow = 0 },
		func(o *serveOptions) { o.cacheWindow = -2 },
		func(o *serveOptions) { o.gomaxprocs = -1 },
		func(o *serveOptions) { o.tls.cert = "c.pem" },
		func(o *serveOptions) { o.tls.key = "k.pem" },
		func(o *serveOptions) { o.tls = tlsOptions{cert: "c", key: "k", selfSigned: true} },
		func(o *serveOptions) { o.tls.only = true },
		func(o *serveOptions) { o.hardening.readHeaderTimeout = 0 },
		func(o *serveOptions) { o.hardening.readTimeout = -time.Second },
		func(o *serveOptions) { o.hardening.idleTimeout = 0 },
		func(o *serveOptions) { o.hardening.maxConnections = -1 },
		func(o *serveOptions) { o.hardening.maxHeaderBytes = 100 },
		func(o *serveOptions) { o.hardening.http2MaxStreams = 0 },
		func(o *serveOptions) { o.metricsAuth = true },                                                       // no --auth-file
		func(o *serveOptions) { o.metricsAuth, o.authFile, o.metricsListen = true, "a.yaml", "127.0.0.1:0" }, // served elsewhere, open
		func(o *serveOptions) { o.onDemand.streamLimit = 0 },
		func(o *serveOptions) { o.onDemand.interval = -time.Second },
		func(o *serveOptions) { o.onDemand.window = 0 },
		func(o *serveOptions) { o.onDemand.mergeAfter = 0 },
		func(o *serveOptions) { o.onDemand.splitAt = 0 },
		func(o *serveOptions) { o.onDemand.mergeBelow = o.onDemand.splitAt },
	} {
		o := testOptions()
		mut(&o)
		if o.check() == nil {
			t.Errorf("accepted %+v", o)
		}
	}
	if err := testOptions().check(); err != nil {
		t.Fatal(err)
	}
	never := testOptions()
	never.cacheWindow = -1
	if err := never.check(); err != nil {
		t.Fatal(err)
	}
}

func TestLoggerFlags(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("debug", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hello", "k", 1)
	if !strings.Contains(buf.String(), `"@message":"hello"`) {
		t.Fatalf("json log: %s", buf.String())
	}
	if _, err := newLogger("loud", "text", &buf); err == nil {
		t.Fatal("accepted log level loud")
	}
	if _, err := newLogger("info", "xml", &buf); err == nil {
		t.Fatal("accepted log format xml")
	}
}

func TestVersionCommand(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil || !strings.HasPrefix(out.String(), "shardlog ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
}

func TestSchedulerProcs(t *testing.T) {
	tests := []struct {
		flag    int
		envSet  bool
		current int
		want    int
	}{
		{flag: 0, envSet: false, current: 2, want: 8},
		{flag: 0, envSet: false, current: 32, want: 32},
		{flag: 0, envSet: true, current: 2, want: 2},
		{flag: 3, envSet: true, current: 2, want: 3},
		{flag: 1, envSet: false, current: 16, want: 1},
	}
	for _, tt := range tests {
		o := testOptions()
		o.gomaxprocs = tt.flag
		if got := o.schedulerProcs(tt.envSet, tt.current); got != tt.want {
			t.Errorf("flag %d, env set %v, runtime %d: got %d, want %d", tt.flag, tt.envSet, tt.current, got, tt.want)
		}
	}
}

// TestOnDemandScalerOptions: the flags reach storage as they are, and an
// interval of 0 turns the scaler off.
func TestOnDemandScalerOptions(t *testing.T) {
	o := defaultOnDemand()
	got := o.scaler()
	want := storage.ScalerOptions{Interval: 10 * time.Second, Window: time.Minute, SplitAt: 0.8, MergeBelow: 0.4, MergeAfter: 15 * time.Minute}
	if got != want {
		t.Fatalf("scaler options %+v, want %+v", got, want)
	}
	o.interval = 0
	if got := o.scaler(); got.Interval >= 0 {
		t.Fatalf("interval 0 gave %v, want the scaler off (negative)", got.Interval)
	}
}
