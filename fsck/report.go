package fsck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit codes of `shardlog fsck`.
const (
	ExitOK       = 0
	ExitWarnings = 1
	ExitErrors   = 2
	ExitRepaired = 3
	ExitFailed   = 4
)

// Problem is one finding. File is relative to the data directory; Offset and
// Seq are nil where they do not apply.
type Problem struct {
	Severity Severity `json:"severity"`
	Code     Code     `json:"code"`
	File     string   `json:"file"`
	Offset   *int64   `json:"offset"`
	Seq      *uint64  `json:"seq"`
	Message  string   `json:"message"`
}

// SegmentSummary describes one segment file. The counts and ranges cover its
// valid frames, on both sides of any damage.
type SegmentSummary struct {
	File     string `json:"file"`
	ID       uint64 `json:"id"`
	NameSeq  uint64 `json:"name_first_seq"`
	Size     int64  `json:"size"`
	Frames   int64  `json:"frames"`
	Records  int64  `json:"records"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	MinTs    int64  `json:"min_ts_ms"`
	MaxTs    int64  `json:"max_ts_ms"`
	Stored   int64  `json:"stored_bytes"`
	Raw      int64  `json:"raw_bytes"`
	// Tail is clean, torn or corrupt (corrupt: damage anywhere before the end,
	// or an unreadable header).
	Tail string `json:"tail"`
}

// ShardSummary totals a shard's segments.
type ShardSummary struct {
	Dir      string `json:"dir"`
	Segments int    `json:"segments"`
	Frames   int64  `json:"frames"`
	Records  int64  `json:"records"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	MinTs    int64  `json:"min_ts_ms"`
	MaxTs    int64  `json:"max_ts_ms"`
	Stored   int64  `json:"stored_bytes"`
	Raw      int64  `json:"raw_bytes"`
	Tail     string `json:"tail"` // the newest segment's
	Errors   int    `json:"errors"`
	Warnings int    `json:"warnings"`
}

// Action is one change repair made (or, with DryRun, would make).
type Action struct {
	Kind    string `json:"kind"` // salvage, rebase, move-aside, floor, remove-tmp, mkdir, index-aside
	File    string `json:"file"`
	NewFile string `json:"new_file,omitempty"`
	Kept    string `json:"kept,omitempty"` // where the original went
	Message string `json:"message"`
}

// LostRange is a range of sequences whose records repair could not keep.
// Some numbers in it may never have been assigned (the shard may skip ahead),
// but every lost record is in one. Open means the upper end is unknown.
type LostRange struct {
	Shard  string `json:"shard"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
	Open   bool   `json:"open,omitempty"`
	Reason string `json:"reason"`
}

// WALSummary describes one file of a cluster node's Raft WAL.
type WALSummary struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	Frames int    `json:"frames"`
	Tail   string `json:"tail"` // clean, torn or corrupt
}

// Report is the outcome of Verify or Repair.
type Report struct {
	Problems []Problem        `json:"problems"`
	Segments []SegmentSummary `json:"segments"`
	Shards   []ShardSummary   `json:"shards"`
	Actions  []Action         `json:"actions,omitempty"`
	Lost     []LostRange      `json:"lost,omitempty"`
	Notes    []string         `json:"notes,omitempty"` // what repair could not do
	WAL      []WALSummary     `json:"wal,omitempty"`   // a cluster node's Raft WAL files (cluster.go)
	Errors   int              `json:"errors"`
	Warnings int              `json:"warnings"`
	DryRun   bool             `json:"dry_run,omitempty"`
}

func (r *Report) add(p Problem) {
	p.Severity = p.Code.Severity()
	switch p.Severity {
	case Error:
		r.Errors++
	case Warning:
		r.Warnings++
	}
	r.Problems = append(r.Problems, p)
}

// Repaired reports whether repair changed anything.
func (r *Report) Repaired() bool { return len(r.Actions) > 0 && !r.DryRun }

// ExitCode is the process exit code for the report. After a repair, errors
// that remain outrank "repaired".
func (r *Report) ExitCode() int {
	switch {
	case r.Errors > 0:
		return ExitErrors
	case r.Repaired():
		return ExitRepaired
	case r.Warnings > 0:
		return ExitWarnings
	}
	return ExitOK
}

// Verdict is the final line: "OK" or "N errors, M warnings".
func (r *Report) Verdict() string {
	if r.Errors == 0 && r.Warnings == 0 {
		return "OK"
	}
	return fmt.Sprintf("%s, %s", plural(r.Errors, "error"), plural(r.Warnings, "warning"))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// WriteText prints the report: problems, segment and shard summaries, repair
// actions and lost ranges, then the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "%s %s %s %s %s %s\n", p.Severity, p.Code, dash(p.File), optInt(p.Offset), optUint(p.Seq), p.Message)
	}
	for _, w := range r.WAL {
		fmt.Fprintf(&b, "wal %s frames=%d size=%d tail=%s\n", w.File, w.Frames, w.Size, w.Tail)
	}
	// Each shard's segments, then the shard's total: both lists are in
	// shard order.
	i := 0
	for _, sh := range r.Shards {
		for ; i < len(r.Segments) && strings.HasPrefix(r.Segments[i].File, sh.Dir+"/"); i++ {
			writeSegmentLine(&b, r.Segments[i])
		}
		kind := "shard"
		if strings.HasPrefix(sh.Dir, ClusterDir+"/") {
			kind = "group" // a cluster node's Raft group (cluster.go)
		}
		fmt.Fprintf(&b, "%s %s segments=%d frames=%d records=%d seq=%s time=%s stored=%d raw=%d ratio=%s tail=%s errors=%d warnings=%d\n",
			kind, sh.Dir, sh.Segments, sh.Frames, sh.Records, seqRange(sh.Frames, sh.FirstSeq, sh.LastSeq), timeRange(sh.Frames, sh.MinTs, sh.MaxTs),
			sh.Stored, sh.Raw, ratio(sh.Stored, sh.Raw), sh.Tail, sh.Errors, sh.Warnings)
	}
	for ; i < len(r.Segments); i++ {
		writeSegmentLine(&b, r.Segments[i])
	}
	r.writeRepair(&b)
	b.WriteString(r.Verdict() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSegmentLine(b *strings.Builder, s SegmentSummary) {
	fmt.Fprintf(b, "segment %s frames=%d records=%d seq=%s time=%s stored=%d raw=%d ratio=%s tail=%s\n",
		s.File, s.Frames, s.Records, seqRange(s.Frames, s.FirstSeq, s.LastSeq), timeRange(s.Frames, s.MinTs, s.MaxTs),
		s.Stored, s.Raw, ratio(s.Stored, s.Raw), s.Tail)
}

func (r *Report) writeRepair(b *strings.Builder) {
	verb := "repaired"
	if r.DryRun {
		verb = "would repair"
	}
	for _, a := range r.Actions {
		fmt.Fprintf(b, "%s %s %s", verb, a.Kind, a.File)
		if a.NewFile != "" {
			fmt.Fprintf(b, " -> %s", a.NewFile)
		}
		if a.Kept != "" {
			fmt.Fprintf(b, " (original kept as %s)", a.Kept)
		}
		fmt.Fprintf(b, ": %s\n", a.Message)
	}
	for _, l := range r.Lost {
		fmt.Fprintf(b, "LOST %s seqs %s: %s\n", l.Shard, l.Range(), l.Reason)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(b, "NOTE %s\n", n)
	}
}

// Range renders the range: "A..B", or "A.." when open.
func (l LostRange) Range() string {
	if l.Open {
		return fmt.Sprintf("%d..", l.From)
	}
	return fmt.Sprintf("%d..%d", l.From, l.To)
}

// Contains reports whether seq is in the range.
func (l LostRange) Contains(seq uint64) bool { return seq >= l.From && (l.Open || seq <= l.To) }

// WriteJSON prints the report as one indented JSON document, with the verdict
// and exit code added.
func (r *Report) WriteJSON(w io.Writer) error {
	out := struct {
		*Report
		Verdict  string `json:"verdict"`
		ExitCode int    `json:"exit_code"`
	}{r, r.Verdict(), r.ExitCode()}
	if out.Problems == nil {
		out.Problems = []Problem{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optInt(v *int64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func optUint(v *uint64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func seqRange(frames int64, first, last uint64) string {
	if frames == 0 {
		return "-"
	}
	return fmt.Sprintf("%d..%d", first, last)
}

func timeRange(frames int64, minTs, maxTs int64) string {
	if frames == 0 {
		return "-"
	}
	return fmtMs(minTs) + ".." + fmtMs(maxTs)
}

// fmtMs renders a record time (Unix ms) in UTC: output never depends on the
// local zone.
func fmtMs(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func ratio(stored, raw int64) string {
	if raw == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(stored)/float64(raw))
}

func i64(v int64) *int64    { return &v }
func u64p(v uint64) *uint64 { return &v }
