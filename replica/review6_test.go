package replica

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// zeroRange overwrites n bytes of a file at off with zeros, durably: a
// power cut that kept a later page of the unsynced tail and lost this one.
func zeroRange(t *testing.T, fs vfs.FS, name string, off, n int64) {
	t.Helper()
	f, err := fs.OpenRW(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestLostPageAboveWALFloorIsNotDamage is review 6's reproduction: three
// hosts, 20 acknowledged 3000-byte entries on group 7, no WAL roll (so
// the newest segment was never fdatasync'd), and a power cut that lost
// one 4 KiB page in the middle of B's newest segment while later pages
// persisted. segment.Scan calls that tail corrupt (a valid frame follows
// the gap), but the WAL holds every entry of it: B's replica is not
// damaged, and after reopening it holds every acknowledged record.
func TestLostPageAboveWALFloorIsNotDamage(t *testing.T) {
	lostUnsyncedPageNotDamage(t, 8192, 4096)
}

// TestLostFirstBlockOfYoungGroupIsNotDamage is simulation seed 60's
// failure on a host: the lost block is the first after the header of the
// group's first segment (first ordinal 0), so nothing before the gap
// survives. The WAL's floor is 0 and raft's log starts at 1, so the WAL
// holds every entry of that segment: not damage.
func TestLostFirstBlockOfYoungGroupIsNotDamage(t *testing.T) {
	lostUnsyncedPageNotDamage(t, 64, 512-64)
}

// lostUnsyncedPageNotDamage: see TestLostPageAboveWALFloorIsNotDamage;
// the bytes [off, off+size) of B's only segment are lost.
func lostUnsyncedPageNotDamage(t *testing.T, off, size int64) {
	const g = 7
	n := startDamageNet(t, g, 33, nil)
	rnd := rand.New(rand.NewPCG(6, 6))
	var seqs []uint64
	for i := range 20 {
		rec := make([]byte, 3000) // incompressible
		for j := range rec {
			rec[j] = byte(rnd.Uint32())
		}
		seq, ok := n.put(dmgA, g, string(rec))
		if !ok {
			t.Fatalf("write %d not acknowledged", i)
		}
		seqs = append(seqs, seq)
	}
	if err := n.tickLeader(dmgA, 2); err != nil { // the commit index reaches B
		t.Fatal(err)
	}
	if err := n.hosts[dmgB].Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := n.fss[dmgB].ReadDir(groupDir("/d", g) + "/0000000000000000")
	if err != nil || len(segs) != 1 {
		t.Fatalf("B's group %d segments: %v %v, want one", g, segs, err)
	}
	zeroRange(t, n.fss[dmgB], groupDir("/d", g)+"/0000000000000000/"+segs[0], off, size)

	n.reopenHoldsAll(dmgB, g, seqs, "a lost unsynced page the WAL covers")
}

// TestSegStateCorruptTailAndFloor: a corrupt tail of the newest segment
// (a bad frame with valid frames after it) is cut only when every entry
// it holds is above the WAL's floor, or an installed snapshot's mark;
// otherwise it is damage (segment.ErrCorrupt).
func TestSegStateCorruptTailAndFloor(t *testing.T) {
	const entries, bad = 30, 12 // the 12th frame, entry 12, is flipped
	cases := []struct {
		name        string
		floor, mark uint64
		damage      bool
	}{
		{"no floor", 0, 0, false},
		{"floor below the bad entry", bad - 1, 0, false},
		{"floor at the bad entry", bad, 0, true},
		{"floor above", entries, 0, true},
		{"mark at the bad entry", 0, bad, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			st, err := openSegState(&segState{fs: fs, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1,
				size: 1 << 20, now: func() int64 { return 0 }})
			if err != nil {
				t.Fatal(err)
			}
			var want []Record
			for idx := uint64(1); idx <= entries; idx++ {
				want = append(want, st.add(idx, int64(idx), [][]byte{[]byte("record")})...)
				if err := st.write(); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.sync(); err != nil {
				t.Fatal(err)
			}
			name := st.active().path
			if err := st.close(); err != nil {
				t.Fatal(err)
			}
			flipByte(t, fs, name, frameOffsets(t, fs, name)[bad-1]+segment.FrameHeaderSize)

			st = &segState{fs: fs, comp: testCompressor(t), dir: groupDir("/d", 1), group: 1, size: 1 << 20,
				now: func() int64 { return 0 }, floor: tc.floor}
			// As CURRENT says after an installation (there is no CURRENT
			// here, so readCurrent leaves it).
			st.mark = tc.mark
			_, err = openSegState(st)
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
			if st.held() != bad-1 || !sameStored(got, want[:bad-1]) || st.cutCorrupt == nil {
				t.Fatalf("held %d, %d records, cut %v: want the %d entries before the bad one", st.held(), len(got), st.cutCorrupt, bad-1)
			}
		})
	}
}

// frameOffsets lists the offsets of a segment's frames.
func frameOffsets(t *testing.T, fs vfs.FS, name string) []int64 {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	var offs []int64
	if _, err := segment.Scan(f, size, segment.ScanOptions{Visit: func(fi segment.FrameInfo) error {
		offs = append(offs, fi.Offset)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	return offs
}

// readDirFailFS fails every ReadDir of one directory with an I/O error.
type readDirFailFS struct {
	vfs.FS
	dir string
}

func (f readDirFailFS) ReadDir(dir string) ([]string, error) {
	if dir == f.dir {
		return nil, vfs.ErrInjected
	}
	return f.FS.ReadDir(dir)
}

// TestDamageMoveListError: a damaged replica whose directory cannot be
// listed (an I/O error, not its absence) fails Open rather than being
// taken as moved already, and its files stay where they are.
func TestDamageMoveListError(t *testing.T) {
	n := newDamageNet(t, nil)
	damageSetup(t, n)
	if err := n.hosts[dmgB].Close(); err != nil {
		t.Fatal(err)
	}
	delete(n.hosts, dmgB)
	segs := segFiles(t, n.fss[dmgB], 7)
	flipByte(t, n.fss[dmgB], segs[1], segment.FileHeaderSize)
	cfg := n.cfg(dmgB)
	cfg.crashAt = func(p string) bool { return p == crashDamageLogged }
	if _, err := Open(cfg); !errors.Is(err, errCrashPoint) {
		t.Fatalf("Open with a crash point: %v", err)
	}
	cfg = n.cfg(dmgB)
	cfg.FS = readDirFailFS{FS: n.fss[dmgB], dir: groupDir("/d", 7)}
	if h, err := Open(cfg); !errors.Is(err, vfs.ErrInjected) {
		if h != nil {
			h.Close()
		}
		t.Fatalf("Open with the damaged directory unlistable: %v, want the I/O error", err)
	}
	if _, err := n.fss[dmgB].Open(segs[1]); err != nil {
		t.Fatalf("the damaged files left their place: %v", err)
	}
	n.open(dmgB) // and once the directory can be listed, Open finishes the move
	if d := n.hosts[dmgB].Damaged(); len(d) != 1 || len(damagedDirs(t, n.fss[dmgB])) != 1 {
		t.Fatalf("Damaged() = %+v, moved %v", d, damagedDirs(t, n.fss[dmgB]))
	}
}

// TestDamageRefusedAtOpen: damage to more groups at once than
// Config.MaxDamagedAtOpen allows (one by default), or to a critical group,
// fails Open with a *DamageRefusal and changes nothing on disk (no
// damaged directory, the files in place, no damage recorded), so that an
// Open allowed more sets them aside as before.
func TestDamageRefusedAtOpen(t *testing.T) {
	for _, tc := range []struct {
		name     string
		groups   []uint64 // damaged
		limit    int
		critical []uint64
		refused  bool
	}{
		{"one group", []uint64{7}, 0, nil, false},
		{"two groups", []uint64{7, 8}, 0, nil, true},
		{"two groups allowed", []uint64{7, 8}, 2, nil, false},
		{"no cap", []uint64{7, 8}, -1, nil, false},
		{"a critical group", []uint64{8}, -1, []uint64{8}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newDamageNet(t, nil)
			damageSetup(t, n)
			if err := n.hosts[dmgB].Close(); err != nil {
				t.Fatal(err)
			}
			delete(n.hosts, dmgB)
			var flipped []string
			for _, g := range tc.groups {
				segs := segFiles(t, n.fss[dmgB], g)
				flipByte(t, n.fss[dmgB], segs[1], segment.FileHeaderSize)
				flipped = append(flipped, segs[1])
			}
			cfg := n.cfg(dmgB)
			cfg.MaxDamagedAtOpen, cfg.CriticalGroups = tc.limit, tc.critical
			h, err := Open(cfg)
			var ref *DamageRefusal
			if !tc.refused {
				if err != nil {
					t.Fatal(err)
				}
				n.hosts[dmgB] = h
				if len(h.Damaged()) != len(tc.groups) {
					t.Fatalf("Damaged() = %+v, want groups %v", h.Damaged(), tc.groups)
				}
				return
			}
			if !errors.As(err, &ref) || !errors.Is(err, ErrDamaged) || len(ref.Found) != len(tc.groups) {
				if h != nil {
					h.Close()
				}
				t.Fatalf("Open: %v, want a refusal naming groups %v", err, tc.groups)
			}
			if d := damagedDirs(t, n.fss[dmgB]); len(d) != 0 {
				t.Fatalf("files moved aside by a refused Open: %v", d)
			}
			for _, f := range flipped {
				if _, err := n.fss[dmgB].Open(f); err != nil {
					t.Fatalf("a damaged file left its place: %v", err)
				}
			}
			cfg.MaxDamagedAtOpen, cfg.CriticalGroups = -1, nil // the operator allows it
			if h, err = Open(cfg); err != nil {
				t.Fatal(err)
			}
			n.hosts[dmgB] = h
			if d := h.Damaged(); len(d) != len(tc.groups) {
				t.Fatalf("after the refusal, an allowed Open: Damaged() = %+v", d)
			}
		})
	}
}

// reopenHoldsAll reopens node id after a power cut and checks that its
// group g is not set aside as damaged and, once pumped, holds exactly the
// acknowledged ordinals seqs; what names the cut for the failure message.
func (n *partNet) reopenHoldsAll(id, g uint64, seqs []uint64, what string) {
	n.t.Helper()
	n.open(id)
	if d := n.hosts[id].Damaged(); len(d) != 0 {
		n.t.Fatalf("%s made the replica damaged: %+v", what, d)
	}
	n.pump()
	var got []uint64
	for _, r := range n.hosts[id].Records(g) {
		got = append(got, r.Seq)
	}
	if !slices.Equal(got, seqs) {
		n.t.Fatalf("after reopening node %d holds ordinals %x, want every acknowledged one %x", id, got, seqs)
	}
}

// startDamageNet opens nodes dmgA, dmgB and dmgC on fresh MemFS disks
// (seeded by seed; tune, if not nil, adjusts each node's Config) and
// starts group g on all three, led by dmgA.
func startDamageNet(t *testing.T, g, seed uint64, tune func(*Config)) *partNet {
	t.Helper()
	n := &partNet{t: t, hosts: map[uint64]*Host{}, fss: map[uint64]vfs.FS{}, cut: map[[2]uint64]bool{}}
	n.cfg = func(id uint64) Config {
		c := Config{NodeID: id, FS: n.fss[id], Dir: "/d", Transport: partTransport{n},
			Rand: rand.New(rand.NewPCG(id, seed))}
		if tune != nil {
			tune(&c)
		}
		return c
	}
	boot := []uint64{dmgA, dmgB, dmgC}
	for _, id := range boot {
		n.fss[id] = vfs.NewMemFS()
		n.open(id)
	}
	t.Cleanup(func() {
		for _, h := range n.hosts {
			h.Close()
		}
	})
	for _, id := range boot {
		n.addGroup(id, g, boot)
	}
	if err := n.hosts[dmgA].Campaign(g); err != nil {
		t.Fatal(err)
	}
	n.pump()
	return n
}
