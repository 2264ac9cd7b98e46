package loadgen

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSamples(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
shardlog_fdatasync_duration_seconds_bucket{le="0.001"} 3
shardlog_fdatasync_duration_seconds_sum 0.25
shardlog_fdatasync_duration_seconds_count 1234
shardlog_fdatasync_duration_seconds_count_other 9
process_cpu_seconds_total_bogus
`
	got, err := parseSamples(strings.NewReader(text), cpuMetric, syncMetric)
	if err != nil {
		t.Fatal(err)
	}
	if got[cpuMetric] != 12.5 || got[syncMetric] != 1234 || len(got) != 2 {
		t.Fatalf("parseSamples = %v", got)
	}
	if _, err := parseSamples(strings.NewReader("process_cpu_seconds_total x\n"), cpuMetric); err == nil {
		t.Fatal("a malformed value was accepted")
	}
}

func TestServerCost(t *testing.T) {
	tests := []struct {
		name          string
		pid           int
		before, after costReading
		records       int64
		want          ServerCost
	}{
		{"metrics with syncs", 0, costReading{cpu: 1, syncs: 100}, costReading{cpu: 3, syncs: 300}, 2000,
			ServerCost{Source: "metrics", CPUSeconds: 2, CPUMicrosPerRec: 1000, Syncs: 200, RecordsPerSync: 10}},
		{"proc, no sync metric", 42, costReading{cpu: 1, syncs: -1}, costReading{cpu: 1.5, syncs: -1}, 500,
			ServerCost{Source: "proc", CPUSeconds: 0.5, CPUMicrosPerRec: 1000, Syncs: -1}},
		{"no records, no syncs", 0, costReading{cpu: 1, syncs: 5}, costReading{cpu: 1, syncs: 5}, 0,
			ServerCost{Source: "metrics"}},
		{"failed reading", 0, costReading{err: errors.New("refused")}, costReading{}, 10,
			ServerCost{Source: "metrics", Syncs: -1, Error: "refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &costProbe{pid: tc.pid}
			if got := *p.cost(tc.before, tc.after, tc.records); got != tc.want {
				t.Fatalf("cost = %+v, want %+v", got, tc.want)
			}
		})
	}
}
