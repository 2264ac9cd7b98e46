package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// nullBackend acknowledges every put with fixed results, the records
// spread over four shards in turn (the worst case for shard-level metrics,
// which add up runs of one shard), so benchmarks measure the API layer
// alone.
type nullBackend struct{ *fakeBackend }

var fixedResults = []storage.PutResult{
	{ShardID: "shardId-000000000000", SequenceNumber: "49590338271490256608559692538361571095921575989136588850"},
	{ShardID: "shardId-000000000001", SequenceNumber: "49590338271490256608559692538361571095921575989136588850"},
	{ShardID: "shardId-000000000002", SequenceNumber: "49590338271490256608559692538361571095921575989136588850"},
	{ShardID: "shardId-000000000003", SequenceNumber: "49590338271490256608559692538361571095921575989136588850"},
}

func (nullBackend) Put(_ context.Context, _ string, entries []storage.PutEntry) ([]storage.PutResult, error) {
	out := make([]storage.PutResult, len(entries))
	for i := range out {
		out[i] = fixedResults[i%len(fixedResults)]
	}
	return out, nil
}

func putRecordsBody(n, size int) []byte {
	data := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, size))
	var b strings.Builder
	b.WriteString(`{"StreamName":"bench","Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"Data":"%s","PartitionKey":"partition-key-%d"}`, data, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkPutRecords is the hot path: 500 records of 1 KiB through the
// handler (decode, validate, encode), without storage.
func BenchmarkPutRecords(b *testing.B) { benchPutRecords(b, false, false) }

// BenchmarkPutRecordsShardLevel is BenchmarkPutRecords with every
// shard-level metric enabled on the stream (EnableEnhancedMonitoring ALL):
// the difference is what shard-level metrics cost the write path
// (BENCHMARKS.md).
func BenchmarkPutRecordsShardLevel(b *testing.B) { benchPutRecordsWith(b, false, false, true) }

// BenchmarkPutRecordsScraped is BenchmarkPutRecords while /metrics is
// scraped every 10ms (1,500 times Prometheus's default 15s interval): the
// difference is what scraping costs the write path (BENCHMARKS.md).
func BenchmarkPutRecordsScraped(b *testing.B) { benchPutRecords(b, false, true) }

// BenchmarkPutRecordsVerified is BenchmarkPutRecords with SigV4 verification
// (--auth-file): each request carries a real signature, checked by hashing
// the body and re-signing. The difference between the two is the
// verification's cost (BENCHMARKS.md).
func BenchmarkPutRecordsVerified(b *testing.B) { benchPutRecords(b, true, false) }

func benchPutRecords(b *testing.B, verify, scraped bool) {
	benchPutRecordsWith(b, verify, scraped, false)
}

func benchPutRecordsWith(b *testing.B, verify, scraped, shardLevel bool) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := Config{Now: func() time.Time { return at }}
	if verify {
		cfg.Auth = testVerifier(b)
	}
	srv := New(cfg, nullBackend{newFake()})
	if shardLevel {
		srv.metrics.stream("bench").level.reshape(levelOf(storage.ShardLevelMetricNames), nil)
	}
	if scraped {
		stop := scrapeEvery(b, srv, 10*time.Millisecond)
		defer stop()
	}
	body := putRecordsBody(500, 1024)
	// Signing is the client's work: sign once, replay the headers.
	signed := signRequest(b, newRequest("PutRecords", string(body)), body, "admin-secret", at)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := newRequest("PutRecords", "")
		req.Header = signed.Header.Clone()
		req.Body = httpBody(body)
		req.ContentLength = int64(len(body))
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkGetRecords(b *testing.B) {
	h := newHarness(b)
	h.createStream("s", 1)
	recs := putRecordsBody(500, 1024)
	h.ok("PutRecords", strings.Replace(string(recs), "bench", "s", 1))
	it := h.iterator("s", "0", "TRIM_HORIZON", "")
	body := `{"ShardIterator":"` + it + `"}`
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, newRequest("GetRecords", body))
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
}

// scrapeEvery GETs srv's /metrics every interval until stop is called.
func scrapeEvery(b *testing.B, srv *Server, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if w.Code != http.StatusOK {
				b.Errorf("scrape: status %d", w.Code)
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

func httpBody(b []byte) bodyReader { return bodyReader{bytes.NewReader(b)} }

// BenchmarkScrape is one GET /metrics with 10 streams' series, the Go
// runtime and process collectors included: its CPU time over the scrape
// interval is what scraping costs the server.
func BenchmarkScrape(b *testing.B) {
	srv := New(Config{}, nullBackend{newFake()})
	for i := range 10 {
		srv.metrics.stream(fmt.Sprintf("stream-%d", i)).incomingRecords.Inc()
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkRecordPutRecords is the metrics' own work for one PutRecords call
// of 500 records spread over four shards: the stream series alone, then
// with every shard-level metric enabled. Its difference, over
// BenchmarkPutRecords' time per call, is the shard-level metrics' share of
// the API layer's cost, without the noise of a whole request
// (BENCHMARKS.md).
func BenchmarkRecordPutRecords(b *testing.B) {
	entries := make([]storage.PutEntry, 500)
	res := make([]storage.PutResult, 500)
	for i := range entries {
		entries[i] = storage.PutEntry{PartitionKey: "partition-key", Data: make([]byte, 1024)}
		res[i] = fixedResults[i%len(fixedResults)]
	}
	for _, shardLevel := range []bool{false, true} {
		name := "stream"
		if shardLevel {
			name = "shard-level-all"
		}
		b.Run(name, func(b *testing.B) {
			sm := NewMetrics().stream("bench")
			if shardLevel {
				sm.level.reshape(levelOf(storage.ShardLevelMetricNames), nil)
			}
			b.ReportAllocs()
			for b.Loop() {
				sm.putRecordsDone(entries, res, nil, time.Millisecond)
			}
		})
	}
}

// BenchmarkPutRecord is PutRecord of one 1 KiB record through the handler
// (decode, validate, encode), without storage: the API layer's share of the
// per-request cost that issue 16 measures end to end.
func BenchmarkPutRecord(b *testing.B) {
	srv := New(Config{}, nullBackend{newFake()})
	data := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, 1024))
	body := []byte(`{"Data":"` + data + `","PartitionKey":"partition-key-1","StreamName":"bench"}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := newRequest("PutRecord", "")
		req.Body = httpBody(body)
		req.ContentLength = int64(len(body))
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
