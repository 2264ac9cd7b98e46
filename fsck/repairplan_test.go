package fsck

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
)

// planRepair is tested here on hand-made findings, without files: the
// inspector below answers its questions from maps. The fsck_test package
// checks the same plans end to end, applied to damaged directories.

const (
	tDir   = "/data"
	tShard = "streams/s-1/shardId-000000000000"
)

// fakeInspector serves frames by segment path and knows which files exist.
type fakeInspector struct {
	byPath    map[string][]segment.FrameInfo
	files     map[string]bool // in the FS
	osFiles   map[string]bool // through the OS
	framesErr error
}

func (f fakeInspector) frames(_ *shardCheck, sc *segCheck) ([]segment.FrameInfo, error) {
	return f.byPath[sc.path], f.framesErr
}

func (f fakeInspector) exists(p string) (bool, error) { return f.files[p], nil }
func (f fakeInspector) osExists(p string) bool        { return f.osFiles[p] }

// frameSize is every test frame's size, padding included.
const frameSize = 64

// tFrames are single-record frames of seqs from..to at consecutive offsets
// from off; a record's arrival time is its seq.
func tFrames(off int64, from, to uint64) []segment.FrameInfo {
	var out []segment.FrameInfo
	for s := from; s <= to; s++ {
		h := segment.FrameHeader{FirstSeq: s, LastSeq: s, MinTs: int64(s), MaxTs: int64(s), StoredLen: frameSize - segment.FrameHeaderSize}
		out = append(out, segment.FrameInfo{Offset: off, FrameHeader: h})
		off += frameSize
	}
	return out
}

// tRegion is a region of the frames of seqs from..to (none if to < from)
// starting at offset start (0: right after the header).
func tRegion(start int64, from, to uint64) region {
	off := max(start, segment.FileHeaderSize)
	res := segment.ScanResult{ValidEnd: off, Tail: segment.TailClean}
	if to >= from {
		n := int(to - from + 1)
		res.Frames, res.Records, res.FirstSeq, res.LastSeq = n, int64(n), from, to
		res.MinTs, res.MaxTs, res.ValidEnd = int64(from), int64(to), off+int64(n)*frameSize
	}
	return region{start: start, res: res}
}

// damagedAt ends r in damage of the kind tail at its ValidEnd, resuming at
// resume (0: nothing valid follows).
func damagedAt(r region, tail segment.TailState, cause Code, resume int64) region {
	r.res.Tail, r.res.BadOffset, r.res.ResumeOffset, r.cause = tail, r.res.ValidEnd, resume, cause
	return r
}

// tSeg is segment <first>-<id> of the test shard, of the given regions,
// its size the end of the last.
func tSeg(first, id uint64, regs ...region) *segCheck {
	name := segment.FileName(first, id)
	sc := &segCheck{segName: segName{name: name, firstSeq: first, id: id}, path: tDir + "/" + tShard + "/" + name, rel: tShard + "/" + name,
		hdr: segment.FileHeader{SegmentID: id, FirstSeq: first, CreatedNs: int64(id) * 1000, Codec: segment.CodecZstd}, regions: regs}
	sc.size = segment.FileHeaderSize
	for _, r := range regs {
		sc.size = max(sc.size, r.res.ValidEnd)
		if r.res.Tail != segment.TailClean && r.res.ResumeOffset == 0 {
			sc.size = r.res.BadOffset + 100 // the damaged bytes
		}
	}
	return sc
}

func tornCreation(first, id uint64) *segCheck {
	sc := tSeg(first, id)
	sc.tornCreate, sc.regions, sc.size = true, nil, 10
	return sc
}

func tShardCheck(segs ...*segCheck) *shardCheck {
	return &shardCheck{ref: shardRef{key: "s-1/shardId-000000000000", inMeta: true, hasDir: true, status: "ACTIVE", shardKey: 42},
		dir: tDir + "/" + tShard, rel: tShard, segs: segs}
}

// framesOf lists every frame the regions of the segments hold, by path, as
// the rescan would.
func framesOf(segs ...*segCheck) map[string][]segment.FrameInfo {
	out := map[string][]segment.FrameInfo{}
	for _, sc := range segs {
		for _, r := range sc.regions {
			if r.res.Frames > 0 {
				out[sc.path] = append(out[sc.path], tFrames(r.res.ValidEnd-int64(r.res.Frames)*frameSize, r.res.FirstSeq, r.res.LastSeq)...)
			}
		}
	}
	return out
}

func rel(name string) string { return tShard + "/" + name }

func segFile(first, id uint64) string { return rel(segment.FileName(first, id)) }

var indexAsideAction = Action{Kind: "index-aside", File: "index.db", Kept: "index.db.broken", Message: "the server rebuilds index.db from the segments on open"}

type repairPlanCase struct {
	name     string
	shard    *shardCheck
	problems []Problem
	files    []string // present in the FS besides the segments
	noIndex  bool     // index.db is missing
	actions  []Action
	lost     []LostRange
	notes    []string
}

func TestPlanRepair(t *testing.T) {
	for _, c := range repairPlanCases() {
		t.Run(c.name, func(t *testing.T) {
			in := fakeInspector{byPath: framesOf(c.shard.segs...), files: map[string]bool{}, osFiles: map[string]bool{}}
			for _, f := range c.files {
				if strings.HasPrefix(f, "index.db") {
					in.osFiles[tDir+"/"+f] = true
				} else {
					in.files[tDir+"/"+f] = true
				}
			}
			in.osFiles[tDir+"/index.db"] = !c.noIndex
			p, err := planRepair([]*shardCheck{c.shard}, c.problems, tDir, in)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.actions(); !reflect.DeepEqual(got, c.actions) {
				t.Errorf("actions:\n%s\nwant\n%s", showActions(got), showActions(c.actions))
			}
			if !reflect.DeepEqual(p.lost, c.lost) || !reflect.DeepEqual(p.notes, c.notes) {
				t.Errorf("lost %+v notes %q\nwant %+v notes %q", p.lost, p.notes, c.lost, c.notes)
			}
		})
	}
}

func showActions(as []Action) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\t%+v\n", a)
	}
	return b.String()
}

func withOthers(sh *shardCheck, names ...string) *shardCheck {
	sh.others = names
	return sh
}

func missingDir(status string, catalog ...index.Segment) *shardCheck {
	sh := tShardCheck()
	sh.ref.hasDir, sh.ref.status, sh.catalog = false, datadir.StreamStatus(status), catalog
	return sh
}

func unreadable(sc *segCheck) *segCheck {
	sc.readErr = errors.New("boom")
	return sc
}

// Offsets in the damaged segments below.
const (
	after3 = segment.FileHeaderSize + 3*frameSize // the end of three frames
	after5 = segment.FileHeaderSize + 5*frameSize
)

func repairPlanCases() []repairPlanCase {
	healthy := func() *shardCheck {
		return tShardCheck(tSeg(1, 1, tRegion(0, 1, 10)), tSeg(11, 2, tRegion(0, 11, 20)))
	}
	name11 := segment.FileName(11, 2)
	crc := damagedAt(tRegion(0, 1, 3), segment.TailCorrupt, EFrameCRC, after5)
	return []repairPlanCase{
		{name: "healthy", shard: healthy()},
		{name: "index wrong", shard: healthy(), problems: []Problem{{Code: EIndexMismatch}}, actions: []Action{indexAsideAction}},
		{name: "index wrong, a copy kept before", shard: healthy(), problems: []Problem{{Code: WIndexStale}}, files: []string{"index.db.broken"},
			actions: []Action{{Kind: "index-aside", File: "index.db", Kept: "index.db.broken.1", Message: indexAsideAction.Message}}},
		{name: "index wrong but gone", shard: healthy(), problems: []Problem{{Code: WIndexUnreadable}}, noIndex: true},
		{name: "temporary files", shard: withOthers(healthy(), "x.tmp", name11+".broken", "y.tmp"), actions: []Action{
			{Kind: "remove-tmp", File: rel("x.tmp"), Message: "unfinished temporary file"},
			{Kind: "remove-tmp", File: rel("y.tmp"), Message: "unfinished temporary file"},
			indexAsideAction,
		}},
		{name: "torn creation of the newest", shard: tShardCheck(tSeg(1, 1, tRegion(0, 1, 10)), tornCreation(11, 2)), actions: []Action{
			{Kind: "move-aside", File: segFile(11, 2), Kept: segFile(11, 2) + ".broken", Message: "torn creation: no header, no records"},
			indexAsideAction,
		}},
		{name: "torn creation, a copy kept before", shard: tShardCheck(tSeg(1, 1, tRegion(0, 1, 10)), tornCreation(11, 2)),
			files: []string{segFile(11, 2) + ".broken"}, actions: []Action{
				{Kind: "move-aside", File: segFile(11, 2), Kept: segFile(11, 2) + ".1.broken", Message: "torn creation: no header, no records"},
				indexAsideAction,
			}},
		{name: "torn tail of the newest", shard: tShardCheck(tSeg(1, 1, damagedAt(tRegion(0, 1, 5), segment.TailTorn, "", 0))), actions: []Action{
			{Kind: "salvage", File: segFile(1, 1), NewFile: segFile(1, 2), Kept: segFile(1, 1) + ".broken",
				Message: fmt.Sprintf("cut a torn tail of 100 bytes at offset %d; kept 5 of 5 frames (5 copied, 0 re-encoded)", after5)},
			indexAsideAction,
		}},
		{name: "damage inside a sealed segment", shard: tShardCheck(tSeg(1, 1, crc, tRegion(after5, 6, 8)), tSeg(9, 2, tRegion(0, 9, 10))),
			actions: []Action{
				{Kind: "salvage", File: segFile(1, 1), NewFile: segFile(1, 3), Kept: segFile(1, 1) + ".broken",
					Message: fmt.Sprintf("skipped damage (E_FRAME_CRC) at offsets %d..%d; kept 6 of 6 frames (3 copied, 3 re-encoded)", after3, after5)},
				indexAsideAction,
			},
			lost: []LostRange{{Shard: tShard, From: 4, To: 5, Reason: fmt.Sprintf("%s: E_FRAME_CRC at offset %d", segment.FileName(1, 1), after3)}}},
		// The shard's newest seqs are lost: the floor segment goes first,
		// with the first ID free, so the server never assigns 4..5 again.
		{name: "damage to the end before the empty newest", shard: floorShard(), actions: []Action{
			{Kind: "floor", File: tShard, NewFile: segFile(6, 3),
				Message: "empty segment with sequence floor 6, so that the server never assigns seqs 4..5 again (they were assigned before, and are lost)"},
			{Kind: "salvage", File: segFile(1, 1), NewFile: segFile(1, 4), Kept: segFile(1, 1) + ".broken",
				Message: fmt.Sprintf("dropped everything from offset %d (E_FRAME_CRC); kept 3 of 3 frames (3 copied, 0 re-encoded)", after3)},
			{Kind: "rebase", File: segFile(6, 2), NewFile: segFile(4, 5), Kept: segFile(6, 2) + ".broken",
				Message: "first seq 6 -> 4, so the segment chain holds after the loss before it; 0 frames copied"},
			indexAsideAction,
		}, lost: []LostRange{{Shard: tShard, From: 4, To: 5, Reason: fmt.Sprintf("%s: E_FRAME_CRC at offset %d", segment.FileName(1, 1), after3)}}},
		{name: "missing segment", shard: tShardCheck(tSeg(1, 1, tRegion(0, 1, 10)), tSeg(21, 2, tRegion(0, 21, 30))), actions: []Action{
			{Kind: "rebase", File: segFile(21, 2), NewFile: segFile(11, 3), Kept: segFile(21, 2) + ".broken",
				Message: "first seq 21 -> 11, so the segment chain holds after the loss before it; 10 frames copied"},
			indexAsideAction,
		}, lost: []LostRange{{Shard: tShard, From: 11, To: 20, Reason: "the segment holding seqs 11..20 is missing"}}},
		{name: "missing directory, index.db knows its end", shard: missingDir("ACTIVE", index.Segment{ID: 3, FirstSeq: 1, LastSeq: 9, Frames: 4}), actions: []Action{
			{Kind: "mkdir", File: tShard, NewFile: segFile(10, 4), Message: "recreated the missing shard directory, empty, with an empty segment keeping the sequence floor 10"},
			indexAsideAction,
		}, lost: []LostRange{{Shard: tShard, From: 1, To: 9, Reason: "the shard directory is gone"}}},
		{name: "missing directory, index.db does not know it", shard: missingDir("UPDATING"), actions: []Action{
			{Kind: "mkdir", File: tShard, Message: "recreated the missing shard directory, empty"},
			indexAsideAction,
		}, lost: []LostRange{{Shard: tShard, Open: true, Reason: "the shard directory is gone; index.db does not say how far it reached"}}},
		{name: "missing directory of a stream being deleted", shard: missingDir("DELETING", index.Segment{ID: 3, FirstSeq: 1, LastSeq: 9, Frames: 4})},
		{name: "unreadable segment", shard: withOthers(tShardCheck(unreadable(tSeg(1, 1)), tSeg(1, 2, tRegion(0, 1, 3))), "a.tmp"), actions: []Action{
			{Kind: "remove-tmp", File: rel("a.tmp"), Message: "unfinished temporary file"},
			indexAsideAction,
		}, notes: []string{tShard + ": not repaired: " + segment.FileName(1, 1) + " is unreadable: boom"}},
		{name: "overlapping segments", shard: tShardCheck(tSeg(1, 1, tRegion(0, 1, 10)), tSeg(5, 2, tRegion(0, 5, 12))),
			notes: []string{tShard + ": not repaired: " + segment.FileName(5, 2) + " overlaps the segment before it"}},
	}
}

// floorShard's first segment has a CRC failure in its last two frames, and
// its newest segment is empty: repair loses seqs 4 and 5, the newest ones.
func floorShard() *shardCheck {
	return tShardCheck(tSeg(1, 1, damagedAt(tRegion(0, 1, 3), segment.TailCorrupt, EFrameCRC, 0)), tSeg(6, 2, tRegion(0, 1, 0)))
}

// TestPlanRepairHeaders checks the headers of the files the floor case
// writes: the floor declares the gap to the rebased newest segment, and
// every new file takes its original's creation time and the shard's key.
func TestPlanRepairHeaders(t *testing.T) {
	sh := floorShard()
	p, err := planRepair([]*shardCheck{sh}, nil, tDir, fakeInspector{byPath: framesOf(sh.segs...)})
	if err != nil {
		t.Fatal(err)
	}
	var got []segment.FileHeader
	for _, s := range p.steps {
		switch s := s.(type) {
		case floorStep:
			got = append(got, s.hdr)
		case segStep:
			got = append(got, s.hdr)
		}
	}
	want := []segment.FileHeader{
		{SegmentID: 3, FirstSeq: 6, ShardKey: 42, CreatedNs: 2000, Codec: segment.CodecZstd, Flags: segment.FlagSeqFloor, FloorGap: segment.FloorGapOf(6, 4)},
		{SegmentID: 4, FirstSeq: 1, ShardKey: 42, CreatedNs: 1000, Codec: segment.CodecZstd},
		{SegmentID: 5, FirstSeq: 4, ShardKey: 42, CreatedNs: 2000, Codec: segment.CodecZstd},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("headers\n%+v\nwant\n%+v", got, want)
	}
}

// TestPlanRepairRescanFails checks that a segment that changed since verify
// read it stops the plan, so the repair changes nothing.
func TestPlanRepairRescanFails(t *testing.T) {
	sh := floorShard()
	boom := errors.New("changed")
	_, err := planRepair([]*shardCheck{sh}, nil, tDir, fakeInspector{framesErr: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
}
