package fsck

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// shardCheck is what verify learned about one shard directory.
type shardCheck struct {
	ref      shardRef
	dir      string // FS path
	rel      string // relative to the data directory
	segs     []*segCheck
	others   []string // non-segment names in the directory
	catalog  []index.Segment
	seeks    []index.Seek
	hasIndex bool
}

func (v *verifier) checkShard(ref shardRef) error {
	sh := &shardCheck{ref: ref, rel: path.Join(datadir.StreamsDir, ref.key), dir: datadir.ShardPath(v.opts.Dir, ref.key)}
	v.shards = append(v.shards, sh)
	if err := v.loadIndex(sh); err != nil {
		return err
	}
	if !ref.hasDir {
		return nil
	}
	errs0, warns0 := v.rep.Errors, v.rep.Warnings
	names, err := v.opts.FS.ReadDir(sh.dir)
	if err != nil {
		return fmt.Errorf("fsck: list %s: %w", sh.dir, err)
	}
	segs, others := dirEntries(names)
	sh.others = others
	for _, n := range others {
		v.stray(path.Join(sh.rel, n))
	}
	seeks := seeksBySegment(sh.seeks)
	for i, sn := range segs {
		sc := v.checkSegment(sh, sn, i == len(segs)-1, seeks[sn.id])
		sh.segs = append(sh.segs, sc)
	}
	v.checkChain(sh)
	v.checkCatalog(sh, seeks)
	v.summarize(sh, v.rep.Errors-errs0, v.rep.Warnings-warns0)
	return nil
}

func (v *verifier) loadIndex(sh *shardCheck) error {
	if v.ix == nil {
		return nil
	}
	var err error
	if sh.catalog, sh.seeks, err = v.ix.Load(sh.ref.key); err != nil {
		return fmt.Errorf("fsck: index.db: %w", err)
	}
	sh.hasIndex = true
	return nil
}

func seeksBySegment(seeks []index.Seek) map[uint64][]index.Seek {
	out := map[uint64][]index.Seek{}
	for _, s := range seeks {
		out[s.SegID] = append(out[s.SegID], s)
	}
	for _, ss := range out {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Offset < ss[j].Offset })
	}
	return out
}

// checkSegment scans one segment, checking the index's seek points for it on
// the way (they must name frame starts), and reports what it found.
func (v *verifier) checkSegment(sh *shardCheck, sn segName, newest bool, seeks []index.Seek) *segCheck {
	rel := path.Join(sh.rel, sn.name)
	sk := &seekCheck{seeks: seeks}
	sc := analyzeSegment(v.opts.FS, filepath.Join(sh.dir, sn.name), rel, sn, sh.ref.shardKey, v.opts.Deep, v.dec, func(f segment.FrameInfo) error {
		sk.visit(f)
		v.prog.bytes(f.Size())
		return nil
	})
	v.reportSegment(sc, newest)
	sk.report(v.rep, sc)
	v.rep.Segments = append(v.rep.Segments, sc.summary())
	return sc
}

// reportSegment turns a segCheck into problems.
func (v *verifier) reportSegment(sc *segCheck, newest bool) {
	switch {
	case sc.readErr != nil && v.live && vfs.IsNotExist(sc.readErr):
		// A running server removed it (retention) after we listed it.
	case sc.readErr != nil:
		v.rep.add(Problem{Code: ERead, File: sc.rel, Message: sc.readErr.Error()})
	case sc.tornCreate && newest:
		v.rep.add(Problem{Code: WTornTail, File: sc.rel, Offset: i64(0), Message: fmt.Sprintf("torn creation: %d-byte file without a header; no record was ever in it, and the server removes it", sc.size)})
	case sc.tornCreate:
		v.rep.add(Problem{Code: EFileHeader, File: sc.rel, Offset: i64(0), Message: fmt.Sprintf("sealed segment has no header (%d bytes)", sc.size)})
	}
	if sc.hdrCode != "" {
		v.rep.add(Problem{Code: sc.hdrCode, File: sc.rel, Offset: i64(0), Seq: u64p(sc.firstSeq), Message: sc.hdrErr.Error()})
	}
	if sc.undecoded != nil {
		v.rep.add(Problem{Code: INotDecoded, File: sc.rel, Message: fmt.Sprintf(
			"encrypted segment: its records were not decoded (%v); pass --keyring with its master key to check them", sc.undecoded)})
	}
	for _, reg := range sc.regions {
		if reg.tsBack {
			v.rep.add(Problem{Code: ETsOrder, File: sc.rel, Offset: i64(reg.start), Seq: u64p(reg.res.FirstSeq),
				Message: "frames after damage arrive before the frames preceding it"})
		}
		if reg.res.Tail != segment.TailClean {
			v.rep.add(damageProblem(sc, reg, newest))
		}
	}
}

// damageProblem describes a region's damaged end.
func damageProblem(sc *segCheck, reg region, newest bool) Problem {
	res := reg.res
	p := Problem{File: sc.rel, Offset: i64(res.BadOffset), Seq: u64p(reg.next)}
	if res.Frames > 0 {
		p.Seq = u64p(res.LastSeq + 1)
	}
	if res.Tail == segment.TailTorn {
		p.Code = ETornSealed
		what := "records in them were acknowledged (the segment is sealed)"
		if newest {
			p.Code, what = WTornTail, "an unacknowledged write; the server cuts it on open"
		}
		p.Message = fmt.Sprintf("%d bytes after the last valid frame are torn (%s: %v): %s", sc.size-res.BadOffset, reg.cause, res.BadErr, what)
		return p
	}
	p.Code = reg.cause
	if res.ResumeOffset != 0 {
		p.Message = fmt.Sprintf("%v; valid frames resume at offset %d (seq %d)", res.BadErr, res.ResumeOffset, res.ResumeSeq)
	} else {
		p.Message = fmt.Sprintf("%v; no valid frame follows", res.BadErr)
	}
	return p
}

// seekCheck matches a segment's seek points (sorted by offset) against its
// frames as Scan visits them, so verify holds no list of frames.
type seekCheck struct {
	seeks      []index.Seek
	i          int
	misaligned []index.Seek
	wrong      []string
}

func (s *seekCheck) visit(f segment.FrameInfo) {
	for ; s.i < len(s.seeks) && s.seeks[s.i].Offset <= f.Offset; s.i++ {
		sk := s.seeks[s.i]
		switch {
		case sk.Offset < f.Offset:
			s.misaligned = append(s.misaligned, sk)
		case sk.Seq != f.FirstSeq || sk.Ts != f.MinTs:
			s.wrong = append(s.wrong, fmt.Sprintf("seek point for seq %d (ts %d) at offset %d, where the frame starts at seq %d (ts %d)",
				sk.Seq, sk.Ts, sk.Offset, f.FirstSeq, f.MinTs))
		}
	}
}

func (s *seekCheck) report(rep *Report, sc *segCheck) {
	if sc.readErr != nil || sc.hdrCode == EFileVersion {
		return
	}
	for _, w := range s.wrong {
		rep.add(Problem{Code: EIndexBadSeek, File: sc.rel, Message: w})
	}
	s.misaligned = append(s.misaligned, s.seeks[s.i:]...)
	for _, sk := range s.misaligned {
		switch {
		case sk.Offset >= sc.validEnd():
			rep.add(Problem{Code: EIndexPastEnd, File: sc.rel, Offset: i64(sk.Offset), Seq: u64p(sk.Seq),
				Message: fmt.Sprintf("seek point past the segment's valid end at %d", sc.validEnd())})
		case !sc.damaged():
			// In a damaged segment it may point into the damage, reported already.
			rep.add(Problem{Code: EIndexBadSeek, File: sc.rel, Offset: i64(sk.Offset), Seq: u64p(sk.Seq), Message: "seek point not at a frame start"})
		}
	}
}

// checkChain applies shard/recover.go's chain rule: each segment's first seq
// (its name) is the previous segment's LastSeq+1, or the previous segment's
// first seq if it has no frames, or above that if its header declares a
// sequence floor with that gap (or records no gap's size).
func (v *verifier) checkChain(sh *shardCheck) {
	var prev *segCheck
	for i, sc := range sh.segs {
		if sc.readErr != nil || sc.hdrCode == EFileVersion {
			prev = nil // its extent is unknown: nothing to chain from
			continue
		}
		if sc.tornCreate && i == len(sh.segs)-1 {
			continue // the server removes it
		}
		if prev != nil {
			v.chainPair(prev, sc)
		}
		prev = sc
	}
}

func (v *verifier) chainPair(prev, sc *segCheck) {
	want := prev.nextAfter()
	switch {
	case sc.firstSeq > want && prevEndsDamaged(prev):
		// The lost end of prev explains the gap; its damage is reported.
	case declaredGap(prev, sc):
		v.rep.add(Problem{Code: ISeqFloor, File: sc.rel, Seq: u64p(want), Message: fmt.Sprintf(
			"segment declares a sequence floor at %d: seqs %d..%d were assigned once and are lost (a repair declared so); the server never assigns them again",
			sc.firstSeq, want, sc.firstSeq-1)})
	case sc.firstSeq > want && sc.declaresFloor():
		v.rep.add(Problem{Code: ESeqGap, File: sc.rel, Seq: u64p(want), Message: fmt.Sprintf(
			"segment declares a sequence floor at %d after a gap of %d seqs, but the previous one ends where seq %d would start, %d seqs below it: a segment is missing (seqs %d..%d)",
			sc.firstSeq, sc.hdr.FloorGap, want, sc.firstSeq-want, want, missingTo(prev, sc)-1)})
	case sc.firstSeq > want:
		v.rep.add(Problem{Code: ESeqGap, File: sc.rel, Seq: u64p(want), Message: fmt.Sprintf(
			"segment starts at seq %d, but the previous one ends where seq %d would start: seqs %d..%d are missing (a segment is gone)",
			sc.firstSeq, want, want, sc.firstSeq-1)})
	case sc.firstSeq < want:
		v.rep.add(Problem{Code: ESeqOrder, File: sc.rel, Seq: u64p(sc.firstSeq), Message: fmt.Sprintf(
			"segment starts at seq %d, but the previous one ends where seq %d would start: segments overlap", sc.firstSeq, want)})
	}
	if prev.frames() > 0 && sc.frames() > 0 && sc.summary().MinTs < prev.maxTs() {
		v.rep.add(Problem{Code: WTsOrder, File: sc.rel, Message: fmt.Sprintf(
			"first arrival %s is before the previous segment's last %s", fmtMs(sc.summary().MinTs), fmtMs(prev.maxTs()))})
	}
}

func prevEndsDamaged(sc *segCheck) bool {
	n := len(sc.regions)
	return sc.tornCreate || n > 0 && sc.regions[n-1].res.Tail != segment.TailClean
}

// checkCatalog compares index.db's catalog with the segments. The index may
// lag the segments (it is committed in batches), never lead them: an End
// short of the valid end is normal, one past it is not.
func (v *verifier) checkCatalog(sh *shardCheck, seeks map[uint64][]index.Seek) {
	if !sh.hasIndex {
		return
	}
	byID := map[uint64]*segCheck{}
	for _, sc := range sh.segs {
		byID[sc.id] = sc
	}
	missing := map[uint64]bool{}
	for _, c := range sh.catalog {
		sc := byID[c.ID]
		if sc == nil {
			missing[c.ID] = true
			v.missingSegment(sh, c.ID, c.Frames == 0 || v.trimmed(sh, c.LastSeq), c.FirstSeq)
			continue
		}
		v.catalogEntry(sc, c)
	}
	ids := make([]uint64, 0, len(seeks))
	for id := range seeks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if byID[id] == nil && !missing[id] {
			ss := seeks[id]
			v.missingSegment(sh, id, v.trimmed(sh, ss[len(ss)-1].Seq), ss[0].Seq)
		}
	}
}

// trimmed reports whether seq is below the shard's first live segment: the
// entry is for a segment retention removed.
func (v *verifier) trimmed(sh *shardCheck, seq uint64) bool {
	return len(sh.segs) > 0 && seq < sh.segs[0].firstSeq
}

func (v *verifier) missingSegment(sh *shardCheck, id uint64, stale bool, seq uint64) {
	if stale {
		v.rep.add(Problem{Code: WIndexStale, File: datadir.IndexFile, Seq: u64p(seq), Message: fmt.Sprintf(
			"%s: entries for segment %016x, removed by retention or as empty; the server drops them on open", sh.rel, id)})
		return
	}
	v.rep.add(Problem{Code: EIndexMissingSegment, File: datadir.IndexFile, Seq: u64p(seq), Message: fmt.Sprintf(
		"%s: entries for segment %016x (from seq %d), whose file is missing", sh.rel, id, seq)})
}

func (v *verifier) catalogEntry(sc *segCheck, c index.Segment) {
	if sc.readErr != nil || sc.hdrCode != "" || sc.tornCreate || sc.damaged() {
		return // damaged: reported already, and the catalog cannot be judged
	}
	end := sc.validEnd()
	if c.End > end {
		v.rep.add(Problem{Code: EIndexPastEnd, File: sc.rel, Offset: i64(c.End), Message: fmt.Sprintf("catalog says the segment ends at %d, its valid data ends at %d", c.End, end)})
		return
	}
	if c.End < end {
		return // lag
	}
	s := sc.summary()
	ok := c.FirstSeq == sc.firstSeq && c.Frames == s.Frames && c.Records == s.Records
	if s.Frames > 0 {
		ok = ok && c.LastSeq == s.LastSeq && c.MinTs == s.MinTs && c.MaxTs == s.MaxTs
	}
	if !ok {
		v.rep.add(Problem{Code: EIndexMismatch, File: sc.rel, Message: fmt.Sprintf(
			"catalog (first %d, last seq %d, %d frames, %d records, ts %d..%d) disagrees with the file (first %d, seqs %d..%d, %d frames, %d records, ts %d..%d)",
			c.FirstSeq, c.LastSeq, c.Frames, c.Records, c.MinTs, c.MaxTs,
			sc.firstSeq, s.FirstSeq, s.LastSeq, s.Frames, s.Records, s.MinTs, s.MaxTs)})
	}
}

func (v *verifier) summarize(sh *shardCheck, errs, warns int) {
	s := ShardSummary{Dir: sh.rel, Segments: len(sh.segs), Tail: "-", Errors: errs, Warnings: warns}
	for _, sc := range sh.segs {
		ss := sc.summary()
		if ss.Frames > 0 {
			if s.Frames == 0 {
				s.FirstSeq, s.MinTs = ss.FirstSeq, ss.MinTs
			}
			s.LastSeq, s.MaxTs = ss.LastSeq, ss.MaxTs
		}
		s.Frames += ss.Frames
		s.Records += ss.Records
		s.Stored += ss.Stored
		s.Raw += ss.Raw
		s.Tail = ss.Tail
	}
	v.rep.Shards = append(v.rep.Shards, s)
}
