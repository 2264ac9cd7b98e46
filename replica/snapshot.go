package replica

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Snapshots (docs/cluster.md §2, §8). A group's log is compacted past a
// replica that lags more than Config.SnapshotLagEntries behind (a replica
// that is down no longer holds WAL truncation back), so such a replica, and
// any new one, catches up from a snapshot: the group's applied state up to
// its applied index, rendered by appliedState.snapshot and carried in raft's
// MsgSnap. The receiver installs it (installSnapshot) before the Ready round
// that delivered it is acknowledged: the state is replaced durably and
// atomically, then a snapshot frame in the round's WAL write (fdatasync'd with
// it) moves the group's log start to the snapshot's index.

// groupStorage is raft's Storage for a group: the MemoryStorage, except that
// a snapshot is built on demand from the applied state. MemoryStorage's own
// snapshot after a restart or a compaction carries only metadata (the log is
// compacted behind state that lives in the state file, not in it).
type groupStorage struct {
	*raft.MemoryStorage
	g *group
}

// Snapshot is the group's state at its applied index (committed, so every
// leader's log agrees with it). Called by raft, with the host's lock held.
func (s groupStorage) Snapshot() (*pb.Snapshot, error) {
	g := s.g
	if g.applied == 0 {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	term, err := s.Term(g.applied)
	if err != nil {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	data, err := g.state.snapshot(g.applied)
	if err != nil {
		// raft panics on any other error; the probe that asked will ask again.
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(g.applied), Term: new(term),
		ConfState: g.conf(g.applied)}}, nil
}

// installSnapshot replaces a group's applied state with a snapshot's before
// the round's WAL write, and queues the snapshot frame for that write. The
// raft log itself (MemoryStorage) takes the snapshot after the write's
// fdatasync, in HandleReady.
func (h *Host) installSnapshot(g *group, snap *pb.Snapshot) error {
	idx, term := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	frames, err := g.state.install(idx, snap.GetData(), h.crash)
	if err != nil {
		return err
	}
	g.records = g.records[:0]
	var settled []func() // own proposals answered, once the Applier has the state
	for _, f := range frames {
		if len(f.data) == 0 {
			continue
		}
		key, recs, err := decodeProposal(f.data)
		if err != nil {
			return fmt.Errorf("group %d snapshot at %d: %w", g.id, f.index, err)
		}
		seqs := make([]uint64, len(recs))
		for i, data := range recs {
			seqs[i] = Ordinal(f.index, i)
			g.records = append(g.records, Record{Seq: seqs[i], Data: data})
		}
		if p := g.pending[key.id]; p != nil && key.node == h.cfg.NodeID && key.incarnation == h.incarnation {
			delete(g.pending, key.id)
			settled = append(settled, func() { p.finish(seqs, nil) })
		}
	}
	if h.cfg.Applier != nil {
		h.cfg.Applier.Restored(g.id, slices.Clone(g.records))
	}
	for _, f := range settled {
		f()
	}
	// A pending proposal of a term below the snapshot's last entry's that is
	// not in it never commits (the argument of Host.apply).
	for id, p := range g.pending {
		if p.term < term {
			delete(g.pending, id)
			p.finish(nil, ErrDropped)
		}
	}
	cs := snap.GetMetadata().GetConfState()
	h.wal.add(encodeCompactKind(kindSnapshot, g.id, idx, term, cs))
	g.setBase(idx, cs)
	g.applied, g.durable = idx, idx
	g.compacted, g.compactTerm = idx, term
	g.compactTo = max(g.compactTo, idx)
	h.snapshotsInstalled++
	return nil
}

// reportSnapshots tells raft each snapshot of the round was sent. The
// transport may still lose it: then the leader's probe at the snapshot's
// index is refused, its next index falls below the log start again, and it
// sends a new snapshot; so "finished" needs no delivery receipt.
func (h *Host) reportSnapshots(rounds []readyRound) {
	for _, r := range rounds {
		for _, m := range r.rd.Messages {
			if m.GetType() == pb.MsgSnap {
				r.g.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFinish)
				h.snapshotsSent++
			}
		}
	}
}

// compactionPoint is the index a leader may compact its group to: committed,
// and held by every replica, except that a replica more than lag entries
// behind the commit index is not waited for (it will need a snapshot).
func compactionPoint(commit, lag uint64, matches []uint64) uint64 {
	floor := uint64(0)
	if commit > lag {
		floor = commit - lag
	}
	point := commit
	for _, m := range matches {
		point = min(point, max(m, floor))
	}
	return point
}
