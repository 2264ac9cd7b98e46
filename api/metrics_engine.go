package api

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/storage"
)

// StatsSource is the part of a Backend that reports the engine's numbers;
// *storage.Store has it. With it, every scrape first brings the
// shard-level metrics in line with storage: the enabled sets (after a
// restart, from meta.db) and the shards that exist (one gone by retention,
// or with its stream, loses its series). Then the collector asks it for
// segments and bytes on disk, read-only shards and what recovery read.
// Stats reads memory only, a read lock per stream and shard, so asking
// twice per scrape is cheap. Backends without it (test fakes) export none
// of these, and shard-level metrics follow Enable/DisableEnhancedMonitoring
// alone.
type StatsSource interface {
	Stats() storage.Stats
}

var _ StatsSource = (*storage.Store)(nil)

// engineStats keeps the StatsSource.
type engineStats struct {
	// mu guards src, and orders the changes of shard-level sets: each
	// sync reads Stats and applies them under it, so syncs apply Stats in
	// the order they were read, and a scrape's older Stats never undo a
	// newer Enable/DisableEnhancedMonitoring, which applies its change by
	// a sync of its own after the backend has made it
	// (shardLevelChanged). Never held across a backend's change, nor
	// taken by data-plane requests.
	mu  sync.Mutex
	src StatsSource // nil until attach
}

// attach makes src the metrics' StatsSource (the first one given: one
// Metrics serves one store), registers its collector and syncs the
// shard-level metrics with it.
func (m *Metrics) attach(src StatsSource) {
	e := &m.engineStats
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.src != nil {
		return
	}
	e.src = src
	m.reg.MustRegister(newEngineCollector(src))
	m.syncShardLevelLocked()
}

// engineCollector reports a StatsSource's numbers on each scrape.
type engineCollector struct {
	src                                 StatsSource
	segments, bytes, readOnly           *prometheus.Desc
	recoveryTime, recoveryBytes, recSeg *prometheus.Desc
}

func newEngineCollector(src StatsSource) *engineCollector {
	return &engineCollector{src: src,
		segments: prometheus.NewDesc("shardlog_stream_segments", "Segment files of the stream's shards (open and closed, not yet expired).", []string{"stream"}, nil),
		bytes:    prometheus.NewDesc("shardlog_stream_segment_bytes", "Bytes on disk in the stream's segment files.", []string{"stream"}, nil),
		readOnly: prometheus.NewDesc("shardlog_stream_read_only_shards",
			"Shards refusing writes: reason=\"poisoned\" (a failed write or fdatasync stopped the writer; restart), reason=\"corrupt\" (found corrupt at start; serving what precedes the damage until fsck repair). The log names each shard.",
			[]string{"stream", "reason"}, nil),
		recoveryTime:  prometheus.NewDesc("shardlog_recovery_duration_seconds", "Time the start took to recover every shard.", nil, nil),
		recoveryBytes: prometheus.NewDesc("shardlog_recovery_scanned_bytes", "Bytes of the segments recovery walked frame by frame at start (segments whose index entry agreed with the file are not read).", nil, nil),
		recSeg:        prometheus.NewDesc("shardlog_recovery_segments", "Segments at start, by how recovery checked them: how=\"trusted\" (index entry agreed; header read) or how=\"scanned\" (walked frame by frame).", []string{"how"}, nil),
	}
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.segments, c.bytes, c.readOnly, c.recoveryTime, c.recoveryBytes, c.recSeg} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for _, s := range st.Streams {
		var segs, poisoned, corrupt int
		var bytes int64
		for _, sh := range s.Shards {
			segs += sh.Segments
			bytes += sh.Bytes
			poisoned += b2i(sh.Poisoned)
			corrupt += b2i(sh.Corrupt)
		}
		ch <- prometheus.MustNewConstMetric(c.segments, prometheus.GaugeValue, float64(segs), s.Name)
		if !st.NoSegmentBytes {
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(bytes), s.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.readOnly, prometheus.GaugeValue, float64(poisoned), s.Name, "poisoned")
		ch <- prometheus.MustNewConstMetric(c.readOnly, prometheus.GaugeValue, float64(corrupt), s.Name, "corrupt")
	}
	r := st.Recovery
	ch <- prometheus.MustNewConstMetric(c.recoveryTime, prometheus.GaugeValue, r.Duration.Seconds())
	if st.NoRecoveryScan {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.recoveryBytes, prometheus.GaugeValue, float64(r.ScannedBytes))
	ch <- prometheus.MustNewConstMetric(c.recSeg, prometheus.GaugeValue, float64(r.TrustedSegments), "trusted")
	ch <- prometheus.MustNewConstMetric(c.recSeg, prometheus.GaugeValue, float64(r.ScannedSegments), "scanned")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// syncShardLevel asks storage for its Stats and makes every stream export
// the shard-level metrics storage has enabled for it, for the shards it
// has: series of disabled metrics and of gone shards are dropped. A stream
// storage no longer has, or is deleting, exports none.
func (m *Metrics) syncShardLevel() {
	e := &m.engineStats
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.src != nil {
		m.syncShardLevelLocked()
	}
}

// shardLevelChanged applies an Enable/DisableEnhancedMonitoring the
// backend has made, level being the stream's new set. With a StatsSource,
// by a sync: Stats are authoritative and, read after the change (a cluster
// node applies its own changes before acknowledging them), include it or
// something newer, where applying level itself could undo a newer change
// a concurrent call or scrape has applied already. Without one (test
// fakes) level is applied; two concurrent changes of one stream may then
// apply in either order.
func (m *Metrics) shardLevelChanged(name string, level shardLevel) {
	e := &m.engineStats
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.src != nil {
		m.syncShardLevelLocked()
		return
	}
	m.stream(name).level.reshape(level, nil)
}

func (m *Metrics) syncShardLevelLocked() {
	st := m.engineStats.src.Stats()
	seen := make(map[string]bool, len(st.Streams))
	for _, s := range st.Streams {
		if s.Status == storage.StatusDeleting {
			continue // deleted: DeleteStream forgot its series, and none come back
		}
		seen[s.Name] = true
		level := levelOf(s.ShardLevelMetrics)
		sm, known := m.streams.Load(s.Name)
		if !known && level == 0 {
			continue // nothing to export, nor to drop
		}
		shards := make([]uint32, 0, len(s.Shards))
		for _, sh := range s.Shards {
			if idx, ok := datadir.ParseShardID(sh.ID); ok {
				shards = append(shards, idx)
			}
		}
		if !known {
			sm = m.stream(s.Name)
		}
		sm.(*streamMetrics).level.reshape(level, shards)
	}
	m.streams.Range(func(name, sm any) bool {
		if !seen[name.(string)] {
			sm.(*streamMetrics).level.reshape(0, nil)
		}
		return true
	})
}
