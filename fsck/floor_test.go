package fsck_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// restart opens and closes the store, as a server start and stop does: the
// shard's newest segment is then an empty one whose header carries the
// sequence floor, and the segment that held the newest records is sealed.
func restart(t *testing.T, f *fixture) {
	t.Helper()
	if err := openStore(t, f).Close(); err != nil {
		t.Fatal(err)
	}
}

// lastData is the newest segment of shard that holds frames.
func lastData(t *testing.T, f *fixture, shard string) string {
	t.Helper()
	segs := f.segments(t, shard)
	for i := len(segs) - 1; i >= 0; i-- {
		if rel := filepath.Join(shard, segs[i]); len(f.frames(t, rel)) > 0 {
			return rel
		}
	}
	t.Fatalf("%s has no frames", shard)
	return ""
}

func lastFrame(t *testing.T, f *fixture, rel string) segment.FrameInfo {
	t.Helper()
	frs := f.frames(t, rel)
	return frs[len(frs)-1]
}

// rewriteFrame changes a frame's header and seals it with a valid CRC again:
// damage no CRC catches, as a writer bug (not bit rot) leaves it.
func rewriteFrame(t *testing.T, f *fixture, rel string, fi segment.FrameInfo, change func(h []byte)) {
	t.Helper()
	edit(t, f, rel, func(b []byte) []byte {
		frame := b[fi.Offset:fi.End()]
		change(frame[:segment.FrameHeaderSize])
		stored := frame[segment.FrameHeaderSize : segment.FrameHeaderSize+int(fi.StoredLen)]
		binary.LittleEndian.PutUint32(frame[52:], segment.FrameCRC(frame, stored))
		return b
	})
}

// shiftTs moves a frame's arrival range (header bytes 32..47) back by d ms;
// its records are stored relative to MinTs, so they still decode.
func shiftTs(h []byte, d int64) {
	for _, at := range []int{32, 40} {
		binary.LittleEndian.PutUint64(h[at:], uint64(int64(binary.LittleEndian.Uint64(h[at:]))-d))
	}
}

// floorFaults damage the end of the target shard's data so that repair drops
// its highest acknowledged sequences. Each returns the records that were
// never acknowledged (a torn last write), which the server may reissue.
var floorFaults = []struct {
	name  string
	fault fault
	floor bool // repair must write a floor segment (all but the torn newest tail)
}{
	{"restart, then a torn write at the end of the sealed segment before the empty newest", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		rel := lastData(t, f, pickShard(f))
		last := lastFrame(t, f, rel)
		edit(t, f, rel, func(b []byte) []byte { return b[:last.Offset+last.Size()/2] })
		return nil
	}, true},
	{"restart, then bit rot in the last frame of the sealed segment before the empty newest", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		rel := lastData(t, f, pickShard(f))
		flip(t, f, rel, lastFrame(t, f, rel).Offset+segment.FrameHeaderSize+3, 2)
		return nil
	}, true},
	{"restart, then the sealed segment before the empty newest is cut inside its file header", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		edit(t, f, lastData(t, f, pickShard(f)), func(b []byte) []byte { return b[:30] })
		return nil
	}, true},
	{"restart, then the sealed segment before the empty newest is deleted", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		if err := f.fs.Remove(f.abs(lastData(t, f, pickShard(f)))); err != nil {
			t.Fatal(err)
		}
		return nil
	}, true},
	{"arrival time goes backwards in the newest segment's last frame, CRC intact", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		frs := f.frames(t, rel)
		last, prev := frs[len(frs)-1], frs[len(frs)-2]
		rewriteFrame(t, f, rel, last, func(h []byte) { shiftTs(h, last.MinTs-prev.MaxTs+5) })
		return nil
	}, true},
	{"sequence numbers go backwards in the newest segment's last frame, CRC intact", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		frs := f.frames(t, rel)
		last, prev := frs[len(frs)-1], frs[len(frs)-2]
		rewriteFrame(t, f, rel, last, func(h []byte) { binary.LittleEndian.PutUint64(h[16:], prev.LastSeq) })
		return nil
	}, true},
	{"record count does not match in the newest segment's last frame, CRC intact", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		last := lastFrame(t, f, rel)
		// One more record than the payload holds: the seq range still fits it
		// once LastSeq moves up by one, so only decoding (--deep) sees it.
		rewriteFrame(t, f, rel, last, func(h []byte) {
			binary.LittleEndian.PutUint32(h[12:], last.Count+1)
			binary.LittleEndian.PutUint64(h[24:], last.LastSeq+1)
		})
		return nil
	}, true},
	{"bit rot in the newest segment, and the frame after it arrives before the damage", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		frs := f.frames(t, rel)
		n := len(frs)
		last, before := frs[n-1], frs[n-3]
		flip(t, f, rel, frs[n-2].Offset+segment.FrameHeaderSize+3, 2)
		rewriteFrame(t, f, rel, last, func(h []byte) { shiftTs(h, last.MinTs-before.MaxTs+5) })
		return nil
	}, true},
	{"torn write at the end of the newest segment (never acknowledged)", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		last := lastFrame(t, f, rel)
		edit(t, f, rel, func(b []byte) []byte { return b[:last.Offset+last.Size()/2] })
		return recsOf(f, pickShard(f), last)
	}, false},
}

// TestRepairKeepsSequenceFloor: whatever repair drops at the end of a shard,
// the server must not hand out those sequences again. A consumer may hold
// any acknowledged sequence; a new record under it would be skipped as
// already read. Repair writes an empty segment that declares the floor: the
// shard takes writes again, with sequences above every acknowledged one,
// across restarts too (each start replaces the empty newest segment, and the
// new one must declare the floor again), and a second repair finds nothing
// to do. A torn newest tail is the control: it was never acknowledged, the
// server reuses its sequences itself, and repair writes no floor.
func TestRepairKeepsSequenceFloor(t *testing.T) {
	base := newFixture(t, defaultStreams)
	for _, tc := range floorFaults {
		t.Run(tc.name, func(t *testing.T) {
			f := base.clone(t)
			shard := pickShard(f)
			unacked := tc.fault(t, f)
			ceiling := highestAck(f, shard, unacked)
			rep := checkRepair(t, f, unacked, -1)
			if got := hasFloorAction(rep, shard); got != tc.floor {
				t.Fatalf("floor segment written: %v, want %v:\n%s", got, tc.floor, outcome(t, rep))
			}
			for start := range 3 {
				s := openStore(t, f)
				seqs, refused := appendTo(t, f, s, shard)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if refused {
					t.Fatalf("start %d: the repaired shard refuses writes:\n%s", start, outcome(t, rep))
				}
				for _, seq := range seqs {
					if seq <= ceiling {
						t.Fatalf("start %d: new record got seq %d, but seqs up to %d were acknowledged before:\n%s", start, seq, ceiling, outcome(t, rep))
					}
					ceiling = max(ceiling, seq)
				}
			}
			v := verify(t, f.opts())
			if declared := slices.Contains(codes(v), string(fsck.ISeqFloor)); v.ExitCode() != fsck.ExitOK || declared != tc.floor {
				t.Fatalf("verify after restarts: want exit 0 and a declared floor %v:\n%s", tc.floor, text(t, v))
			}
			if shown := floorShown.MatchString(dump(t, f, fsck.DumpOptions{Path: shard})); shown != tc.floor {
				t.Fatalf("dump shows a declared floor with its gap: %v, want %v", shown, tc.floor)
			}
			again, err := fsck.Repair(f.opts(), false)
			if err != nil {
				t.Fatal(err)
			}
			if again.Repaired() || len(again.Lost) != 0 || again.ExitCode() != fsck.ExitOK {
				t.Fatalf("second repair:\n%s", outcome(t, again))
			}
		})
	}
}

// floorShown matches dump's header line of a segment that declares a floor
// and records its gap.
var floorShown = regexp.MustCompile(` seq_floor floor_gap=[1-9][0-9]*\n`)

// TestFloorAfterDeletedSegment: a floor declares only the gap it records.
// After a repair wrote one and the server carried it into the segment it
// started next, the segment before that one is deleted: the gap grows by
// seqs no repair declared lost, so verify reports a missing segment
// (E_SEQ_GAP, not I_SEQ_FLOOR) and the server refuses writes. Repair then
// reports those seqs lost and records the wider gap, after which the shard
// verifies clean and assigns above every seq it assigned before.
func TestFloorAfterDeletedSegment(t *testing.T) {
	f := newFixture(t, defaultStreams)
	shard := pickShard(f)
	ceiling := highestAck(f, shard, floorFaults[1].fault(t, f))
	checkRepair(t, f, nil, -1)
	for range 2 {
		s := openStore(t, f)
		seqs, _ := appendTo(t, f, s, shard)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		ceiling = max(ceiling, slices.Max(seqs))
	}
	segs := f.segments(t, shard)
	i := floorIndex(t, f, shard, segs)
	if i < 2 || len(f.frames(t, filepath.Join(shard, segs[i-1]))) == 0 {
		t.Fatalf("want a frame-holding segment before the floor at %d, after another one: %v", i, segs)
	}
	pred := filepath.Join(shard, segs[i-1])
	predFirst, _, _ := segment.ParseFileName(segs[i-1])
	predLast := lastFrame(t, f, pred).LastSeq
	if err := f.fs.Remove(f.abs(pred)); err != nil {
		t.Fatal(err)
	}
	v := verify(t, f.opts())
	if got := codes(v); v.ExitCode() == fsck.ExitOK || !slices.Contains(got, string(fsck.ESeqGap)) || slices.Contains(got, string(fsck.ISeqFloor)) {
		t.Fatalf("verify after the segment before the floor was deleted: want E_SEQ_GAP and no I_SEQ_FLOOR:\n%s", text(t, v))
	}
	s := openStore(t, f)
	if _, refused := appendTo(t, f, s, shard); !refused {
		t.Fatal("the server took writes with a segment missing before the floor")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	// Only the deleted segment's seqs are lost now: the first repair
	// reported the ones the floor declared.
	want := []fsck.LostRange{{Shard: shard, From: predFirst, To: predLast}}
	if got := lostRanges(rep); rep.ExitCode() != fsck.ExitRepaired || !slices.Equal(got, want) {
		t.Fatalf("repair: want exit 3 and lost %v, got %v:\n%s", want, got, text(t, rep))
	}
	if v := verify(t, f.opts()); v.ExitCode() != fsck.ExitOK || !slices.Contains(codes(v), string(fsck.ISeqFloor)) {
		t.Fatalf("verify after repair: want exit 0 and a declared floor:\n%s", text(t, v))
	}
	s = openStore(t, f)
	defer s.Close()
	seqs, refused := appendTo(t, f, s, shard)
	if refused || slices.Min(seqs) <= ceiling {
		t.Fatalf("after repair: refused %v, seqs %v, want all above %d:\n%s", refused, seqs, ceiling, outcome(t, rep))
	}
}

// floorIndex is the index in segs of the one segment of shard whose header
// declares a sequence floor.
func floorIndex(t *testing.T, f *fixture, shard string, segs []string) int {
	t.Helper()
	at := -1
	for i, n := range segs {
		b, err := f.fs.Bytes(f.abs(filepath.Join(shard, n)))
		if err != nil {
			t.Fatal(err)
		}
		h, err := segment.DecodeFileHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.Flags&segment.FlagSeqFloor == 0 {
			continue
		}
		if at >= 0 || h.FloorGap == 0 {
			t.Fatalf("%s: a second floor, or one without its gap (%d)", n, h.FloorGap)
		}
		at = i
	}
	if at < 0 {
		t.Fatalf("no segment of %s declares a floor: %v", shard, segs)
	}
	return at
}

// TestRepairInterruptedAfterFloor: repair puts the floor segment in place
// before it changes any other file of the shard, so a power cut at any later
// step leaves a directory where the server either refuses the shard's writes
// or assigns above the floor, never below it; and a repair run again then
// completes.
func TestRepairInterruptedAfterFloor(t *testing.T) {
	base := newFixture(t, defaultStreams)
	tc := floorFaults[1] // bit rot in the last frame before the empty newest: salvage, rebase and floor
	for renames := range 5 {
		t.Run(fmt.Sprintf("power cut at rename %d", renames+1), func(t *testing.T) {
			f := base.clone(t)
			shard := pickShard(f)
			ceiling := highestAck(f, shard, tc.fault(t, f))
			o := f.opts()
			o.FS = &failRenameFS{FS: f.fs, left: renames}
			if _, err := fsck.Repair(o, false); !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("repair with rename %d failing: %v", renames+1, err)
			}
			f.fs.Crash(nil, vfs.TearNone)
			s := openStore(t, f)
			seqs, _ := appendTo(t, f, s, shard)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, seq := range seqs {
				if seq <= ceiling {
					t.Fatalf("after the interrupted repair, a new record got seq %d; seqs up to %d were acknowledged", seq, ceiling)
				}
				ceiling = max(ceiling, seq)
			}
			rep, err := fsck.Repair(f.opts(), false)
			if err != nil {
				t.Fatal(err)
			}
			s = openStore(t, f)
			defer s.Close()
			seqs, refused := appendTo(t, f, s, shard)
			if refused {
				t.Fatalf("the shard refuses writes after the second repair:\n%s", outcome(t, rep))
			}
			for _, seq := range seqs {
				if seq <= ceiling {
					t.Fatalf("after the second repair, a new record got seq %d; seqs up to %d were assigned:\n%s", seq, ceiling, outcome(t, rep))
				}
			}
		})
	}
}

// failRenameFS lets left renames through, then fails every one.
type failRenameFS struct {
	vfs.FS
	left int
}

func (f *failRenameFS) Rename(from, to string) error {
	if f.left == 0 {
		return vfs.ErrInjected
	}
	f.left--
	return f.FS.Rename(from, to)
}

func hasFloorAction(rep *fsck.Report, shard string) bool {
	for _, a := range rep.Actions {
		if a.Kind == "floor" && a.File == shard {
			return true
		}
	}
	return false
}

// highestAck is the highest acknowledged sequence of shard, leaving out the
// records of a torn write.
func highestAck(f *fixture, shard string, unacked []rec) uint64 {
	cut := map[uint64]bool{}
	for _, r := range unacked {
		cut[r.seq] = true
	}
	var hi uint64
	for _, r := range f.acks[shard] {
		if !cut[r.seq] {
			hi = max(hi, r.seq)
		}
	}
	return hi
}

// appendTo puts records into shard's stream and returns the sequences the
// ones that landed on shard got, or refused if shard rejected them.
func appendTo(t *testing.T, f *fixture, s *storage.Store, shard string) (seqs []uint64, refused bool) {
	t.Helper()
	stream := strings.Split(path.Base(path.Dir(shard)), "-")[0]
	entries := make([]storage.PutEntry, 24)
	for i := range entries {
		entries[i] = storage.PutEntry{PartitionKey: fmt.Sprint("after-repair-", i), Data: []byte("new")}
	}
	res, err := s.Put(t.Context(), stream, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		switch {
		case r.ShardID != path.Base(shard):
		case r.Err != nil:
			refused = true
		default:
			p, err := seqnum.Parse(r.SequenceNumber)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, p.Ordinal)
		}
	}
	if len(seqs) == 0 && !refused {
		t.Fatalf("no probe record landed on %s", shard)
	}
	return seqs, refused
}

// outcome is the report without its segment and shard summaries.
func outcome(t *testing.T, rep *fsck.Report) string {
	var out []string
	for _, l := range strings.Split(text(t, rep), "\n") {
		if !strings.HasPrefix(l, "segment ") && !strings.HasPrefix(l, "shard ") && !strings.HasPrefix(l, "INFO ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// lostRanges is rep.Lost without the reasons.
func lostRanges(rep *fsck.Report) []fsck.LostRange {
	var out []fsck.LostRange
	for _, l := range rep.Lost {
		l.Reason = ""
		out = append(out, l)
	}
	return out
}
