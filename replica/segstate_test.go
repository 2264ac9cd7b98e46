package replica

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// TestSegmentsHoldAppliedState: a group's records live in its segments, not
// in memory. A one-voter host runs until its WAL has been truncated behind
// them; then a clean restart reads every acknowledged record back through
// ReadApplied (those below the compaction point can only come from the
// segments), and a power cut while the segments hold written but unsynced
// frames, with each way a crash can leave them, loses nothing acknowledged:
// the WAL replays what the cut took. The broken host that deletes WAL files
// without syncing the segments first loses acknowledged records, and the
// test catches it.
func TestSegmentsHoldAppliedState(t *testing.T) {
	modes := map[vfs.TearMode]string{vfs.TearNone: "unsynced lost", vfs.TearPrefix: "torn prefix", vfs.TearZeros: "zeroed tail",
		vfs.TearGap: "lost page"}
	for _, tc := range []struct {
		name    string
		segSize int64
		broken  bool // Config.skipStateSync
	}{
		{"segments roll", 300, false},
		{"one segment", 1 << 20, false},
		{"broken: WAL truncated before the segment sync", 1 << 20, true},
	} {
		for mode, modeName := range modes {
			t.Run(tc.name+"/"+modeName, func(t *testing.T) {
				err := segmentsHoldState(t, tc.segSize, tc.broken, mode)
				switch {
				case tc.broken && mode == vfs.TearNone && err == nil:
					t.Fatal("the broken host lost nothing: the test cannot tell")
				case tc.broken && err != nil:
					t.Logf("caught: %v", err)
				case err != nil:
					t.Fatal(err)
				}
			})
		}
	}
}

// segmentsHoldState runs the scenario; it returns the checker's finding
// after the power cut.
func segmentsHoldState(t *testing.T, segSize int64, broken bool, mode vfs.TearMode) error {
	s := &solo{t: t, fs: vfs.NewMemFS(), tweak: func(c *Config) {
		c.StateSegmentSize, c.skipStateSync = segSize, broken
	}}
	s.open()
	runSolo(t, s, 3000, func() bool {
		return s.h.wal.removed >= 2 && s.h.Status(1).Compacted > 0 && len(s.all) >= 60
	})
	compacted := s.h.Status(1).Compacted
	s.check("before the restart")
	before := s.h.Records(1)
	if len(before) == 0 || before[0].Seq>>16 > compacted {
		t.Fatalf("the first record (entry %d) is not below the compaction point %d", before[0].Seq>>16, compacted)
	}
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	s.open()
	if got := s.h.Records(1); !sameStored(got, before) {
		t.Fatalf("after a clean restart: %d records, want the %d read before", len(got), len(before))
	}
	s.check("after a clean restart")
	// Until the log is compacted past what this incarnation wrote, and the
	// segments hold written, unsynced frames: the cut must take some.
	st := s.h.groups[1].state.(*segState)
	restart := st.held()
	runSolo(t, s, 3000, func() bool {
		return s.h.Status(1).Compacted > restart && st.w != nil && st.w.Committed() < st.w.Size()
	})
	s.crash(mode, 7)
	s.open()
	// The first rounds re-apply, from the WAL, the committed entries the
	// cut took from the segments.
	for st := s.h.Status(1); st.Applied < st.Commit; st = s.h.Status(1) {
		if err := s.h.HandleReady(); err != nil {
			t.Fatal(err)
		}
	}
	sm := &sim{opt: simOptions{groups: 1}, attempts: s.all}
	return sm.checkLog(1, s.h.Records(1))
}

func runSolo(t *testing.T, s *solo, steps int, until func() bool) {
	t.Helper()
	for range steps {
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
		if until() {
			return
		}
	}
	t.Fatalf("not reached within %d steps", steps)
}

func sameStored(a, b []Record) bool {
	return slices.EqualFunc(a, b, func(x, y Record) bool {
		return x.Seq == y.Seq && x.ArrivalMs == y.ArrivalMs && bytes.Equal(x.Data, y.Data)
	})
}

// TestReadApplied: reads from any ordinal, bounded by records and bytes,
// across segment rolls and a restart, against the acknowledged proposals
// (their records, ordinals and the leader's arrival times, raised where its
// clock went back); and `shardlog fsck dump` reads the segments whole.
func TestReadApplied(t *testing.T) {
	const base = 1_700_000_000_000
	s := &solo{t: t, fs: vfs.NewMemFS()}
	s.records = func(n int) []string {
		out := make([]string, n%3+1)
		for i := range out {
			out[i] = fmt.Sprintf("r%d-%d-%s", n, i, strings.Repeat("x", n%7*10))
		}
		return out
	}
	clock := func(n int) int64 { // every fifth proposal's clock is behind
		if n%5 == 0 {
			return base
		}
		return base + int64(n)*10
	}
	s.tweak = func(c *Config) {
		c.StateSegmentSize = 400
		c.Now = func() time.Time { return time.UnixMilli(clock(s.next)) }
	}
	s.open()
	runSolo(t, s, 2000, func() bool { return s.next >= 40 })
	s.h.Close()
	s.open() // the records now come from segments written by another incarnation
	// A reader beside the Ready loop (ReadApplied takes no host lock while
	// it reads): what it sees is always a prefix of the final log.
	stop, seen := make(chan struct{}), make(chan []Record, 1)
	go func() {
		var last []Record
		for {
			select {
			case <-stop:
				seen <- last
				return
			default:
			}
			if recs, err := s.h.ReadApplied(1, 0, 1<<30, 1<<30); err == nil {
				last = recs
			}
		}
	}()
	runSolo(t, s, 2000, func() bool { return s.next >= 80 && s.current == nil })
	close(stop)
	partial := <-seen

	var want []Record
	var arrival int64
	for n, a := range s.all {
		if a.outcome != acked {
			continue
		}
		arrival = max(arrival, clock(n+1))
		for i, r := range a.records {
			want = append(want, Record{Seq: a.seqs[i], ArrivalMs: arrival, Data: []byte(r)})
		}
	}
	if got := s.h.Records(1); !sameStored(got, want) {
		t.Fatalf("Records: %d records, want %d: %+v", len(got), len(want), got[:min(3, len(got))])
	}
	if !sameStored(partial, want[:min(len(partial), len(want))]) || len(partial) > len(want) {
		t.Fatalf("a concurrent read saw %d records, not a prefix of the %d", len(partial), len(want))
	}
	if len(s.h.groups[1].state.(*segState).segs) < 3 {
		t.Fatal("the segments did not roll")
	}
	checkReads(t, s.h, want)
	checkDump(t, s, len(want))
}

func checkReads(t *testing.T, h *Host, all []Record) {
	mid := len(all) / 2
	lastOfEntry := mid // a record followed by another entry's: the next ordinals are a gap
	for all[lastOfEntry+1].Seq>>16 == all[lastOfEntry].Seq>>16 {
		lastOfEntry++
	}
	big := 1 << 30
	for _, tc := range []struct {
		name                 string
		from                 uint64
		maxRecords, maxBytes int
		want                 []Record
	}{
		{"everything", 0, big, big, all},
		{"from a record", all[mid].Seq, big, big, all[mid:]},
		{"from a gap between entries", all[lastOfEntry].Seq + 1, big, big, all[lastOfEntry+1:]},
		{"from the last", all[len(all)-1].Seq, big, big, all[len(all)-1:]},
		{"past the end", all[len(all)-1].Seq + 1, big, big, nil},
		{"one record", all[mid].Seq, 1, big, all[mid : mid+1]},
		{"five records", all[mid].Seq, 5, big, all[mid : mid+5]},
		{"a first record above maxBytes", all[mid].Seq, big, 1, all[mid : mid+1]},
		{"three records' bytes", all[mid].Seq, big, dataLen(all[mid : mid+3]), all[mid : mid+3]},
		{"one byte short of three", all[mid].Seq, big, dataLen(all[mid:mid+3]) - 1, all[mid : mid+2]},
	} {
		got, err := h.ReadApplied(1, tc.from, tc.maxRecords, tc.maxBytes)
		if err != nil || !sameStored(got, tc.want) {
			t.Errorf("%s: got %d records (err %v), want %d", tc.name, len(got), err, len(tc.want))
		}
	}
	if _, err := h.ReadApplied(1, 0, 0, big); err == nil {
		t.Error("maxRecords 0 accepted")
	}
	if _, err := h.ReadApplied(9, 0, big, big); err == nil {
		t.Error("an unknown group read")
	}
}

func dataLen(recs []Record) int {
	n := 0
	for _, r := range recs {
		n += len(r.Data)
	}
	return n
}

// checkDump runs fsck's segment-level reader (`shardlog fsck dump`) over the
// group's live generation: every frame whole, every record there.
func checkDump(t *testing.T, s *solo, records int) {
	st := s.h.groups[1].state.(*segState)
	var out bytes.Buffer
	if err := fsck.Dump(&out, fsck.DumpOptions{FS: s.fs, Path: st.genDir(st.gen), Records: true}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.Contains(text, "damage") || strings.Count(text, "\n  record ") != records {
		t.Fatalf("fsck dump: %d record lines, want %d, or damage:\n%.2000s", strings.Count(text, "\n  record "), records, text)
	}
}

// TestSegStateTornTail: the newest segment's unsynced tail, torn every way a
// power cut can tear it (a block lost before blocks that persisted too:
// vfs.TearGap), is cut at open, and a sealed segment stays whole. With one
// big segment the unsynced tail spans several blocks.
func TestSegStateTornTail(t *testing.T) {
	for seed := range uint64(40) {
		size := []int64{300, 1 << 20}[seed/20]
		fs := vfs.NewMemFS()
		st := openTestStateSize(t, fs, size)
		var want []Record
		for i := range uint64(30) {
			idx := i + 1
			recs := st.add(idx, int64(idx), [][]byte{[]byte(fmt.Sprint("a", idx)), []byte(fmt.Sprint("b", idx))})
			if err := st.write(); err != nil {
				t.Fatal(err)
			}
			if i == 19 {
				if err := st.sync(); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, recs...)
		}
		fs.Crash(rand.New(rand.NewPCG(seed, 1)), vfs.TearMode(seed%4))
		st = openTestStateSize(t, fs, size)
		got, err := st.read(0, 1<<30, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		// What survives is a prefix of what was written, at least what was
		// synced (20 entries).
		if len(got) < 40 || !sameStored(got, want[:len(got)]) || st.held() != uint64(len(got)/2) {
			t.Fatalf("seed %d: %d records survive (held %d), want a prefix of %d from 40", seed, len(got), st.held(), len(want))
		}
		// Writing goes on after the cut tail.
		st.add(40, 40, [][]byte{[]byte("after")})
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.read(Ordinal(40, 0), 10, 1<<20); len(got) != 1 || string(got[0].Data) != "after" {
			t.Fatalf("seed %d: after the cut: %+v", seed, got)
		}
	}
}

func openTestState(t *testing.T, fs vfs.FS) *segState {
	t.Helper()
	return openTestStateSize(t, fs, 300)
}

func openTestStateSize(t *testing.T, fs vfs.FS, size int64) *segState {
	t.Helper()
	comp := testCompressor(t)
	st, err := openSegState(&segState{fs: fs, comp: comp, dir: groupDir("/d", 1), group: 1, size: size, now: func() int64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func testCompressor(t *testing.T) *segment.Compressor {
	t.Helper()
	c, err := segment.NewCompressor()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestSegStateBigEntryTornTail: an entry whose records pass the frame cap
// (a PutRecords of 5 MiB) is still written as one frame, so a power cut
// keeps all of its records or none, and held() says which. Were it split
// over two frames, a cut after the first would leave held() at the entry
// and the replay from the WAL would skip the records of the lost frame.
func TestSegStateBigEntryTornTail(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	big := make([][]byte, 5)
	for i := range big {
		big[i] = make([]byte, 1<<20)
		for j := range big[i] {
			big[i][j] = byte(rng.Uint32()) // incompressible: the frame stays over the cap
		}
	}
	for seed := range uint64(12) {
		fs := vfs.NewMemFS()
		st := openTestState(t, fs)
		st.add(1, 1, [][]byte{[]byte("small")})
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		if err := st.sync(); err != nil {
			t.Fatal(err)
		}
		st.add(2, 2, big)
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		fs.Crash(rand.New(rand.NewPCG(seed, 2)), vfs.TearMode(seed%4))
		st = openTestState(t, fs)
		got, err := st.read(0, 1<<30, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(got) == 1 && st.held() == 1, len(got) == 6 && st.held() == 2:
		default:
			t.Fatalf("seed %d: %d records survive with held %d; want 1 with held 1, or 6 with held 2", seed, len(got), st.held())
		}
	}
}

// TestSegStateLostFirstBlockOfFirstSegment is seed 60's failure, reduced: a
// young group's only segment (first ordinal 0), never synced, loses its
// first block after the header to a power cut (vfs.TearGap) while later
// blocks persist. Every entry in it is above a WAL floor of 0 (raft's log
// starts at 1), so the tail is cut as torn, not called damage; with a
// floor at or above entry 1 the same bytes are damage, as the WAL may no
// longer hold entry 1.
func TestSegStateLostFirstBlockOfFirstSegment(t *testing.T) {
	rng := rand.New(rand.NewPCG(60, 60))
	for _, tc := range []struct {
		floor  uint64
		damage bool
	}{{0, false}, {1, true}, {2, true}} {
		fs := vfs.NewMemFS()
		st := openTestStateFloor(t, fs, 1<<20, 0)
		for idx := uint64(1); idx <= 4; idx++ {
			rec := make([]byte, 400)
			for i := range rec {
				rec[i] = byte(rng.Uint32()) // incompressible: the frames span several blocks
			}
			st.add(idx, int64(idx), [][]byte{rec})
			if err := st.write(); err != nil {
				t.Fatal(err)
			}
		}
		name := st.segs[0].path
		if st.segs[0].firstSeq != 0 {
			t.Fatalf("first segment starts at %d, want 0", st.segs[0].firstSeq)
		}
		data, err := fs.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		start := st.segs[0].start
		if len(data) <= 2*vfs.TearBlock || start >= vfs.TearBlock {
			t.Fatalf("segment of %d bytes, frames from %d: the test needs a block lost before later data", len(data), start)
		}
		fs.Crash(nil, vfs.TearNone) // the header only was synced (at creation), or nothing
		clear(data[start:vfs.TearBlock])
		fs.SetBytes(name, data) // as vfs.TearGap leaves it: block 0's frames lost, the rest kept
		comp := testCompressor(t)
		st, err = openSegState(&segState{fs: fs, comp: comp, dir: groupDir("/d", 1), group: 1, size: 1 << 20,
			now: func() int64 { return 0 }, floor: tc.floor})
		if tc.damage {
			if !errors.Is(err, segment.ErrCorrupt) {
				t.Fatalf("floor %d: open: %v, want corruption (entry 1 is at or below the floor)", tc.floor, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("floor %d: open: %v, want the lost block cut as a torn tail", tc.floor, err)
		}
		if st.cutCorrupt == nil || st.held() != 0 {
			t.Fatalf("floor %d: cut %v, held %d; want a cut tail and nothing held", tc.floor, st.cutCorrupt, st.held())
		}
		// The WAL's replay writes entry 1 again, after the cut.
		st.add(1, 1, [][]byte{[]byte("again")})
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.read(0, 10, 1<<20); len(got) != 1 || string(got[0].Data) != "again" {
			t.Fatalf("floor %d: after the cut: %+v", tc.floor, got)
		}
	}
}

func openTestStateFloor(t *testing.T, fs vfs.FS, size int64, floor uint64) *segState {
	t.Helper()
	st, err := openSegState(&segState{fs: fs, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1, size: size,
		now: func() int64 { return 0 }, floor: floor})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
