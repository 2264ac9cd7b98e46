package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// api stands for the Kinesis API: it answers every request it is given.
var api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Test", "api")
	w.WriteHeader(http.StatusTeapot)
})

func TestWrapRoutes(t *testing.T) {
	h := Wrap(api, Config{Region: "eu-west-1"})
	for _, tc := range []struct {
		method, path string
		want         int    // status
		wantAPI      bool   // answered by the API
		wantType     string // Content-Type prefix
	}{
		{"GET", "/console/", 200, false, "text/html"},
		{"HEAD", "/console/", 200, false, "text/html"},
		{"GET", "/console/app.js", 200, false, "text/javascript"},
		{"GET", "/console/sigv4.js", 200, false, "text/javascript"},
		{"GET", "/console/style.css", 200, false, "text/css"},
		{"GET", "/console/config.json", 200, false, "application/json"},
		{"GET", "/console", 301, false, ""},
		{"GET", "/console/nothing.js", 404, false, "text/plain"},
		{"GET", "/console/counters.json", 404, false, "text/plain"}, // no registry given
		// Everything else is the API's, as before the console existed.
		{"POST", "/console/", 418, true, ""},
		{"OPTIONS", "/console/app.js", 418, true, ""},
		{"POST", "/", 418, true, ""},
		{"GET", "/", 418, true, ""},
		{"GET", "/consoles", 418, true, ""},
		{"GET", "/metrics", 418, true, ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		res := w.Result()
		if res.StatusCode != tc.want || (res.Header.Get("X-Test") == "api") != tc.wantAPI || !strings.HasPrefix(res.Header.Get("Content-Type"), tc.wantType) {
			t.Errorf("%s %s: %d api=%v %q, want %d api=%v %q", tc.method, tc.path, res.StatusCode, res.Header.Get("X-Test") == "api",
				res.Header.Get("Content-Type"), tc.want, tc.wantAPI, tc.wantType)
		}
		if !tc.wantAPI && tc.want != 301 && !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s %s: no Content-Security-Policy", tc.method, tc.path)
		}
	}
}

func TestConsoleRevalidatesFiles(t *testing.T) {
	h := Wrap(api, Config{})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/console/app.js", nil))
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("app.js: ETag %q, Cache-Control %q", etag, w.Header().Get("Cache-Control"))
	}
	r := httptest.NewRequest("GET", "/console/app.js", nil)
	r.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified {
		t.Fatalf("app.js with its ETag: %d, want 304", w.Code)
	}
}

func TestConfigDocument(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"open, no throttling, no counters", Config{Region: "eu-west-1", Version: "v1"},
			`{"region":"eu-west-1","auth":false,"counters":false,"limits":null,"version":"v1"}`},
		{"signed, limits, counters", Config{Region: "us-east-1", Auth: true, Counters: prometheus.NewRegistry(),
			Limits: &Limits{WriteRecords: 1000, WriteBytes: 1 << 20, ReadCalls: 5, ReadBytes: 2 << 20}, Version: "dev"},
			`{"region":"us-east-1","auth":true,"counters":true,"limits":{"writeRecords":1000,"writeBytes":1048576,"readCalls":5,"readBytes":2097152},"version":"dev"}`},
	} {
		got := get(t, Wrap(api, tc.cfg), "/console/config.json")
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// TestCountersDocument: counters and gauges labelled by stream (and shard)
// are in, with their values; histograms and unlabelled series are out.
func TestCountersDocument(t *testing.T) {
	reg := prometheus.NewRegistry()
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shardlog_stream_incoming_records_total", Help: "h"}, []string{"stream"})
	age := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shardlog_stream_get_records_iterator_age_milliseconds", Help: "h"}, []string{"stream"})
	shard := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shardlog_shard_incoming_records_total", Help: "h"}, []string{"stream", "shard"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shardlog_stream_put_record_latency_seconds", Help: "h"}, []string{"stream"})
	total := prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_commit_raw_bytes_total", Help: "h"})
	reg.MustRegister(in, age, shard, lat, total)
	in.WithLabelValues("a").Add(3)
	in.WithLabelValues("b").Add(5)
	age.WithLabelValues("a").Set(1500)
	shard.WithLabelValues("a", "shardId-000000000001").Add(2)
	lat.WithLabelValues("a").Observe(0.1)
	total.Add(99)
	at := time.UnixMilli(1767225600123)
	h := Wrap(api, Config{Counters: reg, Now: func() time.Time { return at }})
	var doc counters
	if err := json.Unmarshal([]byte(get(t, h, "/console/counters.json")), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[series]bool{
		{Name: "stream_incoming_records_total", Stream: "a", Value: 3}:                               true,
		{Name: "stream_incoming_records_total", Stream: "b", Value: 5}:                               true,
		{Name: "stream_get_records_iterator_age_milliseconds", Stream: "a", Value: 1500}:             true,
		{Name: "shard_incoming_records_total", Stream: "a", Shard: "shardId-000000000001", Value: 2}: true,
	}
	if doc.At != at.UnixMilli() || len(doc.Series) != len(want) {
		t.Fatalf("got at=%d %+v, want at=%d and %d series", doc.At, doc.Series, at.UnixMilli(), len(want))
	}
	for _, s := range doc.Series {
		if !want[s] {
			t.Errorf("unexpected series %+v", s)
		}
	}
}

func get(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	if w.Code != 200 {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	b, _ := io.ReadAll(w.Result().Body)
	return string(b)
}
