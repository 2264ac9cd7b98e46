package replica

import (
	"fmt"
	"math"
	"path"
	"sort"

	"github.com/shardlog/shardlog/segment"
)

// read returns the records with ordinal >= from, oldest first: at most
// maxRecords, and no more than maxBytes of data unless the first record alone
// is larger (it is returned, so a large record cannot stall a reader).
func (s *segState) read(from uint64, maxRecords, maxBytes int) ([]Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errStateClosed
	}
	// Segment i holds the ordinals from its firstSeq up to the next one's.
	i := max(sort.Search(len(s.segs), func(i int) bool { return s.segs[i].firstSeq > from })-1, 0)
	rd := segReader{from: from, maxRecords: maxRecords, maxBytes: maxBytes}
	for ; i < len(s.segs) && !rd.full; i++ {
		if err := s.readSeg(s.segs[i], &rd); err != nil {
			return rd.out, fmt.Errorf("replica: group %d applied state: %w", s.group, err)
		}
	}
	return rd.out, nil
}

// segReader is one read's progress.
type segReader struct {
	from                 uint64
	maxRecords, maxBytes int
	out                  []Record
	bytes                int
	full                 bool
}

// take adds rec unless a limit is reached (then the read is full).
func (rd *segReader) take(rec segment.Record) bool {
	if rec.Seq < rd.from {
		return true
	}
	if len(rd.out) >= rd.maxRecords || len(rd.out) > 0 && rd.bytes+len(rec.Data) > rd.maxBytes {
		rd.full = true
		return false
	}
	rd.out = append(rd.out, Record{Seq: rec.Seq, ArrivalMs: rec.ArrivalMs, Data: rec.Data})
	rd.bytes += len(rec.Data)
	return true
}

// readSeg reads sg's frames from the seek point before rd.from. A reader is
// opened per call: reads are not on the host's hot path, and an open reader
// would pin a file an installation removes.
func (s *segState) readSeg(sg *stateSeg, rd *segReader) error {
	if sg.frames == 0 {
		return nil
	}
	r, err := segment.OpenReader(s.fs, sg.path, s.comp)
	if err != nil {
		return err
	}
	defer r.Close()
	off := sg.start
	if k := sort.Search(len(sg.seeks), func(k int) bool { return sg.seeks[k].seq > rd.from }); k > 0 {
		off = sg.seeks[k-1].off
	}
	// Readers stop at the end written, never at the file's size.
	for off < sg.end && !rd.full {
		h, err := r.FrameHeaderAt(off)
		if err != nil {
			return err
		}
		if h.LastSeq >= rd.from {
			if _, err := r.ReadFrame(off, rd.take); err != nil {
				return err
			}
		}
		off += h.Size()
	}
	return nil
}

// snapshot renders the state up to applied (docs/cluster.md §2): one frame
// per entry holding records, [index][a proposal with no key, the entry's
// stored arrival, its records], then a marker frame [applied]: everything up
// to it is applied. The rendering is whole bytes in raft's MsgSnap, read back
// from the segments; the design's file list streamed over the peer pool
// (segments are immutable once sealed) is not built yet. Queued records are
// written first: raft may ask between a round's apply and its write.
func (s *segState) snapshot(applied uint64) ([]byte, error) {
	if err := s.write(); err != nil {
		return nil, err
	}
	recs, err := s.read(0, math.MaxInt, math.MaxInt)
	if err != nil {
		return nil, err
	}
	var out []byte
	for len(recs) > 0 {
		idx := recs[0].Seq >> 16
		n := 1
		for n < len(recs) && recs[n].Seq>>16 == idx {
			n++
		}
		datas := make([][]byte, n)
		for i := range n {
			datas[i] = recs[i].Data
		}
		p := le.AppendUint64(nil, idx)
		out = appendFrame(out, append(p, encodeProposal(proposalKey{}, recs[0].ArrivalMs, datas)...))
		recs = recs[n:]
	}
	return appendFrame(out, le.AppendUint64(nil, applied)), nil
}

// snapEntry is one entry of a snapshot's rendering.
type snapEntry struct {
	index   uint64
	arrival int64
	recs    [][]byte
}

// parseSnapshot checks a rendering (whole frames, entries in index order,
// ending in index's marker) and returns its entries.
func parseSnapshot(group, index uint64, data []byte) ([]snapEntry, error) {
	bad := fmt.Errorf("%w: group %d snapshot at %d", errCorrupt, group, index)
	payloads, valid := scanFrames(data)
	if valid != int64(len(data)) || len(payloads) == 0 {
		return nil, bad
	}
	var out []snapEntry
	prev := uint64(0)
	for i, p := range payloads {
		r := reader{b: p}
		idx := r.u64()
		last := i == len(payloads)-1
		if r.bad || last != (len(r.b) == 0) {
			return nil, bad
		}
		if last {
			if idx != index || idx < prev {
				return nil, bad
			}
			break
		}
		if idx > index || idx <= prev && i > 0 {
			return nil, bad
		}
		prev = idx
		_, arrival, recs, err := decodeProposal(r.b)
		if err != nil || len(recs) == 0 {
			return nil, bad
		}
		out = append(out, snapEntry{idx, arrival, recs})
	}
	return out, nil
}

// install replaces the state with a snapshot's rendering, durably and
// atomically: a new generation is written whole and synced, then a new
// CURRENT naming it is synced and renamed into place, then the group's
// directory synced. A crash before the rename leaves the old generation live
// (openSegState removes the new one); after it, the new one, whole. The old
// generation is removed last (or, after a crash, at the next open).
func (s *segState) install(index uint64, data []byte, crash func(string) error) error {
	ents, err := parseSnapshot(s.group, index, data)
	if err != nil {
		return err
	}
	ns, err := s.buildGen(index, ents)
	if err == nil {
		err = crash(crashSnapTempSynced)
	}
	if err == nil {
		err = s.writeCurrent(ns.gen, index, crash)
	}
	if err != nil {
		if ns != nil {
			ns.close()
		}
		return fmt.Errorf("replica: group %d snapshot install: %w", s.group, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		s.w.Close()
	}
	old := s.gen
	s.gen, s.mark, s.segs, s.w, s.wnext, s.lastTs, s.last, s.nextID, s.pending, s.dirty =
		ns.gen, ns.mark, ns.segs, ns.w, ns.wnext, ns.lastTs, ns.last, ns.nextID, nil, false
	if err := s.fs.RemoveAll(s.genDir(old)); err != nil {
		return err
	}
	return s.fs.SyncDir(s.dir)
}

// buildGen writes a snapshot's entries as the next generation's segments,
// synced (rolls sync what they leave; sync the rest).
func (s *segState) buildGen(index uint64, ents []snapEntry) (*segState, error) {
	ns := &segState{fs: s.fs, comp: s.comp, dir: s.dir, group: s.group, size: s.size, now: s.now, synced: s.synced,
		gen: s.gen + 1, mark: index, last: index}
	dir := ns.genDir(ns.gen)
	if err := s.fs.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := s.fs.MkdirAll(dir); err != nil {
		return nil, err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return nil, err
	}
	for _, e := range ents {
		ns.add(e.index, e.arrival, e.recs)
	}
	if err := ns.write(); err != nil {
		return ns, err
	}
	return ns, ns.sync()
}

// writeCurrent makes gen the live generation: CURRENT.tmp written and
// synced, renamed over CURRENT, the directory synced.
func (s *segState) writeCurrent(gen, mark uint64, crash func(string) error) error {
	tmp, name := path.Join(s.dir, currentName+".tmp"), path.Join(s.dir, currentName)
	f, err := s.fs.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(appendFrame(nil, le.AppendUint64(le.AppendUint64(nil, gen), mark)), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, name)
	}
	if err == nil {
		err = crash(crashSnapRenamed)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err == nil {
		err = crash(crashSnapDirSynced)
	}
	return err
}
