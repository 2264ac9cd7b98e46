package replica

import (
	"fmt"
	"testing"
)

// TestSnapshotCatchUp: with a replica down, the others compact their logs
// past it and delete the WAL files behind; when it returns it catches up from
// a snapshot, also when its power is cut at each step of installing one
// (with each way a crash can leave unsynced bytes), and afterwards the
// simulation's checker finds every acknowledged record exactly once, in
// order, on every node, and again after a whole-cluster power cut.
func TestSnapshotCatchUp(t *testing.T) {
	points := []string{"", crashSnapTempSynced, crashSnapRenamed, crashSnapDirSynced}
	for i, point := range points {
		for seed := uint64(1); seed <= 3; seed++ {
			name := fmt.Sprintf("%s/seed %d", point, seed)
			if point == "" {
				name = fmt.Sprintf("no crash/seed %d", seed)
			}
			t.Run(name, func(t *testing.T) { snapshotCatchUp(t, seed*10+uint64(i), point) })
		}
	}
}

func snapshotCatchUp(t *testing.T, seed uint64, point string) {
	s, err := newSim(seed, simOptions{nodes: 3, groups: 2, clients: 4, calm: true})
	if err != nil {
		t.Fatal(err)
	}
	run := func(steps int, until func() bool) {
		t.Helper()
		for range steps {
			if err := s.step(); err != nil {
				t.Fatal(err)
			}
			if until() {
				return
			}
		}
		t.Fatalf("not reached within %d steps:%s", steps, s.describe())
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
	removed := func(n *simNode) int { return n.host.wal.removed }
	before := removed(s.nodes[0]) + removed(s.nodes[1])
	// The live nodes compact past everything the down one holds, and delete
	// WAL files meanwhile: the down replica no longer holds truncation back.
	run(5000, func() bool {
		for _, n := range s.nodes[:2] {
			for g := uint64(1); g <= 2; g++ {
				if n.host.Status(g).Compacted <= last[g] {
					return false
				}
			}
		}
		return removed(s.nodes[0])+removed(s.nodes[1]) > before
	})
	down.crashAt = point
	if err := s.start(down); err != nil {
		t.Fatal(err)
	}
	if point != "" {
		run(2000, func() bool { return down.host == nil }) // the armed power cut
		if down.crashAt != "" {
			t.Fatalf("the power cut at %q did not happen", point)
		}
	}
	if err := s.settleAndCheck("after catching up"); err != nil {
		t.Fatal(err)
	}
	installed, fetched, chunks := down.host.snapshotsInstalled, down.host.fetchBytes, down.host.fetchChunks
	for _, n := range s.nodes {
		s.crash(n) // what was installed must have been made durable
	}
	if err := s.settleAndCheck("after a whole-cluster power cut"); err != nil {
		t.Fatal(err)
	}
	if point == "" && installed == 0 {
		t.Fatal("the returning replica caught up without a snapshot")
	}
	t.Logf("fetched %d bytes in %d chunks; largest chunk %d, largest MsgSnap data %d", fetched, chunks, s.stats.maxChunk, s.stats.maxSnapData)
	// The snapshot came as a file list, its bytes in chunks: no message
	// held more than a chunk, and the state fetched was many chunks.
	if point == "" && (s.stats.maxChunk > simChunkBytes || s.stats.maxSnapData > 1024 ||
		fetched < 4*simChunkBytes || chunks < 4) {
		t.Fatalf("snapshot fetch: largest chunk %d bytes (limit %d), largest MsgSnap data %d bytes, %d bytes in %d chunks fetched",
			s.stats.maxChunk, simChunkBytes, s.stats.maxSnapData, fetched, chunks)
	}
	for g := uint64(1); g <= 2; g++ {
		if st := down.host.Status(g); st.Compacted <= last[g] {
			t.Fatalf("group %d: the returning replica's log starts after %d, not past %d", g, st.Compacted, last[g])
		}
	}
}

// TestSnapshotFetchCap (review5): a replica back from an outage with every
// one of many groups behind fetches at most maxFetches snapshots at once
// (the MsgSnaps past the cap are dropped and sent again), and every group
// still catches up.
func TestSnapshotFetchCap(t *testing.T) {
	const groups, limit = 8, 2
	s, err := newSim(5, simOptions{nodes: 3, groups: groups, clients: 2 * groups, calm: true,
		tweak: func(c *Config) { c.maxFetches = limit }})
	if err != nil {
		t.Fatal(err)
	}
	step := func() {
		t.Helper()
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
	}
	for range 300 {
		step()
	}
	down := s.nodes[2]
	last := map[uint64]uint64{}
	for g := uint64(1); g <= groups; g++ {
		last[g] = down.host.Status(g).LastIndex
	}
	s.crash(down)
	compactedPast := func() bool {
		for _, n := range s.nodes[:2] {
			for g := uint64(1); g <= groups; g++ {
				if n.host.Status(g).Compacted <= last[g] {
					return false
				}
			}
		}
		return true
	}
	for i := 0; !compactedPast(); i++ {
		if i == 20000 {
			t.Fatalf("the live replicas did not compact past the down one:%s", s.describe())
		}
		step()
	}
	if err := s.start(down); err != nil {
		t.Fatal(err)
	}
	if err := s.settleAndCheck("after catching up"); err != nil {
		t.Fatal(err)
	}
	h := down.host
	if h.mostFetching > limit || h.mostFetching == 0 {
		t.Fatalf("%d fetches at once, cap %d", h.mostFetching, limit)
	}
	if h.snapshotsInstalled < limit+1 {
		t.Fatalf("%d snapshots installed: the cap was never met", h.snapshotsInstalled)
	}
	for g := uint64(1); g <= groups; g++ {
		if st := h.Status(g); st.Compacted <= last[g] {
			t.Fatalf("group %d: the returning replica's log starts after %d, not past %d", g, st.Compacted, last[g])
		}
	}
	t.Logf("%d snapshots installed, at most %d fetches at once, %d fetches dropped", h.snapshotsInstalled, h.mostFetching, h.fetchesDropped)
}
