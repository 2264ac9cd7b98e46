package fsck

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// Repair brings a data directory back to a state the server opens and
// serves: it rewrites damaged segments keeping every valid frame, rebases the
// segment after lost data so the chain of segments holds, moves torn
// creations aside, recreates missing shard directories, deletes *.tmp files,
// and moves index.db aside so the server rebuilds it. Every original is kept
// as <name>.broken. It then verifies the result: the returned report holds
// that verification's findings, the actions taken and the sequence ranges
// lost. With dryRun it changes nothing and reports what it would do. Where
// the repair would let the server assign seqs again, it first writes an empty
// segment that keeps the shard's sequence floor (floor.go).
//
// Repair takes the data directory's LOCK exclusively, as the server does, and
// fails with ErrInUse beside a running server. Stream and Shard are ignored:
// it repairs the whole directory. Frames are always decoded (--deep), since
// salvaged ones are re-encoded.
func Repair(opts Options, dryRun bool) (*Report, error) {
	opts.Stream, opts.Shard, opts.Deep = "", "", true
	lock, err := repairLock(opts.Dir, dryRun)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	pre, err := verifyLocked(opts)
	if err != nil {
		return nil, err
	}
	defer pre.close()
	r := &repairer{v: pre, fs: pre.opts.FS, dry: dryRun, out: &Report{DryRun: dryRun}}
	for _, sh := range pre.shards {
		if err := r.shard(sh); err != nil {
			return nil, err
		}
	}
	if err := r.indexAside(); err != nil {
		return nil, err
	}
	return r.finish(opts)
}

func repairLock(dir string, dryRun bool) (*datadir.Lock, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDataDir, dir)
	}
	if !dryRun {
		return lockExclusive(dir)
	}
	l, live, err := lockShared(dir)
	if err == nil && live {
		err = fmt.Errorf("%w: %s; stop it first", ErrInUse, dir)
	}
	return l, err
}

// verifyLocked runs a verifier under a lock the caller holds.
func verifyLocked(opts Options) (*verifier, error) {
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	v.locked = true
	if err := v.run(); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

type repairer struct {
	v   *verifier
	fs  vfs.FS
	dry bool
	out *Report
}

// finish verifies the repaired directory (or, for a dry run, keeps the
// findings that led to the plan) and adds the actions and losses.
func (r *repairer) finish(opts Options) (*Report, error) {
	final := r.v.rep
	if !r.dry {
		post, err := verifyLocked(opts)
		if err != nil {
			return nil, fmt.Errorf("fsck: verify after repair: %w", err)
		}
		post.close()
		final = post.rep
	}
	final.DryRun = r.dry
	final.Actions, final.Lost, final.Notes = r.out.Actions, r.out.Lost, r.out.Notes
	return final, nil
}

func (r *repairer) act(a Action) { r.out.Actions = append(r.out.Actions, a) }

func (r *repairer) note(format string, args ...any) {
	r.out.Notes = append(r.out.Notes, fmt.Sprintf(format, args...))
}

// shard repairs one shard.
func (r *repairer) shard(sh *shardCheck) error {
	if !sh.ref.hasDir {
		return r.recreateDir(sh)
	}
	if err := r.removeTmp(sh); err != nil {
		return err
	}
	if why := unrepairable(sh); why != "" {
		r.note("%s: not repaired: %s", sh.rel, why)
		return nil
	}
	if !needsRepair(sh) {
		return nil
	}
	plans, lost, err := r.plan(sh)
	if err != nil {
		return err
	}
	r.out.Lost = append(r.out.Lost, lost...)
	ids := newIDs(sh)
	if fl, ok := needFloor(sh, plans); ok {
		if err := r.writeFloor(sh, fl, ids); err != nil {
			return err
		}
	}
	for _, p := range plans {
		if err := r.execute(sh, p, ids); err != nil {
			return err
		}
	}
	return nil
}

// unrepairable names what repair cannot fix safely: unreadable files, a
// format it does not know, or overlapping segments (which copy is right is
// not knowable from here).
func unrepairable(sh *shardCheck) string {
	var prev *segCheck
	for _, sc := range sh.segs {
		switch {
		case sc.readErr != nil:
			return fmt.Sprintf("%s is unreadable: %v", sc.name, sc.readErr)
		case sc.hdrCode == EFileVersion:
			return fmt.Sprintf("%s: %v", sc.name, sc.hdrErr)
		case prev != nil && sc.firstSeq < prev.nextAfter():
			return fmt.Sprintf("%s overlaps the segment before it", sc.name)
		}
		prev = sc
	}
	return ""
}

func needsRepair(sh *shardCheck) bool {
	var prev *segCheck
	for _, sc := range sh.segs {
		if sc.hdrCode != "" || sc.tornCreate || sc.damaged() || prev != nil && sc.firstSeq != prev.nextAfter() && !declaredGap(prev, sc) {
			return true
		}
		prev = sc
	}
	return false
}

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

// plan walks the shard's segments in order, deciding each one's fate and
// tracking the sequence ranges lost between kept frames.
func (r *repairer) plan(sh *shardCheck) ([]segPlan, []LostRange, error) {
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
		p, err := r.planSegment(sh, sc, newest, &lt)
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
func (r *repairer) planSegment(sh *shardCheck, sc *segCheck, newest bool, lt *lostTracker) (segPlan, error) {
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
	frames, err := r.frames(sh, sc)
	if err != nil {
		return p, err
	}
	p.frames, p.why = keepFrames(sc, frames, newest, lt)
	return p, nil
}

// frames lists a segment's valid frames in file order, scanning it again the
// way verify did (same options, so the same regions).
func (r *repairer) frames(sh *shardCheck, sc *segCheck) ([]segment.FrameInfo, error) {
	var out []segment.FrameInfo
	again := analyzeSegment(r.fs, sc.path, sc.rel, sc.segName, sh.ref.shardKey, true, r.v.comp, func(f segment.FrameInfo) error {
		out = append(out, f)
		return nil
	})
	if again.readErr != nil {
		return nil, fmt.Errorf("fsck: rescan %s: %w", sc.rel, again.readErr)
	}
	if int64(len(out)) != sc.frames() || len(again.regions) != len(sc.regions) {
		return nil, fmt.Errorf("fsck: %s changed during repair (%d frames, then %d)", sc.rel, sc.frames(), len(out))
	}
	return out, nil
}

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

// execute carries out one segment's plan.
func (r *repairer) execute(sh *shardCheck, p segPlan, ids *idAlloc) error {
	sc := p.sc
	if !p.aside && !p.rewrite {
		return nil
	}
	kept, err := r.keptName(sc.path)
	if err != nil {
		return err
	}
	a := Action{Kind: "salvage", File: sc.rel, Kept: path.Join(sh.rel, filepath.Base(kept)), Message: p.why}
	if p.aside {
		a.Kind = "move-aside"
		r.act(a)
		return r.moveAside(sh, "", "", sc.path, kept)
	}
	id := ids.take()
	name := segment.FileName(p.first, id)
	a.NewFile = path.Join(sh.rel, name)
	if p.why == "" {
		a.Kind, a.Message = "rebase", rebaseWhy(p)
	}
	a.Message = strings.TrimPrefix(fmt.Sprintf("%s; %s", a.Message, r.frameCounts(p)), "; ")
	r.act(a)
	if r.dry {
		return nil
	}
	hdr := segment.FileHeader{SegmentID: id, FirstSeq: p.first, ShardKey: sh.ref.shardKey, CreatedNs: sc.hdr.CreatedNs, Codec: sc.hdr.Codec,
		Flags: sc.hdr.Flags, FloorGap: p.floorGap}
	final := filepath.Join(sh.dir, name)
	if err := r.writeSegment(final+datadir.TmpExt, sc.path, hdr, p); err != nil {
		return err
	}
	return r.moveAside(sh, final+datadir.TmpExt, final, sc.path, kept)
}

// rebaseWhy describes the header change of an intact segment rewritten
// whole: a new first seq, or else a sequence floor's new gap.
func rebaseWhy(p segPlan) string {
	if sc := p.sc; p.first == sc.firstSeq {
		return fmt.Sprintf("sequence floor gap %d -> %d, so the segment chain holds after the loss before it", sc.hdr.FloorGap, p.floorGap)
	}
	return fmt.Sprintf("first seq %d -> %d, so the segment chain holds after the loss before it", p.sc.firstSeq, p.first)
}

func (r *repairer) frameCounts(p segPlan) string {
	if p.whole {
		return fmt.Sprintf("%d frames copied", p.sc.frames())
	}
	var verb, enc int
	for _, f := range p.frames {
		if f.verbatim {
			verb++
		} else {
			enc++
		}
	}
	return fmt.Sprintf("kept %d of %d frames (%d copied, %d re-encoded)", len(p.frames), p.sc.frames(), verb, enc)
}

// keptName is where an original goes: <name>.broken, or <name>.<n>.broken if
// an earlier repair already used that.
func (r *repairer) keptName(p string) (string, error) {
	base := strings.TrimSuffix(p, segment.FileExt) + segment.FileExt
	for n := 0; n < 1000; n++ {
		cand := base + datadir.BrokenExt
		if n > 0 {
			cand = fmt.Sprintf("%s.%d%s", base, n, datadir.BrokenExt)
		}
		f, err := r.fs.Open(cand)
		if vfs.IsNotExist(err) {
			return cand, nil
		}
		if err != nil {
			return "", fmt.Errorf("fsck: %w", err)
		}
		f.Close()
	}
	return "", fmt.Errorf("fsck: too many kept copies of %s", p)
}

// moveAside puts the new segment (tmp) in place, then moves the original to
// kept, then syncs the directory. The new file comes first: a crash between
// the renames leaves both, which the server refuses as overlapping segments
// (read-only, nothing lost) rather than a missing segment.
func (r *repairer) moveAside(sh *shardCheck, tmp, final, orig, kept string) error {
	if r.dry {
		return nil
	}
	if tmp != "" {
		if err := r.fs.Rename(tmp, final); err != nil {
			return fmt.Errorf("fsck: %w", err)
		}
	}
	if err := r.fs.Rename(orig, kept); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if err := r.fs.SyncDir(sh.dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}

// removeTmp deletes *.tmp files, as the server does on open: they are
// unfinished writes, never data.
func (r *repairer) removeTmp(sh *shardCheck) error {
	for _, n := range sh.others {
		if !strings.HasSuffix(n, datadir.TmpExt) {
			continue
		}
		r.act(Action{Kind: "remove-tmp", File: path.Join(sh.rel, n), Message: "unfinished temporary file"})
		if r.dry {
			continue
		}
		if err := r.fs.Remove(filepath.Join(sh.dir, n)); err != nil {
			return fmt.Errorf("fsck: %w", err)
		}
	}
	return nil
}

// recreateDir handles a shard meta.db lists without a directory. Its records
// are gone; the server would recreate the directory empty and restart the
// shard's sequence at its first ordinal, reissuing numbers clients may hold.
// If index.db still knows how far the shard got, repair writes an empty
// segment there instead, which carries that sequence floor.
func (r *repairer) recreateDir(sh *shardCheck) error {
	if !sh.ref.inMeta || sh.ref.status == "CREATING" || sh.ref.status == "DELETING" {
		return nil // the server finishes creating or deleting it
	}
	floor, lastID, known := catalogFloor(sh)
	a := Action{Kind: "mkdir", File: sh.rel, Message: "recreated the missing shard directory, empty"}
	lost := LostRange{Shard: sh.rel, Open: true, Reason: "the shard directory is gone; index.db does not say how far it reached"}
	if known {
		name := segment.FileName(floor, lastID+1)
		a.NewFile = path.Join(sh.rel, name)
		a.Message += fmt.Sprintf(", with an empty segment keeping the sequence floor %d", floor)
		lost = LostRange{Shard: sh.rel, From: catalogFirst(sh), To: floor - 1, Reason: "the shard directory is gone"}
	}
	r.act(a)
	r.out.Lost = append(r.out.Lost, lost)
	if r.dry {
		return nil
	}
	if err := r.fs.MkdirAll(sh.dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if known {
		hdr := segment.FileHeader{SegmentID: lastID + 1, FirstSeq: floor, ShardKey: sh.ref.shardKey, Codec: segment.CodecZstd}
		if err := r.placeEmpty(filepath.Join(sh.dir, segment.FileName(floor, lastID+1)), hdr); err != nil {
			return err
		}
	}
	// MkdirAll may have made the stream directory too: sync every level
	// down from streams/.
	for d := sh.dir; d != filepath.Dir(filepath.Dir(filepath.Dir(sh.dir))); d = filepath.Dir(d) {
		if err := r.fs.SyncDir(d); err != nil {
			return fmt.Errorf("fsck: %w", err)
		}
	}
	return nil
}

// catalogFloor is the next seq the shard would have assigned, per index.db.
func catalogFloor(sh *shardCheck) (floor, lastID uint64, known bool) {
	for _, c := range sh.catalog {
		next := c.FirstSeq
		if c.Frames > 0 {
			next = c.LastSeq + 1
		}
		floor, lastID, known = max(floor, next), max(lastID, c.ID), true
	}
	for _, s := range sh.seeks {
		floor = max(floor, s.Seq+1)
	}
	return floor, lastID, known && floor > 0
}

func catalogFirst(sh *shardCheck) uint64 {
	first := ^uint64(0)
	for _, c := range sh.catalog {
		first = min(first, c.FirstSeq)
	}
	return first
}

// indexAside moves index.db aside when anything changed or the index itself
// was found wrong: the server rebuilds it from the segments on open. (Writing
// a catalog here would duplicate the shard's recovery and could disagree
// with it.)
func (r *repairer) indexAside() error {
	indexBad := false
	for _, p := range r.v.rep.Problems {
		c := string(p.Code)
		if strings.HasPrefix(c, "E_INDEX_") || strings.HasPrefix(c, "W_INDEX_") {
			indexBad = true // a rebuild clears stale and orphan entries too
		}
	}
	if len(r.out.Actions) == 0 && !indexBad {
		return nil
	}
	src := datadir.IndexPath(r.v.opts.Dir)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dst, err := uniqueOSName(src + datadir.BrokenExt)
	if err != nil {
		return err
	}
	r.act(Action{Kind: "index-aside", File: datadir.IndexFile, Kept: filepath.Base(dst), Message: "the server rebuilds index.db from the segments on open"})
	if r.dry {
		return nil
	}
	// Close our read-only handle first: the server will want the file.
	if r.v.ix != nil {
		r.v.ix.Close()
		r.v.ix = nil
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if err := datadir.SyncDir(r.v.opts.Dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}

func uniqueOSName(p string) (string, error) {
	for n := 0; n < 1000; n++ {
		cand := p
		if n > 0 {
			cand = fmt.Sprintf("%s.%d", p, n)
		}
		if _, err := os.Stat(cand); errors.Is(err, os.ErrNotExist) {
			return cand, nil
		}
	}
	return "", fmt.Errorf("fsck: too many kept copies of %s", p)
}
