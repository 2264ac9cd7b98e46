package shard

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
)

// Open recovers the shard in opts.Dir and, unless ReadOnly, starts its writer
// in a new segment.
//
// Recovery, per storage-design §4.6:
//  1. Stray *.tmp files are deleted; files that are not segments are left alone.
//  2. A segment whose index catalog entry agrees with the file (size and
//     header) is trusted without reading its frames: every sealed segment
//     normally, and the newest too after a clean shutdown (see
//     recoverSegments). Other sealed segments have their frame headers walked.
//  3. Otherwise the newest segment (after a crash) is scanned frame by frame
//     with CRCs. A torn tail (an unacknowledged last write) is cut. Damage
//     followed by valid frames is corruption of acknowledged data: it is never
//     cut here; the shard goes read-only and serves what precedes the damage
//     until `fsck repair`.
//  4. Segment first sequences must chain with no gap; a missing segment in the
//     middle is corruption. A missing prefix is retention. A gap before a
//     segment whose header declares a sequence floor (segment.FlagSeqFloor)
//     is a loss fsck repair recorded: its seqs are never assigned again.
//  5. A new segment is started at the next ordinal (never appending after a
//     region that was once torn), and the index is rewritten for the shard.
func Open(opts Options) (*Shard, error) {
	opts.setDefaults()
	s := &Shard{opts: opts, log: opts.Logger.With("shard", opts.IndexKey), next: opts.FirstOrdinal}
	s.SetLimits(opts.Limits)
	s.SetEncryption(opts.Encryption)
	if err := opts.FS.MkdirAll(opts.Dir); err != nil {
		return nil, err
	}
	files, err := s.listSegments()
	if err != nil {
		return nil, err
	}
	catalog, seeks, err := opts.Index.Load(opts.IndexKey)
	if err != nil {
		return nil, err
	}
	if err := s.recoverSegments(files, catalog, seeks); err != nil {
		return nil, err
	}
	if err := s.checkChain(); err != nil {
		return nil, err
	}
	if n := len(s.segs); n > 0 {
		s.next = max(s.next, s.segs[n-1].nextAfter())
	}
	for _, sg := range s.segs {
		// Arrival times never go backwards, across restarts too: frame and
		// segment time ranges stay sorted for AT_TIMESTAMP.
		if sg.frames > 0 {
			s.lastTs = max(s.lastTs, sg.maxTs)
		}
	}
	if s.corrupt != nil {
		s.log.Error("shard is corrupt and read-only; repair it offline", "error", s.corrupt,
			"command", "shardlog fsck repair <data-dir>")
	}
	if !opts.ReadOnly && s.corrupt == nil {
		if err := s.startActive(); err != nil {
			return nil, err
		}
	}
	s.submitReplace()
	if opts.Counter != nil {
		// Above every ordinal this shard acknowledged, before its writer
		// takes one; read-only shards too, so the group's open shards never
		// take one of theirs again either.
		opts.Counter.Raise(s.next)
	}
	if !opts.ReadOnly && s.corrupt == nil {
		s.startWriter()
	}
	return s, nil
}

// Recovery is what opening the shard read: segments whose index entry
// agreed with the file (trusted: only their header read) and segments
// walked frame by frame (their frame headers, or every byte with CRCs for
// the newest after a crash), with the walked segments' bytes.
type Recovery struct {
	Trusted, Scanned int
	ScannedBytes     int64
}

// Recovery returns what opening the shard read. It is set by Open and
// never changes afterwards.
func (s *Shard) Recovery() Recovery { return s.recovery }

type segFile struct {
	name         string
	firstSeq, id uint64
}

func (s *Shard) listSegments() ([]segFile, error) {
	names, err := s.opts.FS.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, err
	}
	var files []segFile
	for _, n := range names {
		if strings.HasSuffix(n, datadir.TmpExt) {
			if err := s.opts.FS.Remove(s.opts.Dir + "/" + n); err != nil {
				return nil, err
			}
			continue
		}
		if first, id, ok := segment.ParseFileName(n); ok {
			files = append(files, segFile{n, first, id})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].firstSeq != files[j].firstSeq {
			return files[i].firstSeq < files[j].firstSeq
		}
		return files[i].id < files[j].id
	})
	return files, nil
}

func (s *Shard) recoverSegments(files []segFile, catalog []index.Segment, seeks []index.Seek) error {
	byID := make(map[uint64]index.Segment, len(catalog))
	for _, c := range catalog {
		byID[c.ID] = c
	}
	for i, f := range files {
		s.nextSeg = max(s.nextSeg, f.id+1)
		sg := &seg{id: f.id, firstSeq: f.firstSeq, path: s.segPath(f.firstSeq, f.id)}
		// A catalog entry that agrees with the file is final, the newest
		// segment's too: the writer submits one with a frame-holding End only
		// after its last sync, when the shard is closed or sealed (at a roll
		// it submits End = the header). So after a clean shutdown, or for a
		// shard a reshard closed, nothing is CRC-scanned again, and a damaged
		// last frame is left for fsck and reads to report instead of being
		// cut as if torn. After a crash the entry disagrees (index.db lags or
		// is gone) and the newest segment is scanned as a tail.
		var err error
		if c, ok := byID[f.id]; ok && s.catalogAgrees(sg, c) {
			s.fromCatalog(sg, c, seeks)
			s.recovery.Trusted++
		} else if i < len(files)-1 {
			err = s.scanSealed(sg)
		} else {
			err = s.scanTail(sg)
		}
		if errors.Is(err, errDropped) {
			continue
		}
		if err != nil {
			return err
		}
		s.segs = append(s.segs, sg)
	}
	return nil
}

// errDropped means the segment was a torn creation and has been removed.
var errDropped = errors.New("dropped")

// catalogAgrees checks the catalog against the file: a sealed segment never
// changes, so a matching size and a valid header that names this shard are
// the cheap sanity check (Kafka's). Frame damage inside is fsck's to find.
// When it agrees, sg takes the header's flags, which the catalog lacks.
func (s *Shard) catalogAgrees(sg *seg, c index.Segment) bool {
	f, err := s.opts.FS.Open(sg.path)
	if err != nil {
		return false
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil || size != c.End || c.FirstSeq != sg.firstSeq {
		return false
	}
	h, err := segment.ReadFileHeader(f)
	if err != nil || h.FirstSeq != sg.firstSeq || h.SegmentID != sg.id || h.ShardKey != s.opts.ShardKey {
		return false
	}
	sg.takeFloor(h)
	return true
}

// takeFloor copies the header's sequence floor declaration, which the
// catalog lacks.
func (sg *seg) takeFloor(h segment.FileHeader) {
	sg.seqFloor = h.Flags&segment.FlagSeqFloor != 0
	sg.floorGap = h.FloorGap
}

func (s *Shard) fromCatalog(sg *seg, c index.Segment, seeks []index.Seek) {
	sg.lastSeq, sg.minTs, sg.maxTs, sg.end, sg.frames, sg.recs = c.LastSeq, c.MinTs, c.MaxTs, c.End, c.Frames, c.Records
	for _, sk := range seeks {
		if sk.SegID == sg.id {
			sg.seeks = append(sg.seeks, sk)
		}
	}
}

func (s *Shard) scanSealed(sg *seg) error {
	res, err := s.scan(sg, false)
	if err != nil {
		return s.markCorrupt(fmt.Errorf("segment %s: %w", sg.path, err))
	}
	if res.Tail != segment.TailClean {
		return s.markCorrupt(fmt.Errorf("sealed segment %s: %s at offset %d: %w", sg.path, res.Tail, res.BadOffset, res.BadErr))
	}
	return nil
}

func (s *Shard) scanTail(sg *seg) error {
	res, err := s.scan(sg, true)
	if errors.Is(err, segment.ErrTorn) {
		// The file header itself is incomplete: the crash hit Create before its
		// sync, so no record was ever acknowledged in this file.
		s.log.Warn("removing torn new segment", "path", sg.path)
		if err := s.opts.FS.Remove(sg.path); err != nil {
			return err
		}
		if err := s.opts.FS.SyncDir(s.opts.Dir); err != nil {
			return err
		}
		return errDropped
	}
	if err != nil {
		return s.markCorrupt(fmt.Errorf("segment %s: %w", sg.path, err))
	}
	switch res.Tail {
	case segment.TailTorn:
		s.log.Warn("cutting torn tail", "path", sg.path, "offset", res.BadOffset, "reason", res.BadErr)
		return s.truncate(sg.path, res.ValidEnd)
	case segment.TailClean:
		// Zeros after the last frame (size reached disk, data did not) are cut
		// too, so a sealed segment's size is exactly its catalog End.
		return s.truncateIfLonger(sg.path, res.ValidEnd)
	case segment.TailCorrupt:
		return s.markCorrupt(fmt.Errorf("segment %s: corrupt at offset %d (%v); valid frames resume at offset %d, seq %d",
			sg.path, res.BadOffset, res.BadErr, res.ResumeOffset, res.ResumeSeq))
	}
	return nil
}

// scan walks sg's frames, filling its stats and seek points. An unreadable
// file header is returned as an error; frame damage is in the result.
func (s *Shard) scan(sg *seg, verify bool) (segment.ScanResult, error) {
	f, err := s.opts.FS.Open(sg.path)
	if err != nil {
		return segment.ScanResult{}, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return segment.ScanResult{}, err
	}
	s.recovery.Scanned++
	s.recovery.ScannedBytes += size
	sinceSeek := s.opts.SeekInterval
	res, err := segment.Scan(f, size, segment.ScanOptions{VerifyCRC: verify, Visit: func(fi segment.FrameInfo) error {
		if sinceSeek >= s.opts.SeekInterval {
			sg.seeks = append(sg.seeks, index.Seek{Seq: fi.FirstSeq, SegID: sg.id, Offset: fi.Offset, Ts: fi.MinTs})
			sinceSeek = 0
		}
		sinceSeek += fi.Size()
		return nil
	}})
	if err != nil {
		return res, err
	}
	if res.Header.FirstSeq != sg.firstSeq || res.Header.SegmentID != sg.id || res.Header.ShardKey != s.opts.ShardKey {
		return res, fmt.Errorf("%w: file header (first seq %d, id %d, shard key %x) does not match its name or shard",
			segment.ErrCorrupt, res.Header.FirstSeq, res.Header.SegmentID, res.Header.ShardKey)
	}
	sg.lastSeq, sg.minTs, sg.maxTs, sg.frames, sg.recs = res.LastSeq, res.MinTs, res.MaxTs, int64(res.Frames), res.Records
	sg.takeFloor(res.Header)
	sg.end = res.ValidEnd
	if res.Tail == segment.TailCorrupt {
		sg.end = res.BadOffset
	}
	return res, nil
}

func (s *Shard) truncateIfLonger(path string, size int64) error {
	f, err := s.opts.FS.Open(path)
	if err != nil {
		return err
	}
	cur, err := f.Size()
	f.Close()
	if err != nil || cur <= size {
		return err
	}
	return s.truncate(path, size)
}

func (s *Shard) truncate(path string, size int64) error {
	f, err := s.opts.FS.OpenRW(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

func (s *Shard) markCorrupt(err error) error {
	if s.corrupt == nil {
		s.corrupt = err
	}
	return nil
}

// checkChain verifies that each segment starts where the previous one ended,
// or above it if its header declares that very gap a sequence floor: those
// seqs were lost, and the floor only keeps them from being assigned again.
// Any other gap is a missing segment (a floor whose recorded gap is shorter
// was declared after a segment that is gone too), and an overlap is
// corruption too.
func (s *Shard) checkChain() error {
	for i := 1; i < len(s.segs); i++ {
		prev, cur := s.segs[i-1], s.segs[i]
		want := prev.nextAfter()
		switch {
		case cur.firstSeq == want:
		case cur.firstSeq > want && cur.seqFloor && segment.GapDeclared(cur.firstSeq, cur.floorGap, want):
			s.log.Info("sequence floor: seqs below it were lost by a repair and are never assigned again",
				"segment", cur.path, "lost", fmt.Sprintf("%d..%d", want, cur.firstSeq-1))
		default:
			s.markCorrupt(fmt.Errorf("segment %s starts at seq %d, but the previous segment ends before %d: a segment is missing",
				cur.path, cur.firstSeq, want))
		}
	}
	return nil
}

// startActive creates the segment new writes go to, then removes earlier
// segments that hold no frames: their only content, the sequence floor (and
// a floor segment's flag), is now carried by the new segment's header.
func (s *Shard) startActive() error {
	w, sg, err := s.createSegment()
	if err != nil {
		return err
	}
	var kept []*seg
	removed := false
	for _, old := range s.segs {
		if old.frames == 0 {
			if err := s.opts.FS.Remove(old.path); err != nil {
				return err
			}
			removed = true
			continue
		}
		kept = append(kept, old)
	}
	if removed {
		if err := s.opts.FS.SyncDir(s.opts.Dir); err != nil {
			return err
		}
	}
	s.segs = append(kept, sg)
	s.w = w
	return nil
}

// createSegment creates a segment starting at s.next. Callers append it to
// s.segs.
func (s *Shard) createSegment() (*segment.Writer, *seg, error) {
	id := s.nextSeg
	s.nextSeg++
	now := s.opts.Now()
	sg := &seg{id: id, firstSeq: s.next, path: s.segPath(s.next, id), created: now}
	if from, ok := s.framesEnd(); ok && s.next > from {
		sg.seqFloor, sg.floorGap = true, segment.FloorGapOf(s.next, from)
	}
	hdr := segment.FileHeader{SegmentID: id, FirstSeq: s.next, ShardKey: s.opts.ShardKey, CreatedNs: now.UnixNano(),
		Codec: segment.CodecZstd, FloorGap: sg.floorGap}
	if sg.seqFloor {
		hdr.Flags = segment.FlagSeqFloor
	}
	var w *segment.Writer
	var err error
	if m := s.enc.Load(); m != nil {
		w, err = segment.CreateEncrypted(s.opts.FS, sg.path, hdr, s.opts.Compressor, *m)
	} else {
		w, err = segment.Create(s.opts.FS, sg.path, hdr, s.opts.Compressor)
	}
	if err != nil {
		return nil, nil, err
	}
	sg.end = w.Header().Size()
	return w, sg, nil
}

// framesEnd is the nextAfter of the newest segment that holds frames, if
// any. A new segment that starts above it declares the gap a floor, exactly
// as long as that (createSegment): only frame-holding segments are sure to
// stay, since startActive removes empty segments once the new one exists,
// so a floor segment's gap must be declared again in the new header, or the
// next open would find a segment missing. Declaring it where an empty
// segment still sits in between (leaveFull) is harmless: that one starts
// where the new one does, so checkChain sees no gap there.
func (s *Shard) framesEnd() (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := len(s.segs) - 1; i >= 0; i-- {
		if s.segs[i].frames > 0 {
			return s.segs[i].nextAfter(), true
		}
	}
	return 0, false
}

func (s *Shard) submitReplace() {
	upd := index.Update{Shard: s.opts.IndexKey, Replace: true}
	for _, sg := range s.segs {
		upd.Segments = append(upd.Segments, sg.catalog())
		upd.Seeks = append(upd.Seeks, sg.seeks...)
	}
	s.opts.Index.Submit(upd)
}
