package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/shard"
)

// streamMeta and shardMeta are meta.db's records; datadir defines them, so
// that fsck reads exactly what storage writes.
type (
	streamMeta = datadir.StreamRecord
	shardMeta  = datadir.ShardRecord
)

// shardID is the canonical shard ID (datadir.ShardID), which is also the
// shard's directory name.
func shardID(i uint32) string { return datadir.ShardID(i) }

// firstOrdinal is the ordinal of a shard's first record. Ordinal 0 is the
// shard's StartingSequenceNumber, which AWS makes smaller than any record's.
const firstOrdinal = 1

// stream is an open stream. meta is replaced, never mutated, under
// Store.mu; shards is the set of open shard handles by index.
type stream struct {
	name   string
	dir    string // relative to the streams directory
	meta   *streamMeta
	shards map[uint32]*shard.Shard
	routes []route // open shards sorted by range start
	timer  *time.Timer
	// gate is held shared around every Append and exclusively while a
	// reshard closes shards: an Append racing a shard's Close could be queued
	// after the writer's final drain and never answered, so none may race it.
	gate sync.RWMutex
	// resharding is non-nil while a reshard does its file work without the
	// store lock, and closed when it is done; guarded by Store.mu.
	resharding chan struct{}
	// counters are the sequence counters of the stream's shard groups, by
	// group (index / Options.SeqGroupSize); guarded by counterMu, since a
	// reshard opens shards without the store lock.
	counterMu sync.Mutex
	counters  map[uint32]*shard.Counter
	// gone holds a channel per consumer incarnation that ActiveConsumer has
	// handed out, closed when the consumer goes (consumers.go); guarded by
	// Store.mu.
	gone map[goneKey]chan struct{}
	// changed wakes subscribers when the stream's shard set or status
	// changes (a reshard's commit, DeleteStream, removal): closed and
	// dropped by wake, made by watch. Guarded by chMu, not Store.mu, so
	// watching needs no store lock.
	chMu    sync.Mutex
	changed chan struct{}
	// autoTurn counts the records placed by DistributionAuto: record n goes
	// to open shard n mod len(routes). A Put takes its turns in one atomic
	// step, so concurrent Puts never share a turn and a stream's records
	// spread evenly (a restart starts the count again).
	autoTurn atomic.Uint64
	// traffic counts each open shard's admitted writes for the on-demand
	// scaler (ondemand.go); the map is guarded by Store.mu, the counters are
	// atomic.
	traffic map[uint32]*traffic
	// keyMissing: the stream is encrypted but its master key was not in the
	// keyring when a shard opened, so that shard's new segments have no key;
	// writes are refused until healKey finds it (encryption.go).
	keyMissing atomic.Bool
}

// watch returns a channel closed at the stream's next metadata change. Call
// it before reading the metadata.
func (st *stream) watch() <-chan struct{} {
	st.chMu.Lock()
	defer st.chMu.Unlock()
	if st.changed == nil {
		st.changed = make(chan struct{})
	}
	return st.changed
}

// wake tells the stream's watchers that its metadata changed; call it after
// the change is visible.
func (st *stream) wake() {
	st.chMu.Lock()
	defer st.chMu.Unlock()
	if st.changed != nil {
		close(st.changed)
		st.changed = nil
	}
}

// DefaultSeqGroupSize is how many shards share a sequence counter: AWS
// numbers the records of shards 0-4 from one counter, 5-9 from the next, and
// so on. Captured from AWS responses (shards 0 and 1 shared one; the group
// size of five is the established model, not itself captured); unverified
// against the current service.
const DefaultSeqGroupSize = 5

// counter returns the sequence counter of the group of size shards that
// shard index i belongs to.
func (st *stream) counter(i uint32, size int) *shard.Counter {
	st.counterMu.Lock()
	defer st.counterMu.Unlock()
	g := i / uint32(size)
	c := st.counters[g]
	if c == nil {
		if st.counters == nil {
			st.counters = map[uint32]*shard.Counter{}
		}
		c = shard.NewCounter(firstOrdinal)
		st.counters[g] = c
	}
	return c
}

type route struct {
	rng     hashkey.Range
	index   uint32
	sh      *shard.Shard
	epoch   int64
	traffic *traffic
}

// rebuildRoutes makes a new routing table: Put uses the old one without the
// lock, so it is never modified in place.
func (st *stream) rebuildRoutes() {
	st.routes = nil
	for _, sm := range st.meta.Shards {
		if sm.Closed {
			delete(st.traffic, sm.Index)
			continue
		}
		st.routes = append(st.routes, route{rng: hashRangeOf(sm), index: sm.Index, sh: st.shards[sm.Index], epoch: sm.CreateSecs,
			traffic: st.trafficOf(sm.Index)})
	}
	sort.Slice(st.routes, func(i, j int) bool { return st.routes[i].rng.Start.Cmp(st.routes[j].rng.Start) < 0 })
}

// findRoute finds the open shard whose hash range holds k; rs is sorted by
// range start and the ranges do not overlap.
func findRoute(rs []route, k hashkey.Key) (route, bool) {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].rng.End.Cmp(k) >= 0 })
	if i < len(rs) && rs[i].rng.Contains(k) {
		return rs[i], true
	}
	return route{}, false
}

func hashRangeOf(sm shardMeta) hashkey.Range {
	a, _ := hashkey.Parse(sm.HashStart)
	b, _ := hashkey.Parse(sm.HashEnd)
	return hashkey.Range{Start: a, End: b}
}

func shardInfoOf(sm shardMeta) ShardInfo {
	si := ShardInfo{ID: shardID(sm.Index), Index: sm.Index, Parent: sm.Parent, AdjacentParent: sm.AdjParent, HashRange: hashRangeOf(sm),
		StartingSeq: seqnum.Seq{ShardCreateSecs: sm.CreateSecs, ShardIndex: sm.Index, ArrivalSecs: sm.CreateSecs}.String()}
	if sm.Closed {
		si.EndingSeq = seqnum.Seq{ShardCreateSecs: sm.CreateSecs, ShardIndex: sm.Index, Ordinal: seqnum.MaxOrdinal, ArrivalSecs: sm.ClosedMs / 1000}.String()
	}
	return si
}

func streamInfoOf(m *streamMeta, withShards bool) StreamInfo {
	si := StreamInfo{Name: m.Name, Created: time.Unix(0, m.CreatedNs), Status: m.Status, Mode: m.Mode, RetentionHours: m.RetentionHours, Tags: copyTags(m.Tags),
		ConsumerCount: len(m.Consumers), ChannelCount: len(m.Channels), Distribution: distributionOf(m), MaxRecordSizeKiB: recordSizeKiB(m),
		ShardLevelMetrics: append([]string{}, m.ShardLevelMetrics...), WarmMiBps: m.WarmMiBps,
		EncryptionType: EncryptionNone}
	if m.EncryptionType == EncryptionKMS {
		si.EncryptionType, si.KeyID = EncryptionKMS, m.KeyID
	}
	if withShards && m.Status != StatusCreating && !m.DeletedCreating {
		si.Shards = make([]ShardInfo, 0, len(m.Shards))
		for _, sm := range m.Shards {
			si.Shards = append(si.Shards, shardInfoOf(sm))
		}
	}
	return si
}

// distributionOf is m's record distribution strategy, never "".
func distributionOf(m *streamMeta) RecordDistribution {
	if m.Distribution == "" {
		return DistributionUserKey
	}
	return m.Distribution
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

func (s *Store) persist(m *streamMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.meta.PutStream(m.Name, b)
}

// loadStreams opens every stream in meta.db, recovering its shards, and
// resumes any status transition that was pending at the crash or shutdown.
func (s *Store) loadStreams(ctx context.Context) error {
	recs, err := s.meta.Streams()
	if err != nil {
		return err
	}
	for _, r := range recs {
		var m streamMeta
		if err := json.Unmarshal(r.Value, &m); err != nil {
			return fmt.Errorf("meta.db: stream %q: %w", r.Name, err)
		}
		st := &stream{name: m.Name, dir: m.Dir(), meta: &m, shards: map[uint32]*shard.Shard{}}
		if err := s.openShards(ctx, st); err != nil {
			return err
		}
		s.mu.Lock()
		s.streams[m.Name] = st
		s.mu.Unlock()
		if st.meta.Reshard != nil && !time.Unix(0, st.meta.PendingUntilNs).After(s.opts.Now()) {
			// UPDATING ended while the server was down: the reshard takes
			// effect before Open returns (a failure leaves it pending, retried).
			s.endUpdating(st)
			s.resumeLocking(st, false)
			continue
		}
		s.resumeLocking(st, true)
	}
	return nil
}

// resumeLocking resumes st's pending transitions (its status's, if pending,
// its consumers' and channels') under the store lock: the timers a resume
// schedules may fire at once, and their callbacks change st.meta under the
// lock while Open goes on resuming.
func (s *Store) resumeLocking(st *stream, pending bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pending {
		s.resumePending(st)
	}
	s.resumeConsumersLocked(st)
	s.resumeChannelsLocked(st)
}

// openShards recovers all of a stream's shards, a few at a time.
func (s *Store) openShards(ctx context.Context, st *stream) error {
	shards := st.meta.Shards
	opened := make([]*shard.Shard, len(shards))
	errs := make([]error, len(shards))
	forEachParallel(len(shards), openParallel, func(i int) {
		if errs[i] = ctx.Err(); errs[i] != nil {
			return
		}
		opened[i], errs[i] = s.openShard(st, st.meta, shards[i])
		if errs[i] != nil {
			errs[i] = fmt.Errorf("stream %s %s: %w", st.name, shardID(shards[i].Index), errs[i])
		}
	})
	for i, sh := range opened {
		if sh != nil {
			st.shards[shards[i].Index] = sh
		}
	}
	if err := errors.Join(errs...); err != nil {
		st.closeShards()
		return err
	}
	st.rebuildRoutes()
	return s.opts.FS.SyncDir(datadir.StreamPath(s.opts.Dir, st.dir))
}

// openParallel bounds the shards a stream opens at once: recovery reads
// files, and at start every stream opens in turn.
const openParallel = 4

// forEachParallel calls fn(0..n-1), at most limit at a time.
func forEachParallel(n, limit int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// openShard opens sm of st with the admission limits and the encryption m
// calls for. (m, not st.meta: a reshard opens children without the store
// lock.)
func (s *Store) openShard(st *stream, m *streamMeta, sm shardMeta) (*shard.Shard, error) {
	enc, err := s.encryptionOf(m)
	if err != nil {
		s.log.Error("the stream's master key is not in the keyring; writes are refused until it is", "stream", st.name, "error", err)
		st.keyMissing.Store(true)
	}
	key := datadir.IndexKey(st.dir, sm.Index)
	return shard.Open(shard.Options{
		FS: s.opts.FS, Dir: datadir.ShardPath(s.opts.Dir, key), IndexKey: key, ShardKey: datadir.ShardKey(key),
		Index: s.idx, Compressor: s.comp, Logger: s.log, Now: s.opts.Now,
		SegmentSize: s.opts.SegmentSize, SegmentAge: s.opts.SegmentAge, CacheWindow: s.opts.CacheWindow,
		Sync: s.opts.syncMode(), SyncInterval: s.opts.SyncInterval,
		ReadOnly: sm.Closed, FirstOrdinal: firstOrdinal, Counter: st.counter(sm.Index, s.opts.SeqGroupSize), Limits: s.limitsFor(m),
		Observer: s.opts.Observer, Keys: s.keys.Keys(), Encryption: enc, Rounds: s.rounds,
	})
}

func (st *stream) closeShards() error {
	var errs []error
	for _, sh := range st.shards {
		errs = append(errs, sh.Close())
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	return errors.Join(errs...)
}
