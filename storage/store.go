// Package storage is shardlog's engine: streams made of shards, stored under
// one data directory, recovered when opened. Package datadir defines the
// directory's layout and meta.db's records.
package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/shard"
	"github.com/shardlog/shardlog/vfs"
)

// Options configures a Store.
type Options struct {
	Dir string // data directory (a real directory: it holds LOCK and the bbolt files)
	FS  vfs.FS // where segment files live; vfs.OS{} in production

	AccountID   string
	ShardLimit  int           // account-wide open-shard limit; default DefaultShardLimit
	CreateDelay time.Duration // CREATING -> ACTIVE
	DeleteDelay time.Duration // DELETING -> gone
	UpdateDelay time.Duration // UPDATING -> ACTIVE
	// ConsumerDelay is how long a consumer stays CREATING, and DELETING.
	ConsumerDelay time.Duration
	// ChannelDelay is how long a channel stays CREATING, UPDATING and
	// DELETING.
	ChannelDelay time.Duration
	// ChannelAnyMode lets channels read PROVISIONED streams too; AWS
	// delivers only from ON_DEMAND streams.
	ChannelAnyMode bool
	// ScalingCallsPerDay limits UpdateShardCount calls per stream per rolling
	// 24 hours; default DefaultScalingCallsPerDay (10, as AWS).
	ScalingCallsPerDay int

	// Sync is the durability policy: "always" (default: acknowledge after
	// fdatasync) or "interval" (acknowledge after write; fdatasync every
	// SyncInterval; a power cut may lose that window).
	Sync         string
	SyncInterval time.Duration
	// SyncPerShard makes every shard fdatasync its own segment. By default
	// (false) shards whose syncs start together share one syncfs of the
	// data directory's filesystem (shard.SyncRounds explains the choice).
	SyncPerShard bool

	SegmentSize int64
	SegmentAge  time.Duration
	// CacheWindow is how many bytes of each shard's newest synced data are
	// left in the OS page cache; older pages are dropped once on disk.
	// 0 means 32 MiB; negative leaves the page cache to the kernel.
	CacheWindow    int64
	IndexInterval  time.Duration // index.db batch commit period; default 250ms
	RetentionEvery time.Duration // how often retention runs; default 1m

	// Throttle enforces Kinesis's per-shard rates (ratelimit.Kinesis), scaled
	// by ThrottleMultiplier (default 1), by a stream's
	// "shardlog.throughput-multiplier" tag, and for ON_DEMAND streams up to
	// the on-demand minimum of 4 shards' worth.
	Throttle           bool
	ThrottleMultiplier float64
	// InjectThrottleRate throttles this fraction of data-plane calls (and of
	// PutRecords records) at random, for testing clients' backoff.
	InjectThrottleRate float64
	// Observer, if set, is told of every shard's commits and fdatasyncs
	// (the server's engine metrics).
	Observer shard.Observer
	// Keyring holds the master keys of StartStreamEncryption (--keyring);
	// nil: a keyring without a file, so only alias/aws/kinesis resolves
	// (to a key generated in Dir).
	Keyring *keyring.Keyring

	// OnDemandStreamLimit is how many ON_DEMAND streams the account may
	// have; default DefaultOnDemandStreamLimit (50, as AWS).
	OnDemandStreamLimit int
	// OnDemand configures the on-demand scaler (ondemand.go).
	OnDemand ScalerOptions

	// SeqGroupSize is how many shards (by index: 0..n-1, n..2n-1, ...) share
	// a sequence counter; 0 means AWS's DefaultSeqGroupSize. 1 gives every
	// shard its own, so its ordinals depend on its own writes alone (the
	// fsck fixture's goldens need that: concurrent puts to several shards
	// interleave on a shared counter in no fixed order).
	SeqGroupSize int

	Logger hclog.Logger
	Now    func() time.Time
}

// Defaults for zero Options fields. Each has its one home here or in package
// shard; the server's flags and the api read them from here.
const (
	DefaultAccountID   = "000000000000"
	DefaultShardLimit  = 500
	DefaultSegmentSize = shard.DefaultSegmentSize
	DefaultSegmentAge  = shard.DefaultSegmentAge
	DefaultCacheWindow = shard.DefaultCacheWindow
	// DefaultOnDemandStreamLimit is AWS's default quota of ON_DEMAND streams
	// per account.
	DefaultOnDemandStreamLimit = 50
)

func (o *Options) setDefaults() error {
	if o.FS == nil {
		o.FS = vfs.OS{}
	}
	if o.AccountID == "" {
		o.AccountID = DefaultAccountID
	}
	if o.ShardLimit == 0 {
		o.ShardLimit = DefaultShardLimit
	}
	if o.OnDemandStreamLimit == 0 {
		o.OnDemandStreamLimit = DefaultOnDemandStreamLimit
	}
	o.OnDemand.setDefaults()
	if o.ScalingCallsPerDay == 0 {
		o.ScalingCallsPerDay = DefaultScalingCallsPerDay
	}
	if o.IndexInterval == 0 {
		o.IndexInterval = 250 * time.Millisecond
	}
	if o.ThrottleMultiplier == 0 {
		o.ThrottleMultiplier = 1
	}
	if o.ThrottleMultiplier < 0 || o.InjectThrottleRate < 0 || o.InjectThrottleRate > 1 {
		return fmt.Errorf("throttle multiplier must be positive and the injected throttle rate in [0, 1]")
	}
	if o.RetentionEvery == 0 {
		o.RetentionEvery = time.Minute
	}
	if o.SeqGroupSize <= 0 {
		o.SeqGroupSize = DefaultSeqGroupSize
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch o.Sync {
	case "", "always", "interval":
	default:
		return fmt.Errorf("unknown sync policy %q (want always or interval)", o.Sync)
	}
	return nil
}

func (o *Options) syncMode() shard.SyncMode {
	if o.Sync == "interval" {
		return shard.SyncInterval
	}
	return shard.SyncAlways
}

// Store is an open data directory.
type Store struct {
	opts   Options
	log    hclog.Logger
	lock   *datadir.Lock
	meta   *index.Meta
	idx    *index.Index
	comp   *segment.Compressor
	secret []byte
	keys   *keyring.Keyring
	// rounds lines up the fdatasyncs of every shard (shard.SyncRounds).
	rounds *shard.SyncRounds
	syncer vfs.Syncer // the shared rounds' syncfs handle; nil with SyncPerShard

	mu      sync.RWMutex
	streams map[string]*stream
	closed  bool
	// reservedEpoch is the newest epoch a reshard has given children, even
	// before its commit (beginEffectLocked), so no stream created meanwhile
	// takes it, or a CreateStream its shards, so a stream deleted and created
	// again in this process gets a new epoch; it only grows. Guarded by mu.
	reservedEpoch int64
	// recovery is what Open read, set before Open returns.
	recovery RecoveryStats

	// channels wakes the channel deliverers when any channel changes
	// (channels.go).
	channels watcher

	// scale is the on-demand scaler's memory (ondemand.go).
	scale scaler
	// account is the account's settings (account.go), guarded by acctMu,
	// which is never held while taking mu.
	acctMu  sync.Mutex
	account datadir.AccountRecord

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open locks and opens the data directory, recovering every shard before it
// returns.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Store{opts: opts, log: opts.Logger, streams: map[string]*stream{}, keys: opts.Keyring,
		scale: scaler{streams: map[*stream]*streamScale{}}}
	if s.keys == nil {
		var err error
		if s.keys, err = keyring.Open(keyring.Options{DataDir: opts.Dir, Account: opts.AccountID}); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.openFiles(); err != nil {
		s.closeFiles()
		return nil, err
	}
	start := time.Now() // the real clock: opts.Now may be a test's
	if err := s.loadStreams(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.recovery = s.recoveryStats(time.Since(start))
	s.every(s.opts.RetentionEvery, s.EnforceRetention) // trims expired segments
	if s.opts.OnDemand.Interval > 0 {
		s.every(s.opts.OnDemand.Interval, s.scaleTick) // the on-demand scaler (ondemand.go)
	}
	return s, nil
}

// every runs fn every d on a goroutine of its own until the store closes;
// Close waits for a run in progress.
func (s *Store) every(d time.Duration, fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

func (s *Store) openFiles() error {
	lock, err := datadir.LockExclusive(s.opts.Dir)
	if err != nil {
		return err
	}
	s.lock = lock
	if s.meta, err = index.OpenMeta(datadir.MetaPath(s.opts.Dir)); err != nil {
		return err
	}
	if s.secret, err = s.meta.Secret(); err != nil {
		return err
	}
	if err := s.loadAccount(); err != nil {
		return err
	}
	var rebuilt bool
	if s.idx, rebuilt, err = index.Open(datadir.IndexPath(s.opts.Dir), s.opts.IndexInterval); err != nil {
		return err
	}
	if rebuilt {
		s.log.Warn("index.db was unreadable; moved aside and rebuilding from segments")
	}
	if s.comp, err = segment.NewCompressor(); err != nil {
		return err
	}
	if err := s.opts.FS.MkdirAll(s.streamsDir()); err != nil {
		return err
	}
	if s.opts.SyncPerShard {
		s.rounds = shard.NewSyncRounds(nil)
		return nil
	}
	if s.syncer, err = s.opts.FS.OpenSyncer(s.streamsDir()); err != nil {
		return err
	}
	s.rounds = shard.NewSyncRounds(s.syncer)
	return nil
}

// recoveryStats sums what opening every shard read.
func (s *Store) recoveryStats(d time.Duration) RecoveryStats {
	out := RecoveryStats{Duration: d}
	s.mu.RLock() // timers resumed by loadStreams may already be changing streams
	defer s.mu.RUnlock()
	for _, st := range s.streams {
		for _, sh := range st.shards {
			r := sh.Recovery()
			out.TrustedSegments += r.Trusted
			out.ScannedSegments += r.Scanned
			out.ScannedBytes += r.ScannedBytes
		}
	}
	return out
}

// ErrLocked means another process holds the data directory.
var ErrLocked = datadir.ErrLocked

func (s *Store) streamsDir() string { return datadir.StreamsPath(s.opts.Dir) }

// IteratorKey is the 32-byte secret persisted in meta.db that signs shard
// iterators and pagination tokens.
func (s *Store) IteratorKey() []byte { return s.secret }

// isClosed reports whether Close has begun: a shard closed since then was
// closed by the shutdown, not by a reshard.
func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// ShardLimit is the account's open-shard limit, which DescribeLimits reports.
func (s *Store) ShardLimit() int { return s.opts.ShardLimit }

// OnDemandStreamLimit is the account's limit of ON_DEMAND streams, which
// DescribeLimits reports.
func (s *Store) OnDemandStreamLimit() int { return s.opts.OnDemandStreamLimit }

// AccountID is the account every stream belongs to.
func (s *Store) AccountID() string { return s.opts.AccountID }

// Close stops background work, drains and syncs every shard, flushes the
// index and releases the directory.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	streams := make([]*stream, 0, len(s.streams))
	var reshards []chan struct{}
	for _, st := range s.streams {
		st.closeGoneLocked("") // subscriptions end before the shards close
		streams = append(streams, st)
		if st.resharding != nil {
			reshards = append(reshards, st.resharding)
		}
	}
	s.mu.Unlock()
	s.channels.wake()             // deliverers stop
	for _, ch := range reshards { // a reshard taking effect before Close commits or undoes itself
		<-ch
	}
	s.cancel()
	s.wg.Wait()
	var errs []error
	for _, st := range streams {
		errs = append(errs, st.closeShards())
	}
	errs = append(errs, s.closeFiles())
	return errors.Join(errs...)
}

func (s *Store) closeFiles() error {
	var errs []error
	if s.idx != nil {
		errs = append(errs, s.idx.Close())
	}
	if s.meta != nil {
		errs = append(errs, s.meta.Close())
	}
	if s.comp != nil {
		s.comp.Close()
	}
	if s.syncer != nil {
		errs = append(errs, s.syncer.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Release())
	}
	return errors.Join(errs...)
}

// sortedStreams returns the open streams in name order.
func (s *Store) sortedStreams() []*stream {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
