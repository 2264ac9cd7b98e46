package shard

import (
	"fmt"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// maxInflight bounds the frames written but not yet synced. A small bound
// keeps frames large: while the syncer is busy, requests queue and the next
// frame takes all of them.
const maxInflight = 4

// flight is a frame that has been written but not yet acknowledged.
type flight struct {
	batch   []*appendReq
	sg      *seg
	fi      segment.FrameInfo
	next    uint64
	ts      int64
	barrier chan struct{} // a marker: closed once every earlier flight is settled
}

// syncLoop is the second half of the pipeline under SyncAlways: while the
// writer encodes and writes frame N+1, this goroutine fdatasyncs frame N and
// acknowledges it. Every flight it takes is acknowledged only after an
// fdatasync that began after the flight's write returned, so an ack still
// means "on disk". It syncs through its own descriptor of the active segment:
// fdatasync flushes the file, whichever descriptor asks.
//
// After any failure it acknowledges nothing more: a later fdatasync that
// succeeds proves nothing about pages the kernel already dropped.
func (s *Shard) syncLoop() {
	defer close(s.syncDone)
	var f vfs.File
	var fileOf *seg
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var held *flight
	for {
		fl := held
		held = nil
		if fl == nil {
			var ok bool
			if fl, ok = <-s.inflight; !ok {
				return
			}
		}
		if fl.barrier != nil {
			// Rolls and disk-full recovery send a barrier before they switch
			// segments: letting go of the descriptor here keeps an idle
			// shard from holding a segment that retention deletes later.
			if f != nil {
				f.Close()
				f, fileOf = nil, nil
			}
			close(fl.barrier)
			continue
		}
		group := []*flight{fl}
		group, held = s.drainFlights(group)
		// Wait for this sync's round (rounds.go); frames the writer wrote
		// meanwhile join the group, as long as no barrier came first. The
		// flights all precede the sync, so its ack still covers them.
		rd := s.opts.Rounds.join()
		if held == nil {
			group, held = s.drainFlights(group)
		}
		var err error
		if fileOf != fl.sg {
			if f != nil {
				f.Close()
			}
			if f, err = s.opts.FS.Open(fl.sg.path); err != nil {
				f, fileOf = nil, nil
			} else {
				fileOf = fl.sg
			}
		}
		if err == nil {
			err = s.opts.Rounds.sync(rd, f.Sync, s.timedSync)
		} else {
			s.opts.Rounds.sync(rd, nil, s.timedSync) // the round's syncfs waits for every member
		}
		s.opts.Rounds.leave()
		s.settle(group, err)
	}
}

// drainFlights takes every flight already queued, stopping at a barrier
// (held for the next round, so the flights before it settle first).
func (s *Shard) drainFlights(group []*flight) ([]*flight, *flight) {
	for {
		select {
		case fl, ok := <-s.inflight:
			if !ok {
				return group, nil
			}
			if fl.barrier != nil {
				return group, fl
			}
			group = append(group, fl)
		default:
			return group, nil
		}
	}
}

// settle acknowledges a synced group, or fails it and poisons the shard.
func (s *Shard) settle(group []*flight, syncErr error) {
	err := s.writerErr()
	if err == nil && syncErr != nil {
		err = fmt.Errorf("fdatasync %s: %w", group[0].sg.path, syncErr)
		s.poison(err)
	}
	for _, fl := range group {
		if err != nil {
			s.reply(fl.batch, fmt.Errorf("%w: %v", ErrReadOnly, err))
			continue
		}
		s.publish(fl)
		s.reply(fl.batch, nil)
		s.cache.synced(fl.sg.path, fl.fi.Offset+fl.fi.Size())
	}
}

// barrier waits until every flight queued so far has been settled.
func (s *Shard) barrier() {
	if s.inflight == nil {
		return
	}
	ch := make(chan struct{})
	s.inflight <- &flight{barrier: ch}
	<-ch
}

// stopSyncer lets the syncer settle what is queued, then waits for it.
func (s *Shard) stopSyncer() {
	if s.inflight != nil {
		close(s.inflight)
		<-s.syncDone
	}
}
