package storage

import (
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/shard"
)

// EnforceRetention deletes every whole segment older than its stream's
// retention period. It runs on a timer; tests call it directly.
func (s *Store) EnforceRetention() {
	for _, st := range s.sortedStreams() {
		s.mu.RLock()
		cutoff := s.opts.Now().Add(-time.Duration(st.meta.RetentionHours) * time.Hour).UnixMilli()
		shards := make([]*shard.Shard, 0, len(st.shards))
		for _, sh := range st.shards {
			shards = append(shards, sh)
		}
		s.mu.RUnlock()
		for _, sh := range shards {
			if n, err := sh.Trim(cutoff); err != nil {
				s.log.Error("retention failed", "stream", st.name, "error", err)
			} else if n > 0 {
				s.log.Debug("retention removed segments", "stream", st.name, "segments", n)
			}
		}
		if err := s.expireClosedShards(st); err != nil {
			s.log.Error("cannot remove expired closed shards", "stream", st.name, "error", err)
		}
	}
}

// expireClosedShards removes the closed shards that closed before the
// retention horizon: all their records have expired. The meta.db commit that
// drops them from the stream comes first; a crash before the files are
// removed leaves an unlisted directory, which nothing reads.
func (s *Store) expireClosedShards(st *stream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.streams[st.name]; !ok || cur != st || s.closed || st.resharding != nil ||
		st.meta.Status == StatusDeleting || st.meta.Status == StatusCreating {
		return nil
	}
	cutoff := s.opts.Now().Add(-time.Duration(st.meta.RetentionHours) * time.Hour).UnixMilli()
	m := st.meta.Clone()
	m.Shards = m.Shards[:0]
	var expired []uint32
	for _, sm := range st.meta.Shards {
		if sm.Closed && sm.ClosedMs < cutoff {
			expired = append(expired, sm.Index)
			continue
		}
		m.Shards = append(m.Shards, sm)
	}
	if len(expired) == 0 {
		return nil
	}
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	for _, i := range expired {
		var segs int
		var bytes int64
		if sh := st.shards[i]; sh != nil {
			sh.Close()
			segs, bytes = sh.DiskUsage()
		}
		delete(st.shards, i)
		key := datadir.IndexKey(st.dir, i)
		if err := s.opts.FS.RemoveAll(datadir.ShardPath(s.opts.Dir, key)); err != nil {
			return err
		}
		if s.opts.Observer != nil && segs > 0 {
			s.opts.Observer.Trimmed(segs, bytes) // retention deleted the whole shard
		}
		s.idx.Submit(index.Update{Shard: key, Drop: true})
	}
	return s.opts.FS.SyncDir(datadir.StreamPath(s.opts.Dir, st.dir))
}
