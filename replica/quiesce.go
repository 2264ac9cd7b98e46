package replica

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Quiescence and coalesced heartbeats (docs/cluster.md §7), after
// CockroachDB's design.
//
// A group whose leader sees nothing left to do (no pending proposal or read,
// nothing unpersisted or unapplied, every replica's match index at its last
// index, no leadership transfer, no compaction due) quiesces: at a tick the
// leader stops ticking it and sends each follower a quiesce beat (term,
// commit, last index). A follower whose log, term, commit and leader agree
// with the beat quiesces too, without stepping it (so without an answer,
// which would wake the leader); one that disagrees steps it as the heartbeat
// it is, and its answer wakes the leader. A quiesced group is not ticked: no
// heartbeats, no election clock, no compaction clock. Its Ready rounds still
// run.
//
// Anything that could need raft's timing wakes a group: a proposal, a read,
// a membership change or transfer, any message or beat for it (but a quiesce
// beat). A follower woken by anything but its leader sends the leader a
// heartbeat answer, which wakes it, so the follower hears heartbeats again
// before its election clock runs out.
//
// Safety: raft's safety never depends on timing. Not ticking a group is a
// clock that stopped, which raft tolerates (a follower that never times out
// never campaigns; a leader that never ticks sends no heartbeats); and
// reads are linearizable through ReadIndex (a quorum round), never through a
// leader's lease, so a quiesced leader that lost its quorum serves nothing
// stale. Quiescence only threatens liveness: a quiesced follower whose leader
// dies would wait for ever. So each node tracks, per peer node, the tick at
// which a batch from it last arrived, and every quiesced leader's node sends
// each of its followers' nodes a batch at every tick (an empty one, a pulse,
// if nothing else goes there). A follower quiesced under a leader whose node
// has been silent for an election timeout wakes (CockroachDB asks node
// liveness instead) with its election clock moved on by that silence, and
// campaigns within one more election timeout, as raft's own timer would have
// made it. A node pair exchanges one pulse per tick for all its quiesced
// groups, so the idle cost is O(nodes), not O(groups). A live leader node
// whose group is no longer a quiesced leader (it restarted, or stepped down)
// campaigns or sends messages that wake its followers.
//
// Heartbeats are coalesced: the MsgHeartbeat and MsgHeartbeatResp of a round
// travel as Beats in the round's one batch per node pair (a few varint bytes
// each, no protobuf) and are expanded to raft messages on receipt. Those
// carrying a ReadIndex context stay whole messages. Beats name no replica
// IDs: replica IDs are node IDs (docs/cluster.md §8); when they are not, a
// Beat must carry both, as CockroachDB's RaftHeartbeat does.

// BeatKind is what a Beat stands for.
type BeatKind byte

const (
	// BeatHeartbeat is raft's MsgHeartbeat, leader to follower: Term, Commit.
	BeatHeartbeat BeatKind = 1
	// BeatResp is raft's MsgHeartbeatResp, follower to leader: Term.
	BeatResp BeatKind = 2
	// BeatQuiesce is a leader's last heartbeat before its group quiesces:
	// Term, Commit and its last log Index.
	BeatQuiesce BeatKind = 3
)

// Beat is one group's heartbeat in a batch's coalesced list.
type Beat struct {
	Group               uint64
	Kind                BeatKind
	Term, Commit, Index uint64
}

// message expands a beat into the raft message it stands for.
func (bt Beat) message(from, to uint64) *pb.Message {
	m := &pb.Message{From: new(from), To: new(to), Term: new(bt.Term)}
	if bt.Kind == BeatResp {
		m.Type = pb.MsgHeartbeatResp.Enum()
		return m
	}
	m.Type = pb.MsgHeartbeat.Enum()
	m.Commit = new(bt.Commit)
	return m
}

// beatOf is the Beat standing for m, if m is a heartbeat or its answer
// without a ReadIndex context (raft sets nothing else in them).
func beatOf(group uint64, m *pb.Message) (Beat, bool) {
	if len(m.GetContext()) > 0 {
		return Beat{}, false
	}
	switch m.GetType() {
	case pb.MsgHeartbeat:
		return Beat{Group: group, Kind: BeatHeartbeat, Term: m.GetTerm(), Commit: m.GetCommit()}, true
	case pb.MsgHeartbeatResp:
		return Beat{Group: group, Kind: BeatResp, Term: m.GetTerm()}, true
	}
	return Beat{}, false
}

// groupQuiescence is a group's quiescence state.
type groupQuiescence struct {
	quiesced bool
	// lead is, on a quiesced follower, the leader that quiesced it: its
	// node's silence wakes the group. 0 on a quiesced leader.
	lead uint64
	// followers are, on a quiesced leader, the replicas its node pulses.
	followers []uint64
}

// liveness is the host's quiescence bookkeeping.
type liveness struct {
	ticks uint64            // Tick calls so far
	heard map[uint64]uint64 // per peer node, ticks when a batch from it last arrived
	out   map[uint64][]Beat // per node, beats the host sends in its next round
	pulse map[uint64]bool   // nodes that get at least a pulse in the next round
	stats QuiesceStats
}

// QuiesceStats counts a host's quiescence events.
type QuiesceStats struct {
	Quiesced      uint64 // groups quiesced (as leader or follower)
	Woken         uint64 // quiesced groups woken
	LivenessWakes uint64 // of those, woken by their leader node's silence
	Beats         uint64 // beats sent (heartbeats coalesced, plus quiesce and wake-up beats)
}

// QuiesceStats returns the host's counts.
func (h *Host) QuiesceStats() QuiesceStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lv.stats
}

// Quiesced reports whether group is quiesced here.
func (h *Host) Quiesced(group uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	return g != nil && g.q.quiesced
}

// tickQuiesced runs at each tick before g is ticked, and reports whether g
// is quiesced (now or already), and so is not to be ticked.
func (h *Host) tickQuiesced(g *group) bool {
	if !g.q.quiesced {
		if fs, ok := h.canQuiesce(g); ok {
			h.quiesceLeader(g, fs)
			return true
		}
		return false
	}
	if g.q.lead == 0 {
		for _, f := range g.q.followers {
			h.lv.pulse[f] = true
		}
		return true
	}
	if h.cfg.skipLivenessWake || h.lv.ticks-h.lv.heard[g.q.lead] < uint64(h.cfg.ElectionTicks) {
		return true
	}
	// The leader's node has been silent for an election timeout: wake, with
	// the election clock moved on by that silence (less the tick to come).
	h.unquiesce(g, false)
	h.lv.stats.LivenessWakes++
	for range h.cfg.ElectionTicks - 1 {
		g.rn.Tick()
	}
	g.quiet += h.cfg.ElectionTicks - 1
	return false
}

// canQuiesce reports whether g is a leader with nothing left to do, and its
// followers. Its MemoryStorage, which "last" is read from, holds only
// durable entries under the pipelined loop, so a group with an append
// awaiting its fdatasync (g.unsynced) does not quiesce: a leader's own
// entry written but not durable (a configuration change, which no pending
// proposal holds awake) would otherwise pass for replicated everywhere,
// and if its MsgApps were lost, nothing (no tick, no heartbeat, no probe)
// would ever send it again (review r9).
func (h *Host) canQuiesce(g *group) ([]uint64, bool) {
	if h.cfg.NoQuiesce || len(g.pending) > 0 || len(g.reads) > 0 || g.unsynced > 0 || g.rn.HasReady() {
		return nil, false
	}
	st := g.rn.BasicStatus()
	last, _ := g.ms.LastIndex()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 || st.GetCommit() != last || st.Applied != last {
		return nil, false
	}
	ok := true
	var matches, followers []uint64
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		matches = append(matches, pr.Match)
		ok = ok && pr.Match == last && pr.State == tracker.StateReplicate
		if id != h.cfg.NodeID {
			followers = append(followers, id)
		}
	})
	// A compaction due is proposed first (proposeCompaction, on ticks): a
	// group quiesced with it pending would hold the WAL's truncation back
	// for as long as it stays idle.
	if compactionPoint(last, h.cfg.SnapshotLagEntries, matches) >= g.compactTo+h.cfg.CompactMinEntries {
		return nil, false
	}
	return followers, ok
}

// quiesceLeader quiesces g, which canQuiesce allowed, and queues its quiesce
// beats.
func (h *Host) quiesceLeader(g *group, followers []uint64) {
	st := g.rn.BasicStatus()
	// With nothing unsynced (canQuiesce) the MemoryStorage's last index is
	// raft's.
	last, _ := g.ms.LastIndex()
	g.q = groupQuiescence{quiesced: true, followers: followers}
	h.lv.stats.Quiesced++
	for _, f := range followers {
		h.queueBeat(f, Beat{Group: g.id, Kind: BeatQuiesce, Term: st.GetTerm(), Commit: st.GetCommit(), Index: last})
		h.lv.pulse[f] = true
	}
}

// followerAgrees reports whether a follower may quiesce on a quiesce beat
// from its leader: it is that leader's follower in that term, with nothing
// unpersisted or unapplied, and its log and commit end where the leader's
// do (a leader's last entry is of its own term, so the same index and term
// mean the same log).
func (h *Host) followerAgrees(g *group, from uint64, bt Beat) bool {
	if g.rn.HasReady() {
		return false
	}
	st := g.rn.BasicStatus()
	// The MemoryStorage holds only durable entries, but an entry this
	// follower has written and not yet synced came from this leader in this
	// term, so it would be above the leader's last index, which is raft's
	// own (canQuiesce): no such entry can exist when last == bt.Index.
	last, _ := g.ms.LastIndex()
	term, err := g.ms.Term(last)
	return err == nil && st.RaftState == raft.StateFollower && st.Lead == from && st.GetTerm() == bt.Term &&
		st.GetCommit() == bt.Commit && last == bt.Index && term == bt.Term
}

// unquiesce wakes g. A follower (unless its leader's node is silent:
// wakeLeader false) wakes its leader with a heartbeat answer, whatever woke
// it (even a stale message of the leader's, duplicated or delayed): the
// leader, if still quiesced, would otherwise send nothing until this
// follower's election clock ran out and it disrupted a healthy leader.
func (h *Host) unquiesce(g *group, wakeLeader bool) {
	if !g.q.quiesced {
		return
	}
	lead := g.q.lead
	g.q = groupQuiescence{}
	h.lv.stats.Woken++
	if lead != 0 && wakeLeader {
		h.queueBeat(lead, Beat{Group: g.id, Kind: BeatResp, Term: g.rn.BasicStatus().GetTerm()})
	}
}

func (h *Host) queueBeat(to uint64, bt Beat) {
	h.lv.out[to] = append(h.lv.out[to], bt)
}

// receiveBatch steps a batch's messages and beats into their groups, noting
// that its sender's node is live.
func (h *Host) receiveBatch(b Batch) {
	h.lv.heard[b.From] = h.lv.ticks
	for _, m := range b.Msgs {
		g := h.groups[m.Group]
		if g == nil || m.Msg.GetType() == pb.MsgSnap && h.receiveSnap(g, m.Msg) {
			continue
		}
		h.step(g, m.Msg)
	}
	for _, c := range b.Chunks {
		h.receiveChunk(b.From, c)
	}
	for _, bt := range b.Beats {
		g := h.groups[bt.Group]
		switch {
		case g == nil:
		case bt.Kind != BeatQuiesce:
			h.step(g, bt.message(b.From, b.To))
		case h.followerAgrees(g, b.From, bt):
			if !g.q.quiesced {
				h.lv.stats.Quiesced++
			}
			g.q = groupQuiescence{quiesced: true, lead: b.From}
			g.quiet = 0 // heard from the leader
		default:
			// A heartbeat after all: it wakes g, and its answer the leader.
			h.step(g, bt.message(b.From, b.To))
		}
	}
}

// outgoing is a round's batches by destination node: every group's
// messages, heartbeats coalesced into beats, the host's own beats, and a
// pulse to each node that needs one.
func (h *Host) outgoing(rounds []readyRound) map[uint64]*Batch {
	out := map[uint64]*Batch{}
	batch := func(to uint64) *Batch {
		b := out[to]
		if b == nil {
			b = &Batch{From: h.cfg.NodeID, To: to}
			out[to] = b
		}
		return b
	}
	for _, r := range rounds {
		for _, m := range r.rd.Messages {
			b := batch(m.GetTo())
			if bt, ok := beatOf(r.g.id, m); ok && !h.cfg.noCoalesce {
				b.Beats = append(b.Beats, bt)
				h.lv.stats.Beats++
			} else {
				b.Msgs = append(b.Msgs, GroupMessage{Group: r.g.id, Msg: m})
			}
		}
	}
	for to, bts := range h.lv.out {
		b := batch(to)
		b.Beats = append(b.Beats, bts...)
		h.lv.stats.Beats += uint64(len(bts))
	}
	for to := range h.lv.pulse {
		batch(to)
	}
	clear(h.lv.out)
	clear(h.lv.pulse)
	return out
}
