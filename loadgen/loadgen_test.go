package loadgen

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The runs against a live server (TestBenchAllOps, TestBenchRecordsBudget,
// TestBenchCommandJSON) are in cmd/shardlog/bench_test.go: they start the
// server the way `shardlog serve` does, which only the command can, and this
// package imports none of the server's packages, not even in tests.

// validConfig is a setup Check accepts; the endpoint is never dialled.
func validConfig() Config {
	return Config{
		Endpoint: "http://127.0.0.1:1", Region: "us-east-1", Stream: "bench-test", Shards: 2, Op: OpAll,
		Clients: 2, Batch: 50, RecordSize: 256, Duration: time.Second, Seed: 7,
	}
}

func TestBenchTextSummary(t *testing.T) {
	rep := &Report{Endpoint: "http://x", Stream: "s", Shards: 1, Batch: 500, RecordSize: 1024,
		Results: []Result{{Op: OpPutRecords, Clients: 4, Records: 1000, Errors: 1, FirstError: "boom"},
			{Op: OpGetRecords, Clients: 4, ReadBack: &ReadBack{Shards: 4, ShardsAtTip: 3}}}}
	var out bytes.Buffer
	if err := rep.Write(&out, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"putrecords", "records/s", "p99 ms", "throttled", "first error: boom", "3 of 4 shards read to the tip"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchOptionsCheck(t *testing.T) {
	ok := validConfig()
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Config){
		"op":       func(o *Config) { o.Op = "listshards" },
		"batch":    func(o *Config) { o.Batch = 501 },
		"size":     func(o *Config) { o.RecordSize = 1 << 20 },
		"5MiB":     func(o *Config) { o.Batch, o.RecordSize = 500, 20000 },
		"clients":  func(o *Config) { o.Clients = 0 },
		"duration": func(o *Config) { o.Duration = 0 },
		"endpoint": func(o *Config) { o.Endpoint = "" },
	}
	for name, mutate := range bad {
		o := ok
		mutate(&o)
		if o.Check() == nil {
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
