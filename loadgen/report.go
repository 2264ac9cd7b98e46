package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"text/tabwriter"
	"time"
)

// Report is the whole run: the setup and one result per operation.
type Report struct {
	Endpoint   string   `json:"endpoint"`
	Stream     string   `json:"stream"`
	Shards     int      `json:"shards"`
	Batch      int      `json:"batch"`
	RecordSize int      `json:"record_size"`
	Results    []Result `json:"results"`
	// Server is the sampled server process (subscribe mode with --server-pid).
	Server *ServerUsage `json:"server,omitempty"`
}

// Result is one operation's summary. Throttled counts records refused
// with ProvisionedThroughputExceededException (whole calls or per-record
// ErrorCode; for getrecords, calls). Errors counts other failed calls plus
// PutRecords records failed with any other ErrorCode.
type Result struct {
	Op            string    `json:"op"`
	Clients       int       `json:"clients"`
	Records       int64     `json:"records"`
	Bytes         int64     `json:"bytes"`
	Requests      int64     `json:"requests"`
	Seconds       float64   `json:"duration_s"`
	RecordsPerSec float64   `json:"records_per_s"`
	MBPerSec      float64   `json:"mb_per_s"`
	Latency       LatencyMS `json:"latency_ms"`
	Throttled     int64     `json:"throttled"`
	Errors        int64     `json:"errors"`
	FirstError    string    `json:"first_error,omitempty"`
	ReadBack      *ReadBack `json:"read_back,omitempty"` // getrecords only
	Delivery      *Delivery `json:"delivery,omitempty"`  // subscribe and getrecords-poll only
	// Server is the server's cost of the operation (--server-pid or --server-cpu).
	Server *ServerCost `json:"server,omitempty"`
	hist   *histogram  // nil in a decoded report
}

// ReadBack tells whether a getrecords run read every shard to its tip, or
// was cut short by --duration or --records.
type ReadBack struct {
	Shards      int `json:"shards"`
	ShardsAtTip int `json:"shards_at_tip"`
}

// Delivery is what a subscribe run's readers (subscriptions, one per
// consumer and shard, or pollers, one per shard) received of the records
// their shards acknowledged. Their Result's latency is send-to-receive.
type Delivery struct {
	Readers      int     `json:"readers"`
	KeptUp       int     `json:"kept_up"`   // readers that received every acknowledged record of their shard
	Expected     int64   `json:"expected"`  // acknowledged records, once per reader of their shard
	Delivered    int64   `json:"delivered"` // of them, received (once each, in order)
	Disorder     int64   `json:"duplicated_or_reordered"`
	Foreign      int64   `json:"foreign,omitempty"` // records without this run's stamp
	Resubscribes int64   `json:"resubscribes,omitempty"`
	DrainSeconds float64 `json:"drain_s"` // after the writers stopped, until every reader had caught up (or gave up)
}

// LatencyMS is per-request latency of the calls that got an answer.
type LatencyMS struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Write prints the report as JSON or as a table.
func (rep *Report) Write(out io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(out, "endpoint %s  stream %s (%d shards)  %d-byte records  batch %d\n",
		rep.Endpoint, rep.Stream, rep.Shards, rep.RecordSize, rep.Batch)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tclients\trecords\tbytes\tduration\trecords/s\tMB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tthrottled\terrors\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2fs\t%.0f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t\n",
			r.Op, r.Clients, r.Records, r.Bytes, r.Seconds, r.RecordsPerSec, r.MBPerSec,
			r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Throttled, r.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Results {
		if r.ReadBack != nil {
			fmt.Fprintf(out, "%s: %d of %d shards read to the tip\n", r.Op, r.ReadBack.ShardsAtTip, r.ReadBack.Shards)
		}
		if d := r.Delivery; d != nil {
			fmt.Fprintf(out, "%s: %d of %d readers kept up, %d of %d records delivered, %d duplicated or reordered, %d resubscribes, drained in %.2fs (latency: send to receive)\n",
				r.Op, d.KeptUp, d.Readers, d.Delivered, d.Expected, d.Disorder, d.Resubscribes, d.DrainSeconds)
		}
		if c := r.Server; c != nil {
			writeCost(out, r.Op, c)
		}
		if r.FirstError != "" {
			fmt.Fprintf(out, "%s: first error: %s\n", r.Op, r.FirstError)
		}
	}
	if s := rep.Server; s != nil {
		fmt.Fprintf(out, "server pid %d: %.1f CPU s in %.1f s (%.0f%% of a core), RSS peak %.1f MiB, at end %.1f MiB\n",
			s.PID, s.CPUSeconds, s.Seconds, s.CPUPercent, s.RSSPeakMiB, s.RSSEndMiB)
	}
	return nil
}

// histSubBits sets the histogram's precision: 2^6 sub-buckets per power of
// two put every reported percentile within 1/64 (~1.6%) of the true value,
// in constant memory however long the run (HDR-histogram style).
const histSubBits = 6

// histogram counts latencies in nanoseconds in log-linear buckets.
type histogram struct {
	counts [64 << histSubBits]uint64
	n      uint64
	max    time.Duration
}

func (h *histogram) record(d time.Duration) {
	h.counts[histBucket(uint64(max(d, 0)))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at rank ceil(q·n), as its bucket's midpoint.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.n))), 1)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(time.Duration(histValue(i)), h.max)
		}
	}
	return h.max
}

// histBucket maps v to its bucket: values below 2^histSubBits exactly, larger
// ones by their top histSubBits+1 bits and their magnitude.
func histBucket(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return (shift+1)<<histSubBits | int(v>>shift)&(1<<histSubBits-1)
}

// histValue is the midpoint of bucket i, the inverse of histBucket.
func histValue(i int) uint64 {
	s := i >> histSubBits
	if s == 0 {
		return uint64(i)
	}
	shift := s - 1
	low := uint64(1<<histSubBits|i&(1<<histSubBits-1)) << shift
	return low + (uint64(1)<<shift)/2
}

func writeCost(out io.Writer, op string, c *ServerCost) {
	if c.Error != "" {
		fmt.Fprintf(out, "%s: server cost: %s\n", op, c.Error)
		return
	}
	syncs := "fdatasyncs not exported"
	if c.Syncs >= 0 {
		syncs = fmt.Sprintf("%d fdatasyncs, %.1f records per sync", c.Syncs, c.RecordsPerSync)
	}
	fmt.Fprintf(out, "%s: server CPU %.2f s (%s), %.1f µs per record; %s\n", op, c.CPUSeconds, c.Source, c.CPUMicrosPerRec, syncs)
}
