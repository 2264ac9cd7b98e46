package storage

import (
	"time"
)

// retentionLoop trims expired segments of every shard periodically.
func (s *Store) retentionLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.RetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.EnforceRetention()
		}
	}
}

// EnforceRetention deletes every whole segment older than its stream's
// retention period. It runs on a timer; tests call it directly.
func (s *Store) EnforceRetention() {
	for _, st := range s.sortedStreams() {
		s.mu.RLock()
		cutoff := s.opts.Now().Add(-time.Duration(st.meta.RetentionHours) * time.Hour).UnixMilli()
		shards := make([]interface {
			Trim(int64) (int, error)
		}, 0, len(st.shards))
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
	}
}
