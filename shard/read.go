package shard

import (
	"sort"
	"sync"

	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
)

// ReadResult is one page of records.
type ReadResult struct {
	Records []segment.Record // Data and PartitionKey are the caller's own copies
	Next    uint64           // the ordinal to continue from
	Bytes   int              // data + partition-key bytes in Records
	AtTip   bool             // nothing published at or after Next
}

// view is a consistent snapshot of one segment's published state.
type view struct {
	sg      *seg
	lastSeq uint64
	maxTs   int64
	end     int64
	frames  int64
	seeks   []index.Seek
}

// snapshot returns the published state of the segments that can hold a
// record at or after ordinal from, and the next ordinal, so a GetRecords near
// the tip of a shard with a long history copies a few views, not thousands.
// The binary search is safe even if an empty segment sits among full ones:
// the segment before the index it returns is full and ends before from, and
// segments are in sequence order, so everything it skips ends before from.
func (s *Shard) snapshot(from uint64) ([]view, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	first := sort.Search(len(s.segs), func(i int) bool {
		return s.segs[i].frames == 0 || s.segs[i].lastSeq >= from
	})
	vs := make([]view, 0, len(s.segs)-first)
	for _, sg := range s.segs[first:] {
		vs = append(vs, view{sg, sg.lastSeq, sg.maxTs, sg.end, sg.frames, sg.seeks})
	}
	return vs, s.next
}

// Read returns up to maxRecords records with ordinal >= from and arrival >=
// minTs (retention's horizon), stopping before maxBytes would be exceeded
// (at least one record is returned if any is available). It reads only what
// the writer has published.
func (s *Shard) Read(from uint64, maxRecords, maxBytes int, minTs int64) (ReadResult, error) {
	return s.read(from, maxRecords, maxBytes, minTs, func(r *segment.Reader, _ uint64, offs []int64) []decoded {
		return decodeFrames(r, offs)
	})
}

// frameDecoder decodes the frames at offs of segment segID, in order.
type frameDecoder func(r *segment.Reader, segID uint64, offs []int64) []decoded

func (s *Shard) read(from uint64, maxRecords, maxBytes int, minTs int64, dec frameDecoder) (ReadResult, error) {
	views, next := s.snapshot(from)
	res := ReadResult{Next: from}
	full := false
	for _, v := range views {
		if v.frames == 0 || v.lastSeq < from || v.maxTs < minTs {
			continue
		}
		var err error
		full, err = s.readSegment(v, from, maxRecords, maxBytes, minTs, dec, &res)
		if err != nil {
			return res, err
		}
		if full {
			break
		}
	}
	if !full {
		// Everything published was scanned: continue from the tip, so records
		// skipped as expired are not scanned again.
		res.Next = max(res.Next, next)
		res.AtTip = true
	}
	return res, nil
}

// readAhead is how many frames one page decodes at once, concurrently:
// decompression dominates reads, and the frames of a page are independent.
const readAhead = 4

// readSegment appends matching records of one segment to res. It reports
// whether the page is full.
func (s *Shard) readSegment(v view, from uint64, maxRecords, maxBytes int, minTs int64, dec frameDecoder, res *ReadResult) (bool, error) {
	r, err := s.acquire(v.sg)
	if err != nil {
		return false, err
	}
	defer s.release(v.sg)
	for off := seekOffset(v.seeks, from, r.Header().Size()); off < v.end; {
		budget := pageBudget{records: maxRecords - len(res.Records), bytes: maxBytes - res.Bytes}
		if budget.records <= 0 || budget.bytes <= 0 {
			// Full at a batch's edge: pickFrames would pick nothing, and
			// the page must not read as "at the tip", which would move
			// Next past the records not yet returned.
			return true, nil
		}
		offs, next, err := pickFrames(r, off, v.end, from, minTs, budget)
		if err != nil || len(offs) == 0 {
			return false, err
		}
		for _, f := range dec(r, v.sg.id, offs) {
			if f.err != nil {
				return false, f.err
			}
			if res.add(f.recs, from, minTs, maxRecords, maxBytes) {
				return true, nil
			}
		}
		off = next
	}
	return len(res.Records) >= maxRecords, nil
}

// add appends the records of one frame that match, until the page is full.
// It reports whether the page is full.
func (res *ReadResult) add(recs []segment.Record, from uint64, minTs int64, maxRecords, maxBytes int) bool {
	for _, rec := range recs {
		if rec.Seq < from || rec.ArrivalMs < minTs {
			continue
		}
		size := len(rec.Data) + len(rec.PartitionKey)
		if len(res.Records) >= maxRecords || (len(res.Records) > 0 && res.Bytes+size > maxBytes) {
			return true
		}
		res.Records = append(res.Records, rec) // ReadFrame's records own their memory
		res.Bytes += size
		res.Next = rec.Seq + 1
	}
	return len(res.Records) >= maxRecords
}

type pageBudget struct{ records, bytes int }

// pickFrames hops frame headers from off (no decompression) and returns up to
// readAhead frames that hold records at or after from and minTs, stopping
// once their raw sizes cover the page's remaining budget. next is the offset
// after the last frame examined.
func pickFrames(r *segment.Reader, off, end int64, from uint64, minTs int64, b pageBudget) (offs []int64, next int64, err error) {
	for off < end && len(offs) < readAhead && b.records > 0 && b.bytes > 0 {
		h, err := r.FrameHeaderAt(off)
		if err != nil {
			return nil, off, err
		}
		if h.LastSeq >= from && h.MaxTs >= minTs {
			offs = append(offs, off)
			b.records -= int(h.Count)
			b.bytes -= int(h.RawLen)
		}
		off += h.Size()
	}
	if len(offs) == 0 && off < end {
		return nil, off, nil
	}
	return offs, off, nil
}

type decoded struct {
	recs []segment.Record
	err  error
}

// decodeFrames reads and decodes the frames at offs, concurrently when there
// are several, and returns them in order.
func decodeFrames(r *segment.Reader, offs []int64) []decoded {
	out := make([]decoded, len(offs))
	one := func(i int) {
		_, out[i].err = r.ReadFrame(offs[i], func(rec segment.Record) bool {
			out[i].recs = append(out[i].recs, rec)
			return true
		})
	}
	var wg sync.WaitGroup
	for i := 1; i < len(offs); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			one(i)
		}()
	}
	one(0)
	wg.Wait()
	return out
}

// seekOffset is the offset of the last seek point at or before seq, or the
// first frame, which starts at first (the header area's end).
func seekOffset(seeks []index.Seek, seq uint64, first int64) int64 {
	i := sort.Search(len(seeks), func(i int) bool { return seeks[i].Seq > seq })
	if i == 0 {
		return first
	}
	return seeks[i-1].Offset
}

// OrdinalAt returns the ordinal of the first published record whose arrival
// is at or after ts (ms), or the next ordinal to be assigned if there is none.
func (s *Shard) OrdinalAt(ts int64) (uint64, error) {
	views, next := s.snapshot(0)
	for _, v := range views {
		if v.frames == 0 || v.maxTs < ts {
			continue
		}
		found, ok, err := s.ordinalInSegment(v, ts)
		if err != nil || ok {
			return found, err
		}
	}
	return next, nil
}

func (s *Shard) ordinalInSegment(v view, ts int64) (uint64, bool, error) {
	r, err := s.acquire(v.sg)
	if err != nil {
		return 0, false, err
	}
	defer s.release(v.sg)
	// Seek points are sorted by time too (arrival never decreases).
	i := sort.Search(len(v.seeks), func(i int) bool { return v.seeks[i].Ts >= ts })
	off := r.Header().Size()
	if i > 0 {
		off = v.seeks[i-1].Offset
	}
	for off < v.end {
		h, err := r.FrameHeaderAt(off)
		if err != nil {
			return 0, false, err
		}
		if h.MaxTs >= ts {
			var found uint64
			ok := false
			_, err = r.ReadFrame(off, func(rec segment.Record) bool {
				if rec.ArrivalMs >= ts {
					found, ok = rec.Seq, true
					return false
				}
				return true
			})
			return found, ok, err
		}
		off += h.Size()
	}
	return 0, false, nil
}
