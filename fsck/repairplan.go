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

// Planning a repair. planRepair turns the verifier's findings into every
// step of the repair, in the order they are applied, before any is: a dry
// run reports the plan, a repair applies it (repair.go). Planning changes
// nothing; what it reads beyond the findings (a damaged segment's frames,
// which names are free) comes through an inspector, read-only.
//
// Steps do not depend on each other's results: each new file takes an ID
// above every ID in its shard directory and a kept original takes a name no
// file has, so no step's name is one an earlier step creates. What only
// applying can decide is whether it succeeds: a rewritten segment is checked
// after it is written (writeSegment), and a failure stops the repair there.

// inspector is what planning reads of the data directory beyond the
// findings.
type inspector interface {
	// frames lists a damaged segment's valid frames in file order.
	frames(sh *shardCheck, sc *segCheck) ([]segment.FrameInfo, error)
	// exists reports whether a file is present in the data directory's FS.
	exists(p string) (bool, error)
	// osExists reports whether a file is present, through the OS: index.db
	// is opened by path, outside the FS.
	osExists(p string) bool
}

// dirInspector reads the directory being repaired.
type dirInspector struct {
	fs  vfs.FS
	dec *decoder
}

// frames scans the segment again the way verify did (same options, so the
// same regions).
func (d dirInspector) frames(sh *shardCheck, sc *segCheck) ([]segment.FrameInfo, error) {
	var out []segment.FrameInfo
	again := analyzeSegment(d.fs, sc.path, sc.rel, sc.segName, sh.ref.shardKey, true, d.dec, func(f segment.FrameInfo) error {
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

func (d dirInspector) exists(p string) (bool, error) {
	f, err := d.fs.Open(p)
	if vfs.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fsck: %w", err)
	}
	f.Close()
	return true, nil
}

func (dirInspector) osExists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, os.ErrNotExist)
}

// repairPlan is a whole repair: its steps in order, the sequence ranges
// they lose, and what it cannot repair.
type repairPlan struct {
	steps []step
	lost  []LostRange
	notes []string
}

// actions are the steps as the report lists them.
func (p *repairPlan) actions() []Action {
	var out []Action
	for _, s := range p.steps {
		out = append(out, s.action())
	}
	return out
}

// step is one change: the Action the report shows, and how to make it.
type step interface {
	action() Action
	apply(r *repairer) error
}

type stepAction struct{ act Action }

func (s stepAction) action() Action { return s.act }

// mkdirStep recreates a missing shard directory, with an empty segment at
// the sequence floor if index.db knows it (floor non-nil).
type mkdirStep struct {
	stepAction
	dir   string
	name  string
	floor *segment.FileHeader
}

// removeStep deletes an unfinished temporary file.
type removeStep struct {
	stepAction
	path string
}

// floorStep writes an empty segment that keeps the shard's sequence floor.
type floorStep struct {
	stepAction
	dir  string
	name string
	hdr  segment.FileHeader
}

// segStep replaces a segment by a new one (name, hdr) written as p says and
// keeps the original as kept; with p.aside it only moves the original.
type segStep struct {
	stepAction
	dir  string
	p    segPlan
	name string
	hdr  segment.FileHeader
	kept string
}

// indexStep moves index.db (src) aside to dst, in the data directory dir.
type indexStep struct {
	stepAction
	dir, src, dst string
}

// repairPlanner builds a repairPlan.
type repairPlanner struct {
	in   inspector
	plan repairPlan
}

// planRepair plans the repair of shards, given the problems verify found
// and the data directory dir.
func planRepair(shards []*shardCheck, problems []Problem, dir string, in inspector) (*repairPlan, error) {
	pl := &repairPlanner{in: in}
	for _, sh := range shards {
		if err := pl.shard(sh); err != nil {
			return nil, err
		}
	}
	if err := pl.indexAside(problems, dir); err != nil {
		return nil, err
	}
	return &pl.plan, nil
}

func (pl *repairPlanner) add(s step) { pl.plan.steps = append(pl.plan.steps, s) }

func (pl *repairPlanner) note(format string, args ...any) {
	pl.plan.notes = append(pl.plan.notes, fmt.Sprintf(format, args...))
}

// shard plans one shard's repair. The floor segment, if one is needed, comes
// before any other change to the shard's segments (floor.go).
func (pl *repairPlanner) shard(sh *shardCheck) error {
	if !sh.ref.hasDir {
		pl.recreateDir(sh)
		return nil
	}
	pl.removeTmp(sh)
	if why := unrepairable(sh); why != "" {
		pl.note("%s: not repaired: %s", sh.rel, why)
		return nil
	}
	if !needsRepair(sh) {
		return nil
	}
	plans, lost, err := pl.segments(sh)
	if err != nil {
		return err
	}
	pl.plan.lost = append(pl.plan.lost, lost...)
	ids := newIDs(sh)
	if fl, ok := needFloor(sh, plans); ok {
		pl.add(newFloorStep(sh, fl, ids))
	}
	for _, p := range plans {
		if err := pl.segStep(sh, p, ids); err != nil {
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

// segStep plans one segment's replacement, if p changes it.
func (pl *repairPlanner) segStep(sh *shardCheck, p segPlan, ids *idAlloc) error {
	sc := p.sc
	if !p.aside && !p.rewrite {
		return nil
	}
	kept, err := pl.keptName(sc.path)
	if err != nil {
		return err
	}
	s := segStep{dir: sh.dir, p: p, kept: kept}
	s.act = Action{Kind: "salvage", File: sc.rel, Kept: path.Join(sh.rel, filepath.Base(kept)), Message: p.why}
	if p.aside {
		s.act.Kind = "move-aside"
		pl.add(s)
		return nil
	}
	id := ids.take()
	s.name = segment.FileName(p.first, id)
	s.hdr = segment.FileHeader{SegmentID: id, FirstSeq: p.first, ShardKey: sh.ref.shardKey, CreatedNs: sc.hdr.CreatedNs, Codec: sc.hdr.Codec,
		Flags: sc.hdr.Flags, FloorGap: p.floorGap, Key: sc.hdr.Key}
	s.act.NewFile = path.Join(sh.rel, s.name)
	if p.why == "" {
		s.act.Kind, s.act.Message = "rebase", rebaseWhy(p)
	}
	s.act.Message = strings.TrimPrefix(fmt.Sprintf("%s; %s", s.act.Message, frameCounts(p)), "; ")
	pl.add(s)
	return nil
}

// rebaseWhy describes the header change of an intact segment rewritten
// whole: a new first seq, or else a sequence floor's new gap.
func rebaseWhy(p segPlan) string {
	if sc := p.sc; p.first == sc.firstSeq {
		return fmt.Sprintf("sequence floor gap %d -> %d, so the segment chain holds after the loss before it", sc.hdr.FloorGap, p.floorGap)
	}
	return fmt.Sprintf("first seq %d -> %d, so the segment chain holds after the loss before it", p.sc.firstSeq, p.first)
}

func frameCounts(p segPlan) string {
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
func (pl *repairPlanner) keptName(p string) (string, error) {
	base := strings.TrimSuffix(p, segment.FileExt) + segment.FileExt
	for n := 0; n < 1000; n++ {
		cand := base + datadir.BrokenExt
		if n > 0 {
			cand = fmt.Sprintf("%s.%d%s", base, n, datadir.BrokenExt)
		}
		taken, err := pl.in.exists(cand)
		if err != nil {
			return "", err
		}
		if !taken {
			return cand, nil
		}
	}
	return "", fmt.Errorf("fsck: too many kept copies of %s", p)
}

// removeTmp deletes *.tmp files, as the server does on open: they are
// unfinished writes, never data.
func (pl *repairPlanner) removeTmp(sh *shardCheck) {
	for _, n := range sh.others {
		if !strings.HasSuffix(n, datadir.TmpExt) {
			continue
		}
		pl.add(removeStep{stepAction{Action{Kind: "remove-tmp", File: path.Join(sh.rel, n), Message: "unfinished temporary file"}},
			filepath.Join(sh.dir, n)})
	}
}

// recreateDir handles a shard meta.db lists without a directory. Its records
// are gone; the server would recreate the directory empty and restart the
// shard's sequence at its first ordinal, reissuing numbers clients may hold.
// If index.db still knows how far the shard got, repair writes an empty
// segment there instead, which carries that sequence floor.
func (pl *repairPlanner) recreateDir(sh *shardCheck) {
	if !sh.ref.inMeta || sh.ref.status == datadir.StatusCreating || sh.ref.status == datadir.StatusDeleting {
		return // the server finishes creating or deleting it
	}
	floor, lastID, known := catalogFloor(sh)
	s := mkdirStep{dir: sh.dir}
	s.act = Action{Kind: "mkdir", File: sh.rel, Message: "recreated the missing shard directory, empty"}
	lost := LostRange{Shard: sh.rel, Open: true, Reason: "the shard directory is gone; index.db does not say how far it reached"}
	if known {
		s.name = segment.FileName(floor, lastID+1)
		s.floor = &segment.FileHeader{SegmentID: lastID + 1, FirstSeq: floor, ShardKey: sh.ref.shardKey, Codec: segment.CodecZstd}
		s.act.NewFile = path.Join(sh.rel, s.name)
		s.act.Message += fmt.Sprintf(", with an empty segment keeping the sequence floor %d", floor)
		lost = LostRange{Shard: sh.rel, From: catalogFirst(sh), To: floor - 1, Reason: "the shard directory is gone"}
	}
	pl.add(s)
	pl.plan.lost = append(pl.plan.lost, lost)
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
func (pl *repairPlanner) indexAside(problems []Problem, dir string) error {
	indexBad := false
	for _, p := range problems {
		c := string(p.Code)
		if strings.HasPrefix(c, "E_INDEX_") || strings.HasPrefix(c, "W_INDEX_") {
			indexBad = true // a rebuild clears stale and orphan entries too
		}
	}
	if len(pl.plan.steps) == 0 && !indexBad {
		return nil
	}
	src := datadir.IndexPath(dir)
	if !pl.in.osExists(src) {
		return nil
	}
	dst, err := pl.uniqueOSName(src + datadir.BrokenExt)
	if err != nil {
		return err
	}
	pl.add(indexStep{stepAction{Action{Kind: "index-aside", File: datadir.IndexFile, Kept: filepath.Base(dst),
		Message: "the server rebuilds index.db from the segments on open"}}, dir, src, dst})
	return nil
}

func (pl *repairPlanner) uniqueOSName(p string) (string, error) {
	for n := 0; n < 1000; n++ {
		cand := p
		if n > 0 {
			cand = fmt.Sprintf("%s.%d", p, n)
		}
		if !pl.in.osExists(cand) {
			return cand, nil
		}
	}
	return "", fmt.Errorf("fsck: too many kept copies of %s", p)
}
