package replica

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Snapshots (docs/cluster.md §2, §8). A group's log is compacted past a
// replica that lags more than Config.SnapshotLagEntries behind (a replica
// that is down no longer holds WAL truncation back), so such a replica, and
// any new one, catches up from a snapshot: the group's applied state up to
// its applied index. raft's MsgSnap carries a manifest of the segment files
// holding it (appliedState.snapshot); the receiver fetches their bytes in
// bounded chunks before raft sees the MsgSnap (snapfetch.go), then installs
// the fetched files (installSnapshot) before the Ready round that delivered
// it is acknowledged: the state is replaced durably and atomically, then a
// snapshot frame in the round's WAL write (fdatasync'd with it) moves the
// group's log start to the snapshot's index.

// groupStorage is raft's Storage for a group: the MemoryStorage, except that
// a snapshot is built on demand from the applied state. MemoryStorage's own
// snapshot after a restart or a compaction carries only metadata (the log is
// compacted behind state that lives in the group's segments, not in it).
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
	ns, err := h.takeFetch(g, idx)
	if err != nil {
		return err
	}
	if err := g.state.install(idx, ns, h.crash); err != nil {
		return err
	}
	if err := h.restored(g); err != nil {
		return err
	}
	// The segments keep no proposal keys, so the snapshot cannot say which
	// of this node's pending proposals it holds. One of the snapshot's last
	// term or below may be in it (a deposed leader's own entry), or never
	// commit, or (the snapshot's term only) commit later from the leader's
	// log: it is indeterminate here, never ErrDropped. A later apply of its
	// entry finds it gone. (The state file this replaced kept the keys and
	// answered those in the snapshot exactly; the case needs a deposed
	// leader still waiting on its proposals to fall a snapshot behind.)
	for id, p := range g.pending {
		if p.term <= term {
			delete(g.pending, id)
			p.finish(nil, ErrStopped)
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
