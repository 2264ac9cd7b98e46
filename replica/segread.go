package replica

import (
	"fmt"
	"path"
	"slices"
	"sort"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
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

// snapshot is the state up to applied as a manifest (docs/cluster.md §2,
// snapfetch.go): the live generation's segment files that hold records, each
// with its written end. The receiver fetches their bytes in chunks and
// keeps them as they are. Queued records are written first: raft may ask
// between a round's apply and its write, and the segments must then hold
// everything up to applied. Nothing is synced here (raft asks at every probe
// of a lagging follower): a listed range that a crash of this node cuts and
// rewrites differently fails the receiver's frame checks, and it waits for a
// new snapshot.
func (s *segState) snapshot(applied uint64) ([]byte, error) {
	if err := s.write(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := snapManifest{index: applied, gen: s.gen, life: s.life}
	for _, sg := range s.segs {
		if sg.frames > 0 {
			m.files = append(m.files, snapFile{first: sg.firstSeq, id: sg.id, lastSeq: sg.lastSeq, size: sg.end})
		}
	}
	return m.encode(), nil
}

// chunk serves up to n bytes at off of a file a manifest of this state
// listed: errSnapGone if the generation was replaced, the file trimmed, or
// it no longer reaches off (a crash cut its unsynced tail), or the state
// is not the one listed (another life: snapManifest). The read lock keeps a
// trim from unlinking the file under the read.
func (s *segState) chunk(life, gen, first, id uint64, off int64, n int) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed || life != s.life || gen != s.gen {
		return nil, errSnapGone
	}
	i := slices.IndexFunc(s.segs, func(sg *stateSeg) bool { return sg.firstSeq == first && sg.id == id })
	if i < 0 || off < 0 || off >= s.segs[i].end || n <= 0 {
		return nil, errSnapGone
	}
	f, err := s.fs.Open(s.segs[i].path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, min(int64(n), s.segs[i].end-off))
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

// fetchDir makes the next generation's directory, empty and durable, for a
// snapshot's files to be fetched into. A crash before install leaves it
// behind: openSegState removes every generation but the live one.
func (s *segState) fetchDir() (string, error) {
	dir := s.genDir(s.gen + 1)
	if err := s.fs.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := s.fs.MkdirAll(dir); err != nil {
		return "", err
	}
	return dir, s.fs.SyncDir(s.dir)
}

// checkFetched checks a fetched file as its fetch ends, before the next one
// starts: every frame's CRC, its header (this group, the listed first
// ordinal and ID), and that it ends clean at the listed size and ordinal.
// The bytes came over the network from a state that may have changed under
// the fetch. Checking a file at a time bounds how long the check holds the
// host's lock to one segment's reading, whatever the snapshot's size.
func (s *segState) checkFetched(f vfs.File, sf snapFile) error {
	size, err := f.Size()
	if err != nil {
		return err
	}
	res, err := segment.Scan(f, size, segment.ScanOptions{VerifyCRC: true})
	if err != nil {
		return err
	}
	if res.Header.FirstSeq != sf.first || res.Header.SegmentID != sf.id || res.Header.ShardKey != s.group ||
		res.Tail != segment.TailClean || size != sf.size || res.ValidEnd != sf.size || res.Frames == 0 || res.LastSeq != sf.lastSeq {
		return fmt.Errorf("%w: group %d fetched segment %s: not the listed one (%s at %d, last ordinal %d)",
			segment.ErrCorrupt, s.group, segment.FileName(sf.first, sf.id), res.Tail, res.ValidEnd, res.LastSeq)
	}
	return nil
}

// prepared opens the fetched generation as the state m describes: each
// file was checked (checkFetched) and synced as its fetch ended; here the
// files must be the listed ones, all there, and the directory is synced.
func (s *segState) prepared(m snapManifest) (*segState, error) {
	ns := &segState{fs: s.fs, comp: s.comp, dir: s.dir, group: s.group, size: s.size, now: s.now, synced: s.synced,
		gen: s.gen + 1, mark: m.index}
	if err := ns.recover(); err != nil {
		return nil, err
	}
	ok := len(ns.segs) == len(m.files)
	for i := 0; ok && i < len(m.files); i++ {
		sg, f := ns.segs[i], m.files[i]
		ok = sg.firstSeq == f.first && sg.id == f.id && sg.lastSeq == f.lastSeq && sg.end == f.size
	}
	if !ok || ns.last > m.index {
		return nil, fmt.Errorf("%w: group %d snapshot at %d: the fetched files are not the listed ones", segment.ErrCorrupt, s.group, m.index)
	}
	return ns, s.fs.SyncDir(s.genDir(ns.gen))
}

// install makes the fetched generation ns (prepared) the state, durably and
// atomically: ns is whole and synced; a new CURRENT naming it is synced and
// renamed into place, then the group's directory synced. A crash before the
// rename leaves the old generation live (openSegState removes the new one);
// after it, the new one, whole. The old generation is removed last (or,
// after a crash, at the next open).
func (s *segState) install(index uint64, ns *segState, crash func(string) error) error {
	err := crash(crashSnapTempSynced)
	if err == nil {
		err = s.writeCurrent(ns.gen, index, crash)
	}
	if err != nil {
		return fmt.Errorf("replica: group %d snapshot install: %w", s.group, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		s.w.Close()
	}
	old := s.gen
	s.gen, s.mark, s.segs, s.w, s.wnext, s.lastTs, s.last, s.nextID, s.pending, s.dirty =
		ns.gen, ns.mark, ns.segs, nil, ns.wnext, ns.lastTs, ns.last, ns.nextID, nil, false
	s.durable = ns.wnext // ns is whole and synced
	if err := s.fs.RemoveAll(s.genDir(old)); err != nil {
		return err
	}
	return s.fs.SyncDir(s.dir)
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
