package cluster

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// TestDamagedReplicaIsReplaced: a flipped byte in a sealed segment of node
// 2's replica of a shard no longer keeps node 2 down. It opens with that
// replica set aside; writes go on through the two healthy replicas; the
// cluster replaces the damaged replica (with three nodes, on node 2
// itself: removed, created fresh, caught up, promoted); the shard ends with
// three healthy voters, and every acknowledged record is read through
// every node and held by node 2's new replica. With a fourth node, the
// replacement goes there instead and node 2's damaged replica is dropped.
func TestDamagedReplicaIsReplaced(t *testing.T) {
	for _, nodes := range []int{3, 4} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) { damagedReplicaReplaced(t, nodes) })
	}
}

func damagedReplicaReplaced(t *testing.T, nodes int) {
	c := newTestClusterWith(t, nodes, func(c *testCluster) { c.segSize = 512 })
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "d", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for id := range uint64(nodes) {
		ids = append(ids, id+1)
	}
	c.waitActive("d", ids...)
	g := c.node(1).streams()[0].Shards[0].Group
	cur, _ := c.node(1).placements()
	victim := cur[g][1] // not the preferred leader: no leadership to move first
	acks := acked{}
	round := 0
	putRounds := func(n int, through ...uint64) {
		for range n {
			id := through[round%len(through)]
			if failed, err := c.put(id, "d", round, 5, acks); err != nil || failed > 0 {
				t.Fatalf("put round %d through node %d: %d failed, %v", round, id, failed, err)
			}
			round++
		}
	}
	putRounds(12, cur[g]...)
	var segs []string
	eventually(t, "sealed segments on the victim", func() error {
		segs = groupSegments(c.nodes[victim].fs, g)
		if len(segs) < 3 {
			return fmt.Errorf("%d segments", len(segs))
		}
		return nil
	})
	c.stop(victim)
	flipByte(t, c.nodes[victim].fs, segs[1], segment.FileHeaderSize)
	c.start(victim)
	if c.node(victim) == nil {
		t.Fatal("the node with a damaged replica did not open")
	}

	if c.node(victim).host.IsDamaged(g) { // unless the repair already ran
		if st := c.node(victim).Stats(); len(st.Streams) != 1 || len(st.Streams[0].Shards) != 1 || !st.Streams[0].Shards[0].Corrupt {
			t.Errorf("/metrics' stats do not show the damaged replica: %+v", st.Streams)
		}
	}
	healthy := slices.DeleteFunc(slices.Clone(cur[g]), func(x uint64) bool { return x == victim })
	putRounds(6, healthy...) // the shard takes writes meanwhile
	eventually(t, "the damaged replica replaced", func() error {
		for _, id := range ids {
			n := c.node(id)
			if d := n.host.Damaged(); len(d) > 0 {
				return fmt.Errorf("node %d still has damaged replicas %+v", id, d)
			}
			if ds := damagedOf(n.meta.Snapshot()); len(ds) > 0 {
				return fmt.Errorf("node %d's metadata still records damage %v", id, ds)
			}
		}
		now, moves := c.node(1).placements()
		if len(moves) > 0 {
			return fmt.Errorf("moves in progress %v", moves)
		}
		if len(now[g]) != 3 {
			return fmt.Errorf("group %d placed on %v", g, now[g])
		}
		return c.groupConfigIs(g, now[g])
	})
	putRounds(3, ids...)
	now, _ := c.node(1).placements()
	if nodes == 3 && !slices.Contains(now[g], victim) {
		t.Fatalf("with three nodes the replica was not replaced in place: %v", now[g])
	}
	if nodes == 4 && slices.Contains(now[g], victim) {
		t.Fatalf("with a free fourth node the replica stayed on node %d: %v", victim, now[g])
	}
	for _, id := range now[g] {
		eventually(t, fmt.Sprintf("node %d's replica holds every record", id), func() error {
			if got := len(c.node(id).host.Records(g)); got != len(acks) {
				return fmt.Errorf("%d records, %d acknowledged", got, len(acks))
			}
			return nil
		})
	}
	for _, id := range ids {
		eventually(t, "every acknowledged record read", func() error { return c.checkRecords(id, "d", acks, nil) })
	}
	if names, _ := c.nodes[victim].fs.ReadDir("/raft/groups"); !slices.ContainsFunc(names, func(s string) bool {
		return strings.HasPrefix(s, fmt.Sprintf("%016x.damaged-", g))
	}) {
		t.Fatalf("the damaged files were not kept: %v", names)
	}
}

// groupSegments lists a group's live segment files on a node's disk,
// oldest first.
func groupSegments(fs vfs.FS, g uint64) []string {
	dir := path.Join("/raft/groups", fmt.Sprintf("%016x", g))
	gens, _ := fs.ReadDir(dir)
	var out []string
	for _, gen := range gens {
		if !strings.HasSuffix(gen, "/") {
			continue
		}
		names, _ := fs.ReadDir(path.Join(dir, gen))
		for _, n := range names {
			if _, _, ok := segment.ParseFileName(n); ok {
				out = append(out, path.Join(dir, gen, n))
			}
		}
	}
	slices.Sort(out)
	return out
}

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

// TestDamagedKeys: the metadata's damaged/ keys parse back, and a repair
// goes to the least-loaded free node, else stays on the damaged one.
func TestDamagedKeys(t *testing.T) {
	at := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	snap := map[string]replica.MetaValue{
		damagedKey(7, 2): {Value: mustJSON(damageRec{Reason: "segment x: corrupt", At: at, Dir: "/d/groups/x.damaged-1"})},
		damagedKey(9, 3): {Value: mustJSON(damageRec{})},
		"placement/7":    {Value: mustJSON([]uint64{1, 2, 3})},
	}
	if got := damagedOf(snap); len(got) != 2 || !slices.Equal(got[7], []uint64{2}) || !slices.Equal(got[9], []uint64{3}) {
		t.Fatalf("damagedOf %v", got)
	}
	if got := damagedOn(snap, 2); len(got) != 1 || got[0].Group != 7 || got[0].Reason != "segment x: corrupt" || !got[0].At.Equal(at) {
		t.Fatalf("damagedOn %+v", got)
	}
	cur := replica.Placement{7: {1, 2, 3}, 8: {4, 1, 2}, 9: {1, 3, 5}}
	for _, tc := range []struct {
		live []uint64
		want uint64
	}{
		{[]uint64{1, 2, 3}, 2},       // no free node: in place
		{[]uint64{1, 2, 3, 4}, 4},    // the free one
		{[]uint64{1, 2, 3, 4, 5}, 4}, // 4 and 5 hold one each: the lower ID
		{[]uint64{1, 2, 3, 5, 6}, 6}, // 6 holds none
	} {
		if got := repairTarget(cur, 7, 2, tc.live); got != tc.want {
			t.Errorf("live %v: target %d, want %d", tc.live, got, tc.want)
		}
	}
}

// TestDamagedMetadataReplicaRefusesToStart: a node whose replica of the
// metadata group is damaged does not run without metadata (it would answer
// that no stream exists): Open fails, naming the damage and what to do.
func TestDamagedMetadataReplicaRefusesToStart(t *testing.T) {
	c := newTestClusterWith(t, 3, func(c *testCluster) { c.segSize = 512 })
	ctx := context.Background()
	for i := range 4 {
		if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: fmt.Sprintf("m%d", i), ShardCount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var segs []string
	eventually(t, "sealed metadata segments on node 2", func() error {
		segs = groupSegments(c.nodes[2].fs, metaGroup)
		if len(segs) < 3 {
			return fmt.Errorf("%d segments", len(segs))
		}
		return nil
	})
	c.stop(2)
	flipByte(t, c.nodes[2].fs, segs[1], segment.FileHeaderSize)
	_, err := Open(ctx, Config{NodeID: 2, Peers: c.peers, Secret: c.secret, PeerListener: listen(t, c.nodes[2].peerAddr),
		Advertise: c.nodes[2].apiAddr, Dir: "/raft", FS: c.nodes[2].fs, AccountID: "123456789012", ShardLimit: 100})
	if err == nil || !strings.Contains(err.Error(), "metadata group is damaged") || !strings.Contains(err.Error(), "remove-node") {
		t.Fatalf("opening a node with a damaged metadata replica: %v", err)
	}
	t.Log(err)
}
