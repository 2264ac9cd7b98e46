package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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

// TestShardLevelMetricsDoNotAllocate: with every shard-level metric
// enabled, recording PutRecords (records spread over four shards, some
// throttled) and GetRecords calls allocates nothing once each shard has
// been seen.
func TestShardLevelMetricsDoNotAllocate(t *testing.T) {
	sm := NewMetrics().stream("s")
	sm.level.reshape(levelOf(storage.ShardLevelMetricNames), nil)
	entries := make([]storage.PutEntry, 500)
	res := make([]storage.PutResult, 500)
	ids := []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"}
	for i := range entries {
		entries[i] = storage.PutEntry{PartitionKey: "k", Data: []byte("data")}
		res[i].ShardID = ids[i%len(ids)]
		if i%5 == 1 {
			res[i].Err = storage.ErrThrottled
		}
	}
	read := storage.ReadResult{Records: make([]storage.Record, 3), Bytes: 30}
	sm.putRecordsDone(entries, res, nil, 0) // each shard's first sight resolves its series
	for i := range ids {
		sm.getRecordsDone(uint32(i), read, nil, 0)
	}
	calls := 1
	if n := testing.AllocsPerRun(100, func() {
		sm.putRecordsDone(entries, res, nil, 0)
		sm.getRecordsDone(2, read, nil, 0)
		calls++
	}); n != 0 {
		t.Errorf("recording allocates %v times per call", n)
	}
	set := sm.level.set.Load()
	if len(set.byIndex) != 4 {
		t.Fatalf("%d shards resolved, want 4", len(set.byIndex))
	}
	// Shard 1 has records i ≡ 1 (mod 4): 125 per call, of which those
	// with i ≡ 1 (mod 20) are throttled: 25.
	checks := []struct {
		c    prometheus.Collector
		want int
	}{
		{set.byIndex[1].incomingRecords, 100 * calls},
		{set.byIndex[1].incomingBytes, 100 * 5 * calls},
		{set.byIndex[1].writeExceeded, 25 * calls},
		{set.byIndex[2].outgoingRecords, 3 * calls},
		{set.byIndex[3].outgoingRecords, 3},
	}
	for i, c := range checks {
		if got := counterValue(t, c.c); got != float64(c.want) {
			t.Errorf("check %d: %v, want %d", i, got, c.want)
		}
	}
}

// counterValue reads one counter's value.
func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
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
