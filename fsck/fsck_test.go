package fsck_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// fault damages a fixture. It returns the records the damage makes
// unrecoverable by design rather than by loss: a torn write was never
// acknowledged, so repair does not report it as lost (nil if none).
type fault func(t *testing.T, f *fixture) (unacked []rec)

// target names the segments faults aim at: a sealed segment in the middle of
// a shard, and a shard's newest.
type target struct{ shard, sealed, newest string }

func pick(t *testing.T, f *fixture) target {
	t.Helper()
	shard := f.shardDirs()[1] // orders shard 0
	segs := f.segments(t, shard)
	if len(segs) < 4 {
		t.Fatalf("fixture shard %s has %d segments, want >= 4", shard, len(segs))
	}
	return target{shard, filepath.Join(shard, segs[2]), filepath.Join(shard, segs[len(segs)-1])}
}

func flip(t *testing.T, f *fixture, rel string, off int64, bit uint) {
	t.Helper()
	if err := f.fs.FlipBit(f.abs(rel), off, bit); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, f *fixture, rel string, change func([]byte) []byte) {
	t.Helper()
	b, err := f.fs.Bytes(f.abs(rel))
	if err != nil {
		t.Fatal(err)
	}
	f.fs.SetBytes(f.abs(rel), change(b))
}

// recsOf lists the acknowledged records of a frame.
func recsOf(f *fixture, shard string, fi segment.FrameInfo) []rec {
	var out []rec
	for _, r := range f.acks[shard] {
		if r.seq >= fi.FirstSeq && r.seq <= fi.LastSeq {
			out = append(out, r)
		}
	}
	return out
}

var faults = []struct {
	name  string
	fault fault
	code  fsck.Code
	exit  int
	// lost is the number of records repair must report lost (-1: do not check).
	lost int
}{
	{"bit flip in a frame payload", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		fr := f.frames(t, tg.sealed)[1]
		flip(t, f, tg.sealed, fr.Offset+segment.FrameHeaderSize+3, 2)
		return nil
	}, fsck.EFrameCRC, fsck.ExitErrors, -1},
	{"bit flip in a frame header", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		fr := f.frames(t, tg.sealed)[1]
		flip(t, f, tg.sealed, fr.Offset, 1) // type 1 -> 3
		return nil
	}, fsck.EFrameHeader, fsck.ExitErrors, -1},
	{"bit flip making a frame header insane", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		fr := f.frames(t, tg.sealed)[1]
		flip(t, f, tg.sealed, fr.Offset+16, 0) // first seq 30 -> 31, past last seq 30
		return nil
	}, fsck.EFrameHeader, fsck.ExitErrors, -1},
	{"frame cut out of the middle", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.sealed)
		edit(t, f, tg.sealed, func(b []byte) []byte { return append(b[:frs[1].Offset:frs[1].Offset], b[frs[2].Offset:]...) })
		return nil
	}, fsck.EFrameChain, fsck.ExitErrors, -1},
	{"bit flip in a file header", func(t *testing.T, f *fixture) []rec {
		flip(t, f, pick(t, f).sealed, 20, 4)
		return nil
	}, fsck.EFileHeader, fsck.ExitErrors, 0},
	{"truncated tail of the newest segment", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.newest)
		last := frs[len(frs)-1]
		edit(t, f, tg.newest, func(b []byte) []byte { return b[:last.Offset+last.Size()/2] })
		return recsOf(f, tg.shard, last)
	}, fsck.WTornTail, fsck.ExitWarnings, 0},
	{"truncated sealed segment", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.sealed)
		last := frs[len(frs)-1]
		edit(t, f, tg.sealed, func(b []byte) []byte { return b[:last.Offset+20] })
		return nil
	}, fsck.ETornSealed, fsck.ExitErrors, -1},
	{"zeroed range", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.sealed)
		edit(t, f, tg.sealed, func(b []byte) []byte {
			clear(b[frs[1].Offset:frs[2].Offset])
			return b
		})
		return nil
	}, fsck.EZeroRange, fsck.ExitErrors, -1},
	{"garbage appended to the newest segment", func(t *testing.T, f *fixture) []rec {
		edit(t, f, pick(t, f).newest, func(b []byte) []byte { return append(b, garbage(300)...) })
		return nil
	}, fsck.WTornTail, fsck.ExitWarnings, 0},
	{"garbage appended to a sealed segment", func(t *testing.T, f *fixture) []rec {
		edit(t, f, pick(t, f).sealed, func(b []byte) []byte { return append(b, garbage(300)...) })
		return nil
	}, fsck.ETornSealed, fsck.ExitErrors, 0},
	{"sealed segment cut inside its file header", func(t *testing.T, f *fixture) []rec {
		edit(t, f, pick(t, f).sealed, func(b []byte) []byte { return b[:30] })
		return nil
	}, fsck.EFileHeader, fsck.ExitErrors, -1},
	{"torn creation of a new newest segment", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.newest)
		_, id, _ := segment.ParseFileName(filepath.Base(tg.newest))
		f.fs.SetBytes(f.abs(filepath.Join(tg.shard, segment.FileName(frs[len(frs)-1].LastSeq+1, id+1))), make([]byte, segment.FileHeaderSize))
		return nil
	}, fsck.WTornTail, fsck.ExitWarnings, 0},
	{"segment deleted from the middle", func(t *testing.T, f *fixture) []rec {
		if err := f.fs.Remove(f.abs(pick(t, f).sealed)); err != nil {
			t.Fatal(err)
		}
		return nil
	}, fsck.ESeqGap, fsck.ExitErrors, -1},
	{"index entry past the end", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.sealed)
		first, id, _ := segment.ParseFileName(filepath.Base(tg.sealed))
		last := frs[len(frs)-1]
		submit(t, f, index.Update{Shard: indexKey(tg.shard), Segments: []index.Segment{{ID: id, FirstSeq: first, LastSeq: last.LastSeq + 5,
			MinTs: frs[0].MinTs, MaxTs: last.MaxTs, End: last.End() + 4096, Frames: int64(len(frs)) + 1, Records: 100}}})
		return nil
	}, fsck.EIndexPastEnd, fsck.ExitErrors, 0},
	{"index seek point past the end", func(t *testing.T, f *fixture) []rec {
		tg := pick(t, f)
		frs := f.frames(t, tg.sealed)
		_, id, _ := segment.ParseFileName(filepath.Base(tg.sealed))
		submit(t, f, index.Update{Shard: indexKey(tg.shard), Seeks: []index.Seek{{Seq: frs[len(frs)-1].LastSeq, SegID: id, Offset: frs[len(frs)-1].End() + 64}}})
		return nil
	}, fsck.EIndexPastEnd, fsck.ExitErrors, 0},
	{"metadata for a shard whose directory is gone", func(t *testing.T, f *fixture) []rec {
		if err := f.fs.RemoveAll(f.abs(pick(t, f).shard)); err != nil {
			t.Fatal(err)
		}
		return nil
	}, fsck.EMetaNoDir, fsck.ExitErrors, -1},
}

func garbage(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131 + 17)
	}
	return b
}

func indexKey(shard string) string { return shard[len("streams/"):] }

func submit(t *testing.T, f *fixture, u index.Update) {
	t.Helper()
	ix, _, err := index.Open(filepath.Join(f.dir, "index.db"), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ix.Submit(u)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptionMatrix injects each fault into a copy of one fixture and
// checks that verify names it, repair fixes it, verify is then clean, and
// the server serves every record outside the ranges repair reports lost.
func TestCorruptionMatrix(t *testing.T) {
	base := newFixture(t, defaultStreams)
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			f := base.clone(t)
			unacked := tc.fault(t, f)
			rep := verify(t, f.opts())
			if !slices.Contains(codes(rep), string(tc.code)) || rep.ExitCode() != tc.exit {
				t.Fatalf("verify: want %s and exit %d, got exit %d:\n%s", tc.code, tc.exit, rep.ExitCode(), text(t, rep))
			}
			deep := f.opts()
			deep.Deep = true
			if got := verify(t, deep); !slices.Contains(codes(got), string(tc.code)) {
				t.Fatalf("verify --deep: want %s:\n%s", tc.code, text(t, got))
			}
			checkRepair(t, f, unacked, tc.lost)
		})
	}
}

func checkRepair(t *testing.T, f *fixture, unacked []rec, wantLost int) *fsck.Report {
	t.Helper()
	dry, err := fsck.Repair(f.opts(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Actions) == 0 || dry.ExitCode() == fsck.ExitRepaired {
		t.Fatalf("dry run: want planned actions and no repaired exit:\n%s", text(t, dry))
	}
	if again := verify(t, f.opts()); again.Errors+again.Warnings == 0 {
		t.Fatal("dry run changed the directory")
	}
	rep, err := fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode() != fsck.ExitRepaired || rep.Errors+rep.Warnings != 0 {
		t.Fatalf("repair: want exit 3 and a clean result:\n%s", text(t, rep))
	}
	if v := verify(t, f.opts()); v.ExitCode() != fsck.ExitOK {
		t.Fatalf("verify after repair:\n%s", text(t, v))
	}
	lost := checkServed(t, f, rep.Lost, unacked)
	if wantLost >= 0 && lost != wantLost {
		t.Fatalf("%d acknowledged records in lost ranges, want %d:\n%s", lost, wantLost, text(t, rep))
	}
	if v := verify(t, f.opts()); v.ExitCode() != fsck.ExitOK {
		t.Fatalf("verify after the server reopened the repaired directory:\n%s", text(t, v))
	}
	return rep
}

// checkServed opens the repaired directory with the server and checks that
// it serves exactly the acknowledged records outside the lost ranges (and
// the unacknowledged ones cut as torn). It returns how many acknowledged
// records the lost ranges hold, and checks that each range holds one.
func checkServed(t *testing.T, f *fixture, lost []fsck.LostRange, unacked []rec) int {
	t.Helper()
	s := openStore(t, f)
	defer s.Close()
	cut := map[uint64]bool{}
	for _, r := range unacked {
		cut[r.seq] = true
	}
	inLost := 0
	for _, shard := range f.shardDirs() {
		served := readAll(t, s, shard)
		for _, want := range f.acks[shard] {
			got, ok := served[want.seq]
			lostHere := isLost(lost, shard, want.seq)
			switch {
			case lostHere || (cut[want.seq] && shard == pickShard(f)):
				inLost += b2i(lostHere)
				if ok {
					t.Errorf("%s seq %d: reported lost (or cut) but served", shard, want.seq)
				}
			case !ok:
				t.Errorf("%s seq %d: not served and not in a lost range %v", shard, want.seq, lost)
			case got != want:
				t.Errorf("%s seq %d: served %+v, want %+v", shard, want.seq, got, want)
			}
			delete(served, want.seq)
		}
		for seq := range served {
			t.Errorf("%s: phantom record at seq %d", shard, seq)
		}
	}
	for _, l := range lost {
		if !holdsAck(f, l) {
			t.Errorf("lost range %s %s holds no acknowledged record", l.Shard, l.Range())
		}
	}
	probeWrites(t, f, s)
	return inLost
}

// probeWrites checks that every shard takes writes again: the server did not
// open any of them read-only as corrupt.
func probeWrites(t *testing.T, f *fixture, s *storage.Store) {
	t.Helper()
	hit := map[string]bool{}
	for _, sp := range defaultStreams {
		entries := make([]storage.PutEntry, 24)
		for i := range entries {
			entries[i] = storage.PutEntry{PartitionKey: fmt.Sprint("probe-", i), Data: []byte("probe")}
		}
		res, err := s.Put(context.Background(), sp.name, entries)
		if err != nil {
			t.Fatalf("probe write to %s: %v", sp.name, err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("probe write to %s %s: %v", sp.name, r.ShardID, r.Err)
			}
			hit[sp.name+"/"+r.ShardID] = true
		}
	}
	if len(hit) != len(f.acks) {
		t.Fatalf("probe writes reached %d shards of %d", len(hit), len(f.acks))
	}
}

func pickShard(f *fixture) string { return f.shardDirs()[1] }

func isLost(lost []fsck.LostRange, shard string, seq uint64) bool {
	for _, l := range lost {
		if l.Shard == shard && l.Contains(seq) {
			return true
		}
	}
	return false
}

func holdsAck(f *fixture, l fsck.LostRange) bool {
	for _, r := range f.acks[l.Shard] {
		if l.Contains(r.seq) {
			return true
		}
	}
	return false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRepairLostRangeExact: a damaged frame in the middle of a segment loses
// exactly its own records, reported as (last good seq, first resumed seq).
func TestRepairLostRangeExact(t *testing.T) {
	f := newFixture(t, defaultStreams)
	tg := pick(t, f)
	frs := f.frames(t, tg.sealed)
	flip(t, f, tg.sealed, frs[1].Offset+segment.FrameHeaderSize+1, 0)
	rep, err := fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []fsck.LostRange{{Shard: tg.shard, From: frs[0].LastSeq + 1, To: frs[2].FirstSeq - 1}}
	if len(rep.Lost) != 1 || rep.Lost[0].From != want[0].From || rep.Lost[0].To != want[0].To || rep.Lost[0].Shard != tg.shard {
		t.Fatalf("lost %+v, want %+v", rep.Lost, want)
	}
	if frs[1].FirstSeq != want[0].From || frs[1].LastSeq != want[0].To {
		t.Fatalf("the damaged frame held %d..%d", frs[1].FirstSeq, frs[1].LastSeq)
	}
}

// TestNoFalsePositives: stores written by many random appends, clean
// restarts and a power cut (followed by the server's recovery) verify clean.
func TestNoFalsePositives(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			f := randomStore(t, seed)
			for _, deep := range []bool{false, true} {
				o := f.opts()
				o.Deep = deep
				if rep := verify(t, o); rep.ExitCode() != fsck.ExitOK || len(rep.Problems) != 0 {
					t.Fatalf("deep=%v:\n%s", deep, text(t, rep))
				}
			}
			rep, err := fsck.Repair(f.opts(), false)
			if err != nil || rep.ExitCode() != fsck.ExitOK || len(rep.Actions) != 0 {
				t.Fatalf("repair of a clean store: %v\n%s", err, text(t, rep))
			}
		})
	}
}

// randomStore writes random batches to three streams across restarts, one of
// them after a simulated power cut, and leaves the store closed cleanly.
func randomStore(t *testing.T, seed uint64) *fixture {
	f := &fixture{dir: t.TempDir(), fs: vfs.NewMemFS(), clk: &clock{t: epoch}, acks: map[string][]rec{}}
	rng := rand.New(rand.NewPCG(seed, 5))
	s := openStore(t, f)
	specs := []streamSpec{{"a", 1, 0}, {"b", 3, 0}, {"c", 2, 0}}
	for _, sp := range specs {
		if err := s.CreateStream(context.Background(), storage.CreateStreamInput{Name: sp.name, ShardCount: sp.shards}); err != nil {
			t.Fatal(err)
		}
		f.clk.advance(time.Second)
	}
	for round := range 4 {
		for i := range 40 + rng.IntN(60) {
			f.put(t, s, specs[rng.IntN(len(specs))].name, i, rng)
		}
		if round == 2 {
			f.fs.Crash(rng, vfs.TearMode(1+rng.IntN(2)))
			s.Close()                   // fails: every handle died with the power
			f.acks = map[string][]rec{} // acks are not what this test checks
		} else if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, f)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRepairRefusesRunningServer: repair never runs beside a server; verify
// works read-only and says so.
func TestRepairRefusesRunningServer(t *testing.T) {
	f := newFixture(t, defaultStreams[1:])
	s := openStore(t, f)
	defer s.Close()
	if _, err := fsck.Repair(f.opts(), false); !errors.Is(err, fsck.ErrInUse) {
		t.Fatalf("repair beside a server: %v, want ErrInUse", err)
	}
	if _, err := fsck.Repair(f.opts(), true); !errors.Is(err, fsck.ErrInUse) {
		t.Fatalf("dry-run repair beside a server: %v, want ErrInUse", err)
	}
	rep := verify(t, f.opts())
	if !slices.Contains(codes(rep), string(fsck.WInUse)) || rep.Errors != 0 {
		t.Fatalf("verify beside a server:\n%s", text(t, rep))
	}
}

// TestRepairLeavesOverlap: two segments covering the same sequences cannot be
// told apart safely, so repair leaves the shard alone and says so.
func TestRepairLeavesOverlap(t *testing.T) {
	f := newFixture(t, defaultStreams)
	tg := pick(t, f)
	b, err := f.fs.Bytes(f.abs(tg.sealed))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := segment.ParseFileName(filepath.Base(tg.sealed))
	f.fs.SetBytes(f.abs(filepath.Join(tg.shard, segment.FileName(first, 99))), b)
	rep := verify(t, f.opts())
	if !slices.Contains(codes(rep), string(fsck.ESeqOrder)) {
		t.Fatalf("want E_SEQ_ORDER:\n%s", text(t, rep))
	}
	rep, err = fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || rep.ExitCode() != fsck.ExitErrors {
		t.Fatalf("repair of overlapping segments:\n%s", text(t, rep))
	}
}

// TestProgress: a progress writer gets a status line; none is the default.
func TestProgress(t *testing.T) {
	f := newFixture(t, defaultStreams[1:])
	var b strings.Builder
	o := f.opts()
	o.Progress = &b
	verify(t, o)
	if !strings.Contains(b.String(), "\rfsck: shard 1/1") {
		t.Fatalf("progress output %q", b.String())
	}
}
