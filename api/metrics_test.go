package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shardlog/shardlog/storage"
)

// TestPutRecordsMetricsDoNotAllocate: recording a PutRecords call of 500
// records, some throttled and some failed, allocates nothing.
func TestPutRecordsMetricsDoNotAllocate(t *testing.T) {
	sm := NewMetrics().stream("s")
	entries := make([]storage.PutEntry, 500)
	res := make([]storage.PutResult, 500)
	for i := range entries {
		entries[i] = storage.PutEntry{PartitionKey: "k", Data: []byte("data")}
		switch i % 3 {
		case 1:
			res[i].Err = storage.ErrThrottled
		case 2:
			res[i].Err = errors.New("disk on fire")
		}
	}
	if n := testing.AllocsPerRun(100, func() { sm.putRecordsDone(entries, res, nil, 0) }); n != 0 {
		t.Errorf("putRecordsDone allocates %v times per call", n)
	}
}

// TestMetricsEndpoint: /metrics parses with Prometheus's parser on the API
// handler, is absent with MetricsElsewhere, and a deleted stream's series go.
func TestMetricsEndpoint(t *testing.T) {
	tests := []struct {
		name      string
		elsewhere bool
		delete    bool
		wantLines int // series of shardlog_stream_incoming_records_total
	}{
		{"served", false, false, 1},
		{"deleted stream", false, true, 0},
		{"elsewhere", true, false, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv = New(Config{Now: h.clock, MetricsElsewhere: tc.elsewhere}, h.fake)
			h.createStream("s", 1)
			h.ok("PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"AAAA"}`)
			if tc.delete {
				h.ok("DeleteStream", `{"StreamName":"s"}`)
			}
			w := httptest.NewRecorder()
			h.srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if tc.wantLines < 0 {
				if w.Code == http.StatusOK {
					t.Fatalf("GET /metrics answered 200 with MetricsElsewhere")
				}
				return
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(strings.NewReader(w.Body.String()))
			if err != nil {
				t.Fatal(err)
			}
			got := len(fams["shardlog_stream_incoming_records_total"].GetMetric())
			if got != tc.wantLines {
				t.Errorf("incoming_records series = %d, want %d", got, tc.wantLines)
			}
		})
	}
}
