package shard

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// floorRig is a stopped shard after what `fsck repair` does when the frame
// holding the shard's highest ordinals is damaged: the frame is dropped, and
// an empty segment starting above it (the floor) is written, with flags and,
// with FlagSeqFloor, the exact gap.
type floorRig struct {
	*rig
	kept    []uint64 // acknowledged ordinals still stored
	ceiling uint64   // the highest ordinal ever acknowledged (dropped)
	floor   uint64
	lostAt  uint64 // the first lost ordinal: data's end after the drop
	data    string // the segment that held the dropped frame
	floorAt string // the floor segment's path
}

func newFloorRig(t *testing.T, flags uint32, tweak func(*Options)) *floorRig {
	r := newRig(t, tweak)
	var acked []uint64
	for i := range 4 {
		acked = append(acked, r.append(3, string(rune('a'+i)))...)
	}
	files := r.segFiles()
	fr := &floorRig{rig: r, ceiling: acked[len(acked)-1], data: files[len(files)-1]}
	r.stop()
	frames := r.frames(fr.data)
	last := frames[len(frames)-1]
	b, _ := r.fs.Bytes(fr.data)
	r.fs.SetBytes(fr.data, b[:last.Offset])
	fr.kept = acked[:len(acked)-int(last.Count)]
	fr.floor = fr.ceiling + 1
	fr.lostAt = r.header(fr.data).FirstSeq
	if n := len(frames); n > 1 {
		fr.lostAt = frames[n-2].LastSeq + 1
	}
	var gap uint32
	if flags&segment.FlagSeqFloor != 0 {
		gap = segment.FloorGapOf(fr.floor, fr.lostAt)
	}
	fr.floorAt = r.writeSegment(fr.floor, flags, gap)
	return fr
}

// stop shuts the shard and the index down cleanly.
func (r *rig) stop() {
	r.t.Helper()
	r.sh.Close()
	r.idx.Close()
	r.sh, r.idx = nil, nil
}

// writeSegment writes a durable, empty segment at first with an ID above
// every other, as fsck repair does, and returns its path.
func (r *rig) writeSegment(first uint64, flags, floorGap uint32) string {
	r.t.Helper()
	var id uint64
	for _, p := range r.segFiles() {
		_, sid, _ := segment.ParseFileName(filepath.Base(p))
		id = max(id, sid+1)
	}
	p := filepath.Join(shardDir, segment.FileName(first, id))
	w, err := segment.Create(r.fs, p, segment.FileHeader{SegmentID: id, FirstSeq: first, ShardKey: r.opts.ShardKey,
		CreatedNs: r.now.UnixNano(), Codec: segment.CodecZstd, Flags: flags, FloorGap: floorGap}, r.comp)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *rig) frames(path string) []segment.FrameInfo {
	r.t.Helper()
	f, err := r.fs.Open(path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out []segment.FrameInfo
	if _, err := segment.Scan(f, r.fileSize(path), segment.ScanOptions{Visit: func(fi segment.FrameInfo) error {
		out = append(out, fi)
		return nil
	}}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *rig) header(path string) segment.FileHeader {
	r.t.Helper()
	b, err := r.fs.Bytes(path)
	if err != nil {
		r.t.Fatal(err)
	}
	h, err := segment.DecodeFileHeader(b)
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

// checkAbove appends and checks that the new ordinals are above every one
// acknowledged before, and that the shard serves exactly kept and the new
// ones. It returns kept with the new ordinals.
func (r *rig) checkAbove(kept []uint64, ceiling uint64, tag string) []uint64 {
	r.t.Helper()
	if err := r.sh.Corrupt(); err != nil {
		r.t.Fatalf("%s: shard is corrupt: %v", tag, err)
	}
	more := r.append(3, tag)
	if more[0] <= ceiling {
		r.t.Fatalf("%s: new records got ordinals %v, but %d was acknowledged before", tag, more, ceiling)
	}
	kept = append(slices.Clone(kept), more...)
	if got := seqsOf(r.readAll()); !slices.Equal(got, kept) {
		r.t.Fatalf("%s: read %v, want %v", tag, got, kept)
	}
	return kept
}

// failRemoveFS fails every Remove, to stop a start between creating the new
// active segment and removing the empty ones before it.
type failRemoveFS struct{ vfs.FS }

func (failRemoveFS) Remove(string) error { return vfs.ErrInjected }

// TestSequenceFloor is a list of scenarios around a floor segment that fsck
// repair wrote after dropping the frame that held the shard's highest
// ordinals. In each, the server must never assign a dropped ordinal again,
// and a gap between segments that no header declares must still be a
// missing segment.
func TestSequenceFloor(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*Options)
		run   func(t *testing.T, r *floorRig)
	}{
		{"floor segment after a gap: accepted, writable, new ordinals start at the floor", nil, func(t *testing.T, r *floorRig) {
			r.boot()
			if err := r.sh.Corrupt(); err != nil {
				t.Fatalf("floor segment refused: %v", err)
			}
			if next := r.sh.Tip().Next; next != r.floor {
				t.Fatalf("next ordinal %d, want the floor %d", next, r.floor)
			}
			more := r.append(2, "after")
			if more[0] != r.floor {
				t.Fatalf("first new ordinal %d, want the floor %d", more[0], r.floor)
			}
			if got, want := seqsOf(r.readAll()), append(slices.Clone(r.kept), more...); !slices.Equal(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
		}},
		{"restarts after the floor segment was replaced: the new active segment declares the floor", nil, func(t *testing.T, r *floorRig) {
			r.boot()
			if _, err := r.fs.Open(r.floorAt); !vfs.IsNotExist(err) {
				t.Fatalf("the empty floor segment was kept: %v", err)
			}
			files := r.segFiles()
			active := files[len(files)-1]
			if h := r.header(active); h.FirstSeq != r.floor || h.Flags&segment.FlagSeqFloor == 0 || uint64(h.FloorGap) != r.floor-r.lostAt {
				t.Fatalf("new active segment header %+v: want first seq %d with FlagSeqFloor and gap %d", h, r.floor, r.floor-r.lostAt)
			}
			r.restart() // the new active segment is empty again: replaced once more
			r.restart()
			kept := r.checkAbove(r.kept, r.ceiling, "after restarts")
			r.restart() // the segment after the gap now holds frames
			r.checkAbove(kept, kept[len(kept)-1], "after one more restart")
		}},
		{"power cuts right after the floor segment is written and right after the server replaced it", nil, func(t *testing.T, r *floorRig) {
			for seed := range uint64(4) {
				rng := rand.New(rand.NewPCG(seed, 1))
				mode := vfs.TearMode(1 + seed%2)
				r.fs.Crash(rng, mode)
				r.boot()
				r.crash(rng, mode)
				r.boot()
				r.kept = r.checkAbove(r.kept, r.ceiling, "after the power cuts")
				r.ceiling = r.kept[len(r.kept)-1]
				r.stop()
			}
		}},
		{"power cut between creating the new active segment and removing the floor segment", nil, func(t *testing.T, r *floorRig) {
			idx, _, err := index.Open(filepath.Join(r.dir, "index.db"), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			opts := r.opts
			opts.Index, opts.FS = idx, failRemoveFS{r.fs}
			if _, err := Open(opts); !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("open with failing removes: %v", err)
			}
			idx.Discard()
			r.fs.Crash(nil, vfs.TearNone)
			if n := len(r.segFiles()); n != 3 {
				t.Fatalf("%d segments after the cut, want the data, floor and new active ones", n)
			}
			r.boot()
			kept := r.checkAbove(r.kept, r.ceiling, "after the power cut")
			r.restart()
			r.checkAbove(kept, kept[len(kept)-1], "after a restart")
		}},
		{"power cut after writes above the floor, the last one torn", nil, func(t *testing.T, r *floorRig) {
			r.boot()
			kept := r.checkAbove(r.kept, r.ceiling, "above the floor")
			r.fs.FailNextSync(nil)
			if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("unacked")}}, 0); err == nil {
				t.Fatal("append with a failed fsync was acknowledged")
			}
			r.crash(rand.New(rand.NewPCG(3, 3)), vfs.TearPrefix)
			r.boot()
			r.checkAbove(kept, kept[len(kept)-1], "after the power cut")
		}},
		{"disk full on the first write above the floor, then space comes back and the shard restarts", nil, func(t *testing.T, r *floorRig) {
			r.boot()
			r.fs.SetCapacity(r.fs.Used() + 10)
			if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: make([]byte, 200)}}, 0); !errors.Is(err, ErrDiskFull) {
				t.Fatalf("append on a full disk: %v", err)
			}
			r.fs.SetCapacity(0)
			// The segment leaveFull starts follows an empty one at the same
			// seq; the one before the gap is older. Once a restart removes
			// the empty one, only its own flag declares the gap.
			kept := r.checkAbove(r.kept, r.ceiling, "after space came back")
			r.restart()
			r.checkAbove(kept, kept[len(kept)-1], "after a restart")
		}},
		{"segment rolls above the floor: only the segment after the gap declares it", func(o *Options) { o.SegmentSize = 400 }, func(t *testing.T, r *floorRig) {
			r.boot()
			kept := r.kept
			for i := range 6 {
				kept = r.checkAbove(kept, kept[len(kept)-1], string(rune('p'+i)))
			}
			r.restart()
			r.checkAbove(kept, kept[len(kept)-1], "after a restart")
			if n := len(r.segFiles()); n < 4 {
				t.Fatalf("want rolls above the floor, have %d segments", n)
			}
			flagged := 0
			for _, p := range r.segFiles() {
				if h := r.header(p); h.Flags&segment.FlagSeqFloor != 0 {
					flagged++
					if h.FirstSeq != r.floor || uint64(h.FloorGap) != r.floor-r.lostAt {
						t.Fatalf("segment %s declares a floor at %d with gap %d; the only gap is %d..%d", p, h.FirstSeq, h.FloorGap, r.lostAt, r.floor-1)
					}
				}
			}
			if flagged != 1 {
				t.Fatalf("%d segments declare a floor, want 1 (of %d)", flagged, len(r.segFiles()))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newFloorRig(t, segment.FlagSeqFloor, tt.tweak))
		})
	}
}

// TestFloorWithoutRecordedGap: a floor segment whose header does not record
// the gap's size (FloorGap 0: written before the field existed) accepts any
// gap before it, as the flag alone did, and the segment the server starts
// next records the gap.
func TestFloorWithoutRecordedGap(t *testing.T) {
	r := newFloorRig(t, segment.FlagSeqFloor, nil)
	if err := r.fs.Remove(r.floorAt); err != nil {
		t.Fatal(err)
	}
	r.writeSegment(r.floor, segment.FlagSeqFloor, 0)
	r.boot()
	kept := r.checkAbove(r.kept, r.ceiling, "above a floor without its gap")
	files := r.segFiles()
	if h := r.header(files[len(files)-1]); uint64(h.FloorGap) != r.floor-r.lostAt {
		t.Fatalf("segment after the gap records gap %d, want %d", h.FloorGap, r.floor-r.lostAt)
	}
	r.restart()
	r.checkAbove(kept, kept[len(kept)-1], "after a restart")
}

// TestFloorAfterMissingSegment: a floor declares only the gap it recorded.
// When the segment before it goes too, the gap grows by that segment's
// seqs, which no repair declared lost: a missing segment, as without the
// flag. Each setup deletes the newest frame-holding segment before the
// floor and leaves an older one, so the gap is not a retention prefix.
func TestFloorAfterMissingSegment(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, r *floorRig)
	}{
		{"the segment before the floor segment repair wrote is deleted", func(t *testing.T, r *floorRig) {}},
		{"the segment before the one that declared the floor again is deleted", func(t *testing.T, r *floorRig) {
			r.boot()
			r.checkAbove(r.kept, r.ceiling, "above the floor")
			r.restart()
			r.stop()
			if _, err := r.fs.Open(r.floorAt); !vfs.IsNotExist(err) {
				t.Fatalf("the floor segment repair wrote is still there: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFloorRig(t, segment.FlagSeqFloor, func(o *Options) { o.SegmentSize = 800 })
			tt.setup(t, r)
			if files := r.segFiles(); files[0] == r.data || len(r.frames(r.data)) == 0 {
				t.Fatalf("want a frame-holding segment %s after another one, have %v", r.data, files)
			}
			if err := r.fs.Remove(r.data); err != nil {
				t.Fatal(err)
			}
			before := r.segFiles()
			r.boot()
			if err := r.sh.Corrupt(); err == nil || !strings.Contains(err.Error(), "a segment is missing") {
				t.Fatalf("a floor after a deleted segment: corrupt = %v, want a missing segment", err)
			}
			if after := r.segFiles(); !slices.Equal(after, before) {
				t.Fatalf("segments changed from %v to %v", before, after)
			}
		})
	}
}

// TestUndeclaredGapIsMissingSegment: a gap between segments that no header
// declares is a missing segment. The shard serves what it has, refuses
// writes and is left as it was.
func TestUndeclaredGapIsMissingSegment(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) *rig
	}{
		{"empty segment above the last frame without the floor flag", func(t *testing.T) *rig {
			return newFloorRig(t, 0, nil).rig
		}},
		{"segment deleted from the middle", func(t *testing.T) *rig {
			r := newRig(t, func(o *Options) { o.SegmentSize = 400 })
			for i := range 20 {
				r.append(4, string(rune('a'+i)))
			}
			r.stop()
			files := r.segFiles()
			if len(files) < 4 {
				t.Fatalf("want several segments, have %d", len(files))
			}
			if err := r.fs.Remove(files[len(files)/2]); err != nil {
				t.Fatal(err)
			}
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.setup(t)
			before := r.segFiles()
			r.boot()
			if r.sh.Corrupt() == nil {
				t.Fatal("a gap between segments without the floor flag was accepted")
			}
			if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("a shard with a missing segment accepted a write: %v", err)
			}
			if after := r.segFiles(); !slices.Equal(after, before) {
				t.Fatalf("segments changed from %v to %v", before, after)
			}
		})
	}
}
