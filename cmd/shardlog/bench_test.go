package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// startBenchEndpoint runs the real server (storage engine on a temporary
// directory, the API on a loopback port) through the same path as `shardlog
// serve`, and returns its endpoint URL.
func startBenchEndpoint(t *testing.T) string {
	t.Helper()
	o := testOptions()
	o.dataDir = t.TempDir()
	o.createDelay, o.deleteDelay, o.updateDelay = 0, 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, openStore, hclog.NewNullLogger(), func(a net.Addr) { addrc <- a }) }()
	select {
	case a := <-addrc:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return "http://" + a.String()
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return ""
}

func smallBench(endpoint string) benchOptions {
	return benchOptions{
		endpoint: endpoint, region: "us-east-1", stream: "bench-test", shards: 2, op: opAll,
		clients: 2, batch: 50, recordSize: 256, duration: time.Second, seed: 7,
	}
}

// TestBenchAllOps writes with PutRecords and PutRecord for about a second
// each, then reads back: within the second of --op all at least part of it,
// and with a generous --duration exactly the acknowledged records and bytes,
// every shard to its tip.
func TestBenchAllOps(t *testing.T) {
	o := smallBench(startBenchEndpoint(t))
	rep, err := runBench(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 || rep.Shards != 2 {
		t.Fatalf("report: %+v", rep)
	}
	put, one := rep.Results[0], rep.Results[1]
	for _, r := range rep.Results {
		if r.Errors != 0 || r.Throttled != 0 || r.Records == 0 || r.Requests == 0 || r.Latency.Max <= 0 {
			t.Errorf("%s: %+v", r.Op, r)
		}
	}
	if put.Bytes != put.Records*256 || one.Bytes != one.Records*256 {
		t.Errorf("bytes: putrecords %+v putrecord %+v", put, one)
	}
	o.op, o.duration = opGetRecords, time.Minute
	rep, err = runBench(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := rep.Results[0]
	if rb := get.ReadBack; rb == nil || rb.Shards != 2 || rb.ShardsAtTip != 2 || get.Errors != 0 {
		t.Errorf("read-back: %+v %+v", get, rb)
	}
	if get.Records != put.Records+one.Records || get.Bytes != put.Bytes+one.Bytes {
		t.Errorf("read back %d records (%d bytes), acknowledged %d (%d bytes)",
			get.Records, get.Bytes, put.Records+one.Records, put.Bytes+one.Bytes)
	}
}

// TestBenchRecordsBudget checks that --records stops each operation after
// exactly that many records written, and bounds a read-back.
func TestBenchRecordsBudget(t *testing.T) {
	o := smallBench(startBenchEndpoint(t))
	o.records, o.duration = 120, time.Minute
	rep, err := runBench(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results[:2] {
		if r.Records != 120 || r.Errors != 0 {
			t.Errorf("%s: %d records, %d errors (%s), want 120", r.Op, r.Records, r.Errors, r.FirstError)
		}
	}
	// Concurrent readers may overshoot a read budget by a page each.
	if get := rep.Results[2]; get.Records < 120 || get.Records > 240 || get.Errors != 0 {
		t.Errorf("getrecords: %d records, %d errors, want 120-240", get.Records, get.Errors)
	}
	if rep.Results[0].Requests != 3 { // 50 + 50 + 20
		t.Errorf("putrecords made %d requests, want 3", rep.Results[0].Requests)
	}
}

// TestBenchCommandJSON runs the subcommand as a user would and decodes its
// --json summary; progress stays off because stderr is not a terminal.
func TestBenchCommandJSON(t *testing.T) {
	endpoint := startBenchEndpoint(t)
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"bench", "--endpoint", endpoint, "--op", "putrecord", "--clients", "2",
		"--records", "30", "--record-size", "100", "--shards", "1", "--json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Results) != 1 || rep.Results[0].Records != 30 || rep.Results[0].Bytes != 3000 || errOut.Len() != 0 {
		t.Fatalf("report %+v, stderr %q", rep, errOut.String())
	}
}

func TestBenchTextSummary(t *testing.T) {
	rep := &benchReport{Endpoint: "http://x", Stream: "s", Shards: 1, Batch: 500, RecordSize: 1024,
		Results: []benchResult{{Op: opPutRecords, Clients: 4, Records: 1000, Errors: 1, FirstError: "boom"},
			{Op: opGetRecords, Clients: 4, ReadBack: &readBack{Shards: 4, ShardsAtTip: 3}}}}
	var out bytes.Buffer
	if err := rep.write(&out, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"putrecords", "records/s", "p99 ms", "throttled", "first error: boom", "3 of 4 shards read to the tip"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchOptionsCheck(t *testing.T) {
	ok := smallBench("http://127.0.0.1:1")
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*benchOptions){
		"op":       func(o *benchOptions) { o.op = "listshards" },
		"batch":    func(o *benchOptions) { o.batch = 501 },
		"size":     func(o *benchOptions) { o.recordSize = 1 << 20 },
		"5MiB":     func(o *benchOptions) { o.batch, o.recordSize = 500, 20000 },
		"clients":  func(o *benchOptions) { o.clients = 0 },
		"duration": func(o *benchOptions) { o.duration = 0 },
		"endpoint": func(o *benchOptions) { o.endpoint = "" },
	}
	for name, mutate := range bad {
		o := ok
		mutate(&o)
		if o.check() == nil {
			t.Errorf("%s: accepted %+v", name, o)
		}
	}
}

// TestHistogram checks bucket round trips and that percentiles are within
// the histogram's 1/64 precision.
func TestHistogram(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 127, 128, 1000, 123456789, math.MaxInt64} {
		got := histValue(histBucket(v))
		if diff := math.Abs(float64(got) - float64(v)); diff > float64(v)/64+1 {
			t.Errorf("histValue(histBucket(%d)) = %d", v, got)
		}
	}
	var h, other histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
		other.record(time.Duration(i) * time.Microsecond)
	}
	h.merge(&other)
	for q, want := range map[float64]time.Duration{0.5: 500 * time.Microsecond, 0.99: 990 * time.Microsecond} {
		if got := h.quantile(q); math.Abs(float64(got-want)) > float64(want)/64 {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if h.max != time.Millisecond || h.n != 2000 || new(histogram).quantile(0.5) != 0 {
		t.Errorf("max %v n %d", h.max, h.n)
	}
}

// TestServeForProfiling is a tool rather than a test: with
// SHARDLOG_PROFILE_LISTEN set it serves a durable server (sync always,
// throttling off) on that address for SHARDLOG_PROFILE_FOR (default 30s), so
// that `go test -cpuprofile` profiles the server alone while `shardlog
// bench`, in another process, drives it.
func TestServeForProfiling(t *testing.T) {
	addr := os.Getenv("SHARDLOG_PROFILE_LISTEN")
	if addr == "" {
		t.Skip("set SHARDLOG_PROFILE_LISTEN=127.0.0.1:4599 to serve for profiling")
	}
	d, err := time.ParseDuration(cmp.Or(os.Getenv("SHARDLOG_PROFILE_FOR"), "30s"))
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.listen, o.dataDir = addr, t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := runServe(ctx, o, openStore, hclog.NewNullLogger(), nil); err != nil {
		t.Fatal(err)
	}
}

// closingBody fails reads after Close, like smithy-go's request body.
type closingBody struct {
	r      io.Reader
	closed bool
}

func (b *closingBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("read after close")
	}
	return b.r.Read(p)
}

func (b *closingBody) Close() error { b.closed = true; return nil }

type clientFunc func(*http.Request) (*http.Response, error)

func (f clientFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// TestOwnBodyClient checks that the transport's copy of the request body
// stays readable after the SDK closes the original.
func TestOwnBodyClient(t *testing.T) {
	orig := &closingBody{r: strings.NewReader("payload")}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", orig)
	var got []byte
	c := ownBodyClient{clientFunc(func(r *http.Request) (*http.Response, error) {
		orig.Close() // the SDK closing its body while the transport writes
		var err error
		got, err = io.ReadAll(r.Body)
		return nil, err
	})}
	if _, err := c.Do(req); err != nil || string(got) != "payload" {
		t.Fatalf("body %q, err %v", got, err)
	}
}
