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

// nullBackend acknowledges every put with a fixed result, so benchmarks
// measure the API layer alone.
type nullBackend struct{ *fakeBackend }

var fixedResult = storage.PutResult{ShardID: "shardId-000000000003", SequenceNumber: "49590338271490256608559692538361571095921575989136588850"}

func (nullBackend) Put(_ context.Context, _ string, entries []storage.PutEntry) ([]storage.PutResult, error) {
	out := make([]storage.PutResult, len(entries))
	for i := range out {
		out[i] = fixedResult
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
func BenchmarkPutRecords(b *testing.B) { benchPutRecords(b, false) }

// BenchmarkPutRecordsVerified is BenchmarkPutRecords with SigV4 verification
// (--auth-file): each request carries a real signature, checked by hashing
// the body and re-signing. The difference between the two is the
// verification's cost (BENCHMARKS.md).
func BenchmarkPutRecordsVerified(b *testing.B) { benchPutRecords(b, true) }

func benchPutRecords(b *testing.B, verify bool) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := Config{Now: func() time.Time { return at }}
	if verify {
		cfg.Auth = testVerifier(b)
	}
	srv := New(cfg, nullBackend{newFake()})
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

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

func httpBody(b []byte) bodyReader { return bodyReader{bytes.NewReader(b)} }
