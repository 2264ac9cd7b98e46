package replica

import "testing"

// TestReviewSnapshotRoundSignalsChanged: notify.go promises that the Ready
// round that installs a snapshot closes the group's Changed channel. Since
// f0c2d10 signalChanged runs only in applyDurable, which skips rounds with a
// snapshot, so a subscriber waiting on a follower that catches up by
// snapshot is not woken by that round.
func TestReviewSnapshotRoundSignalsChanged(t *testing.T) {
	s, err := newSim(11, simOptions{nodes: 3, groups: 2, clients: 4, calm: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
	}
	down := s.nodes[2]
	last := map[uint64]uint64{}
	for g := uint64(1); g <= 2; g++ {
		last[g] = down.host.Status(g).LastIndex
	}
	s.crash(down)
	for i := 0; ; i++ {
		if i > 5000 {
			t.Fatal("live nodes never compacted past the down replica")
		}
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, n := range s.nodes[:2] {
			for g := uint64(1); g <= 2; g++ {
				ok = ok && n.host.Status(g).Compacted > last[g]
			}
		}
		if ok {
			break
		}
	}
	if err := s.start(down); err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		chs := map[uint64]<-chan struct{}{}
		before := map[uint64]uint64{}
		for g := uint64(1); g <= 2; g++ {
			ch, err := down.host.Changed(g)
			if err != nil {
				t.Fatal(err)
			}
			chs[g], before[g] = ch, down.host.Status(g).Compacted
		}
		inst := down.host.snapshotsInstalled
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
		if down.host.snapshotsInstalled == inst {
			continue
		}
		for g := uint64(1); g <= 2; g++ {
			if down.host.Status(g).Compacted > before[g] && !closed(chs[g]) {
				t.Fatalf("group %d installed a snapshot (log now starts after %d, applied %d) and Changed was not signalled",
					g, down.host.Status(g).Compacted, down.host.Status(g).Applied)
			}
		}
		if down.host.snapshotsInstalled >= 2 {
			return
		}
	}
	t.Fatal("no snapshot installed")
}
