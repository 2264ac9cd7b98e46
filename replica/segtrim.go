package replica

import (
	"fmt"
	"path"
	"slices"

	"github.com/shardlog/shardlog/vfs"
)

// Retention on a replica (docs/cluster.md §2, README "Cluster"): each replica
// deletes its own whole segments whose newest record arrived before a cut.
// Every replica stores the leader's arrival times (segstate.go), so every
// replica expires the same records, whenever it trims; the records older
// than the cut inside a surviving segment are hidden by the reader (the
// cluster's read path filters by arrival time, as single-node mode does).
//
// What keeps it safe:
//   - the newest segment is never deleted. Sealed segments were fdatasync'd
//     when they rolled, so everything deleted is at or below the group's
//     durable-applied index, and held() (the WAL replays only entries past
//     it) is the newest segment's, which stays. If recovery later finds the
//     newest segment empty (its unsynced frames cut), its first ordinal
//     still says what came before it (recoverSeg), so the WAL never applies
//     a deleted entry again;
//   - only a prefix of the chain is deleted, so no gap appears and the chain
//     check at open still holds. That holds across a crash too: the files
//     are unlinked oldest first, and each unlink is made durable (the
//     directory synced) before the next one is issued, so whatever a crash
//     keeps of a trim is a prefix of it, on any file system (one that
//     reorders unsynced directory operations could otherwise keep a later
//     unlink and lose an earlier one: a gap, and a node that no longer
//     opens). A directory sync per deleted segment is cheap at retention's
//     pace (64 MiB segments, trimmed once a period);
//   - a segment leaves the list under s.mu's write lock before its file is
//     unlinked: a read (ReadApplied, a snapshot's listing, or a chunk of
//     a listed file served to a receiver, each under the read lock) either
//     ran before it, with the file still there, or runs after, without it.
//     A chunk of a file trimmed after its listing is answered gone
//     (snapfetch.go); the next snapshot lists only the segments left.
//
// A crash between an unlink and its directory sync may bring that file
// back at the next open; it is the oldest left, so still a prefix of the
// chain, and the next trim deletes it again.

// trim deletes the sealed segments, oldest first, whose newest record
// arrived before beforeMs (Unix ms).
func (s *segState) trim(beforeMs int64) (segments int, bytes int64, err error) {
	victims := s.detachExpired(beforeMs)
	if len(victims) == 0 {
		return 0, 0, nil
	}
	if s.brokenTrimOrder {
		slices.Reverse(victims)
	}
	for _, sg := range victims {
		if err := s.removeDurably(sg.path); err != nil {
			return segments, bytes, fmt.Errorf("replica: group %d retention: %w", s.group, err)
		}
		segments++
		bytes += sg.end
	}
	return segments, bytes, nil
}

// removeDurably unlinks a segment and syncs its directory (see the top of
// the file), then passes the trim's crash point (tests).
func (s *segState) removeDurably(name string) error {
	if err := s.fs.Remove(name); err != nil && !vfs.IsNotExist(err) {
		return err
	}
	if err := s.fs.SyncDir(path.Dir(name)); err != nil {
		return err
	}
	if s.crash != nil {
		return s.crash(crashTrimRemoved)
	}
	return nil
}

// detachExpired takes the expired prefix of sealed segments out of the list.
func (s *segState) detachExpired(beforeMs int64) []*stateSeg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	n := 0
	for n < len(s.segs)-1 && s.segs[n].frames > 0 && s.segs[n].maxTs < beforeMs {
		n++
	}
	victims := append([]*stateSeg(nil), s.segs[:n]...)
	s.segs = append([]*stateSeg(nil), s.segs[n:]...)
	return victims
}

// TrimResult is what a Host.Trim deleted.
type TrimResult struct {
	Segments int
	Bytes    int64
}

// Trim deletes the group's whole sealed segments whose records all arrived
// before beforeMs (Unix ms), never the newest one (see the top of the file).
// It runs without the host's lock held across the file removals, so the
// Ready loop goes on meanwhile; it holds h.trimMu instead, which
// RemoveGroup takes first: the replica it trims cannot be removed, and
// another added in its place (whose segment files may have the very names
// of the ones detached here), before its unlinks are done.
func (h *Host) Trim(group uint64, beforeMs int64) (TrimResult, error) {
	h.trimMu.Lock()
	defer h.trimMu.Unlock()
	h.mu.Lock()
	g := h.groups[group]
	h.mu.Unlock()
	if g == nil {
		return TrimResult{}, errUnknownGroup(group)
	}
	n, b, err := g.state.trim(beforeMs)
	return TrimResult{Segments: n, Bytes: b}, err
}

// Segments returns the number of segment files of the group's live
// generation (tests, and the cluster's status).
func (h *Host) Segments(group uint64) int {
	h.mu.Lock()
	g := h.groups[group]
	h.mu.Unlock()
	if g == nil {
		return 0
	}
	st, ok := g.state.(*segState)
	if !ok {
		return 0
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.segs)
}
