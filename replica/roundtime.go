package replica

import (
	"sync/atomic"
	"time"
)

// Where a node's time goes (BENCHMARKS.md, "Cluster throughput: where the
// latency goes"): cumulative stage timers of the Ready rounds and of the
// proposals answered here. They cost a few clock reads and atomic adds per
// round (of milliseconds) and per proposal, so they are always on; Stats
// reads them without the host's lock, and the status endpoint shows them.

// RoundTimes are cumulative durations since Open.
type RoundTimes struct {
	// Rounds is the Ready rounds that had at least one group's Ready
	// (pipeline.go); Round the time the loop held the host's lock for
	// them and for the fdatasyncs' completions, of which Collect is taking
	// the inbox and the groups' Readys (and installing snapshots), Early
	// the sends to peers, WALWrite the WAL's write, After the applies,
	// segment writes and answers, and Complete the completions (storage
	// updates, held answers delivered, WAL rolls). WALSync is the WAL's
	// fdatasyncs: inside Round for HandleReady's inline rounds, beside it
	// for Run's pipelined ones (the loop runs rounds while one is in
	// flight).
	Rounds   uint64        `json:"rounds"`
	Round    time.Duration `json:"roundNs"`
	Collect  time.Duration `json:"collectNs"`
	Early    time.Duration `json:"earlyNs"`
	WALWrite time.Duration `json:"walWriteNs"`
	WALSync  time.Duration `json:"walSyncNs"`
	After    time.Duration `json:"afterNs"`
	Complete time.Duration `json:"completeNs"`
	// Answered is the proposals answered with success; Latency their time
	// from Propose to the answer, of which Queued the time spent in the
	// inbox waiting for a round in progress.
	Answered uint64        `json:"answered"`
	Latency  time.Duration `json:"latencyNs"`
	Queued   time.Duration `json:"queuedNs"`
}

// roundTimers accumulates RoundTimes; each field is nanoseconds but the
// counts.
type roundTimers struct {
	rounds, round, collect, early, after, complete atomic.Int64
	walWrite, walSync                              atomic.Int64
	answered, latency, queued                      atomic.Int64
}

func (t *roundTimers) times() RoundTimes {
	d := func(a *atomic.Int64) time.Duration { return time.Duration(a.Load()) }
	return RoundTimes{Rounds: uint64(t.rounds.Load()), Round: d(&t.round), Collect: d(&t.collect), Early: d(&t.early),
		WALWrite: d(&t.walWrite), WALSync: d(&t.walSync), After: d(&t.after), Complete: d(&t.complete),
		Answered: uint64(t.answered.Load()), Latency: d(&t.latency), Queued: d(&t.queued)}
}

// lap adds the time since *mark to a and moves the mark to now.
func lap(a *atomic.Int64, mark *time.Time) {
	now := time.Now()
	a.Add(int64(now.Sub(*mark)))
	*mark = now
}
