package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/loadgen"
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
	go func() {
		done <- runServe(ctx, o, openStore, hclog.NewNullLogger(), func(e endpoints) { addrc <- e.plain })
	}()
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

func smallBench(endpoint string) loadgen.Config {
	return loadgen.Config{
		Endpoint: endpoint, Region: "us-east-1", Stream: "bench-test", Shards: 2, Op: loadgen.OpAll,
		Clients: 2, Batch: 50, RecordSize: 256, Duration: time.Second, Seed: 7,
	}
}

// TestBenchAllOps writes with PutRecords and PutRecord for about a second
// each, then reads back: within the second of --op all at least part of it,
// and with a generous --duration exactly the acknowledged records and bytes,
// every shard to its tip.
func TestBenchAllOps(t *testing.T) {
	o := smallBench(startBenchEndpoint(t))
	rep, err := loadgen.Run(context.Background(), o, nil)
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
	o.Op, o.Duration = loadgen.OpGetRecords, time.Minute
	rep, err = loadgen.Run(context.Background(), o, nil)
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
	o.Records, o.Duration = 120, time.Minute
	rep, err := loadgen.Run(context.Background(), o, nil)
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
	var rep loadgen.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Results) != 1 || rep.Results[0].Records != 30 || rep.Results[0].Bytes != 3000 || errOut.Len() != 0 {
		t.Fatalf("report %+v, stderr %q", rep, errOut.String())
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

// TestBenchSubscribe runs subscribe mode briefly: two consumers on two
// shards and a poller per shard must each receive every acknowledged
// record, once and in order, and report send-to-receive latency.
func TestBenchSubscribe(t *testing.T) {
	o := smallBench(startBenchEndpoint(t))
	o.Op, o.Consumers, o.Rate, o.Poll, o.ServerPID = loadgen.OpSubscribe, 2, 200, true, os.Getpid()
	rep, err := loadgen.Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 || rep.Server == nil || rep.Server.RSSPeakMiB <= 0 {
		t.Fatalf("report: %+v", rep)
	}
	put := rep.Results[0]
	if put.Records == 0 || put.Errors != 0 || put.Throttled != 0 {
		t.Fatalf("writers: %+v", put)
	}
	for _, r := range rep.Results[1:] {
		d := r.Delivery
		readers := 2 * 2
		if r.Op == loadgen.OpPoll {
			readers = 2
		}
		if d == nil || d.Readers != readers || d.KeptUp != readers || d.Delivered != put.Records*int64(readers)/2 || d.Disorder != 0 || r.Errors != 0 {
			t.Errorf("%s: %+v delivery %+v", r.Op, r, d)
		}
		if r.Latency.Max <= 0 {
			t.Errorf("%s: no latency: %+v", r.Op, r.Latency)
		}
	}
}

// TestBenchServerCost reads the server's CPU time and fdatasync count from
// its /metrics around each operation: under the default sync policy every
// acknowledged write followed at least one fdatasync, and no more than one
// per shard a request wrote to; a read-back syncs nothing.
func TestBenchServerCost(t *testing.T) {
	o := smallBench(startBenchEndpoint(t))
	o.Records, o.Duration, o.ServerCPU = 200, time.Minute, true
	rep, err := loadgen.Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		c := r.Server
		if c == nil || c.Error != "" || c.Source != "metrics" || c.CPUSeconds < 0 {
			t.Fatalf("%s: server cost %+v", r.Op, c)
		}
		switch r.Op {
		case loadgen.OpGetRecords:
			if c.Syncs != 0 {
				t.Errorf("getrecords: %d fdatasyncs", c.Syncs)
			}
		default:
			if c.Syncs < 1 || c.Syncs > r.Requests*int64(rep.Shards) || c.RecordsPerSync != float64(r.Records)/float64(c.Syncs) {
				t.Errorf("%s: %d requests, %d records, cost %+v", r.Op, r.Requests, r.Records, c)
			}
		}
	}
}
