package replica

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// The pipelined Ready loop (docs/cluster.md §4; BENCHMARKS.md, "Cluster:
// pipelined Ready loop"). Every group's RawNode runs with raft's
// asynchronous storage writes, so a round no longer waits for its own
// fdatasync. A round (round, under h.mu):
//
//  1. takes every ready group's Ready: its messages to peers, its
//     MsgStorageAppend (entries, HardState, snapshot, and the Responses to
//     deliver once they are durable) and its MsgStorageApply (committed
//     entries this node holds on disk);
//  2. sends the messages to peers at once, one Batch per destination node:
//     raft keeps everything that vouches for unsynced state (MsgAppResp,
//     vote grants, the leader's own acknowledgement) in the Responses;
//  3. writes (pwrite) every group's frames to the WAL in one write, holds
//     the Responses as a syncUnit, and starts the fdatasync if none is in
//     flight;
//  4. applies the committed entries, writes them to the segments, answers
//     their proposals and finished reads, and steps MsgStorageApplyResp.
//
// One fdatasync covers every unit written before it started; at most one is
// in flight. Its completion (settle, under h.mu) records what it made
// durable in the groups' MemoryStorages, then delivers the held Responses:
// those to this node (MsgStorageAppendResp, a leader's MsgAppResp to
// itself, a candidate's own vote) are stepped into the RawNode, the rest
// sent. Under Run the fdatasync runs on its own goroutine, which then
// completes it and starts the next, while the loop keeps stepping batches
// and running rounds; HandleReady runs each round's fdatasync and
// completion inline (the deterministic form of the same order). A WAL roll happens only in a completion, after every written unit
// is durable, so no file is sealed with an fdatasync outstanding on it.
//
// Durability: a Response is delivered only after an fdatasync that started
// after the write of its unit (and so of every earlier unit) finished; the
// MemoryStorage takes entries only then; raft hands out for applying only
// entries its storage holds; proposals are answered only once applied and
// written to the segments. So an acknowledgement still means fdatasync'd on
// a quorum, a committed entry is applied only once durable here, and an
// answered proposal's records are in the segments ReadApplied reads.

// pipeline is the units written and not yet completed, oldest first.
type pipeline struct {
	units []syncUnit
	// syncing: an fdatasync is in flight, covering units[:inflight].
	syncing  bool
	inflight int
	// flight is Run's fdatasync in flight on its own goroutine (nil
	// otherwise): its result, published before its completion takes h.mu
	// (awaitSync).
	flight *syncFlight
	// async: Run runs; its fdatasyncs run on their own goroutine (false:
	// HandleReady's inline rounds). syncers counts those goroutines.
	async   bool
	syncers sync.WaitGroup
	// deferred (the simulation's pipelined nodes): startSync runs no
	// fdatasync but notes the WAL's size; the simulation makes that prefix
	// durable and completes the units at a seeded later step, with rounds,
	// deliveries and crashes in between (sim_test.go completeDeferred).
	deferred bool
	syncTo   int64
	// tick: a tick passed since the last fdatasync for commit indexes
	// alone (startSync).
	tick bool
}

// syncUnit is one round's write and what waits for its fdatasync.
type syncUnit struct {
	// mustSync: the round wrote what raft needs durable before anything
	// vouches for it (entries, a new term or vote, a snapshot: raft's
	// Ready.MustSync, and snapshots). A round that moved only commit
	// indexes needs no fdatasync of its own (etcd skips it too): the
	// commit index is not part of raft's durable state, and it is not
	// waited for, its answers delivered once every earlier unit is
	// durable; the next fdatasync (or the one a tick starts when none
	// comes, startSync) covers it.
	mustSync bool
	held     []heldAppend
}

// heldAppend is a group's MsgStorageAppend of a round, written, awaiting
// its fdatasync.
type heldAppend struct {
	g     *group
	rd    raft.Ready // its Entries, HardState and Snapshot: the message's
	resps []*pb.Message
}

// round runs one Ready round, without its fdatasync (see above), and
// returns the number of groups that had a Ready.
func (h *Host) round() (int, error) {
	mark := time.Now()
	h.takeInbox()
	rounds, err := h.collect()
	if err != nil {
		return 0, err
	}
	if len(rounds) > 0 {
		h.tm.rounds.Add(1)
		lap(&h.tm.collect, &mark)
	}
	h.send(rounds) // beats and pulses even with no Ready (quiesce.go)
	h.reportSnapshots(rounds)
	if len(rounds) > 0 {
		lap(&h.tm.early, &mark)
	}
	wrote, err := h.wal.write()
	if err != nil {
		return 0, err
	}
	if wrote {
		h.rounds.Add(1)
		h.tm.walWrite.Add(int64(h.wal.lastWrite))
		mark = time.Now()
	}
	h.hold(rounds)
	// Run's fdatasync starts before the applies, which need none of it.
	if err := h.startSync(); err != nil {
		return 0, err
	}
	if err := h.applyRounds(rounds); err != nil {
		return 0, err
	}
	if len(rounds) > 0 {
		lap(&h.tm.after, &mark)
	}
	return len(rounds), nil
}

// hold queues the round's unit: what its fdatasync will make durable, and
// the answers that must wait for it.
func (h *Host) hold(rounds []readyRound) {
	var u syncUnit
	for _, r := range rounds {
		if r.app != nil {
			u.held = append(u.held, heldAppend{g: r.g, rd: r.rd, resps: r.app.GetResponses()})
			r.g.unsynced++
			u.mustSync = u.mustSync || r.rd.MustSync || !raft.IsEmptySnap(r.rd.Snapshot)
		}
	}
	if len(u.held) > 0 {
		h.pl.units = append(h.pl.units, u)
	}
}

// applyRounds applies the round's committed entries (durable here: raft
// hands out no others in this mode) and writes them to the segments; then
// lets go of the reads and proposals they settle, and tells raft.
func (h *Host) applyRounds(rounds []readyRound) error {
	for _, r := range rounds {
		for _, e := range r.apply.GetEntries() {
			if err := h.apply(r.g, e); err != nil {
				return err
			}
		}
	}
	if err := h.writeState(rounds); err != nil {
		return err
	}
	// Reads and proposals are let go only now: what they wait for is in
	// the segments that ReadApplied reads.
	for _, r := range rounds {
		h.signalChanged(r.g, r.rd) // snapshot rounds too (notify.go)
		var rs []readState
		for _, s := range r.rd.ReadStates {
			rs = append(rs, readState{s.Index, s.RequestCtx})
		}
		h.settleReads(r.g, rs)
	}
	h.answer()
	for _, r := range rounds {
		for _, m := range r.apply.GetResponses() {
			h.stepLocal(r.g, m)
		}
	}
	return nil
}

// stepLocal steps an answer of this node's storage (or of itself, a
// leader's acknowledgement or a candidate's vote) into the group's raft.
// raft ignores one made stale by a term change since.
func (h *Host) stepLocal(g *group, m *pb.Message) {
	_ = g.rn.Step(m)
	g.dirty = true
}

// syncInline makes every written unit durable with one fdatasync, now, if
// any needs it (or, with all, if anything written is not covered yet), and
// completes them (HandleReady; and a completion before a WAL roll).
func (h *Host) syncInline(all bool) error {
	n := len(h.pl.units)
	if n == 0 && !all {
		return nil
	}
	if all && h.wal.unsynced || h.mustSync(n) {
		if err := h.awaitSync(); err != nil {
			return err
		}
		h.wal.unsynced = false
		if !h.cfg.skipSync {
			r := h.wal.syncFile(h.wal.f)
			if err := h.wal.synced1(r); err != nil {
				return err
			}
			h.tm.walSync.Add(int64(r.d))
		}
	}
	return h.settle(n)
}

// mustSync reports whether any of the first n units needs an fdatasync.
func (h *Host) mustSync(n int) bool {
	return slices.ContainsFunc(h.pl.units[:n], func(u syncUnit) bool { return u.mustSync })
}

// settle completes units[:n], which a finished fdatasync covers, and rolls
// the WAL if it is full: everything written must be durable before its file
// is sealed, so the rest are synced inline first (once per WALSegmentSize).
func (h *Host) settle(n int) error {
	if err := h.complete(n); err != nil {
		return err
	}
	if h.wal.current().size < h.cfg.WALSegmentSize {
		return nil
	}
	if len(h.pl.units) > 0 || h.wal.unsynced {
		return h.syncInline(true) // settles again, with nothing left
	}
	return h.maybeRoll()
}

// complete delivers what units[:n] held: the MemoryStorage takes their
// entries, HardState and snapshot, then their answers go out, to this
// node's raft or to peers (one Batch per node).
func (h *Host) complete(n int) error {
	start := time.Now()
	done := h.pl.units[:n]
	h.pl.units = slices.Clone(h.pl.units[n:])
	out := map[uint64]*Batch{}
	for _, u := range done {
		for _, a := range u.held {
			a.g.unsynced--
			if h.groups[a.g.id] != a.g {
				continue // removed since (RemoveGroup)
			}
			if err := h.stored(a.g, a.rd); err != nil {
				return err
			}
			for _, m := range a.resps {
				if m.GetTo() == h.cfg.NodeID {
					h.stepLocal(a.g, m)
					continue
				}
				b := out[m.GetTo()]
				if b == nil {
					b = &Batch{From: h.cfg.NodeID, To: m.GetTo()}
					out[m.GetTo()] = b
				}
				b.Msgs = append(b.Msgs, GroupMessage{Group: a.g.id, Msg: m})
			}
		}
	}
	for _, to := range slices.Sorted(maps.Keys(out)) {
		h.cfg.Transport.Send(*out[to])
	}
	h.tm.complete.Add(int64(time.Since(start)))
	return nil
}

// startSync starts an fdatasync covering every written unit on its own
// goroutine, unless one is in flight (Run only). Units none of which needs
// an fdatasync are completed at once when none is in flight: everything
// written before them that needed one is durable already. Their commit
// indexes are synced by the next fdatasync, or, if none comes, after the
// next tick (pipeline.tick): so an idle node's WAL ends up durable whole, and
// a restart after a power cut re-applies at once what it had applied.
func (h *Host) startSync() error {
	if !h.pl.async && !h.pl.deferred || h.pl.syncing {
		return nil
	}
	n := len(h.pl.units)
	if n > 0 && (!h.mustSync(n) || h.cfg.skipSync) {
		if err := h.settle(n); err != nil {
			return err
		}
		n = len(h.pl.units) // none: complete and a roll add none
	}
	if n == 0 && (!h.pl.tick || !h.wal.unsynced || h.cfg.skipSync) {
		return nil
	}
	h.pl.tick = false
	h.pl.syncing, h.pl.inflight = true, n
	h.wal.unsynced = false // covered once it finishes; a failure stops the host
	if h.pl.deferred {
		h.pl.syncTo = h.wal.current().size
		return nil
	}
	// The goroutine completes its fdatasync itself: the answers it
	// releases (a follower's MsgAppResp above all) leave as soon as the
	// fdatasync returns, not after the loop's round in progress and a
	// hand-off to the loop, which a loaded machine makes long. It wakes
	// the loop for the round the answers make due (a leader's commit) and
	// to report a failure (the host has stopped: Run's next round
	// returns it).
	f := h.wal.f
	fl := &syncFlight{done: make(chan struct{})}
	h.pl.flight = fl
	h.pl.syncers.Add(1)
	go func() {
		defer h.pl.syncers.Done()
		fl.r = h.wal.syncFile(f)
		close(fl.done) // before synced takes h.mu: awaitSync waits on it holding h.mu
		_ = h.synced(fl.r)
		h.wake()
	}()
	return nil
}

// syncFlight is the result of an fdatasync Run's goroutine runs, published
// (done closed) as soon as the syscall returns.
type syncFlight struct {
	done chan struct{}
	r    syncResult
}

// awaitSync waits, under h.mu, for the result of the fdatasync in flight on
// the WAL's file, if any, and stops the host if it failed. Whatever else
// fdatasyncs that file under h.mu (wal.flush, syncInline) calls it first:
// Linux reports a writeback error shared by concurrent fsyncs of one file
// to one of them only (errseq_t), so an fdatasync issued while another is
// in flight can return nil over pages the kernel dropped; one issued after
// the other's result, having acted on it, cannot. It waits for the
// syscall's result only, never for the completion (synced takes h.mu), and
// keeps at most one fdatasync in flight.
func (h *Host) awaitSync() error {
	fl := h.pl.flight
	if fl == nil {
		return nil
	}
	if h.cfg.awaitingSync != nil {
		h.cfg.awaitingSync()
	}
	<-fl.done
	if fl.r.err != nil {
		return h.stop(fmt.Errorf("replica: WAL fdatasync: %w", fl.r.err))
	}
	return nil
}

// flushWAL writes the queued frames and fdatasyncs them, after the
// fdatasync in flight (awaitSync); any error stops the host.
func (h *Host) flushWAL() error {
	if err := h.awaitSync(); err != nil {
		return err
	}
	if err := h.wal.flush(true); err != nil {
		return h.stop(err)
	}
	return nil
}

// synced completes the fdatasync startSync started, and starts the next.
func (h *Host) synced(r syncResult) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.pl.inflight
	if h.cfg.settleUnsynced {
		n = len(h.pl.units)
	}
	h.pl.syncing, h.pl.inflight, h.pl.flight = false, 0, nil
	// Counted (and told to the Observer) before the stopped check: an
	// awaitSync that read this result first may have stopped the host on
	// it, and the failure must still reach the metrics (review r10).
	err := h.wal.synced1(r)
	if h.stopped != nil {
		return h.stopped
	}
	start := time.Now()
	if err == nil {
		h.tm.walSync.Add(int64(r.d))
		err = h.settle(n)
	}
	if err == nil {
		err = h.startSync()
	}
	h.tm.round.Add(int64(time.Since(start)))
	if err != nil {
		return h.stop(err)
	}
	return nil
}

// roundPipelined is Run's round: written, its fdatasync started if none is
// in flight, its completion left to synced.
func (h *Host) roundPipelined() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return h.stopped
	}
	start := time.Now()
	n, err := h.round()
	if err == nil {
		err = h.startSync()
	}
	if n > 0 {
		h.tm.round.Add(int64(time.Since(start)))
	}
	if err != nil {
		return h.stop(err)
	}
	return nil
}

// pipelined makes Run's rounds pipelined (on) or inline again (off, once
// Run ends: it then waits for the fdatasync in flight, so that nothing runs
// on the WAL's file after Run returns and Close closes it).
func (h *Host) pipelined(on bool) {
	h.mu.Lock()
	h.pl.async = on
	h.mu.Unlock()
	if !on {
		h.pl.syncers.Wait()
	}
}
