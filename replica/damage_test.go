package replica

import (
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// newDamageNet is a partNet of three nodes whose groups' segments roll
// after every entry or so, so every replica soon holds sealed segments.
func newDamageNet(t *testing.T, applier func(id uint64) Applier) *partNet {
	n := &partNet{t: t, hosts: map[uint64]*Host{}, fss: map[uint64]vfs.FS{}, cut: map[[2]uint64]bool{}}
	n.cfg = func(id uint64) Config {
		c := Config{NodeID: id, FS: n.fss[id], Dir: "/d", Transport: partTransport{n},
			Rand: rand.New(rand.NewPCG(id, 33)), StateSegmentSize: 1024}
		if applier != nil {
			c.Applier = applier(id)
		}
		return c
	}
	for _, id := range []uint64{1, 2, 3} {
		n.fss[id] = vfs.NewMemFS()
		n.open(id)
	}
	t.Cleanup(func() {
		for _, h := range n.hosts {
			h.Close()
		}
	})
	return n
}

const dmgA, dmgB, dmgC = 1, 2, 3

// damageSetup creates groups 7 and 8 on A, B and C, led by A, and writes
// records to both, each entry rolling B's segments.
func damageSetup(t *testing.T, n *partNet) []uint64 {
	boot := []uint64{dmgA, dmgB, dmgC}
	for _, g := range []uint64{7, 8} {
		for _, id := range boot {
			n.addGroup(id, g, boot)
		}
		if err := n.hosts[dmgA].Campaign(g); err != nil {
			t.Fatal(err)
		}
		n.pump()
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var seqs []uint64
	for i := range 8 {
		for _, g := range []uint64{7, 8} {
			rec := make([]byte, 600) // incompressible: one entry per segment
			for j := range rec {
				rec[j] = byte(rnd.Uint32())
			}
			seq, ok := n.put(dmgA, g, string(rec))
			if !ok {
				t.Fatalf("write %d to group %d not acknowledged", i, g)
			}
			if g == 7 {
				seqs = append(seqs, seq)
			}
		}
	}
	return seqs
}

// segFiles lists a group's live segment files on a node, oldest first.
func segFiles(t *testing.T, fs vfs.FS, g uint64) []string {
	t.Helper()
	dir := path.Join(groupDir("/d", g), fmt.Sprintf("%016x", 0))
	names, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, nm := range names {
		if _, _, ok := segment.ParseFileName(nm); ok {
			out = append(out, path.Join(dir, nm))
		}
	}
	slices.Sort(out) // the names sort by first ordinal
	if len(out) < 3 {
		t.Fatalf("group %d has %d segments, want several sealed ones", g, len(out))
	}
	return out
}

// flipByte flips one byte of a file in place.
func flipByte(t *testing.T, fs vfs.FS, name string, off int64) {
	t.Helper()
	f, err := fs.OpenRW(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xa5
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// damagedDirs lists the damaged-<time> directories of a node.
func damagedDirs(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.ReadDir("/d/groups")
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(s string) bool { return !strings.Contains(s, ".damaged-") })
}

// TestDamagedReplicaCostsOnlyItself: a flipped byte in a sealed segment of
// B's replica of group 7 no longer keeps B from opening. B's group 8 goes
// on; its replica of 7 is set aside (files kept), neither grants a
// pre-vote to a candidate that needs it nor acknowledges an append, stays
// damaged across restarts, and is replaced (removed, created again over
// its tombstone, caught up) with every acknowledged record.
func TestDamagedReplicaCostsOnlyItself(t *testing.T) {
	for _, tc := range []struct {
		name    string
		applier bool
		off     func(hdr int64) int64 // the flipped byte's offset in the segment
	}{
		// The first frame's type byte: recovery's header scan sees it.
		{"frame header", false, func(hdr int64) int64 { return hdr }},
		// A payload byte: only the CRC says so, which the restore's read
		// of every record checks.
		{"payload, restore", true, func(hdr int64) int64 { return hdr + segment.FrameHeaderSize + 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var applier func(uint64) Applier
			if tc.applier {
				applier = func(uint64) Applier { return &countApplier{} }
			}
			damagedReplica(t, newDamageNet(t, applier), tc.off)
		})
	}
}

type countApplier struct{ restored map[uint64]int }

func (a *countApplier) Applied(uint64, []Record) {}
func (a *countApplier) Restored(g uint64, pages iter.Seq2[[]Record, error]) {
	if a.restored == nil {
		a.restored = map[uint64]int{}
	}
	a.restored[g] = 0
	for p, err := range pages {
		if err != nil {
			return
		}
		a.restored[g] += len(p)
	}
}

func damagedReplica(t *testing.T, n *partNet, off func(int64) int64) {
	const g, other = 7, 8
	seqs := damageSetup(t, n)
	if err := n.hosts[dmgB].Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, n.fss[dmgB], g)
	flipByte(t, n.fss[dmgB], segs[1], off(segment.FileHeaderSize))
	n.open(dmgB)
	b := n.hosts[dmgB]

	dmg := b.Damaged()
	if len(dmg) != 1 || dmg[0].Group != g || !dmg[0].Dynamic {
		t.Fatalf("Damaged() = %+v, want group %d", dmg, g)
	}
	if !strings.Contains(dmg[0].Reason, path.Base(segs[1])) {
		t.Errorf("the reason %q does not name the damaged file %s", dmg[0].Reason, segs[1])
	}
	if b.HasGroup(g) || !b.IsDamaged(g) || !slices.Equal(b.Groups(), []uint64{g, other}) {
		t.Fatalf("HasGroup %v IsDamaged %v Groups %v", b.HasGroup(g), b.IsDamaged(g), b.Groups())
	}
	if _, err := n.fss[dmgB].ReadDir(groupDir("/d", g)); err == nil {
		t.Error("the damaged group's directory is still in place")
	}
	moved := damagedDirs(t, n.fss[dmgB])
	if len(moved) != 1 || "/d/groups/"+moved[0] != dmg[0].Dir+"/" {
		t.Fatalf("damaged directories %v, want %s", moved, dmg[0].Dir)
	}
	if _, err := n.fss[dmgB].Open(path.Join(dmg[0].Dir, fmt.Sprintf("%016x", 0), path.Base(segs[1]))); err != nil {
		t.Errorf("the damaged segment was not kept: %v", err)
	}

	// B's other group works: writes through B's vote, and B applies them.
	n.isolate(dmgC, dmgA, dmgB)
	if _, ok := n.put(dmgA, other, "group 8 with A and B"); !ok {
		t.Fatal("group 8 takes no write with A and B")
	}
	// But B acknowledges no append of group 7: A and B are no quorum.
	p, err := n.hosts[dmgA].Propose(g, [][]byte{[]byte("group 7 with A and B")})
	if err != nil {
		t.Fatal(err)
	}
	n.pump()
	if isDone(p.Done()) {
		t.Fatal("group 7 committed with A and the damaged B")
	}
	n.heal(dmgC, dmgA, dmgB)
	if err := n.tickLeader(dmgA, 2); err != nil {
		t.Fatal(err)
	}
	if s, err := p.Result(); !isDone(p.Done()) || err != nil {
		t.Fatalf("group 7's write not acknowledged once C is back: %v", err)
	} else {
		seqs = append(seqs, s[0])
	}

	// An election that needs B: A cut off, C campaigns. In group 8 B's
	// vote elects C (the check can fail); in group 7 it must not.
	n.isolate(dmgA, dmgB, dmgC)
	for _, grp := range []uint64{other, g} {
		if err := n.hosts[dmgC].Campaign(grp); err != nil {
			t.Fatal(err)
		}
		n.pump()
	}
	if st := n.hosts[dmgC].Status(other); st.Leader != dmgC {
		t.Fatalf("C did not win group 8 with B's vote: %+v", st)
	}
	if st := n.hosts[dmgC].Status(g); st.Leader == dmgC {
		t.Fatalf("C won group 7: the damaged B granted its vote (%+v)", st)
	}
	n.heal(dmgA, dmgB, dmgC)
	n.pump()
	// Group 7 goes on with A and C.
	seq, ok := n.put(dmgA, g, "group 7 with A and C")
	if !ok {
		t.Fatal("group 7 takes no write with A and C")
	}
	seqs = append(seqs, seq)

	// Still damaged after a restart: the WAL says so; the files stay aside.
	n.restart(dmgB)
	if d := n.hosts[dmgB].Damaged(); len(d) != 1 || d[0].Dir != dmg[0].Dir || d[0].Reason != dmg[0].Reason {
		t.Fatalf("after a restart Damaged() = %+v, want %+v", d, dmg)
	}
	if !hasDamageFrame(n.hosts[dmgB].walHeader(), g) {
		t.Fatal("a new WAL file's header does not restate the damage")
	}
	if err := n.hosts[dmgB].AddGroup(g, []uint64{dmgA, dmgB, dmgC}); err == nil {
		t.Fatal("AddGroup over a damaged replica succeeded")
	}

	// The repair, as the cluster's driver does it on the same node: B
	// leaves the group, its damaged replica is dropped, a new one is
	// created over the tombstone and caught up, and joins again.
	n.change(dmgA, g, ChangeRemove, dmgB)
	if err := n.hosts[dmgB].RemoveGroup(g); err != nil {
		t.Fatal(err)
	}
	if d := n.hosts[dmgB].Damaged(); len(d) != 0 {
		t.Fatalf("still damaged after RemoveGroup: %+v", d)
	}
	n.addGroup(dmgB, g, []uint64{dmgA, dmgB, dmgC})
	if tb := n.hosts[dmgB].tombs[g]; tb.term == 0 {
		t.Fatal("the damaged replica left no tombstone")
	}
	n.change(dmgA, g, ChangeLearner, dmgB)
	n.change(dmgA, g, ChangeVoter, dmgB)
	n.isolate(dmgC, dmgA, dmgB)
	seq, ok = n.put(dmgA, g, "group 7 with A and the new B")
	if !ok {
		t.Fatal("group 7 takes no write with the repaired B")
	}
	seqs = append(seqs, seq)
	n.heal(dmgC, dmgA, dmgB)
	if err := n.tickLeader(dmgA, 2); err != nil { // the commit index reaches B
		t.Fatal(err)
	}
	n.restart(dmgB)
	recs := n.hosts[dmgB].Records(g)
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Seq)
	}
	if !slices.Equal(got, seqs) {
		t.Fatalf("the repaired B holds ordinals %x, want every acknowledged one %x", got, seqs)
	}
	if len(damagedDirs(t, n.fss[dmgB])) != 1 {
		t.Fatal("the damaged files were not kept for the operator")
	}
}

// hasDamageFrame reports whether WAL frames hold group's kindDamaged frame.
func hasDamageFrame(b []byte, group uint64) bool {
	payloads, _ := scanFrames(b)
	for _, p := range payloads {
		if p[0] == kindDamaged {
			if d, err := decodeDamage(p[1:]); err == nil && d.Group == group {
				return true
			}
		}
	}
	return false
}

// TestTornNewestSegmentIsNotDamage: a torn tail of a group's newest
// segment is a crash's unsynced write, cut by recovery, not damage.
func TestTornNewestSegmentIsNotDamage(t *testing.T) {
	n := newDamageNet(t, nil)
	damageSetup(t, n)
	if err := n.hosts[dmgB].Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, n.fss[dmgB], 7)
	f, err := n.fss[dmgB].OpenRW(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	if err := f.Truncate(size - 7); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n.open(dmgB)
	if d := n.hosts[dmgB].Damaged(); len(d) != 0 {
		t.Fatalf("a torn newest segment made the replica damaged: %+v", d)
	}
	if !n.hosts[dmgB].HasGroup(7) {
		t.Fatal("group 7 not open")
	}
}

// TestDamageCodec: the kindDamaged frame round-trips.
func TestDamageCodec(t *testing.T) {
	d := Damage{Group: 9, Dynamic: true, At: testTime(), Reason: "segment x: corrupt at offset 64"}
	got, err := decodeDamage(encodeDamage(d)[1:])
	if err != nil || got.Group != d.Group || got.Dynamic != d.Dynamic || !got.At.Equal(d.At) || got.Reason != d.Reason {
		t.Fatalf("decoded %+v %v, want %+v", got, err, d)
	}
	if _, err := decodeDamage([]byte{1, 2}); err == nil {
		t.Fatal("a short frame decoded")
	}
}

func testTime() time.Time { return time.Date(2026, 12, 2, 13, 0, 0, 123456789, time.UTC) }

// TestDamageCrashBeforeMove: a crash after the damage's WAL frame became
// durable and before the files moved is finished by the next Open, which
// opens nothing of the damaged replica.
func TestDamageCrashBeforeMove(t *testing.T) {
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
	if _, err := n.fss[dmgB].ReadDir(groupDir("/d", 7)); err != nil || len(damagedDirs(t, n.fss[dmgB])) != 0 {
		t.Fatalf("files moved before the crash point: %v, %v", err, damagedDirs(t, n.fss[dmgB]))
	}
	n.open(dmgB)
	d := n.hosts[dmgB].Damaged()
	if len(d) != 1 || d[0].Group != 7 || !strings.Contains(d[0].Reason, path.Base(segs[1])) {
		t.Fatalf("Damaged() = %+v", d)
	}
	if _, err := n.fss[dmgB].ReadDir(groupDir("/d", 7)); err == nil {
		t.Fatal("the damaged files were not moved at the next Open")
	}
	if got := damagedDirs(t, n.fss[dmgB]); len(got) != 1 || "/d/groups/"+got[0] != d[0].Dir+"/" {
		t.Fatalf("damaged directories %v, want %s", got, d[0].Dir)
	}
	if _, err := n.fss[dmgB].Open(path.Join(d[0].Dir, fmt.Sprintf("%016x", 0), path.Base(segs[1]))); err != nil {
		t.Fatalf("the damaged segment was not kept: %v", err)
	}
}
