package replica

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// Simulation seeds 338 (pipelined Ready loop) and 394 (before it) of
// `make sim SEEDS=600 SEED=151`: a group's replica was set aside as damaged
// after a power cut, though nothing but unsynced bytes was lost, and the
// group never converged (the simulation replaces no damaged replica, and
// should need to: it injects no rot).
//
// The history: the group's last entry with records was E (4 at seed 338);
// then came a lull of entries without records (compaction commands,
// configuration changes of a replica move, new leaders' empty entries),
// which write no segment frames. The WAL rolled: the state was synced, its
// last frame still entry E's, and the log compacted to F (18) > E. Records
// of later entries were then written to the same segment, unsynced, and a
// power cut lost the page after E's frame while a later page persisted.
// Recovery found a corrupt tail starting after entry E, and since E+1 <= F
// it could not tell the lost page from rot of entries E+1..F, whose WAL
// frames are gone: damage. The fix records, in the new WAL file's header,
// the ordinal the state had synced up to when the floor was taken
// (kindStateSynced): a corrupt tail that starts at or above it holds only
// records written since, of entries above the floor, which the WAL holds.

// TestPowerCutAfterRecordlessLullIsNotDamage is the seeds' failure on three
// hosts: records, a lull of compaction commands during which B's WAL rolls
// and compacts past the last record's entry, records again (unsynced in B's
// segment), and a power cut that loses the page after the lull's synced
// end while a later page persists. B's replica is not damaged, and after
// reopening it holds every acknowledged record.
func TestPowerCutAfterRecordlessLullIsNotDamage(t *testing.T) {
	const g = 7
	n := startDamageNet(t, g, 43, func(c *Config) { c.WALSegmentSize = 2 << 10; c.CompactMinEntries = 1 })
	rnd := rand.New(rand.NewPCG(43, 43))
	var seqs []uint64
	put := func() {
		t.Helper()
		rec := make([]byte, 300) // incompressible
		for j := range rec {
			rec[j] = byte(rnd.Uint32())
		}
		seq, ok := n.put(dmgA, g, string(rec))
		if !ok {
			t.Fatalf("write %d not acknowledged", len(seqs))
		}
		seqs = append(seqs, seq)
	}
	for range 4 {
		put()
	}
	lastRecorded := seqs[len(seqs)-1] >> 16
	// The lull: the leader proposes a compaction command every election
	// timeout, each an entry without records, until B's WAL has rolled
	// with its log compacted past the last entry with records.
	b := n.hosts[dmgB]
	for i := 0; b.Status(g).Compacted <= lastRecorded+2; i++ {
		if i == 200 {
			t.Fatalf("B never compacted past entry %d: %+v", lastRecorded, b.Status(g))
		}
		if err := n.tickLeader(dmgA, 10); err != nil {
			t.Fatal(err)
		}
	}
	synced := b.groups[g].state.durableNext()
	if synced>>16 > lastRecorded {
		t.Fatalf("B's state synced up to ordinal %x, past the last entry with records %d", synced, lastRecorded)
	}
	rolls := b.wal.rolls
	seg := b.groups[g].state.(*segState).active().path
	for range 3 {
		put()
	}
	if err := n.tickLeader(dmgA, 2); err != nil { // the commit index reaches B
		t.Fatal(err)
	}
	if b.wal.rolls != rolls {
		t.Fatal("B's WAL rolled after the lull: its segment's new records are synced, the test needs them not")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The frames after the lull's synced end (the first at its offset)
	// were never fdatasync'd: a power cut loses the first one's page and
	// keeps the later ones.
	offs := frameOffsets(t, n.fss[dmgB], seg)
	if len(offs) != 7 {
		t.Fatalf("B's segment holds %d frames, want one per record (7)", len(offs))
	}
	zeroRange(t, n.fss[dmgB], seg, offs[4], offs[5]-offs[4])

	n.reopenHoldsAll(dmgB, g, seqs, "a lost unsynced page after a lull")
}

// TestSegStateCorruptTailAfterRecordlessLull: entries 1-4 hold records and
// are synced, 5-21 hold none, the WAL's floor is 18, and entries 22-25 are
// written unsynced. A corrupt tail that starts after the synced ordinal the
// WAL recorded (floorNext) is a lost unsynced page, cut; without that
// record it cannot be told from rot of entries 5-18 (damage); and a corrupt
// frame inside the synced bytes is damage either way.
func TestSegStateCorruptTailAfterRecordlessLull(t *testing.T) {
	const floor = 18
	for _, tc := range []struct {
		name         string
		knownSynced  bool // the WAL recorded the synced ordinal
		rotSynced    bool // the bad bytes are in entry 3's synced frame, not after
		damage       bool
		heldAfterCut uint64
	}{
		{"lost page after the synced end, synced ordinal recorded", true, false, false, 4},
		{"lost page after the synced end, an older WAL", false, false, true, 0},
		{"rot inside the synced frames", true, true, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			st := openTestStateFloor(t, fs, 1<<20, 0)
			rng := rand.New(rand.NewPCG(338, 394))
			var want []Record
			add := func(idx uint64) {
				rec := make([]byte, 400) // incompressible: frames span blocks
				for i := range rec {
					rec[i] = byte(rng.Uint32())
				}
				want = append(want, st.add(idx, int64(idx), [][]byte{rec})...)
				if err := st.write(); err != nil {
					t.Fatal(err)
				}
			}
			for idx := uint64(1); idx <= 4; idx++ {
				add(idx)
			}
			if err := st.sync(); err != nil { // the roll that took floor 18
				t.Fatal(err)
			}
			next := st.durableNext()
			if next != Ordinal(4, 0)+1 {
				t.Fatalf("durableNext %x, want the ordinal after entry 4's record", next)
			}
			for idx := uint64(22); idx <= 25; idx++ {
				add(idx)
			}
			name := st.active().path
			offs := frameOffsets(t, fs, name)
			if err := st.close(); err != nil {
				t.Fatal(err)
			}
			if tc.rotSynced {
				flipByte(t, fs, name, offs[2]+segment.FrameHeaderSize)
			} else {
				zeroRange(t, fs, name, offs[4], offs[5]-offs[4])
			}
			st = &segState{fs: fs, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1, size: 1 << 20,
				now: func() int64 { return 0 }, floor: floor}
			if tc.knownSynced {
				st.floorNext, st.floorNextKnown = next, true
			}
			_, err := openSegState(st)
			if tc.damage {
				if !errors.Is(err, segment.ErrCorrupt) {
					t.Fatalf("err = %v, want damage", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.read(0, 1<<30, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			if st.held() != tc.heldAfterCut || !sameStored(got, want[:4]) || st.cutCorrupt == nil || st.durableNext() != next {
				t.Fatalf("held %d, %d records, cut %v, durable %x: want entries 1-4 kept and the rest cut", st.held(), len(got), st.cutCorrupt, st.durableNext())
			}
		})
	}
}

// TestCompactionPointsStateSynced: a compaction point's synced ordinal is
// the kindStateSynced frame after it in the same header. A newer point
// without one (a header torn between the two frames), a snapshot, or the
// replica's removal leaves it unknown (0), so recovery falls back to the
// entry bound alone.
func TestCompactionPointsStateSynced(t *testing.T) {
	compact := func(idx uint64) []byte { return encodeCompact(7, idx, 1, nil) }
	synced := func(next uint64) []byte { return encodeStateSynced(7, next) }
	for _, tc := range []struct {
		name        string
		frames      [][]byte
		index, want uint64
		wantAbsent  bool
	}{
		{"one header", [][]byte{compact(18), synced(0x40001)}, 18, 0x40001, false},
		{"one header, no record synced yet", [][]byte{compact(18), synced(0)}, 18, 0, false},
		{"two headers, same point", [][]byte{compact(18), synced(0x40001), compact(18), synced(0x50001)}, 18, 0x50001, false},
		{"a newer point torn before its synced frame", [][]byte{compact(18), synced(0x40001), compact(30)}, 30, 0, false},
		{"a snapshot since", [][]byte{compact(18), synced(0x40001), encodeCompactKind(kindSnapshot, 7, 40, 2, nil)}, 40, 0, false},
		{"a snapshot at the point", [][]byte{compact(18), synced(0x40001), encodeCompactKind(kindSnapshot, 7, 18, 2, nil)}, 18, 0, false},
		{"removed", [][]byte{compact(18), synced(0x40001), le.AppendUint64([]byte{kindRemoveGroup}, 7)}, 0, 0, true},
		{"an older WAL", [][]byte{compact(18)}, 18, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ps []walPayload
			for _, f := range tc.frames {
				ps = append(ps, walPayload{p: f})
			}
			points, err := compactionPoints(ps)
			if err != nil {
				t.Fatal(err)
			}
			pt, ok := points[7]
			// Only a synced frame of the point makes its ordinal known.
			known := len(tc.frames) >= 2 && tc.frames[len(tc.frames)-1][0] == kindStateSynced
			if ok == tc.wantAbsent || pt.index != tc.index || pt.synced != tc.want || pt.syncedKnown != known {
				t.Fatalf("point %+v (present %v), want index %d synced %x", pt, ok, tc.index, tc.want)
			}
		})
	}
}

// TestSegStateTornFirstBlockOfYoungGroup: entries 1-18 hold no records
// (a young group's configuration and empty entries), the WAL rolled at floor
// 18 with nothing in the segments (its synced ordinal a known 0), then
// entries 22-25 were written unsynced and a power cut lost their first
// block. That is a torn tail, cut; only where the WAL does not say what was
// synced is it damage (simulation seed 36 after h44: a known 0 was taken
// for unknown, and the replica was set aside as damaged).
func TestSegStateTornFirstBlockOfYoungGroup(t *testing.T) {
	const floor = 18
	for _, tc := range []struct {
		name        string
		knownSynced bool
		damage      bool
	}{
		{"synced ordinal 0 recorded", true, false},
		{"an older WAL", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			st := openTestStateFloor(t, fs, 1<<20, 0)
			if err := st.sync(); err != nil { // the roll that took floor 18
				t.Fatal(err)
			}
			next := st.durableNext()
			if next != 0 {
				t.Fatalf("durableNext %x with no record, want 0", next)
			}
			rng := rand.New(rand.NewPCG(36, 44))
			for idx := uint64(22); idx <= 25; idx++ {
				rec := make([]byte, 400)
				for i := range rec {
					rec[i] = byte(rng.Uint32())
				}
				st.add(idx, int64(idx), [][]byte{rec})
				if err := st.write(); err != nil {
					t.Fatal(err)
				}
			}
			name := st.active().path
			offs := frameOffsets(t, fs, name)
			if err := st.close(); err != nil {
				t.Fatal(err)
			}
			zeroRange(t, fs, name, offs[0], offs[1]-offs[0])
			st = &segState{fs: fs, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1, size: 1 << 20,
				now: func() int64 { return 0 }, floor: floor, floorNext: next, floorNextKnown: tc.knownSynced}
			_, err := openSegState(st)
			if tc.damage {
				if !errors.Is(err, segment.ErrCorrupt) {
					t.Fatalf("err = %v, want damage", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("a torn first block of records above the floor is damage: %v", err)
			}
			if st.held() != 0 || st.cutCorrupt == nil {
				t.Fatalf("held %d, cut %v: want everything cut", st.held(), st.cutCorrupt)
			}
		})
	}
}
