package loadgen

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

func TestSubscribeOptionsCheck(t *testing.T) {
	ok := validConfig()
	ok.Op, ok.Consumers, ok.Rate = OpSubscribe, 2, 1000
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Config){
		"no consumers":     func(o *Config) { o.Consumers = 0 },
		"21 consumers":     func(o *Config) { o.Consumers = 21 },
		"rate":             func(o *Config) { o.Rate = 0 },
		"record too small": func(o *Config) { o.RecordSize = stampSize - 1 },
		"pid":              func(o *Config) { o.ServerPID = -1 },
	}
	for name, mutate := range bad {
		o := ok
		mutate(&o)
		if o.Check() == nil {
			t.Errorf("%s: accepted %+v", name, o)
		}
	}
}

// TestReaderDelivery checks that a reader counts each stamped record once,
// in counter order, and its send-to-receive latency.
func TestReaderDelivery(t *testing.T) {
	sent := time.Unix(1000, 0)
	rec := func(n uint64) types.Record {
		b := make([]byte, 32)
		stamp(b, sent, n)
		return types.Record{Data: b}
	}
	sh := &benchShard{id: "shardId-000000000000"}
	sh.acked.Store(3)
	r := &reader{shard: sh}
	r.deliver([]types.Record{rec(1), rec(2)}, sent.Add(5*time.Millisecond))
	if r.keptUp() {
		t.Fatal("kept up with 2 of 3 records")
	}
	r.deliver([]types.Record{rec(2), rec(1), {Data: []byte("short")}, rec(4)}, sent.Add(7*time.Millisecond))
	if got := r.received.Load(); got != 3 || r.disorder != 2 || r.foreign != 1 || r.last != 4 || !r.keptUp() {
		t.Fatalf("received %d disorder %d foreign %d last %d", got, r.disorder, r.foreign, r.last)
	}
	if r.hist.n != 3 || r.hist.max != 7*time.Millisecond {
		t.Fatalf("latencies: %d, max %v", r.hist.n, r.hist.max)
	}
	res := summarize(OpSubscribe, []*reader{r}, time.Second, 0)
	if d := res.Delivery; d.KeptUp != 1 || d.Expected != 3 || d.Delivered != 3 || d.Disorder != 2 {
		t.Fatalf("delivery %+v", d)
	}
}

func TestStampRoundTrip(t *testing.T) {
	b := make([]byte, stampSize)
	now := time.Now()
	stamp(b, now, 42)
	got, n, ok := readStamp(b)
	if !ok || n != 42 || !got.Equal(now.Round(0)) {
		t.Fatalf("got %v %d %v, want %v 42", got, n, ok, now)
	}
	if _, _, ok := readStamp(b[:stampSize-1]); ok {
		t.Fatal("a short record read as stamped")
	}
}

func TestProcParsing(t *testing.T) {
	cases := []struct {
		stat string
		want float64
	}{
		{"123 (shardlog) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0", 3},
		{"123 (a b) c)) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0", 0.03},
	}
	for _, c := range cases {
		got, err := parseStatCPU([]byte(c.stat))
		if err != nil || got != c.want {
			t.Errorf("%q: %v %v, want %v", c.stat, got, err, c.want)
		}
	}
	if _, err := parseStatCPU([]byte("123 (x) S 1")); err == nil {
		t.Error("a short stat line parsed")
	}
	rss, err := parseStatusRSS([]byte("Name:\tshardlog\nVmRSS:\t   20480 kB\nThreads: 9\n"))
	if err != nil || rss != 20 {
		t.Fatalf("VmRSS: %v %v", rss, err)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	u := startUsage(os.Getpid())()
	if u.Error != "" || u.RSSPeakMiB <= 0 || u.CPUSeconds < 0 {
		t.Fatalf("own usage: %+v", u)
	}
}

func TestSubscribeTextSummary(t *testing.T) {
	rep := &Report{Endpoint: "http://x", Stream: "s", Shards: 4, RecordSize: 1024,
		Results: []Result{{Op: OpSubscribe, Clients: 8, Records: 80, Delivery: &Delivery{Readers: 8, KeptUp: 7, Expected: 80, Delivered: 79}}},
		Server:  &ServerUsage{PID: 7, CPUSeconds: 1.5, Seconds: 3, CPUPercent: 50, RSSPeakMiB: 40, RSSEndMiB: 38}}
	var out bytes.Buffer
	if err := rep.Write(&out, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"subscribe: 7 of 8 readers kept up, 79 of 80 records delivered", "send to receive", "server pid 7: 1.5 CPU s", "RSS peak 40.0 MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
