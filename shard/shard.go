// Package shard is one shard's log: a directory of segment files, one writer
// goroutine doing group commit, readers bounded by what that writer has
// published, recovery when the shard is opened, and retention.
//
// Ownership: the writer goroutine alone appends, syncs, rolls and assigns
// ordinals and arrival times. It publishes each synced frame under mu, and
// readers see only published state. Trim removes whole old segments and
// never touches the active one.
//
// # Syncs shared across shards (issue 16)
//
// The segments stay the only durable copy; what shards share is the sync.
// A store-wide SyncRounds (rounds.go) starts the shards' syncs in rounds: a
// shard whose sync finds a round running waits, then syncs every frame its
// writer wrote meanwhile. A round of one shard fdatasyncs its segment; the
// shards that waited together share one syncfs of the filesystem, run once
// every one of them has drained its frames. rounds.go gives the numbers that
// chose syncfs over the other options (a shared journal, parallel
// fdatasyncs, sync_file_range); BENCHMARKS.md "Shared syncs" has the A/B
// runs of `make bench-server`. In short: an fdatasync costs about 100 µs of
// CPU on this project's VM (journal commit and device flush, per file), and
// with 64 PutRecord clients on 256 shards a shard rarely has a second record
// waiting, so per-shard syncs stayed at 1.1 records each; one syncfs per
// round covers about 11 records there.
//
// Measured and not taken: syncing a small frame on the writer goroutine
// when the syncer is idle (one goroutine hand-off less per frame) lost (4
// shards 110 -> 118 µs, 256 shards 171 -> 186, medians of three).
package shard

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

var (
	// ErrReadOnly means the shard refuses writes: it was found corrupt at open,
	// or a failed write or fsync poisoned its writer. Restart (after fsck
	// repair, if corrupt) to write again.
	ErrReadOnly = errors.New("shard is read-only")
	// ErrClosed means the shard was closed (shutdown, or a closed parent shard).
	ErrClosed = errors.New("shard is closed")
	// ErrDiskFull means a write found no space. Nothing acknowledged is
	// affected, and writes resume by themselves once space is freed.
	ErrDiskFull = errors.New("no space left on device")
)

// SyncMode is the durability policy of acknowledgements.
type SyncMode int

const (
	// SyncAlways acknowledges a record only after the frame holding it has been
	// fdatasync'd. The default.
	SyncAlways SyncMode = iota
	// SyncInterval acknowledges after the write and fdatasyncs at most every
	// Options.SyncInterval: a power cut can lose up to that window of
	// acknowledged records. Never the default.
	SyncInterval
)

// Options configures a shard.
type Options struct {
	FS         vfs.FS
	Dir        string // the shard's own directory
	IndexKey   string // the shard's key in index.db
	ShardKey   uint64 // written to segment headers to catch misplaced files
	Index      *index.Index
	Compressor *segment.Compressor
	Logger     hclog.Logger
	Now        func() time.Time

	SegmentSize   int64         // roll when the active segment would exceed this; default 64 MiB
	SegmentAge    time.Duration // roll a non-empty segment this old; default 1h
	SeekInterval  int64         // stored bytes between sparse seek points; default 64 KiB
	MaxFrameBytes int           // group-commit cap on a frame's raw size; default 4 MiB
	Sync          SyncMode
	SyncInterval  time.Duration
	// CacheWindow is how many bytes of the newest synced data the shard
	// leaves in the OS page cache; older synced pages are dropped (see
	// cacheWindow). 0 means the default, 32 MiB; negative never drops.
	CacheWindow int64

	// ReadOnly opens a closed shard: it is recovered and readable, but gets no
	// writer and no new segment.
	ReadOnly bool
	// FirstOrdinal is the ordinal of a brand-new shard's first record.
	FirstOrdinal uint64
	// Counter, if set, is shared with other shards, and the writer takes
	// its ordinals from it (see Counter); nil: the shard counts alone,
	// without gaps but those SequenceNumberForOrdering makes.
	Counter *Counter
	// Limits are the shard's admission rates; nil means unlimited.
	Limits *ratelimit.Limits
	// Rounds, if set, is shared with other shards and lines up their
	// fdatasyncs (SyncRounds); nil: each shard syncs on its own schedule.
	Rounds *SyncRounds
	// Observer, if set, is told of commits and fdatasyncs (metrics).
	Observer Observer
	// Keys finds the master keys of encrypted segments, to read them;
	// nil: encrypted segments cannot be read (their headers and CRCs can).
	Keys segment.Keys
	// Encryption is the master key of the segments the shard starts; nil:
	// plaintext. SetEncryption changes it.
	Encryption *segment.MasterKey
}

// Defaults for zero Options fields; the server's flags use them too.
const (
	DefaultSegmentSize = 64 << 20
	DefaultSegmentAge  = time.Hour
	DefaultCacheWindow = 32 << 20
)

func (o *Options) setDefaults() {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = DefaultSegmentAge
	}
	if o.SeekInterval == 0 {
		o.SeekInterval = 64 << 10
	}
	if o.MaxFrameBytes == 0 {
		o.MaxFrameBytes = 4 << 20
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 50 * time.Millisecond
	}
	if o.CacheWindow == 0 {
		o.CacheWindow = DefaultCacheWindow
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// Shard is an open shard.
type Shard struct {
	opts Options
	log  hclog.Logger

	mu        sync.RWMutex
	segs      []*seg // ordered by firstSeq; while writable, the last is active
	next      uint64 // next ordinal to assign, as published
	lastTs    int64  // newest published arrival time
	corrupt   error  // set at open: read-only, serving what is readable
	werr      error  // sticky writer error
	closed    bool
	nextSeg   uint64 // next segment ID
	trimMu    sync.Mutex
	reqs      chan *appendReq
	quit      chan struct{}
	done      chan struct{}
	w         *segment.Writer // writer goroutine only
	wNext     uint64          // writer goroutine only: next ordinal to assign
	wTs       int64           // writer goroutine only: newest arrival assigned
	full      bool            // writer goroutine only: out of space; s.w must be replaced
	inflight  chan *flight    // SyncAlways: written frames awaiting the syncer
	syncDone  chan struct{}
	sinceSeek int64       // publishing goroutine only: stored bytes since the last seek point
	cache     cacheWindow // publishing goroutine only

	adm atomic.Pointer[ratelimit.Shard]   // nil: unlimited
	enc atomic.Pointer[segment.MasterKey] // of new segments; nil: plaintext

	stopMu   sync.Mutex   // serializes stopping the writer (Close, Seal); guards quit's writes with mu
	sendMu   sync.RWMutex // held shared while queueing an append, exclusively by Close
	stopping bool         // under sendMu: no more appends may be queued

	// changed is the channel Changed hands out: closed (and dropped, so the
	// next Changed makes a new one) when the published tip moves or the
	// writer stops; nil while nobody waits, so a shard without subscribers
	// pays nothing. ended: the shard is closed, and changed stays closed.
	chMu    sync.Mutex
	changed chan struct{}
	ended   bool
	frames  frameCache // decoded newest frames shared by ReadShared's callers

	recovery Recovery // set by Open, read-only afterwards

	beforeEnqueue func() // test hook: runs between an append's checks and its queueing
}

// Changed returns a channel that is closed when the shard's acknowledged
// (published, and under SyncAlways durable) tip next moves, or when the
// shard is sealed, unsealed or closed. Call it again after each wake-up
// (close-and-replace); after Close it returns a closed channel. Call it
// before reading the tip, so a move between the two is never missed. It
// costs the writer one channel close per frame, and only while someone
// waits.
func (s *Shard) Changed() <-chan struct{} {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
		if s.ended {
			close(s.changed)
		}
	}
	return s.changed
}

// wake closes the channel Changed handed out, if any. final (Close) keeps
// every later Changed closed.
func (s *Shard) wake(final bool) {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	if s.ended {
		return
	}
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = nil
	s.ended = final
}

// Admission is the shard's admission controller, or nil if it is unlimited.
// Callers ask it before appending or reading; the shard itself never
// refuses for rate.
func (s *Shard) Admission() *ratelimit.Shard { return s.adm.Load() }

// SetLimits replaces the admission controller (its budget starts full); nil
// removes it.
func (s *Shard) SetLimits(l *ratelimit.Limits) {
	if l == nil {
		s.adm.Store(nil)
		return
	}
	s.adm.Store(ratelimit.NewShard(*l))
}

// seg is one segment file. Its mutable fields are guarded by Shard.mu.
type seg struct {
	id, firstSeq uint64
	path         string
	created      time.Time
	// seqFloor: the header has segment.FlagSeqFloor, so a gap before firstSeq
	// is a declared loss, not a missing segment (checkChain), if it is
	// floorGap seqs long (the header's FloorGap; 0: any length).
	seqFloor bool
	floorGap uint32

	lastSeq      uint64
	minTs, maxTs int64
	end          int64 // readable end: committed bytes (or the last good byte if corrupt)
	frames, recs int64
	seeks        []index.Seek // append-only

	refs    int
	reader  *segment.Reader
	removed bool
}

// nextAfter is the first ordinal the following segment must start at.
func (s *seg) nextAfter() uint64 {
	if s.frames == 0 {
		return s.firstSeq
	}
	return s.lastSeq + 1
}

func (s *seg) catalog() index.Segment {
	return index.Segment{ID: s.id, FirstSeq: s.firstSeq, LastSeq: s.lastSeq, MinTs: s.minTs, MaxTs: s.maxTs,
		End: s.end, Frames: s.frames, Records: s.recs}
}

// Failed returns the error that stopped the shard's writer for good (a
// failed fsync or write), or nil. Only a restart lifts it.
func (s *Shard) Failed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.werr
}

// Corrupt returns the corruption found at open, or nil.
func (s *Shard) Corrupt() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.corrupt
}

// Tip describes the newest published record.
type Tip struct {
	Next    uint64 // the next ordinal the writer would assign
	LastTs  int64  // arrival of the newest record (ms); 0 if none
	FirstTs int64  // arrival of the oldest stored record (ms); 0 if none
	Empty   bool
}

// Tip returns the shard's published tip.
func (s *Shard) Tip() Tip {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := Tip{Next: s.next, LastTs: s.lastTs, Empty: true}
	for _, sg := range s.segs {
		if sg.frames > 0 {
			t.FirstTs, t.Empty = sg.minTs, false
			break
		}
	}
	return t
}

// Segments returns the catalog entries of the shard's live segments.
func (s *Shard) Segments() []index.Segment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]index.Segment, len(s.segs))
	for i, sg := range s.segs {
		out[i] = sg.catalog()
	}
	return out
}

func (s *Shard) segPath(firstSeq, id uint64) string {
	return filepath.Join(s.opts.Dir, segment.FileName(firstSeq, id))
}

// acquire pins sg's reader open until release.
func (s *Shard) acquire(sg *seg) (*segment.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sg.removed {
		return nil, fmt.Errorf("segment %s: %w", sg.path, ErrClosed)
	}
	if sg.reader == nil {
		r, err := segment.OpenReaderWithKeys(s.opts.FS, sg.path, s.opts.Compressor, s.opts.Keys)
		if err != nil {
			return nil, err
		}
		sg.reader = r
	}
	sg.refs++
	return sg.reader, nil
}

func (s *Shard) release(sg *seg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sg.refs--
	s.maybeCloseReaderLocked(sg)
}

func (s *Shard) maybeCloseReaderLocked(sg *seg) {
	if sg.refs == 0 && sg.removed && sg.reader != nil {
		sg.reader.Close()
		sg.reader = nil
	}
}

// Close stops the writer after it has committed every queued append, syncs,
// submits the final catalog entries to the index, and closes files.
func (s *Shard) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.stopWriter()
	defer s.wake(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range s.segs {
		sg.removed = true
		s.maybeCloseReaderLocked(sg)
	}
	if err == nil && s.werr == nil {
		s.opts.Index.Submit(s.catalogLocked())
	}
	return err
}

// Seal turns a writable shard into a read-only one in place, as a reshard
// does to the shards it closes: the writer commits every queued append and
// stops, the active segment is synced (a failed sync poisons the shard and
// is returned), and the final catalog goes to the index. Readers keep reading throughout, and nothing is re-read from disk,
// which reopening with ReadOnly would do (a CRC scan of the whole active
// segment). Later Appends get ErrClosed. Sealing a shard without a writer
// does nothing.
func (s *Shard) Seal() error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := s.stopWriter()
	defer s.wake(false) // waiters re-read: the tip is final unless Unseal
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.werr != nil {
		err = fmt.Errorf("%w: %v", ErrReadOnly, s.werr) // poisoned earlier: not sealed cleanly
	}
	if err == nil {
		s.opts.Index.Submit(s.catalogLocked())
	}
	return err
}

// Unseal undoes Seal after a reshard failed before its commit: the writer
// starts again on the same handle, with nothing re-read from disk, and its
// first append starts a new segment, exactly as after a full disk; so if the
// disk is still full, writes are refused only until space is freed, and
// reads never stop. A shard whose writer failed stays sealed: a failed fsync
// is never retried before a restart.
func (s *Shard) Unseal() error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.werr != nil:
		return fmt.Errorf("%w: %v", ErrReadOnly, s.werr)
	case s.corrupt != nil:
		return fmt.Errorf("%w: %v", ErrReadOnly, s.corrupt)
	case s.quit != nil:
		return nil // not sealed
	}
	s.full = true // no active segment: the first commit creates one (leaveFull)
	// The new request channel exists before appends may be queued again
	// (enqueue reads it under sendMu, after seeing stopping false).
	s.startWriter()
	s.sendMu.Lock()
	s.stopping = false
	s.sendMu.Unlock()
	s.wake(false)
	return nil
}

// stopWriter stops the writer, if there is one, after it has answered every
// queued append, and syncs and closes the active segment. No append can be
// queued once it starts (see enqueue). Only the first call does anything;
// afterwards quit is nil, so writableLocked answers ErrClosed.
func (s *Shard) stopWriter() error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.quit == nil {
		return nil
	}
	s.sendMu.Lock()
	s.stopping = true
	s.sendMu.Unlock()
	close(s.quit)
	<-s.done
	var err error
	if s.w != nil {
		// Also when the disk is full: Sync still covers the whole frames
		// before the failed write, which SyncInterval acknowledged. A failure
		// poisons the shard, so neither Close nor Seal submits a catalog
		// that claims the frames, and a reshard does not reopen it writable.
		if err = s.w.Sync(); err != nil {
			s.poison(err)
		} else if s.opts.Sync == SyncInterval {
			s.flushSeeks()
		}
		s.w.Close()
		s.w = nil
	}
	s.mu.Lock()
	s.quit = nil
	s.mu.Unlock()
	return err
}

func (s *Shard) catalogLocked() index.Update {
	upd := index.Update{Shard: s.opts.IndexKey}
	for _, sg := range s.segs {
		upd.Segments = append(upd.Segments, sg.catalog())
	}
	return upd
}
