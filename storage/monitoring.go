package storage

import (
	"context"
	"slices"
	"time"

	"github.com/shardlog/shardlog/shard"
)

// ShardLevelMetricNames are Kinesis's enhanced (shard-level) monitoring
// metrics, in the order AWS lists a stream's metrics in
// Enable/DisableEnhancedMonitoring's answers (the AWS CLI reference's
// examples, for ALL; captured from AWS's documentation, unverified against
// the current service). Every list storage returns is in this order.
var ShardLevelMetricNames = []string{
	"IncomingBytes", "OutgoingRecords", "IteratorAgeMilliseconds", "IncomingRecords",
	"ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded", "OutgoingBytes",
}

// MonitoringChange is Enable/DisableEnhancedMonitoring's outcome: the
// stream's shard-level metrics before and after.
type MonitoringChange struct {
	Current, Desired []string
}

// SetShardLevelMetrics enables (enable) or disables metrics, names from
// ShardLevelMetricNames, on an ACTIVE stream, which then goes UPDATING for
// Options.UpdateDelay, as on AWS: Terraform waits for the stream to be
// ACTIVE again after these calls, and provisioners such as Crossplane's
// note that no other update may be made meanwhile (AWS's UPDATING period
// itself is not documented). It goes UPDATING even when nothing changes:
// AWS accepts such a call, and there is no sign that it skips its update.
// The new set takes effect at once.
func (s *Store) SetShardLevelMetrics(ctx context.Context, name string, metrics []string, enable bool) (MonitoringChange, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return MonitoringChange{}, err
	}
	if st.meta.Status != StatusActive {
		return MonitoringChange{}, s.notActive(name, st.meta.Status)
	}
	out := ShardLevelMetricsChange(st.meta.ShardLevelMetrics, metrics, enable)
	m := st.meta.Clone()
	m.ShardLevelMetrics = out.Desired
	m.Status, m.PendingUntilNs = StatusUpdating, s.opts.Now().Add(s.opts.UpdateDelay).UnixNano()
	if err := s.persist(m); err != nil {
		return MonitoringChange{}, err
	}
	st.meta = m
	if st.timer != nil {
		st.timer.Stop()
	}
	s.resumePending(st)
	return out, nil
}

// orderMetrics lists the names of ShardLevelMetricNames that keep accepts,
// in that order; never nil.
func orderMetrics(keep func(string) bool) []string {
	out := []string{}
	for _, n := range ShardLevelMetricNames {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}

// Stats are the engine's numbers for the server's metrics. Stats gathers
// them from memory: no file is read.
type Stats struct {
	Streams []StreamStats // by name
	// Recovery is what Open read to recover every shard, and how long it
	// took.
	Recovery RecoveryStats
	// NoSegmentBytes and NoRecoveryScan are set by an engine that does not
	// know its segments' bytes, or what its start scanned (cluster mode):
	// those series are left out of /metrics rather than shown as zeros.
	NoSegmentBytes, NoRecoveryScan bool
}

// StreamStats are one stream's numbers.
type StreamStats struct {
	Name   string
	Status StreamStatus
	// ShardLevelMetrics are its enabled enhanced monitoring metrics, in
	// ShardLevelMetricNames' order.
	ShardLevelMetrics []string
	Shards            []ShardStats // every shard not yet expired, open or closed, in index order
}

// ShardStats are one shard's numbers.
type ShardStats struct {
	ID       string
	Segments int   // live segment files
	Bytes    int64 // their bytes
	// Poisoned: a failed write or fdatasync stopped its writer; it refuses
	// writes until a restart. Corrupt: found corrupt when opened, it serves
	// what precedes the damage and refuses writes until fsck repair.
	Poisoned, Corrupt bool
}

// RecoveryStats are what opening the store read.
type RecoveryStats struct {
	Duration time.Duration // Open's recovery of every stream's shards
	// TrustedSegments had an index entry that agreed with the file (only
	// their header was read); ScannedSegments were walked frame by frame,
	// ScannedBytes long.
	TrustedSegments, ScannedSegments int
	ScannedBytes                     int64
}

// Stats returns the engine's numbers (Stats).
func (s *Store) Stats() Stats {
	out := Stats{Recovery: s.recovery}
	for _, st := range s.sortedStreams() {
		type handle struct {
			id string
			sh *shard.Shard
		}
		s.mu.RLock()
		meta := st.meta // replaced, never changed in place
		var handles []handle
		for _, sm := range meta.Shards {
			if sh := st.shards[sm.Index]; sh != nil {
				handles = append(handles, handle{shardID(sm.Index), sh})
			}
		}
		s.mu.RUnlock()
		ss := StreamStats{Name: st.name, Status: meta.Status, ShardLevelMetrics: slices.Clone(meta.ShardLevelMetrics), Shards: make([]ShardStats, 0, len(handles))}
		for _, h := range handles {
			segs, bytes := h.sh.DiskUsage()
			ss.Shards = append(ss.Shards, ShardStats{ID: h.id, Segments: segs, Bytes: bytes,
				Poisoned: h.sh.Failed() != nil, Corrupt: h.sh.Corrupt() != nil})
		}
		out.Streams = append(out.Streams, ss)
	}
	return out
}
