package api

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/storage"
)

// Shard-level metrics: CloudWatch's enhanced monitoring, labelled by stream
// and shard, exported only for the metrics a stream has enabled
// (EnableEnhancedMonitoring), which bounds the series count at hundreds of
// shards.
//
// A stream's enabled set and its shards' resolved series are one immutable
// shardSet behind an atomic pointer in its streamMetrics: a request loads it
// once (nil, the common case, costs nothing more) and finds each shard's
// series in its map, without a lock and without allocating. The stream's
// shardMu is taken only to replace the set: on a shard's first request, by
// Enable/DisableEnhancedMonitoring, and when a scrape brings the set in line
// with storage (a shard that has gone loses its series there).

// shardLevel is a set of shard-level metrics, one bit each.
type shardLevel uint8

const (
	slIncomingBytes shardLevel = 1 << iota
	slIncomingRecords
	slOutgoingBytes
	slOutgoingRecords
	slWriteExceeded
	slReadExceeded
	slIteratorAge
)

// shardLevelBits maps Kinesis's metric names (storage.ShardLevelMetricNames)
// to their bits.
var shardLevelBits = map[string]shardLevel{
	"IncomingBytes": slIncomingBytes, "IncomingRecords": slIncomingRecords,
	"OutgoingBytes": slOutgoingBytes, "OutgoingRecords": slOutgoingRecords,
	"WriteProvisionedThroughputExceeded": slWriteExceeded, "ReadProvisionedThroughputExceeded": slReadExceeded,
	"IteratorAgeMilliseconds": slIteratorAge,
}

func levelOf(names []string) shardLevel {
	var l shardLevel
	for _, n := range names {
		l |= shardLevelBits[n]
	}
	return l
}

// shardVec is a shard-level vector whose series can be dropped.
type shardVec interface {
	DeleteLabelValues(lvs ...string) bool
	DeletePartialMatch(labels prometheus.Labels) int
}

// shardVecs are the shard-level vectors, labelled by stream and shard.
type shardVecs struct {
	incomingBytes, incomingRecords *prometheus.CounterVec
	outgoingBytes, outgoingRecords *prometheus.CounterVec
	writeExceeded, readExceeded    *prometheus.CounterVec
	iteratorAge                    *prometheus.GaugeVec
}

func (m *Metrics) newShardVecs() {
	v := &m.shardVecs
	v.incomingBytes = m.shardCounter("incoming_bytes_total", "IncomingBytes (shard level): bytes (data + partition key) successfully put to the shard.")
	v.incomingRecords = m.shardCounter("incoming_records_total", "IncomingRecords (shard level): records successfully put to the shard.")
	v.outgoingBytes = m.shardCounter("outgoing_bytes_total", "OutgoingBytes (shard level): bytes returned from the shard by GetRecords and sent in SubscribeToShard events.")
	v.outgoingRecords = m.shardCounter("outgoing_records_total", "OutgoingRecords (shard level): records returned from the shard by GetRecords and sent in SubscribeToShard events.")
	v.writeExceeded = m.shardCounter("write_provisioned_throughput_exceeded_total", "WriteProvisionedThroughputExceeded (shard level): records refused for the shard's write throughput.")
	v.readExceeded = m.shardCounter("read_provisioned_throughput_exceeded_total", "ReadProvisionedThroughputExceeded (shard level): GetRecords calls throttled on the shard.")
	v.iteratorAge = m.register(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shardlog_shard_iterator_age_milliseconds",
		Help: "IteratorAgeMilliseconds (shard level): how far behind the shard's tip the last GetRecords call's records were (milliseconds)."},
		[]string{"stream", "shard"})).(*prometheus.GaugeVec)
}

func (m *Metrics) shardCounter(name, help string) *prometheus.CounterVec {
	return m.counterVec("shardlog_shard_"+name, help, "stream", "shard")
}

// byBit lists the vectors with the metric each exports.
func (v *shardVecs) byBit() [7]struct {
	bit shardLevel
	vec shardVec
} {
	return [7]struct {
		bit shardLevel
		vec shardVec
	}{
		{slIncomingBytes, v.incomingBytes}, {slIncomingRecords, v.incomingRecords},
		{slOutgoingBytes, v.outgoingBytes}, {slOutgoingRecords, v.outgoingRecords},
		{slWriteExceeded, v.writeExceeded}, {slReadExceeded, v.readExceeded},
		{slIteratorAge, v.iteratorAge},
	}
}

// drop deletes the series of one shard's metrics in bits.
func (v *shardVecs) drop(stream, shard string, bits shardLevel) {
	for _, e := range v.byBit() {
		if bits&e.bit != 0 {
			e.vec.DeleteLabelValues(stream, shard)
		}
	}
}

// dropStream deletes every shard-level series of a stream.
func (v *shardVecs) dropStream(stream string) {
	for _, e := range v.byBit() {
		e.vec.DeletePartialMatch(prometheus.Labels{"stream": stream})
	}
}

// shardSeries are one shard's resolved series; a metric not enabled is nil.
// Its methods do nothing on a nil *shardSeries.
type shardSeries struct {
	incomingBytes, incomingRecords prometheus.Counter
	outgoingBytes, outgoingRecords prometheus.Counter
	writeExceeded, readExceeded    prometheus.Counter
	iteratorAge                    prometheus.Gauge
}

func (v *shardVecs) resolve(l shardLevel, stream, shard string) *shardSeries {
	ss := &shardSeries{}
	c := func(bit shardLevel, vec *prometheus.CounterVec) prometheus.Counter {
		if l&bit == 0 {
			return nil
		}
		return vec.WithLabelValues(stream, shard)
	}
	ss.incomingBytes, ss.incomingRecords = c(slIncomingBytes, v.incomingBytes), c(slIncomingRecords, v.incomingRecords)
	ss.outgoingBytes, ss.outgoingRecords = c(slOutgoingBytes, v.outgoingBytes), c(slOutgoingRecords, v.outgoingRecords)
	ss.writeExceeded, ss.readExceeded = c(slWriteExceeded, v.writeExceeded), c(slReadExceeded, v.readExceeded)
	if l&slIteratorAge != 0 {
		ss.iteratorAge = v.iteratorAge.WithLabelValues(stream, shard)
	}
	return ss
}

func add(c prometheus.Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}

func (ss *shardSeries) incoming(records, bytes int) {
	if ss != nil {
		add(ss.incomingRecords, records)
		add(ss.incomingBytes, bytes)
	}
}

func (ss *shardSeries) writesThrottled(records int) {
	if ss != nil {
		add(ss.writeExceeded, records)
	}
}

func (ss *shardSeries) outgoing(records, bytes int) {
	if ss != nil {
		add(ss.outgoingRecords, records)
		add(ss.outgoingBytes, bytes)
	}
}

func (ss *shardSeries) readThrottled() {
	if ss != nil {
		add(ss.readExceeded, 1)
	}
}

func (ss *shardSeries) age(ms int64) {
	if ss != nil && ss.iteratorAge != nil {
		ss.iteratorAge.Set(float64(ms))
	}
}

// shardSet is a stream's enabled shard-level metrics and the series of the
// shards seen so far. It is never changed once published; a change
// publishes a new one.
type shardSet struct {
	level   shardLevel
	byIndex map[uint32]*shardSeries
}

// shardLevelState is the part of streamMetrics for shard-level metrics.
type shardLevelState struct {
	name string
	vecs *shardVecs
	mu   sync.Mutex               // serializes replacing set; never held by a request's metrics but on a shard's first
	set  atomic.Pointer[shardSet] // nil: no shard-level metrics
	gone bool                     // under mu: the stream was forgotten; export nothing for it again
}

// shard returns the series of shard idx in set, resolving them on the
// shard's first request; nil when the stream no longer exports shard-level
// metrics.
func (st *shardLevelState) shard(set *shardSet, idx uint32) *shardSeries {
	if ss := set.byIndex[idx]; ss != nil {
		return ss
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	cur := st.set.Load() // the set may have changed since the caller loaded it
	if cur == nil || st.gone {
		return nil
	}
	if ss := cur.byIndex[idx]; ss != nil {
		return ss
	}
	next := &shardSet{level: cur.level, byIndex: make(map[uint32]*shardSeries, len(cur.byIndex)+1)}
	for i, ss := range cur.byIndex {
		next.byIndex[i] = ss
	}
	ss := st.vecs.resolve(cur.level, st.name, datadir.ShardID(idx))
	next.byIndex[idx] = ss
	st.set.Store(next)
	return ss
}

// reshape exports level for the given shards (nil: the shards seen so far),
// dropping the series of metrics disabled and of shards not listed.
func (st *shardLevelState) reshape(level shardLevel, shards []uint32) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gone {
		return
	}
	old := st.set.Load()
	if shards == nil && old != nil {
		for i := range old.byIndex {
			shards = append(shards, i)
		}
	}
	var next *shardSet
	if level != 0 {
		next = &shardSet{level: level, byIndex: make(map[uint32]*shardSeries, len(shards))}
		for _, i := range shards {
			next.byIndex[i] = st.vecs.resolve(level, st.name, datadir.ShardID(i))
		}
	}
	if old != nil {
		for i := range old.byIndex {
			keep := shardLevel(0)
			if next != nil && next.byIndex[i] != nil {
				keep = level
			}
			st.vecs.drop(st.name, datadir.ShardID(i), old.level&^keep)
		}
	}
	st.set.Store(next)
}

// forget stops the stream's shard-level metrics for good and drops them.
func (st *shardLevelState) forget() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gone = true
	st.set.Store(nil)
	st.vecs.dropStream(st.name)
}

// putRecordShard records a PutRecord call's outcome on its shard: shard is
// the record's shard, "" when the call failed before one was chosen.
func (sm *streamMetrics) putRecordShard(set *shardSet, err error, size int, shard string) {
	idx, ok := datadir.ParseShardID(shard)
	if !ok {
		return
	}
	ss := sm.level.shard(set, idx)
	switch {
	case err == nil:
		ss.incoming(1, size)
	case isThrottle(err):
		ss.writesThrottled(1)
	}
}

// putRecordsShards records a PutRecords call's results on their shards.
// Each shard's records are added up first, so its series are touched once
// per call rather than once per record; nothing is allocated (the tallies
// live on the stack).
func (sm *streamMetrics) putRecordsShards(set *shardSet, entries []storage.PutEntry, res []storage.PutResult) {
	var ts shardTallies
	for i := range res {
		r := &res[i]
		t := ts.find(r.ShardID)
		if t == nil {
			if ts.n == len(ts.ids) { // more shards in one call than slots: this record alone
				one := shardTally{ss: sm.seriesOf(set, r.ShardID)}
				one.add(r, &entries[i])
				one.flush()
				continue
			}
			ts.ids[ts.n] = r.ShardID
			t = &ts.t[ts.n]
			t.ss = sm.seriesOf(set, r.ShardID)
			ts.n++
		}
		t.add(r, &entries[i])
	}
	for i := range ts.n {
		ts.t[i].flush()
	}
}

// seriesOf returns the series of the shard named id, nil if none.
func (sm *streamMetrics) seriesOf(set *shardSet, id string) *shardSeries {
	if idx, ok := datadir.ParseShardID(id); ok {
		return sm.level.shard(set, idx)
	}
	return nil
}

// shardTallies add up one call's records per shard, for up to 8 shards
// (a call's records usually reach few; storage gives one shard's results
// the same ID string, so finding it is mostly a pointer comparison).
type shardTallies struct {
	n   int
	ids [8]string
	t   [8]shardTally
}

func (ts *shardTallies) find(id string) *shardTally {
	for i := range ts.n {
		if ts.ids[i] == id {
			return &ts.t[i]
		}
	}
	return nil
}

// shardTally adds up records of one shard.
type shardTally struct {
	ss                        *shardSeries
	records, bytes, throttled int
}

func (t *shardTally) add(r *storage.PutResult, e *storage.PutEntry) {
	switch {
	case r.Err == nil:
		t.records++
		t.bytes += len(e.Data) + len(e.PartitionKey)
	case isThrottle(r.Err):
		t.throttled++
	}
}

func (t *shardTally) flush() {
	t.ss.incoming(t.records, t.bytes)
	t.ss.writesThrottled(t.throttled)
}

// getRecordsShard records a GetRecords call with a valid iterator on its shard.
func (sm *streamMetrics) getRecordsShard(set *shardSet, idx uint32, res storage.ReadResult, err error) {
	ss := sm.level.shard(set, idx)
	switch {
	case err == nil:
		ss.outgoing(len(res.Records), res.Bytes)
		ss.age(res.MillisBehindLatest)
	case isThrottle(err):
		ss.readThrottled()
	}
}
