package shard

import (
	"errors"
	"sort"

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

func (s *Shard) snapshot() ([]view, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	vs := make([]view, 0, len(s.segs))
	for _, sg := range s.segs {
		vs = append(vs, view{sg, sg.lastSeq, sg.maxTs, sg.end, sg.frames, sg.seeks})
	}
	return vs, s.next
}

// Read returns up to maxRecords records with ordinal >= from and arrival >=
// minTs (retention's horizon), stopping before maxBytes would be exceeded
// (at least one record is returned if any is available). It reads only what
// the writer has published.
func (s *Shard) Read(from uint64, maxRecords, maxBytes int, minTs int64) (ReadResult, error) {
	views, next := s.snapshot()
	res := ReadResult{Next: from}
	full := false
	for _, v := range views {
		if v.frames == 0 || v.lastSeq < from || v.maxTs < minTs {
			continue
		}
		var err error
		full, err = s.readSegment(v, from, maxRecords, maxBytes, minTs, &res)
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

var errStop = errors.New("page full")

// readSegment appends matching records of one segment to res. It reports
// whether the page is full.
func (s *Shard) readSegment(v view, from uint64, maxRecords, maxBytes int, minTs int64, res *ReadResult) (bool, error) {
	r, err := s.acquire(v.sg)
	if err != nil {
		return false, err
	}
	defer s.release(v.sg)
	full := false
	for off := seekOffset(v.seeks, from); off < v.end && !full; {
		h, err := r.FrameHeaderAt(off)
		if err != nil {
			return false, err
		}
		if h.LastSeq >= from && h.MaxTs >= minTs {
			_, err = r.ReadFrame(off, func(rec segment.Record) bool {
				if rec.Seq < from || rec.ArrivalMs < minTs {
					return true
				}
				size := len(rec.Data) + len(rec.PartitionKey)
				if len(res.Records) >= maxRecords || (len(res.Records) > 0 && res.Bytes+size > maxBytes) {
					full = true
					return false
				}
				rec.Data = append([]byte(nil), rec.Data...)
				rec.PartitionKey = string([]byte(rec.PartitionKey))
				res.Records = append(res.Records, rec)
				res.Bytes += size
				res.Next = rec.Seq + 1
				return true
			})
			if err != nil {
				return false, err
			}
		}
		off += h.Size()
	}
	return full || len(res.Records) >= maxRecords, nil
}

// seekOffset is the offset of the last seek point at or before seq, or the
// first frame.
func seekOffset(seeks []index.Seek, seq uint64) int64 {
	i := sort.Search(len(seeks), func(i int) bool { return seeks[i].Seq > seq })
	if i == 0 {
		return segment.FileHeaderSize
	}
	return seeks[i-1].Offset
}

// OrdinalAt returns the ordinal of the first published record whose arrival
// is at or after ts (ms), or the next ordinal to be assigned if there is none.
func (s *Shard) OrdinalAt(ts int64) (uint64, error) {
	views, next := s.snapshot()
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
	off := int64(segment.FileHeaderSize)
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
