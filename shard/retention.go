package shard

import (
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/vfs"
)

// Trim deletes whole segments whose newest record arrived before cutoff (ms),
// oldest first, never the active one. Records older than cutoff inside a
// surviving segment are hidden by Read's minTs instead.
//
// Order, crash-safe because segments are the truth: the segment leaves the
// in-memory list (no new reader can start on it), its index entries are
// queued for removal, the file is unlinked, and the directory is synced. A
// crash anywhere leaves either the file (deleted again by the next Trim) or
// index entries for a missing file (dropped when the shard is next opened).
// Only a prefix of segments is ever removed, so no gap can appear.
func (s *Shard) Trim(cutoff int64) (removed int, err error) {
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	victims := s.detachExpired(cutoff)
	if len(victims) == 0 {
		return 0, nil
	}
	upd := index.Update{Shard: s.opts.IndexKey}
	for _, sg := range victims {
		upd.Remove = append(upd.Remove, sg.id)
	}
	s.opts.Index.Submit(upd)
	var bytes int64
	defer func() { s.opts.Observer.Trimmed(removed, bytes) }()
	for _, sg := range victims {
		// Already gone is fine: another handle on this directory (a reshard
		// reopened the shard) may have removed it.
		if err := s.opts.FS.Remove(sg.path); err != nil && !vfs.IsNotExist(err) {
			return removed, err
		}
		removed++
		bytes += sg.end // a sealed segment's size is its end (recovery cuts the rest)
	}
	return removed, s.opts.FS.SyncDir(s.opts.Dir)
}

// DiskUsage is the shard's live segments and their bytes: each segment's
// readable end, which for every segment but the active one is its size.
// Cheap: one read lock, no I/O.
func (s *Shard) DiskUsage() (segments int, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, sg := range s.segs {
		bytes += sg.end
	}
	return len(s.segs), bytes
}

func (s *Shard) detachExpired(cutoff int64) []*seg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil // a closed handle's files belong to whoever reopened them
	}
	keep := 1 // the active segment, or a closed shard's last one (it holds the sequence floor)
	n := 0
	for n < len(s.segs)-keep && s.segs[n].frames > 0 && s.segs[n].maxTs < cutoff {
		n++
	}
	victims := append([]*seg(nil), s.segs[:n]...)
	s.segs = append([]*seg(nil), s.segs[n:]...)
	for _, sg := range victims {
		sg.removed = true
		s.maybeCloseReaderLocked(sg)
	}
	return victims
}
