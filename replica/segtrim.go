package replica

import (
	"errors"
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
//   - a segment leaves the list under s.mu's write lock just before its
//     file is unlinked (one at a time; trimMu serializes trims): a read
//     (ReadApplied, a snapshot's listing, or a chunk of a listed file
//     served to a receiver, each under the read lock) either ran before
//     it, with the file still there, or runs after, without it.
//     A chunk of a file trimmed after its listing is answered gone
//     (snapfetch.go); the next snapshot lists only the segments left.
//
// A crash between an unlink and its directory sync may bring that file
// back at the next open; it is the oldest left, so still a prefix of the
// chain, and the next trim deletes it again.

// trim deletes the sealed segments, oldest first, whose newest record
// arrived before beforeMs (Unix ms).
//
// review5: each segment leaves the list just before its own unlink, never
// several ahead of it. A trim that stopped on an error with segments taken
// out of the list but still on disk left a hidden gap: the next trim
// deleted newer ones, and the chain check refused to open the node. Now a
// failed Remove (an unlink is atomic: the file is still there) puts its
// segment back at the front of the list, so the list and the disk agree
// and the next trim starts from it again; a failed directory sync leaves
// the unlink's durability unknown (a later sync need not cover it: the
// error may have dropped the dirty state), so it is final for the host
// (errTrimUnsynced; Host.Trim stops it), and the restart finds a prefix.
func (s *segState) trim(beforeMs int64) (segments int, bytes int64, err error) {
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	if s.brokenTrimOrder {
		return s.trimBroken(beforeMs)
	}
	for {
		sg, gen := s.detachOldest(beforeMs)
		if sg == nil {
			return segments, bytes, nil
		}
		if err := s.removeDurably(sg, gen); err != nil {
			return segments, bytes, fmt.Errorf("replica: group %d retention: %w", s.group, err)
		}
		segments++
		bytes += sg.end
	}
}

// errTrimUnsynced: a segment was unlinked but its directory's sync failed.
var errTrimUnsynced = errors.New("replica: a retention unlink could not be made durable")

// removeDurably unlinks a segment and syncs its directory (see the top of
// the file), then passes the trim's crash point (tests).
func (s *segState) removeDurably(sg *stateSeg, gen uint64) error {
	if err := s.fs.Remove(sg.path); err != nil && !vfs.IsNotExist(err) {
		s.reattach(sg, gen)
		return err
	}
	if err := s.fs.SyncDir(path.Dir(sg.path)); err != nil {
		return fmt.Errorf("%w: %w", errTrimUnsynced, err)
	}
	if s.crash != nil {
		return s.crash(crashTrimRemoved)
	}
	return nil
}

// detachOldest takes the oldest sealed segment out of the list if it
// expired, with the generation it belongs to.
func (s *segState) detachOldest(beforeMs int64) (*stateSeg, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.segs) < 2 || s.segs[0].frames == 0 || s.segs[0].maxTs >= beforeMs {
		return nil, 0
	}
	sg := s.segs[0]
	s.segs = append([]*stateSeg(nil), s.segs[1:]...)
	return sg, s.gen
}

// reattach puts back at the front a segment whose unlink failed, unless
// the state was closed or replaced (a snapshot's installation removed the
// whole generation) meanwhile.
func (s *segState) reattach(sg *stateSeg, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.gen != gen {
		return
	}
	s.segs = append([]*stateSeg{sg}, s.segs...)
}

// trimBroken is the deliberately broken order of the crash test
// (brokenTrimOrder): every expired segment detached, unlinked newest first.
func (s *segState) trimBroken(beforeMs int64) (segments int, bytes int64, err error) {
	var victims []*stateSeg
	var gen uint64
	for {
		sg, g := s.detachOldest(beforeMs)
		if sg == nil {
			break
		}
		victims, gen = append(victims, sg), g
	}
	slices.Reverse(victims)
	for _, sg := range victims {
		if err := s.removeDurably(sg, gen); err != nil {
			return segments, bytes, err
		}
		segments++
		bytes += sg.end
	}
	return segments, bytes, nil
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
	if errors.Is(err, errTrimUnsynced) {
		// Fail-stop, as a failed fdatasync of a round is (see trim).
		h.mu.Lock()
		h.stop(err)
		h.mu.Unlock()
	}
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
