package fsck

import (
	"fmt"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/segment"
)

// Planning a shard's segments: which to keep whole, rewrite (salvaging their
// valid frames) or move aside, what each new segment's first seq and floor
// gap are so the chain of segments holds, and which sequence ranges are lost.

// segPlan is what repair does with one segment.
type segPlan struct {
	sc      *segCheck
	aside   bool   // only move the original aside (a torn creation of the newest)
	rewrite bool   // write a new segment in its place
	first   uint64 // the new segment's first seq (name and header)
	// whole: copy the frame bytes [FileHeaderSize, validEnd) as they are (a
	// rebase of an intact segment); otherwise frames lists what to write.
	whole  bool
	frames []keptFrame
	why    string
	// floorGap is the new header's FloorGap (0 without FlagSeqFloor).
	floorGap uint32
}

// nextAfter is the first seq the segment after the planned one must start
// at (shard/recover.go seg.nextAfter): one above its last kept frame, or its
// first seq if it keeps none.
func (p segPlan) nextAfter() uint64 {
	if n := len(p.frames); n > 0 {
		return p.frames[n-1].LastSeq + 1
	}
	if p.whole && p.sc.frames() > 0 {
		return p.sc.lastSeq() + 1
	}
	return p.first
}

// keptFrame is a valid frame to write. Frames before a segment's first damage
// are copied byte for byte (their prevCRC chain starts at the file's start,
// as in the new file); frames after it are re-encoded, chained to the frame
// written before them.
type keptFrame struct {
	segment.FrameInfo
	verbatim bool
}

// segments walks the shard's segments in order, deciding each one's fate and
// tracking the sequence ranges lost between kept frames.
func (pl *repairPlanner) segments(sh *shardCheck) ([]segPlan, []LostRange, error) {
	var plans []segPlan
	lt := lostTracker{shard: sh.rel}
	var prev *segCheck
	var chainNext uint64 // the planned nextAfter of the previous segment
	for i, sc := range sh.segs {
		newest := i == len(sh.segs)-1
		if sc.tornCreate && newest {
			plans = append(plans, segPlan{sc: sc, aside: true, why: "torn creation: no header, no records"})
			continue
		}
		if prev == nil {
			lt.from = sc.firstSeq
		} else {
			lt.boundary(missingTo(prev, sc), sc.firstSeq > prev.nextAfter() && !prevEndsDamaged(prev) && !declaredGap(prev, sc), prev.nextAfter())
		}
		p, err := pl.planSegment(sh, sc, newest, &lt)
		if err != nil {
			return nil, nil, err
		}
		if prev != nil && !(sc.declaresFloor() && sc.firstSeq > chainNext) {
			// A declared floor stays: rebasing the segment below it would
			// let the server assign the seqs it keeps from reuse.
			p.first = chainNext
		}
		p.rewrite = p.rewrite || p.first != sc.firstSeq
		p.setFloorGap(prev != nil, chainNext)
		chainNext = p.nextAfter()
		plans = append(plans, p)
		prev = sc
	}
	lt.finish()
	return plans, lt.out, nil
}

// setFloorGap keeps the header's FloorGap, except for a floor kept above the
// previous segment's planned end (chainNext): its new header records the gap
// to that end, which a loss before it (a damaged end, a missing segment) may
// have widened. A recorded gap that no longer matches would read as a
// missing segment, so it forces a rewrite; an unrecorded one (0) does not.
func (p *segPlan) setFloorGap(hasPrev bool, chainNext uint64) {
	sc := p.sc
	p.floorGap = sc.hdr.FloorGap
	if !hasPrev || !sc.declaresFloor() || p.first <= chainNext {
		return
	}
	p.floorGap = segment.FloorGapOf(p.first, chainNext)
	p.rewrite = p.rewrite || sc.hdr.FloorGap != 0 && sc.hdr.FloorGap != p.floorGap
}

// planSegment picks the frames of one segment to keep. An intact segment is
// kept whole (it may still need a rebase); a damaged one is scanned again to
// list its frames.
func (pl *repairPlanner) planSegment(sh *shardCheck, sc *segCheck, newest bool, lt *lostTracker) (segPlan, error) {
	p := segPlan{sc: sc, first: sc.firstSeq}
	if sc.hdrCode == "" && !sc.tornCreate && !sc.damaged() {
		p.whole = true
		if sc.frames() > 0 {
			lt.keptSeqs(sc.summary().FirstSeq, sc.lastSeq())
		}
		return p, nil
	}
	p.rewrite = true
	if sc.tornCreate {
		lt.damage("sealed segment " + sc.name + " has no header")
		p.why = "sealed segment without a header"
		return p, nil
	}
	frames, err := pl.in.frames(sh, sc)
	if err != nil {
		return p, err
	}
	p.frames, p.why = keepFrames(sc, frames, newest, lt)
	return p, nil
}

// frames lists a segment's valid frames in file order, scanning it again the
// way verify did (same options, so the same regions).

// keepFrames chooses, region by region, the frames to write and records the
// damage between them. Frames after damage must still increase in seq and
// not go back in time against the kept ones (Scan's rules), or they are
// dropped too.
func keepFrames(sc *segCheck, frames []segment.FrameInfo, newest bool, lt *lostTracker) ([]keptFrame, string) {
	var out []keptFrame
	var why []string
	if sc.hdrCode != "" {
		why = append(why, "rebuilt the file header ("+string(sc.hdrCode)+")")
	}
	i := 0
	for ri, reg := range sc.regions {
		for j := 0; j < reg.res.Frames; j, i = j+1, i+1 {
			f := frames[i]
			if n := len(out); n > 0 && (f.FirstSeq <= out[n-1].LastSeq || f.MinTs < out[n-1].MaxTs) {
				lt.damage(fmt.Sprintf("%s: frame at offset %d out of order after damage", sc.name, f.Offset))
				continue
			}
			lt.kept(f.FirstSeq, f.LastSeq)
			out = append(out, keptFrame{FrameInfo: f, verbatim: ri == 0})
		}
		why = append(why, regionWhy(sc, reg, newest, lt)...)
	}
	return out, strings.Join(why, "; ")
}

// regionWhy describes a region's damaged end and records it as a loss,
// except a torn tail of the newest segment: that write was never
// acknowledged.
func regionWhy(sc *segCheck, reg region, newest bool, lt *lostTracker) []string {
	res := reg.res
	switch {
	case res.Tail == segment.TailClean:
		return nil
	case res.Tail == segment.TailTorn && newest:
		return []string{fmt.Sprintf("cut a torn tail of %d bytes at offset %d", sc.size-res.BadOffset, res.BadOffset)}
	case res.Tail == segment.TailTorn:
		lt.damage(fmt.Sprintf("%s: sealed segment torn at offset %d (%s)", sc.name, res.BadOffset, reg.cause))
		return []string{fmt.Sprintf("dropped %d torn bytes at offset %d", sc.size-res.BadOffset, res.BadOffset)}
	}
	lt.damage(fmt.Sprintf("%s: %s at offset %d", sc.name, reg.cause, res.BadOffset))
	if res.ResumeOffset != 0 {
		return []string{fmt.Sprintf("skipped damage (%s) at offsets %d..%d", reg.cause, res.BadOffset, res.ResumeOffset)}
	}
	return []string{fmt.Sprintf("dropped everything from offset %d (%s)", res.BadOffset, reg.cause)}
}

// lostTracker turns damage between kept frames into lost ranges: records
// between the last kept seq and the next kept seq, exclusive, when damage
// lies between them. A segment boundary bounds the loss from above (the next
// segment's name says where the damaged one ended) until more damage follows.
type lostTracker struct {
	shard   string
	from    uint64 // the shard's first seq, until a frame is kept
	last    uint64
	have    bool
	pending *lostMark
	out     []LostRange
}

type lostMark struct {
	reason string
	hi     uint64 // exclusive upper bound, if hiSet
	hiSet  bool
}

func (t *lostTracker) damage(reason string) {
	if t.pending == nil {
		t.pending = &lostMark{reason: reason}
		return
	}
	t.pending.hiSet = false
}

// boundary is the start of a segment whose name says firstSeq. gap: the
// previous segment ended cleanly before want, so a segment is missing.
func (t *lostTracker) boundary(firstSeq uint64, gap bool, want uint64) {
	switch {
	case t.pending != nil:
		t.pending.hi, t.pending.hiSet = firstSeq, true
	case gap:
		t.pending = &lostMark{reason: fmt.Sprintf("the segment holding seqs %d..%d is missing", want, firstSeq-1), hi: firstSeq, hiSet: true}
	}
}

func (t *lostTracker) kept(first, last uint64) {
	if p := t.pending; p != nil {
		hi := first
		if p.hiSet && p.hi < hi {
			hi = p.hi
		}
		t.emit(hi, false, p.reason)
		t.pending = nil
	}
	t.last, t.have = last, true
}

// keptSeqs records an intact segment's frames, first..last.
func (t *lostTracker) keptSeqs(first, last uint64) { t.kept(first, last) }

func (t *lostTracker) finish() {
	if p := t.pending; p != nil {
		t.emit(p.hi, !p.hiSet, p.reason)
		t.pending = nil
	}
}

func (t *lostTracker) emit(hiExcl uint64, open bool, reason string) {
	from := t.from
	if t.have {
		from = t.last + 1
	}
	if open || hiExcl > from {
		t.out = append(t.out, LostRange{Shard: t.shard, From: from, To: hiExcl - 1, Open: open, Reason: reason})
	}
}

// idAlloc hands out segment IDs above every ID in the shard directory, kept
// originals included, so no two files ever share one.
type idAlloc struct{ next uint64 }

func newIDs(sh *shardCheck) *idAlloc {
	a := &idAlloc{}
	for _, sc := range sh.segs {
		a.next = max(a.next, sc.id+1)
	}
	for _, n := range sh.others {
		if _, id, ok := parseBrokenName(n); ok {
			a.next = max(a.next, id+1)
		}
	}
	return a
}

func (a *idAlloc) take() uint64 { a.next++; return a.next - 1 }

// parseBrokenName parses "<segment>.broken" and "<segment>.<n>.broken".
func parseBrokenName(n string) (first, id uint64, ok bool) {
	base, found := strings.CutSuffix(n, datadir.BrokenExt)
	if !found {
		return 0, 0, false
	}
	if first, id, ok = segment.ParseFileName(base); ok {
		return first, id, ok
	}
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		return segment.ParseFileName(base[:i])
	}
	return 0, 0, false
}
