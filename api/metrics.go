package api

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// Metrics is shardlog's Prometheus instrumentation: a registry it owns (no
// global default registry) and the collectors the API updates. Stream
// metrics carry Kinesis's CloudWatch names in their help text.
//
// Cost: the write path touches only pre-resolved counters and histograms
// (atomic adds; client_golang's histograms are lock-free), found once per
// request in a sync.Map keyed by stream: no lock shared across shards and no
// allocation per record.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	engine  *EngineMetrics

	requests *prometheus.CounterVec   // operation, error
	duration *prometheus.HistogramVec // operation
	inFlight prometheus.Gauge
	conns    prometheus.Gauge

	// Per-stream vectors, labelled by stream.
	incomingRecords, incomingBytes                 *prometheus.CounterVec
	putRecordSuccess, putRecordFailure, putRecordB *prometheus.CounterVec
	putRecordLatency                               *prometheus.HistogramVec
	putRecordsSuccess, putRecordsFailure           *prometheus.CounterVec
	putRecordsB, putRecordsRecords                 *prometheus.CounterVec
	putRecordsSucceeded, putRecordsFailed          *prometheus.CounterVec
	putRecordsThrottled                            *prometheus.CounterVec
	putRecordsLatency                              *prometheus.HistogramVec
	getRecordsSuccess, getRecordsFailure           *prometheus.CounterVec
	getRecordsRecords, getRecordsB                 *prometheus.CounterVec
	getRecordsLatency                              *prometheus.HistogramVec
	iteratorAge                                    *prometheus.GaugeVec
	readExceeded, writeExceeded                    *prometheus.CounterVec
	subscribeSuccess, subscribeEvents              *prometheus.CounterVec
	subscribeEventRecords, subscribeEventB         *prometheus.CounterVec
	subscribeMillisBehind                          *prometheus.GaugeVec
	streams                                        sync.Map             // stream name → *streamMetrics
	ops                                            map[string]opMetrics // pre-resolved per known operation
	streamVecs                                     []deleter
	shardVecs                                      shardVecs
	// engineStats, once attached, syncs shard-level metrics with storage
	// and reports the engine's numbers on every scrape (metrics_engine.go).
	engineStats engineStats
}

// opMetrics are one operation's pre-resolved successful-request series.
type opMetrics struct {
	ok       prometheus.Counter
	duration prometheus.Observer
}

// deleter is a metric vector whose series for a stream can be dropped.
type deleter interface {
	DeleteLabelValues(lvs ...string) bool
}

// streamMetrics are one stream's resolved series.
type streamMetrics struct {
	incomingRecords, incomingBytes                    prometheus.Counter
	putRecordSuccess, putRecordFailure, putRecordB    prometheus.Counter
	putRecordLatency                                  prometheus.Observer
	putRecordsSuccess, putRecordsFailure, putRecordsB prometheus.Counter
	putRecordsRecords, putRecordsSucceeded            prometheus.Counter
	putRecordsFailed, putRecordsThrottled             prometheus.Counter
	putRecordsLatency                                 prometheus.Observer
	getRecordsSuccess, getRecordsFailure              prometheus.Counter
	getRecordsRecords, getRecordsB                    prometheus.Counter
	getRecordsLatency                                 prometheus.Observer
	iteratorAge                                       prometheus.Gauge
	readExceeded, writeExceeded                       prometheus.Counter
	subscribeSuccess, subscribeEvents                 prometheus.Counter
	subscribeEventRecords, subscribeEventB            prometheus.Counter
	subscribeMillisBehind                             prometheus.Gauge
	// level is the stream's shard-level metrics (metrics_shard.go).
	level shardLevelState
}

// latencyBuckets span a page-cache read (100µs) to a slow fdatasync (2.5s).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// NewMetrics returns the instrumentation with its own registry, holding the
// Go runtime and process collectors besides shardlog's own.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = m.counterVec("shardlog_requests_total", "Kinesis API requests by operation and AWS error type (error=\"\" on success; operation=\"\" when the request named no known operation).", "operation", "error")
	m.duration = m.register(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shardlog_request_duration_seconds",
		Help: "Time to answer a Kinesis API request, by operation (a SubscribeToShard stream counts until its end).", Buckets: latencyBuckets}, []string{"operation"})).(*prometheus.HistogramVec)
	m.inFlight = m.register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "shardlog_requests_in_flight", Help: "Kinesis API requests being served."})).(prometheus.Gauge)
	m.conns = m.register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "shardlog_open_connections", Help: "Open client connections (all listeners)."})).(prometheus.Gauge)
	m.ops = make(map[string]opMetrics, len(operations))
	for op := range operations {
		m.ops[op] = opMetrics{ok: m.requests.WithLabelValues(op, ""), duration: m.duration.WithLabelValues(op)}
	}
	m.newStreamVecs()
	m.newShardVecs()
	m.engine = m.newEngine()
	exposition := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	m.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Before the registry is gathered, so that this scrape already
		// shows no series of a shard, or a metric, that has gone.
		m.syncShardLevel()
		exposition.ServeHTTP(w, r)
	})
	return m
}

func (m *Metrics) newStreamVecs() {
	m.incomingRecords = m.streamCounter("incoming_records_total", "IncomingRecords: records successfully put (PutRecord and PutRecords).")
	m.incomingBytes = m.streamCounter("incoming_bytes_total", "IncomingBytes: bytes (data + partition key) successfully put (PutRecord and PutRecords).")
	m.putRecordSuccess = m.streamCounter("put_record_success_total", "PutRecord.Success: successful PutRecord calls.")
	m.putRecordFailure = m.streamCounter("put_record_failure_total", "PutRecord.Success (the zeros): failed PutRecord calls on a known stream.")
	m.putRecordB = m.streamCounter("put_record_bytes_total", "PutRecord.Bytes: bytes put by successful PutRecord calls.")
	m.putRecordLatency = m.streamHistogram("put_record_latency_seconds", "PutRecord.Latency: time taken per PutRecord call on a known stream.")
	m.putRecordsSuccess = m.streamCounter("put_records_success_total", "PutRecords.Success: PutRecords calls with at least one record put.")
	m.putRecordsFailure = m.streamCounter("put_records_failure_total", "PutRecords.Success (the zeros): PutRecords calls on a known stream that put no record.")
	m.putRecordsB = m.streamCounter("put_records_bytes_total", "PutRecords.Bytes: bytes put by PutRecords calls (successful records only).")
	m.putRecordsRecords = m.streamCounter("put_records_total_records_total", "PutRecords.TotalRecords: records sent in PutRecords calls that reached storage.")
	m.putRecordsSucceeded = m.streamCounter("put_records_successful_records_total", "PutRecords.SuccessfulRecords: records put by PutRecords calls.")
	m.putRecordsFailed = m.streamCounter("put_records_failed_records_total", "PutRecords.FailedRecords: records refused by internal failures in PutRecords calls.")
	m.putRecordsThrottled = m.streamCounter("put_records_throttled_records_total", "PutRecords.ThrottledRecords: records refused for throughput in PutRecords calls.")
	m.putRecordsLatency = m.streamHistogram("put_records_latency_seconds", "PutRecords.Latency: time taken per PutRecords call on a known stream.")
	m.getRecordsSuccess = m.streamCounter("get_records_success_total", "GetRecords.Success: successful GetRecords calls.")
	m.getRecordsFailure = m.streamCounter("get_records_failure_total", "GetRecords.Success (the zeros): failed GetRecords calls with a valid iterator.")
	m.getRecordsRecords = m.streamCounter("get_records_records_total", "GetRecords.Records: records returned by GetRecords.")
	m.getRecordsB = m.streamCounter("get_records_bytes_total", "GetRecords.Bytes: bytes (data + partition key) returned by GetRecords.")
	m.getRecordsLatency = m.streamHistogram("get_records_latency_seconds", "GetRecords.Latency: time taken per GetRecords call with a valid iterator.")
	m.iteratorAge = m.streamGauge("get_records_iterator_age_milliseconds", "GetRecords.IteratorAgeMilliseconds: how far behind the shard's tip the last GetRecords call's records were (milliseconds, as CloudWatch).")
	m.readExceeded = m.streamCounter("read_provisioned_throughput_exceeded_total", "ReadProvisionedThroughputExceeded: GetRecords calls throttled.")
	m.writeExceeded = m.streamCounter("write_provisioned_throughput_exceeded_total", "WriteProvisionedThroughputExceeded: records throttled (PutRecord calls and PutRecords records).")
	m.subscribeSuccess = m.streamCounter("subscribe_to_shard_success_total", "SubscribeToShard.Success: subscriptions started.")
	m.subscribeEvents = m.streamCounter("subscribe_to_shard_events_total", "SubscribeToShardEvent.Success: events sent to enhanced fan-out consumers.")
	m.subscribeEventRecords = m.streamCounter("subscribe_to_shard_event_records_total", "SubscribeToShardEvent.Records: records sent in SubscribeToShard events.")
	m.subscribeEventB = m.streamCounter("subscribe_to_shard_event_bytes_total", "SubscribeToShardEvent.Bytes: bytes sent in SubscribeToShard events.")
	m.subscribeMillisBehind = m.streamGauge("subscribe_to_shard_event_millis_behind_latest", "SubscribeToShardEvent.MillisBehindLatest: the last event's MillisBehindLatest.")
}

func (m *Metrics) register(c prometheus.Collector) prometheus.Collector {
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return m.register(prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)).(*prometheus.CounterVec)
}

func (m *Metrics) streamCounter(name, help string) *prometheus.CounterVec {
	v := m.counterVec("shardlog_stream_"+name, help, "stream")
	m.streamVecs = append(m.streamVecs, v)
	return v
}

func (m *Metrics) streamGauge(name, help string) *prometheus.GaugeVec {
	v := m.register(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shardlog_stream_" + name, Help: help}, []string{"stream"})).(*prometheus.GaugeVec)
	m.streamVecs = append(m.streamVecs, v)
	return v
}

func (m *Metrics) streamHistogram(name, help string) *prometheus.HistogramVec {
	v := m.register(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shardlog_stream_" + name, Help: help, Buckets: latencyBuckets}, []string{"stream"})).(*prometheus.HistogramVec)
	m.streamVecs = append(m.streamVecs, v)
	return v
}

// Registry is the registry holding every shardlog metric; other packages
// (the engine) may register their collectors in it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus's exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ConnState counts open connections; set it as http.Server.ConnState.
func (m *Metrics) ConnState(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		m.conns.Inc()
	case http.StateClosed, http.StateHijacked:
		m.conns.Dec()
	}
}

// stream returns stream's resolved series, creating them on first use.
func (m *Metrics) stream(name string) *streamMetrics {
	if sm, ok := m.streams.Load(name); ok {
		return sm.(*streamMetrics)
	}
	sm, _ := m.streams.LoadOrStore(name, m.resolve(name))
	return sm.(*streamMetrics)
}

func (m *Metrics) resolve(s string) *streamMetrics {
	sm := m.resolveStream(s)
	sm.level.name, sm.level.vecs = s, &m.shardVecs
	return sm
}

func (m *Metrics) resolveStream(s string) *streamMetrics {
	return &streamMetrics{
		incomingRecords: m.incomingRecords.WithLabelValues(s), incomingBytes: m.incomingBytes.WithLabelValues(s),
		putRecordSuccess: m.putRecordSuccess.WithLabelValues(s), putRecordFailure: m.putRecordFailure.WithLabelValues(s),
		putRecordB: m.putRecordB.WithLabelValues(s), putRecordLatency: m.putRecordLatency.WithLabelValues(s),
		putRecordsSuccess: m.putRecordsSuccess.WithLabelValues(s), putRecordsFailure: m.putRecordsFailure.WithLabelValues(s),
		putRecordsB: m.putRecordsB.WithLabelValues(s), putRecordsRecords: m.putRecordsRecords.WithLabelValues(s),
		putRecordsSucceeded: m.putRecordsSucceeded.WithLabelValues(s), putRecordsFailed: m.putRecordsFailed.WithLabelValues(s),
		putRecordsThrottled: m.putRecordsThrottled.WithLabelValues(s), putRecordsLatency: m.putRecordsLatency.WithLabelValues(s),
		getRecordsSuccess: m.getRecordsSuccess.WithLabelValues(s), getRecordsFailure: m.getRecordsFailure.WithLabelValues(s),
		getRecordsRecords: m.getRecordsRecords.WithLabelValues(s), getRecordsB: m.getRecordsB.WithLabelValues(s),
		getRecordsLatency: m.getRecordsLatency.WithLabelValues(s), iteratorAge: m.iteratorAge.WithLabelValues(s),
		readExceeded: m.readExceeded.WithLabelValues(s), writeExceeded: m.writeExceeded.WithLabelValues(s),
		subscribeSuccess: m.subscribeSuccess.WithLabelValues(s), subscribeEvents: m.subscribeEvents.WithLabelValues(s),
		subscribeEventRecords: m.subscribeEventRecords.WithLabelValues(s), subscribeEventB: m.subscribeEventB.WithLabelValues(s),
		subscribeMillisBehind: m.subscribeMillisBehind.WithLabelValues(s),
	}
}

// forgetStream drops a deleted stream's series, bounding the series count.
// A request still holding the old series updates counters no longer
// exported, which is harmless.
func (m *Metrics) forgetStream(name string) {
	if sm, ok := m.streams.LoadAndDelete(name); ok {
		sm.(*streamMetrics).level.forget()
	}
	for _, v := range m.streamVecs {
		v.DeleteLabelValues(name)
	}
}

// request counts one finished request.
func (m *Metrics) request(op, errType string, d time.Duration) {
	om, known := m.ops[op]
	if known && errType == "" {
		om.ok.Inc()
	} else {
		m.requests.WithLabelValues(op, errType).Inc() // errors and unknown operations: the rare path
	}
	if known {
		om.duration.Observe(d.Seconds())
	}
}

// putRecordDone records a PutRecord call on a known stream; shard is the
// record's shard, "" if none was chosen.
func (sm *streamMetrics) putRecordDone(err error, size int, d time.Duration, shard string) {
	if set := sm.level.set.Load(); set != nil {
		sm.putRecordShard(set, err, size, shard)
	}
	sm.putRecordLatency.Observe(d.Seconds())
	if err != nil {
		sm.putRecordFailure.Inc()
		if isThrottle(err) {
			sm.writeExceeded.Inc()
		}
		return
	}
	sm.putRecordSuccess.Inc()
	sm.putRecordB.Add(float64(size))
	sm.incomingRecords.Inc()
	sm.incomingBytes.Add(float64(size))
}

// putRecordsDone records a PutRecords call on a known stream: res holds one
// result per entry, or is nil when err refused the whole call. The loop
// counts without allocating; the series are updated once per call.
func (sm *streamMetrics) putRecordsDone(entries []storage.PutEntry, res []storage.PutResult, err error, d time.Duration) {
	sm.putRecordsLatency.Observe(d.Seconds())
	if err != nil {
		sm.putRecordsFailure.Inc()
		if isThrottle(err) {
			sm.writeExceeded.Add(float64(len(entries)))
		}
		return
	}
	var ok, throttled, failed, bytes int
	for i := range res {
		switch e := res[i].Err; {
		case e == nil:
			ok++
			bytes += len(entries[i].Data) + len(entries[i].PartitionKey)
		case isThrottle(e):
			throttled++
		default:
			failed++
		}
	}
	if ok > 0 {
		sm.putRecordsSuccess.Inc()
	} else {
		sm.putRecordsFailure.Inc()
	}
	sm.putRecordsRecords.Add(float64(len(res)))
	sm.putRecordsSucceeded.Add(float64(ok))
	sm.putRecordsThrottled.Add(float64(throttled))
	sm.putRecordsFailed.Add(float64(failed))
	sm.writeExceeded.Add(float64(throttled))
	sm.putRecordsB.Add(float64(bytes))
	sm.incomingRecords.Add(float64(ok))
	sm.incomingBytes.Add(float64(bytes))
	if set := sm.level.set.Load(); set != nil {
		sm.putRecordsShards(set, entries, res)
	}
}

// getRecordsDone records a GetRecords call with a valid iterator on shard
// index idx.
func (sm *streamMetrics) getRecordsDone(idx uint32, res storage.ReadResult, err error, d time.Duration) {
	if set := sm.level.set.Load(); set != nil {
		sm.getRecordsShard(set, idx, res, err)
	}
	sm.getRecordsLatency.Observe(d.Seconds())
	if err != nil {
		sm.getRecordsFailure.Inc()
		if isThrottle(err) {
			sm.readExceeded.Inc()
		}
		return
	}
	sm.getRecordsSuccess.Inc()
	sm.getRecordsRecords.Add(float64(len(res.Records)))
	sm.getRecordsB.Add(float64(res.Bytes))
	sm.iteratorAge.Set(float64(res.MillisBehindLatest))
}

// eventSent records one SubscribeToShard event written to the consumer
// from shard index idx.
func (sm *streamMetrics) eventSent(idx uint32, ev storage.SubscribeEvent) {
	if set := sm.level.set.Load(); set != nil {
		sm.level.shard(set, idx).outgoing(len(ev.Records), ev.Bytes)
	}
	sm.subscribeEvents.Inc()
	sm.subscribeEventRecords.Add(float64(len(ev.Records)))
	sm.subscribeEventB.Add(float64(ev.Bytes))
	sm.subscribeMillisBehind.Set(float64(ev.MillisBehindLatest))
}

// isThrottle reports whether err is a throughput refusal: storage's per-shard
// limits (or --inject-throttle-rate), or an Admission hook's.
func isThrottle(err error) bool {
	if errors.Is(err, storage.ErrThrottled) {
		return true
	}
	we, ok := errors.AsType[*wire.Error](err) // unlike errors.As, allocates nothing
	return ok && we.Type == wire.TypeThroughput
}

// EngineMetrics are the storage engine's metrics; it is a shard.Observer
// (storage.Options.Observer). Its series have no labels: every shard
// updates the same atomics, with no lock and no allocation.
type EngineMetrics struct {
	syncs        prometheus.Histogram
	syncFailures prometheus.Counter
	frameRecords prometheus.Histogram
	frameRaw     prometheus.Histogram
	rawBytes     prometheus.Counter
	storedBytes  prometheus.Counter
	cacheDrops   prometheus.Counter
	cacheDropped prometheus.Counter
	trimmedSegs  prometheus.Counter
	trimmedBytes prometheus.Counter
}

func (m *Metrics) newEngine() *EngineMetrics {
	e := &EngineMetrics{
		syncs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shardlog_fdatasync_duration_seconds",
			Help: "Time taken by each sync: an fdatasync of a segment, or one shared syncfs covering a round of shards.", Buckets: latencyBuckets}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_fdatasync_failures_total",
			Help: "Syncs that failed (a failed fdatasync poisons its shard, a failed shared syncfs every shard)."}),
		frameRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shardlog_commit_records",
			Help: "Records per group commit (one frame each).", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		frameRaw: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shardlog_commit_bytes",
			Help: "Uncompressed payload bytes per group commit (one frame each).", Buckets: prometheus.ExponentialBuckets(256, 4, 9)}),
		rawBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_commit_raw_bytes_total",
			Help: "Payload bytes committed before compression; over shardlog_commit_stored_bytes_total it is the compression ratio."}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_commit_stored_bytes_total",
			Help: "Payload bytes written to segments after compression."}),
		cacheDrops: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_page_cache_drops_total",
			Help: "posix_fadvise(DONTNEED) calls dropping synced segment data older than --cache-window from the OS page cache."}),
		cacheDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_page_cache_dropped_bytes_total",
			Help: "Bytes of synced segment data dropped from the OS page cache."}),
		trimmedSegs: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_retention_deleted_segments_total",
			Help: "Segment files deleted by retention (expired segments, and the segments of closed shards that expired whole)."}),
		trimmedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardlog_retention_deleted_bytes_total",
			Help: "Bytes of the segment files deleted by retention."}),
	}
	m.reg.MustRegister(e.syncs, e.syncFailures, e.frameRecords, e.frameRaw, e.rawBytes, e.storedBytes,
		e.cacheDrops, e.cacheDropped, e.trimmedSegs, e.trimmedBytes)
	return e
}

// Engine is the engine's Observer, to pass to storage.Options.Observer.
func (m *Metrics) Engine() *EngineMetrics { return m.engine }

// Committed implements shard.Observer.
func (e *EngineMetrics) Committed(records, rawBytes, storedBytes int) {
	e.frameRecords.Observe(float64(records))
	e.frameRaw.Observe(float64(rawBytes))
	e.rawBytes.Add(float64(rawBytes))
	e.storedBytes.Add(float64(storedBytes))
}

// Synced implements shard.Observer.
func (e *EngineMetrics) Synced(d time.Duration, err error) {
	e.syncs.Observe(d.Seconds())
	if err != nil {
		e.syncFailures.Inc()
	}
}

// DroppedCache implements shard.Observer.
func (e *EngineMetrics) DroppedCache(bytes int64) {
	e.cacheDrops.Inc()
	e.cacheDropped.Add(float64(bytes))
}

// Trimmed implements shard.Observer.
func (e *EngineMetrics) Trimmed(segments int, bytes int64) {
	e.trimmedSegs.Add(float64(segments))
	e.trimmedBytes.Add(float64(bytes))
}
