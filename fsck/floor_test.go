package fsck_test

import (
	"encoding/binary"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
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
}{
	{"restart, then a torn write at the end of the sealed segment before the empty newest", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		rel := lastData(t, f, pickShard(f))
		last := lastFrame(t, f, rel)
		edit(t, f, rel, func(b []byte) []byte { return b[:last.Offset+last.Size()/2] })
		return nil
	}},
	{"restart, then bit rot in the last frame of the sealed segment before the empty newest", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		rel := lastData(t, f, pickShard(f))
		flip(t, f, rel, lastFrame(t, f, rel).Offset+segment.FrameHeaderSize+3, 2)
		return nil
	}},
	{"restart, then the sealed segment before the empty newest is cut inside its file header", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		edit(t, f, lastData(t, f, pickShard(f)), func(b []byte) []byte { return b[:30] })
		return nil
	}},
	{"restart, then the sealed segment before the empty newest is deleted", func(t *testing.T, f *fixture) []rec {
		restart(t, f)
		if err := f.fs.Remove(f.abs(lastData(t, f, pickShard(f)))); err != nil {
			t.Fatal(err)
		}
		return nil
	}},
	{"arrival time goes backwards in the newest segment's last frame, CRC intact", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		frs := f.frames(t, rel)
		last, prev := frs[len(frs)-1], frs[len(frs)-2]
		rewriteFrame(t, f, rel, last, func(h []byte) { shiftTs(h, last.MinTs-prev.MaxTs+5) })
		return nil
	}},
	{"sequence numbers go backwards in the newest segment's last frame, CRC intact", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		frs := f.frames(t, rel)
		last, prev := frs[len(frs)-1], frs[len(frs)-2]
		rewriteFrame(t, f, rel, last, func(h []byte) { binary.LittleEndian.PutUint64(h[16:], prev.LastSeq) })
		return nil
	}},
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
	}},
	{"bit rot in the newest segment, and the frame after it arrives before the damage", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		frs := f.frames(t, rel)
		n := len(frs)
		last, before := frs[n-1], frs[n-3]
		flip(t, f, rel, frs[n-2].Offset+segment.FrameHeaderSize+3, 2)
		rewriteFrame(t, f, rel, last, func(h []byte) { shiftTs(h, last.MinTs-before.MaxTs+5) })
		return nil
	}},
	{"torn write at the end of the newest segment (never acknowledged)", func(t *testing.T, f *fixture) []rec {
		rel := lastData(t, f, pickShard(f))
		last := lastFrame(t, f, rel)
		edit(t, f, rel, func(b []byte) []byte { return b[:last.Offset+last.Size()/2] })
		return recsOf(f, pickShard(f), last)
	}},
}

// TestRepairKeepsSequenceFloor: whatever repair drops at the end of a shard,
// the server must not hand out those sequences again. A consumer may hold
// any acknowledged sequence; a new record under it would be skipped as
// already read. Either new records get sequences above every acknowledged
// one, or the shard takes no writes and the report says why.
func TestRepairKeepsSequenceFloor(t *testing.T) {
	base := newFixture(t, defaultStreams)
	for _, tc := range floorFaults {
		t.Run(tc.name, func(t *testing.T) {
			f := base.clone(t)
			shard := pickShard(f)
			ceiling := highestAck(f, shard, tc.fault(t, f))
			rep, err := fsck.Repair(f.opts(), false)
			if err != nil {
				t.Fatal(err)
			}
			s := openStore(t, f)
			defer s.Close()
			seqs, refused := appendTo(t, f, s, shard)
			for _, seq := range seqs {
				if seq <= ceiling {
					t.Fatalf("new record got seq %d, but seqs up to %d were acknowledged before the repair:\n%s", seq, ceiling, outcome(t, rep))
				}
			}
			if floor, ok := notedFloor(rep, shard); refused && (!ok || floor <= ceiling) {
				t.Fatalf("the shard refuses writes, but the report names no sequence floor above %d:\n%s", ceiling, outcome(t, rep))
			}
		})
	}
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

// notedFloor is the sequence floor a note of the report gives for shard.
func notedFloor(rep *fsck.Report, shard string) (uint64, bool) {
	for _, n := range rep.Notes {
		_, after, found := strings.Cut(n, "sequence floor ")
		var floor uint64
		if strings.HasPrefix(n, shard+":") && found {
			if _, err := fmt.Sscan(after, &floor); err == nil {
				return floor, true
			}
		}
	}
	return 0, false
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
