package shard

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
)

// Entry is one record to append.
type Entry struct {
	PartitionKey string
	Data         []byte
}

// Appended is the outcome of one Append: entry i got ordinal First+i.
type Appended struct {
	First     uint64
	ArrivalMs int64
	// Encrypted: the entries were written to an encrypted segment.
	Encrypted bool
}

type appendReq struct {
	entries  []Entry
	minFirst uint64 // the first ordinal must be at least this (SequenceNumberForOrdering)
	size     int
	res      Appended
	err      error
	done     chan struct{}
}

// Append queues entries for the writer and waits until they are acknowledged:
// under SyncAlways, until the frame holding them is on disk. The entries get
// consecutive ordinals, the first at least minFirst. If ctx ends first, the
// entries may still be stored; the caller just stops waiting.
func (s *Shard) Append(ctx context.Context, entries []Entry, minFirst uint64) (Appended, error) {
	s.mu.RLock()
	err := s.writableLocked()
	s.mu.RUnlock()
	if err != nil {
		return Appended{}, err
	}
	req := &appendReq{entries: entries, minFirst: minFirst, done: make(chan struct{})}
	for _, e := range entries {
		req.size += len(e.PartitionKey) + len(e.Data) + 16
	}
	if s.beforeEnqueue != nil {
		s.beforeEnqueue()
	}
	if err := s.enqueue(ctx, req); err != nil {
		return Appended{}, err
	}
	select {
	case <-req.done:
		return req.res, req.err
	case <-ctx.Done():
		return Appended{}, ctx.Err()
	}
}

// enqueue hands req to the writer. Close flips stopping under sendMu before
// it stops the writer, and the writer answers everything queued before it
// exits, so a request that gets in is always answered and one that does not
// gets ErrClosed. (A bare select on quit could pick the send after the
// writer's last drain and leave the caller waiting forever.)
func (s *Shard) enqueue(ctx context.Context, req *appendReq) error {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if s.stopping {
		return ErrClosed
	}
	select {
	case s.reqs <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Shard) writableLocked() error {
	switch {
	case s.corrupt != nil:
		return fmt.Errorf("%w: %v", ErrReadOnly, s.corrupt)
	case s.werr != nil:
		return fmt.Errorf("%w: %v", ErrReadOnly, s.werr)
	case s.closed || s.quit == nil:
		return ErrClosed
	}
	return nil
}

func (s *Shard) startWriter() {
	s.reqs = make(chan *appendReq, 1024)
	s.quit = make(chan struct{})
	s.done = make(chan struct{})
	s.wNext, s.wTs = s.next, s.lastTs
	s.cache = cacheWindow{fs: s.opts.FS, obs: s.opts.Observer, limit: s.opts.CacheWindow}
	if s.opts.Sync == SyncAlways {
		s.inflight = make(chan *flight, maxInflight)
		s.syncDone = make(chan struct{})
		go s.syncLoop()
	}
	go s.run()
}

// run is the writer goroutine: take one request, drain every other queued
// one up to the frame cap, write them as one frame, sync once, acknowledge all.
func (s *Shard) run() {
	defer close(s.done)
	defer s.stopSyncer()
	tick := time.NewTicker(s.tickEvery())
	defer tick.Stop()
	var held *appendReq
	for {
		first := held
		held = nil
		if first == nil {
			select {
			case first = <-s.reqs:
			case <-tick.C:
				s.onTick()
				continue
			case <-s.quit:
				s.drainOnQuit()
				return
			}
		}
		batch := []*appendReq{first}
		batch, held = s.gather(batch)
		s.commit(batch)
	}
}

func (s *Shard) tickEvery() time.Duration {
	if s.opts.Sync == SyncInterval {
		return s.opts.SyncInterval
	}
	return time.Second
}

// gather drains queued requests without waiting, up to MaxFrameBytes. A
// request that would overflow the frame is held for the next one.
func (s *Shard) gather(batch []*appendReq) ([]*appendReq, *appendReq) {
	size := batch[0].size
	for {
		select {
		case r := <-s.reqs:
			if size+r.size > s.opts.MaxFrameBytes {
				return batch, r
			}
			size += r.size
			batch = append(batch, r)
		default:
			return batch, nil
		}
	}
}

// drainOnQuit commits everything already queued, so a graceful shutdown
// acknowledges what it accepted.
func (s *Shard) drainOnQuit() {
	for {
		select {
		case r := <-s.reqs:
			batch, held := s.gather([]*appendReq{r})
			s.commit(batch)
			if held != nil {
				s.commit([]*appendReq{held})
			}
		default:
			return
		}
	}
}

func (s *Shard) onTick() {
	if s.writerErr() != nil {
		return
	}
	// Frames acknowledged under SyncInterval are synced on time even while
	// the disk is full: Sync still works after the failed write.
	if s.opts.Sync == SyncInterval && s.w != nil && s.w.Committed() < s.w.Size() {
		if err := s.timedSync(s.w.Sync); err != nil {
			s.poison(err)
			return
		}
		s.afterIntervalSync()
	}
	if s.full {
		return
	}
	s.mu.RLock()
	active := s.segs[len(s.segs)-1]
	old := active.frames > 0 && s.opts.Now().Sub(active.created) >= s.opts.SegmentAge
	s.mu.RUnlock()
	if old {
		if err := s.roll(); err != nil && !s.enterFull(err) {
			s.poison(err)
		}
	}
}

func (s *Shard) commit(batch []*appendReq) {
	if err := s.writerErr(); err != nil {
		s.reply(batch, fmt.Errorf("%w: %v", ErrReadOnly, err))
		return
	}
	if s.full && !s.leaveFull() {
		s.reply(batch, ErrDiskFull)
		return
	}
	recs, next, ts := s.assign(batch)
	raw := 0
	for _, r := range batch {
		raw += r.size
	}
	if s.modeChanged() || s.w.Size()+int64(raw)+segment.FrameHeaderSize > s.opts.SegmentSize && s.w.Size() > s.w.Header().Size() {
		if err := s.roll(); err != nil {
			s.fail(batch, err)
			return
		}
	}
	fi, err := s.w.Append(recs)
	if err != nil {
		s.fail(batch, err)
		return
	}
	s.wNext, s.wTs = next, ts
	for _, r := range batch {
		r.res.Encrypted = fi.Sealed
	}
	s.opts.Observer.Committed(int(fi.Count), int(fi.RawLen), int(fi.StoredLen))
	fl := &flight{batch: batch, sg: s.activeSeg(), fi: fi, next: next, ts: ts}
	if s.inflight != nil {
		s.inflight <- fl // the syncer acknowledges it after its fdatasync
		return
	}
	s.publish(fl) // SyncInterval: acknowledged on write
	s.reply(batch, nil)
}

// fail answers a batch whose write (or roll) failed. Running out of space is
// recoverable; any other failure poisons the shard.
func (s *Shard) fail(batch []*appendReq, err error) {
	if s.enterFull(err) {
		s.reply(batch, fmt.Errorf("%w: %v", ErrDiskFull, err))
		return
	}
	s.poison(err)
	s.reply(batch, fmt.Errorf("%w: %v", ErrReadOnly, err))
}

// enterFull makes the shard refuse writes until leaveFull can start a new
// segment, if err is a lack of space (a failed write, or a roll that could
// not create its segment). It reports whether it did. A sync that failed for
// lack of space is sticky in the Writer, so leaveFull's sync poisons the
// shard then.
func (s *Shard) enterFull(err error) bool {
	if !errors.Is(err, syscall.ENOSPC) {
		return false
	}
	s.log.Warn("disk full; refusing writes until space is freed", "error", err)
	s.full = true
	return true
}

// leaveFull tries to resume writing after ENOSPC. Every frame before the
// failed one is settled first (acknowledged or failed); the active segment
// is cut back to the last published frame, because a failed write may have
// left part of a frame behind it; then a new segment is started. The
// ordinals the failed batch took are reused (with a shared Counter, only as
// far as the counter gives them again): it was never acknowledged.
// It reports whether the shard can write again.
func (s *Shard) leaveFull() bool {
	s.barrier()
	if s.writerErr() != nil {
		return false
	}
	if s.w != nil && !s.cutAfterFull() {
		return false
	}
	s.wNext, s.wTs = s.writtenFloor()
	w, sg, err := s.createSegment()
	if err != nil {
		return false
	}
	s.w = w
	s.mu.Lock()
	s.segs = append(s.segs, sg)
	s.mu.Unlock()
	s.full = false
	s.log.Info("space is available again; writes resume", "segment", sg.path)
	return true
}

// cutAfterFull settles the segment a failed write left behind: the frames
// acknowledged before it are synced (SyncInterval acknowledges on write), and
// the file is cut back to them. Either failing poisons the shard: a failed
// fsync is never retried, and a half frame left inside a segment that is no
// longer the newest would read as corruption at the next start; a restart's
// recovery cuts it. It reports whether writing may go on.
func (s *Shard) cutAfterFull() bool {
	if err := s.w.Sync(); err != nil {
		s.poison(err)
		return false
	}
	s.afterIntervalSync()
	active := s.activeSeg()
	s.mu.RLock()
	end := active.end
	s.mu.RUnlock()
	if err := s.truncateIfLonger(active.path, end); err != nil {
		s.poison(fmt.Errorf("cut %s back to %d after disk full: %w", active.path, end, err))
		return false
	}
	s.w.Close()
	s.w = nil
	return true
}

// writtenFloor is the next ordinal and arrival floor as published.
func (s *Shard) writtenFloor() (uint64, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.next, s.lastTs
}

func (s *Shard) writerErr() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.werr
}

func (s *Shard) activeSeg() *seg {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.segs[len(s.segs)-1]
}

// assign gives every entry its ordinal and arrival time, from the shared
// Counter if there is one; either way each request's first ordinal is at
// least the shard's next and its minFirst. Arrival never goes
// backwards within a shard, even if the clock does, so time ranges of frames
// and segments stay sorted.
func (s *Shard) assign(batch []*appendReq) ([]segment.Record, uint64, int64) {
	ts := max(s.opts.Now().UnixMilli(), s.wTs)
	next := s.wNext
	n := 0
	for _, r := range batch {
		n += len(r.entries)
	}
	recs := make([]segment.Record, 0, n)
	for _, r := range batch {
		next = max(next, r.minFirst)
		if s.opts.Counter != nil {
			// One take per request: its entries stay consecutive, and
			// requests to other shards of the group fall in between.
			next = s.opts.Counter.Take(next, len(r.entries))
		}
		r.res = Appended{First: next, ArrivalMs: ts}
		for _, e := range r.entries {
			recs = append(recs, segment.Record{Seq: next, ArrivalMs: ts, PartitionKey: e.PartitionKey, Data: e.Data})
			next++
		}
	}
	return recs, next, ts
}

// publish makes a frame visible to readers and, once synced, to the index.
// It runs in the goroutine that acknowledges: the syncer under SyncAlways,
// the writer under SyncInterval.
func (s *Shard) publish(fl *flight) {
	fi, sg := fl.fi, fl.sg
	s.mu.Lock()
	if sg.frames == 0 {
		sg.minTs = fi.MinTs
	}
	sg.lastSeq, sg.maxTs = fi.LastSeq, fi.MaxTs
	sg.end = fi.Offset + fi.Size()
	sg.frames++
	sg.recs += int64(fi.Count)
	s.next, s.lastTs = fl.next, fl.ts
	var sk *index.Seek
	if sg.frames == 1 || s.sinceSeek >= s.opts.SeekInterval {
		sk = &index.Seek{Seq: fi.FirstSeq, SegID: sg.id, Offset: fi.Offset, Ts: fi.MinTs}
		sg.seeks = append(sg.seeks, *sk)
		s.sinceSeek = 0
	}
	s.sinceSeek += fi.Size()
	s.mu.Unlock()
	s.wake(false) // after the tip moved: a waiter that re-reads sees it
	if sk != nil && s.opts.Sync == SyncAlways {
		s.opts.Index.Submit(index.Update{Shard: s.opts.IndexKey, Seeks: []index.Seek{*sk}})
	}
}

// flushSeeks submits the active segment's seek points after an interval
// sync; under SyncInterval they must wait for the bytes they point at.
func (s *Shard) flushSeeks() {
	s.mu.RLock()
	active := s.segs[len(s.segs)-1]
	upd := index.Update{Shard: s.opts.IndexKey, Seeks: append([]index.Seek(nil), active.seeks...)}
	s.mu.RUnlock()
	s.opts.Index.Submit(upd)
}

func (s *Shard) reply(batch []*appendReq, err error) {
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

// poison makes the writer refuse all further writes. A failed fsync is never
// retried: the kernel may already have dropped the dirty pages, so only a
// restart, which re-reads the disk, can say what is durable.
func (s *Shard) poison(err error) {
	s.log.Error("shard writer failed; refusing writes until restart", "error", err)
	s.mu.Lock()
	if s.werr == nil { // the first failure is the cause
		s.werr = err
	}
	s.mu.Unlock()
}

// roll seals the active segment (already synced) and starts a new one.
func (s *Shard) roll() error {
	// Every frame of the old segment must be acknowledged (or failed) before
	// the segment is sealed and the sequence floor of the next one is taken.
	s.barrier()
	if err := s.writerErr(); err != nil {
		return err
	}
	if err := s.w.Sync(); err != nil {
		return err
	}
	s.afterIntervalSync()
	w, sg, err := s.createSegment()
	if err != nil {
		return err
	}
	w.AdoptHistory(s.w)
	s.w.Close()
	s.w = w
	s.mu.Lock()
	sealed := s.segs[len(s.segs)-1]
	s.segs = append(s.segs, sg)
	upd := index.Update{Shard: s.opts.IndexKey, Segments: []index.Segment{sealed.catalog(), sg.catalog()}}
	s.mu.Unlock()
	s.opts.Index.Submit(upd)
	return nil
}

// afterIntervalSync does under SyncInterval what the syncer does after each
// fdatasync under SyncAlways: index the synced seek points and let the cache
// window see the synced bytes.
func (s *Shard) afterIntervalSync() {
	if s.opts.Sync == SyncInterval {
		s.flushSeeks()
		s.cache.synced(s.w.Path(), s.w.Committed())
	}
}

// SetEncryption sets the master key of the segments the shard starts from
// now on; nil makes them plaintext. Each segment has one mode: the writer
// rolls the active segment before its next append if the active one's mode
// or master key differs, so every record appended after SetEncryption
// returns is stored as it says.
func (s *Shard) SetEncryption(m *segment.MasterKey) {
	if m != nil {
		m = new(*m)
	}
	s.enc.Store(m)
}

// modeChanged reports whether the active segment's encryption differs from
// what SetEncryption asked for. Writer goroutine only.
func (s *Shard) modeChanged() bool {
	m, h := s.enc.Load(), s.w.Header()
	if m == nil {
		return h.Encrypted()
	}
	return !h.Encrypted() || h.Key.Master != m.ID
}
