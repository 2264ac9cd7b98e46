package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// addNode starts a new node that joins the cluster through node via's API.
func (c *testCluster) addNode(id, via uint64) {
	peerLn := listen(c.t, "127.0.0.1:0")
	apiLn := listen(c.t, "127.0.0.1:0")
	tn := &testNode{id: id, fs: vfs.NewMemFS(), peerAddr: peerLn.Addr().String(), peerLn: peerLn,
		apiAddr: apiLn.Addr().String(), apiLn: apiLn, join: c.nodes[via].apiAddr}
	if c.reserveInternal(tn); c.pki != nil {
		tn.join = httpsScheme + c.nodes[via].intAddr
	}
	c.nodes[id] = tn
	c.start(id)
}

// writer puts records through the given nodes in turn until stopped, and
// keeps what was acknowledged and what failed (a failed record may or may
// not be stored: an indeterminate failure).
type writer struct {
	mu      sync.Mutex
	acked   acked
	failed  map[string]bool // "key=data" of records not acknowledged
	rounds  int
	nodes   []*Node // read by the writer's goroutine only under mu
	stop    chan struct{}
	stopped chan struct{}
}

func (c *testCluster) startWriter(stream string, round int, nodes ...uint64) *writer {
	w := &writer{acked: acked{}, failed: map[string]bool{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	w.through(c, nodes...)
	go func() {
		defer close(w.stopped)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			n := w.nodes[i%len(w.nodes)]
			w.mu.Unlock()
			w.put(c.t, n, stream, round+i, 20)
		}
	}()
	return w
}

func (w *writer) put(t *testing.T, n *Node, stream string, round, count int) {
	var entries []storage.PutEntry
	for i := range count {
		entries = append(entries, storage.PutEntry{PartitionKey: fmt.Sprintf("k-%d-%d", round, i), Data: []byte(fmt.Sprintf("r%d-%d", round, i))})
	}
	res, err := n.Put(context.Background(), stream, entries)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rounds++
	for i, e := range entries {
		v := e.PartitionKey + "=" + string(e.Data)
		if err != nil || res[i].Err != nil {
			w.failed[v] = true
			continue
		}
		if _, dup := w.acked[res[i].SequenceNumber]; dup {
			t.Errorf("sequence number %s acknowledged twice", res[i].SequenceNumber)
		}
		w.acked[res[i].SequenceNumber] = v
	}
}

// through changes the nodes the writer writes through.
func (w *writer) through(c *testCluster, ids ...uint64) {
	var nodes []*Node
	for _, id := range ids {
		nodes = append(nodes, c.node(id))
	}
	w.mu.Lock()
	w.nodes = nodes
	w.mu.Unlock()
}

// waitRounds waits until the writer has made n more calls, so writes are
// known to go on during whatever the test does meanwhile.
func (w *writer) waitRounds(t *testing.T, n int) {
	w.mu.Lock()
	target := w.rounds + n
	w.mu.Unlock()
	eventually(t, "the writer makes progress", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.rounds < target {
			return fmt.Errorf("%d calls of %d", w.rounds, target)
		}
		return nil
	})
}

func (w *writer) halt() (acked, map[string]bool) {
	close(w.stop)
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.acked), maps.Clone(w.failed)
}

// checkRecords reads the stream through node id: every acknowledged
// record once with its sequence number, and nothing else but records
// whose put failed (indeterminate: stored or not).
func (c *testCluster) checkRecords(id uint64, stream string, want acked, failed map[string]bool) error {
	read, err := c.readAll(id, stream)
	if err != nil {
		return err
	}
	for seq, v := range want {
		if read[seq] != v {
			return fmt.Errorf("node %d: acknowledged %s (%s) read as %q", id, seq, v, read[seq])
		}
	}
	for seq, v := range read {
		if want[seq] == "" && !failed[v] {
			return fmt.Errorf("node %d: phantom record %s (%s)", id, seq, v)
		}
	}
	return nil
}

// settled checks, as node id sees it, that no move is in progress, that
// the placement is replica.Place's over the live nodes (so balanced, no
// node twice in a group), that every live node holds replicas, and that
// each group's configuration, as its leader has applied it, is its
// placement.
func (c *testCluster) settled(id uint64, live ...uint64) error {
	n := c.node(id)
	if err := n.linearize(context.Background(), metaGroup); err != nil {
		return err
	}
	if got := n.liveNodes(); !slices.Equal(got, live) {
		return fmt.Errorf("live nodes %v, want %v", got, live)
	}
	cur, moves := n.placements()
	if len(moves) > 0 {
		return fmt.Errorf("moves in progress: %v", moves)
	}
	groups := slices.Sorted(maps.Keys(cur))
	target := replica.Place(live, groups, cur, 3)
	perNode := map[uint64]int{}
	for _, g := range groups {
		if !sameSet(cur[g], target[g]) || len(cur[g]) != 3 {
			return fmt.Errorf("group %d on %v, Place says %v", g, cur[g], target[g])
		}
		for _, x := range cur[g] {
			perNode[x]++
		}
		if err := c.groupConfigIs(g, cur[g]); err != nil {
			return err
		}
	}
	for _, x := range live {
		if perNode[x] == 0 {
			return fmt.Errorf("node %d holds no replica: %v", x, perNode)
		}
	}
	return nil
}

// holdsPlaced checks that node id holds replicas of exactly the groups
// placed on it (and the metadata group): those moved away are deleted.
func (c *testCluster) holdsPlaced(id uint64) error {
	n := c.node(id)
	cur, _ := n.placements()
	want := []uint64{metaGroup}
	for g, nodes := range cur {
		if slices.Contains(nodes, id) {
			want = append(want, g)
		}
	}
	slices.Sort(want)
	if got := n.host.Groups(); !slices.Equal(got, want) {
		return fmt.Errorf("node %d holds groups %v, placed %v", id, got, want)
	}
	return nil
}

// groupConfigIs checks the group's voters, on its leader, are placed.
func (c *testCluster) groupConfigIs(g uint64, placed []uint64) error {
	for _, tn := range c.nodes {
		if tn.node == nil || tn.node.host.Status(g).Leader != tn.id {
			continue
		}
		m, _ := tn.node.host.Membership(g)
		if m.Match == nil {
			continue // deposed meanwhile
		}
		if !sameSet(m.Voters, placed) || len(m.Learners) > 0 {
			return fmt.Errorf("group %d: voters %v learners %v, placed on %v", g, m.Voters, m.Learners, placed)
		}
		return nil
	}
	return fmt.Errorf("group %d: no leader", g)
}

// TestAddAndRemoveNodes: three seed nodes and a stream of six shards with
// acknowledged records. Node 4 joins through node 2 while a writer keeps
// writing through every node: replicas move until node 4 holds its share
// and each group's configuration is its placement; every acknowledged
// record is read exactly once through every node, node 4 included (which
// forwards reads of shards it does not hold). Then node 1 (a seed, a
// metadata voter) is removed while writes go on: its replicas and its
// metadata seat move away, it is reported removed, it is stopped, and the
// three nodes left read every record and take writes.
func TestAddAndRemoveNodes(t *testing.T) {
	c := newTestClusterSecret(t, 3, "membership-test-secret")
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 6}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	before := acked{}
	for round := range 3 {
		if failed, err := c.put(uint64(round%3+1), "s", round, 30, before); err != nil || failed > 0 {
			t.Fatalf("put round %d: %d failed, %v", round, failed, err)
		}
	}

	w := c.startWriter("s", 1000, 1, 2, 3)
	c.addNode(4, 2)
	w.through(c, 1, 2, 3, 4)
	eventually(t, "placement settles with node 4", func() error { return c.settled(3, 1, 2, 3, 4) })
	for id := uint64(1); id <= 4; id++ {
		eventually(t, "moved replicas deleted", func() error { return c.holdsPlaced(id) })
	}
	cur, _ := c.node(4).placements()
	t.Logf("placement with node 4: %v", cur)
	w.waitRounds(t, 3)
	acks, failed := w.halt()
	maps.Copy(acks, before)
	for id := uint64(1); id <= 4; id++ {
		if err := c.checkRecords(id, "s", acks, failed); err != nil {
			t.Fatal(err)
		}
	}
	if len(acks) <= len(before) {
		t.Fatalf("no write acknowledged during the moves")
	}
	// A stream created on four nodes: three replicas per shard, so the
	// metadata leader does not hold every group it must see led.
	if err := c.node(4).CreateStream(ctx, storage.CreateStreamInput{Name: "t", ShardCount: 4}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("t", 1, 2, 3, 4)
	tAcks := acked{}
	for id := uint64(1); id <= 4; id++ {
		if failed, err := c.put(id, "t", int(id), 20, tAcks); err != nil || failed > 0 {
			t.Fatalf("put to t through node %d: %d failed, %v", id, failed, err)
		}
	}
	for id := uint64(1); id <= 4; id++ {
		if err := c.checkRecords(id, "t", tAcks, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.settled(1, 1, 2, 3, 4); err != nil {
		t.Fatal(err)
	}

	// A joined node restarts from its own disk (no new join) and serves
	// the same records.
	c.stop(4)
	c.start(4)
	eventually(t, "node 4 serves every record after a restart", func() error { return c.checkRecords(4, "s", acks, failed) })

	w = c.startWriter("s", 100000, 2, 3, 4)
	if _, err := c.node(3).RemoveNode(ctx, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node 1 is removed", func() error {
		info := c.node(2).nodeInfo(1)
		if info.State != stateRemoved {
			return fmt.Errorf("node 1: %+v", info)
		}
		return nil
	})
	eventually(t, "placement settles without node 1", func() error { return c.settled(4, 2, 3, 4) })
	for _, id := range []uint64{1, 2, 3, 4} {
		eventually(t, "moved replicas deleted", func() error { return c.holdsPlaced(id) })
	}
	eventually(t, "node 1 out of the metadata group, three voters left", func() error {
		if m, _ := c.node(2).host.Membership(metaGroup); m.Has(1) || len(m.Voters) != 3 {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
	eventually(t, "node 1 knows it was removed", func() error {
		if st := c.node(1).nodeRecs()[1].State; st != stateRemoved {
			return fmt.Errorf("state %q", st)
		}
		return nil
	})
	w.waitRounds(t, 3)
	c.stop(1)
	_, err := Open(ctx, Config{NodeID: 1, Peers: c.peers, Secret: c.secret, PeerListener: listen(t, c.nodes[1].peerAddr),
		Advertise: c.nodes[1].apiAddr, Dir: "/raft", FS: c.nodes[1].fs, AccountID: "123456789012", ShardLimit: 100})
	if err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("restarting the removed node: %v", err)
	}
	w.waitRounds(t, 3)
	more, failed2 := w.halt()
	maps.Copy(acks, more)
	maps.Copy(failed, failed2)
	for _, id := range []uint64{2, 3, 4} {
		if err := c.checkRecords(id, "s", acks, failed); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ = c.node(4).placements()
	t.Logf("placement without node 1: %v; %d records acknowledged, %d failed puts", cur, len(acks), len(failed))
	if len(more) == 0 {
		t.Fatalf("no write acknowledged during the removal")
	}
	_, err = c.node(2).RemoveNode(ctx, 3)
	var refused *refusedError
	if !errors.As(err, &refused) {
		t.Fatalf("removing a third node of three: %v", err)
	}
}
