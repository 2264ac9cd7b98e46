package replica

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// Tombstones: a replica moved back to a node it was removed from must not
// vote from an empty memory (docs/cluster.md §8, issue 17).
//
// Replica IDs are node IDs, so a replica re-created by AddGroup on a node
// that held the group before is, to every other replica, the same raft peer
// as the one RemoveGroup deleted. raft grants MsgVote and MsgPreVote without
// checking its own membership: only the term, its vote and whether the
// candidate's log is at least as up to date as its own. An empty replica
// (term 0, empty log) would therefore grant the vote of its old life to any
// candidate whose configuration still lists this node, however stale:
// voters {A,B,N}, B partitioned; D joins and the commits go on with {A,N};
// N is removed and deleted; the driver moves a replica back to N; B returns
// with its configuration {A,B,N} and wins N's vote before the leader has
// reached N: two leaders, and acknowledged writes lost. A stale leader's
// appends are as bad: an empty replica accepts any term.
//
// RemoveGroup therefore keeps, durably, what the replica had promised: its
// term and vote, and its log's last (term, index), merged with any earlier
// tombstone of the group. A replica re-created over a tombstone
//   - starts at the tombstone's term and vote (AddGroup writes them as its
//     HardState), so it never votes twice in a term, and ignores leaders of
//     older terms, as the old replica would;
//   - refuses the votes and pre-votes of candidates whose log is behind the
//     tombstone's last (term, index) (refusesVote), as the old replica
//     would, until raft's own check against its new log takes over.
//
// Why it is sufficient: raft's safety needs no more of a voter than that
// its term, vote and log never go back, and that it answers only for its own
// durable state; it needs nothing of the replica's identity. With the
// tombstone, the new replica's durable promises include the old one's: its
// term is at least the old term, its vote in that term is the old vote, and
// a candidate it grants has a log at least as up to date as the old log (by
// the tombstone) and as its new log (by raft). So every vote it grants is
// one the old replica, had it only gone on receiving entries, could have
// granted too, and every entry it acknowledges is one the old replica could
// have acknowledged. A replica with no tombstone never made a promise on
// this disk (a node that loses its disk comes back under a new node ID, and
// an AddGroup whose frame never became durable never ran), so its empty
// state is the truth. This needs no knowledge of the cluster's metadata, so
// it holds also for the metadata group and for every schedule of moves.
//
// A tombstone is about 40 bytes, restated in the header of every new WAL
// file, and kept for ever: group IDs are never reused, so a tombstone of a
// deleted stream's group is dead weight, not a hazard.

// kindTombstone is a WAL frame: group u64, term u64, vote u64, last log
// term u64, last log index u64; what a removed replica had promised.
const kindTombstone byte = 8

// tomb is a removed replica's promises.
type tomb struct {
	term, vote          uint64 // its HardState's
	lastTerm, lastIndex uint64 // its log's last entry (or compaction point)
}

// merge is the promises of both: the later term and its vote, and the more
// up-to-date log end. A node votes once per term, so two tombstones of one
// term name the same vote unless one has none yet.
func (t tomb) merge(o tomb) tomb {
	if o.term > t.term || o.term == t.term && t.vote == 0 {
		t.term, t.vote = o.term, o.vote
	}
	if o.lastTerm > t.lastTerm || o.lastTerm == t.lastTerm && o.lastIndex > t.lastIndex {
		t.lastTerm, t.lastIndex = o.lastTerm, o.lastIndex
	}
	return t
}

// behind reports whether a log ending at (term, index) is less up to date
// than the tombstone's, by raft's comparison.
func (t tomb) behind(term, index uint64) bool {
	return term < t.lastTerm || term == t.lastTerm && index < t.lastIndex
}

// tombOf is a group's promises as its durable raft state holds them (the
// storage holds only what a round's fdatasync covered, and nothing leaves
// a host before that).
func tombOf(g *group) (tomb, error) {
	hs, _, err := g.ms.InitialState()
	if err != nil {
		return tomb{}, err
	}
	last, err := g.ms.LastIndex()
	if err != nil {
		return tomb{}, err
	}
	term, err := g.ms.Term(last)
	if err != nil {
		return tomb{}, err
	}
	return tomb{term: hs.GetTerm(), vote: hs.GetVote(), lastTerm: term, lastIndex: last}, nil
}

func encodeTomb(id uint64, t tomb) []byte {
	b := le.AppendUint64([]byte{kindTombstone}, id)
	for _, v := range []uint64{t.term, t.vote, t.lastTerm, t.lastIndex} {
		b = le.AppendUint64(b, v)
	}
	return b
}

func decodeTomb(p []byte) (uint64, tomb, error) {
	r := reader{b: p}
	id := r.u64()
	t := tomb{term: r.u64(), vote: r.u64(), lastTerm: r.u64(), lastIndex: r.u64()}
	if !r.done() {
		return 0, tomb{}, errCorrupt
	}
	return id, t, nil
}

// bury records, durably with the removal frame that follows it, what g's
// replica promised.
func (h *Host) bury(g *group) error {
	if h.cfg.noTombstone {
		return nil
	}
	t, err := tombOf(g)
	if err != nil {
		return err
	}
	if old, ok := h.tombs[g.id]; ok {
		t = old.merge(t)
	}
	h.tombs[g.id] = t
	h.wal.add(encodeTomb(g.id, t))
	return nil
}

// revive gives a group re-created over a tombstone the old replica's term
// and vote, queued for the WAL with its creation frame.
func (h *Host) revive(g *group) error {
	t, ok := h.tombs[g.id]
	if !ok || t.term == 0 {
		return nil
	}
	hs := &pb.HardState{Term: new(t.term), Vote: new(t.vote), Commit: new(uint64(0))}
	if err := g.ms.SetHardState(hs); err != nil {
		return err
	}
	h.wal.add(encodeHardState(g.id, hs))
	return nil
}

// refusesVote reports whether m asks for a vote the group's removed earlier
// replica would have refused: its candidate's log is behind the tombstone.
func (h *Host) refusesVote(g *group, m *pb.Message) bool {
	if t := m.GetType(); t != pb.MsgVote && t != pb.MsgPreVote {
		return false
	}
	t, ok := h.tombs[g.id]
	return ok && t.behind(m.GetLogTerm(), m.GetIndex())
}
