package fsck

import (
	"fmt"
	"path"
	"path/filepath"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/segment"
)

// Sequence floor.
//
// A shard never hands out a seq twice: a consumer may hold any seq the
// server ever assigned, and a new record under it would be skipped as
// already read. On open the server starts at its newest segment's nextAfter,
// so a repair that drops the shard's newest frames would make it assign
// their seqs again. Repair then writes an empty segment at the floor with
// segment.FlagSeqFloor: the server accepts the gap before such a segment
// (shard/recover.go checkChain), starts at its FirstSeq, and declares the
// floor again in the header of the segment it starts next. The floor
// segment goes in first, before any file of the shard changes, so a crash
// in the middle of the repair leaves the server no way to start below it.

// floorSeg is the floor segment a repair must write.
type floorSeg struct {
	first uint64 // the floor: floorBefore
	from  uint64 // where the server would start the repaired shard without it: floorAfter
}

// needFloor says whether plans would make the server start the repaired
// shard below its floor, and if so, which floor segment prevents it.
func needFloor(sh *shardCheck, plans []segPlan) (floorSeg, bool) {
	fl := floorSeg{first: floorBefore(sh), from: floorAfter(plans)}
	return fl, fl.from < fl.first
}

// floorBefore is one above the highest seq the shard's files show: in a
// segment name (the server names a segment after the next seq it would
// assign), a valid frame, or an intact frame (CRC right) at corrupt damage,
// which the server wrote even if it breaks an invariant. A torn region is
// left out: it holds no intact frame the server acknowledged, and the
// server itself cuts a torn tail of the newest segment and reuses its seqs.
func floorBefore(sh *shardCheck) uint64 {
	var floor uint64
	for _, sc := range sh.segs {
		floor = max(floor, sc.firstSeq)
		for _, reg := range sc.regions {
			if reg.res.Frames > 0 {
				floor = max(floor, reg.res.LastSeq+1)
			}
			if reg.res.Tail == segment.TailCorrupt && reg.badLast > 0 {
				floor = max(floor, reg.badLast+1)
			}
		}
	}
	return floor
}

// floorAfter is the seq the server would start the repaired shard at: the
// nextAfter of the newest segment the plans leave (a torn creation moved
// aside leaves none).
func floorAfter(plans []segPlan) uint64 {
	for i := len(plans) - 1; i >= 0; i-- {
		if !plans[i].aside {
			return plans[i].nextAfter()
		}
	}
	return 0
}

// newFloorStep plans the floor segment, with an ID above every segment ID
// in the directory (kept originals included), so it sorts after every
// segment the plans leave: they all start at or below fl.from.
func newFloorStep(sh *shardCheck, fl floorSeg, ids *idAlloc) floorStep {
	id := ids.take()
	name := segment.FileName(fl.first, id)
	act := Action{Kind: "floor", File: sh.rel, NewFile: path.Join(sh.rel, name), Message: fmt.Sprintf(
		"empty segment with sequence floor %d, so that the server never assigns seqs %d..%d again (they were assigned before, and are lost)",
		fl.first, fl.from, fl.first-1)}
	// The floor sorts right after the newest segment the plans leave, which
	// ends at fl.from: the gap recorded is exactly the lost seqs.
	hdr := segment.FileHeader{SegmentID: id, FirstSeq: fl.first, ShardKey: sh.ref.shardKey, CreatedNs: newestCreated(sh),
		Codec: segment.CodecZstd, Flags: segment.FlagSeqFloor, FloorGap: segment.FloorGapOf(fl.first, fl.from)}
	return floorStep{stepAction{act}, sh.dir, name, hdr}
}

// apply puts the floor segment in place durably.
func (s floorStep) apply(r *repairer) error {
	if err := r.placeEmpty(filepath.Join(s.dir, s.name), s.hdr); err != nil {
		return err
	}
	if err := r.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}

// placeEmpty writes an empty segment with hdr to final through a synced
// temporary file. The caller syncs the directory.
func (r *repairer) placeEmpty(final string, hdr segment.FileHeader) error {
	if err := r.writeSegment(final+datadir.TmpExt, "", hdr, segPlan{}); err != nil {
		return err
	}
	if err := r.fs.Rename(final+datadir.TmpExt, final); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}

// newestCreated is the latest creation time in the shard's headers: a
// deterministic stand-in for "now" that is no earlier than the data.
func newestCreated(sh *shardCheck) int64 {
	var ns int64
	for _, sc := range sh.segs {
		ns = max(ns, sc.hdr.CreatedNs)
	}
	return ns
}
