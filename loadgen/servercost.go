package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServerCost is what one operation cost the server: its CPU time (user plus
// system) and, when its /metrics says so, its fdatasyncs, both as the
// difference between a reading before the operation's clients start and one
// after the last of them returned.
type ServerCost struct {
	// Source says where the CPU time came from: "proc" (/proc/PID/stat of
	// --server-pid) or "metrics" (the server's process_cpu_seconds_total,
	// which client_golang reads from the same /proc/self/stat).
	Source          string  `json:"source"`
	CPUSeconds      float64 `json:"cpu_s"`
	CPUMicrosPerRec float64 `json:"cpu_us_per_record"`
	// Syncs is the change of shardlog_fdatasync_duration_seconds_count; -1
	// when the server exports no such metric (another Kinesis server).
	Syncs          int64   `json:"syncs"`
	RecordsPerSync float64 `json:"records_per_sync,omitempty"`
	Error          string  `json:"error,omitempty"`
}

const (
	cpuMetric     = "process_cpu_seconds_total"
	syncMetric    = "shardlog_fdatasync_duration_seconds_count"
	scrapeTimeout = 5 * time.Second
)

// costProbe reads a server's counters: CPU from /proc when pid is set (the
// server must run on this machine), else from its /metrics; fdatasyncs from
// its /metrics when metricsURL is set.
type costProbe struct {
	pid        int
	metricsURL string
	hc         *http.Client
}

// costReading is one reading of the probe's counters.
type costReading struct {
	cpu   float64
	syncs int64 // -1: not exported
	err   error
}

func newCostProbe(o Config) *costProbe {
	if o.ServerPID == 0 && !o.ServerCPU {
		return nil
	}
	p := &costProbe{pid: o.ServerPID, hc: &http.Client{Timeout: scrapeTimeout}}
	if o.ServerCPU {
		p.metricsURL = strings.TrimSuffix(o.Endpoint, "/") + "/metrics"
	}
	return p
}

func (p *costProbe) read(ctx context.Context) costReading {
	r := costReading{syncs: -1}
	var m map[string]float64
	if p.metricsURL != "" {
		var err error
		if m, err = p.scrape(ctx); err != nil {
			r.err = err
		}
	}
	if v, ok := m[syncMetric]; ok {
		r.syncs = int64(v)
	}
	if p.pid != 0 {
		cpu, err := procCPU(p.pid)
		r.cpu, r.err = cpu, errors.Join(r.err, err)
		return r
	}
	v, ok := m[cpuMetric]
	if !ok && r.err == nil {
		r.err = fmt.Errorf("%s exports no %s; give --server-pid", p.metricsURL, cpuMetric)
	}
	r.cpu = v
	return r
}

// cost is what happened between two readings, for records records.
func (p *costProbe) cost(before, after costReading, records int64) *ServerCost {
	c := &ServerCost{Source: "metrics", Syncs: -1}
	if p.pid != 0 {
		c.Source = "proc"
	}
	if err := errors.Join(before.err, after.err); err != nil {
		c.Error = err.Error()
		return c
	}
	c.CPUSeconds = after.cpu - before.cpu
	if records > 0 {
		c.CPUMicrosPerRec = c.CPUSeconds * 1e6 / float64(records)
	}
	if before.syncs >= 0 && after.syncs >= 0 {
		c.Syncs = after.syncs - before.syncs
		if c.Syncs > 0 {
			c.RecordsPerSync = float64(records) / float64(c.Syncs)
		}
	}
	return c
}

// scrape fetches the server's metrics and returns the unlabelled samples
// the probe needs.
func (p *costProbe) scrape(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", p.metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %d", p.metricsURL, resp.StatusCode)
	}
	return parseSamples(resp.Body, cpuMetric, syncMetric)
}

// parseSamples reads Prometheus's text exposition format and returns the
// values of the named unlabelled samples that it holds.
func parseSamples(r io.Reader, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		out[name] = v
	}
	return out, sc.Err()
}
