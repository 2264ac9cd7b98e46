package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// testNode is one node of an in-process cluster: its disk (a MemFS) and
// addresses outlive restarts.
type testNode struct {
	id       uint64
	fs       *vfs.MemFS
	peerAddr string
	peerLn   net.Listener // held from the reservation to the first start
	apiAddr  string
	apiLn    net.Listener
	node     *Node
	srv      *http.Server
}

type testCluster struct {
	t     *testing.T
	nodes map[uint64]*testNode
	peers map[uint64]string
}

// newTestCluster starts n nodes on loopback (Raft and API listeners on
// reserved ports) and waits until all have opened.
func newTestCluster(t *testing.T, n int) *testCluster {
	c := &testCluster{t: t, nodes: map[uint64]*testNode{}, peers: map[uint64]string{}}
	for id := uint64(1); id <= uint64(n); id++ {
		peerLn := listen(t, "127.0.0.1:0")
		apiLn := listen(t, "127.0.0.1:0")
		c.nodes[id] = &testNode{id: id, fs: vfs.NewMemFS(), peerAddr: peerLn.Addr().String(), peerLn: peerLn,
			apiAddr: apiLn.Addr().String(), apiLn: apiLn}
		c.peers[id] = peerLn.Addr().String()
	}
	var wg sync.WaitGroup
	for id := range c.nodes {
		wg.Go(func() { c.start(id) }) // each Open waits for a quorum
	}
	wg.Wait()
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // a restarted node's port may be in TIME_WAIT for a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func (c *testCluster) start(id uint64) {
	tn := c.nodes[id]
	if tn.peerLn == nil {
		tn.peerLn = listen(c.t, tn.peerAddr)
	}
	if tn.apiLn == nil {
		tn.apiLn = listen(c.t, tn.apiAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Open(ctx, Config{NodeID: id, Peers: c.peers, PeerListener: tn.peerLn, Advertise: tn.apiAddr,
		Dir: "/raft", FS: tn.fs, AccountID: "123456789012", ShardLimit: 100,
		Tick: 10 * time.Millisecond, ElectionTicks: 20})
	tn.peerLn = nil // the transport owns it now
	if err != nil {
		c.t.Errorf("node %d: %v", id, err)
		return
	}
	srv := &http.Server{Handler: n.Handler(http.NotFoundHandler())}
	go srv.Serve(tn.apiLn)
	tn.apiLn = nil
	tn.node, tn.srv = n, srv
}

func (c *testCluster) stop(id uint64) {
	tn := c.nodes[id]
	if tn.node == nil {
		return
	}
	tn.srv.Close()
	if err := tn.node.Close(); err != nil {
		c.t.Errorf("close node %d: %v", id, err)
	}
	tn.node, tn.srv = nil, nil
}

func (c *testCluster) node(id uint64) *Node { return c.nodes[id].node }

// eventually polls cond until it holds, failing after a generous deadline
// (no timed assertion: the deadline only bounds a hung test).
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) waitActive(name string, ids ...uint64) {
	for _, id := range ids {
		eventually(c.t, fmt.Sprintf("stream %s ACTIVE on node %d", name, id), func() error {
			info, err := c.node(id).DescribeStream(context.Background(), name)
			if err == nil && info.Status != storage.StatusActive {
				err = fmt.Errorf("status %s", info.Status)
			}
			return err
		})
	}
}

// acked is what a writer was told: sequence number → partition key and data.
type acked map[string]string

// put writes count records through node id in one PutRecords (keys spread
// over the shards) and records what was acknowledged.
func (c *testCluster) put(id uint64, stream string, round, count int, got acked) (failed int, err error) {
	var entries []storage.PutEntry
	for i := range count {
		entries = append(entries, storage.PutEntry{PartitionKey: fmt.Sprintf("k-%d-%d", round, i), Data: []byte(fmt.Sprintf("r%d-%d", round, i))})
	}
	res, err := c.node(id).Put(context.Background(), stream, entries)
	if err != nil {
		return count, err
	}
	for i, r := range res {
		if r.Err != nil {
			failed++
			continue
		}
		if _, dup := got[r.SequenceNumber]; dup {
			c.t.Fatalf("sequence number %s acknowledged twice", r.SequenceNumber)
		}
		got[r.SequenceNumber] = entries[i].PartitionKey + "=" + string(entries[i].Data)
	}
	return failed, nil
}

// readAll reads every shard of a stream through node id from TRIM_HORIZON
// to the end, checking order, and returns what it read.
func (c *testCluster) readAll(id uint64, stream string) (acked, error) {
	ctx := context.Background()
	n := c.node(id)
	info, err := n.DescribeStream(ctx, stream)
	if err != nil {
		return nil, err
	}
	out := acked{}
	for _, sh := range info.Shards {
		pos, err := n.Position(ctx, stream, sh.ID, storage.TrimHorizon, "", time.Time{})
		if err != nil {
			return nil, err
		}
		var last uint64
		for {
			res, err := n.Read(ctx, pos, 7, 1<<20) // small pages: many calls
			if err != nil {
				return nil, err
			}
			for _, r := range res.Records {
				if _, dup := out[r.SequenceNumber]; dup {
					return nil, fmt.Errorf("record %s read twice", r.SequenceNumber)
				}
				out[r.SequenceNumber] = r.PartitionKey + "=" + string(r.Data)
			}
			if res.Next.Ordinal <= last || len(res.Records) == 0 {
				break
			}
			last, pos = res.Next.Ordinal, *res.Next
		}
	}
	return out, nil
}

// sameRecords checks that read holds exactly the acknowledged records.
func sameRecords(want, read acked) error {
	for seq, v := range want {
		if read[seq] != v {
			return fmt.Errorf("acknowledged %s (%s) read as %q; read %d records, %d acknowledged", seq, v, read[seq], len(read), len(want))
		}
	}
	if len(read) != len(want) {
		return fmt.Errorf("read %d records, %d acknowledged (phantoms)", len(read), len(want))
	}
	return nil
}

// TestCluster: three nodes on loopback. A stream created through node 1 is
// described identically on every node; records put through node 2 are read
// through node 3, all of them, once each, in order. Then the leader of
// shard 0 stops: writes through a surviving node resume after an election,
// every acknowledged record is read back exactly once from both survivors,
// and the stopped node, restarted, catches up and serves the same records.
func TestCluster(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 4}); err != nil {
		t.Fatal(err)
	}
	err := c.node(2).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1})
	if !errors.Is(err, storage.ErrStreamExists) {
		t.Fatalf("second CreateStream through node 2: %v, want ErrStreamExists", err)
	}
	c.waitActive("s", 1, 2, 3)
	want, _ := c.node(1).DescribeStream(ctx, "s")
	for _, id := range []uint64{2, 3} {
		got, _ := c.node(id).DescribeStream(ctx, "s")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("node %d describes\n%+v\nnode 1\n%+v", id, got, want)
		}
	}
	if len(want.Shards) != 4 || want.Shards[3].ID != "shardId-000000000003" {
		t.Fatalf("shards %+v", want.Shards)
	}

	got := acked{}
	for round := range 5 {
		if failed, err := c.put(2, "s", round, 40, got); err != nil || failed > 0 {
			t.Fatalf("put round %d: %d failed, %v", round, failed, err)
		}
	}
	read, err := c.readAll(3, "s")
	if err != nil {
		t.Fatal(err)
	}
	if err := sameRecords(got, read); err != nil {
		t.Fatal(err)
	}

	// Stop shard 0's leader; write through another node until writes
	// resume, then a little more.
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	var leader uint64
	eventually(t, "shard 0 has a leader", func() error {
		if leader = c.node(1).host.Status(group).Leader; leader == 0 {
			return errors.New("none")
		}
		return nil
	})
	c.stop(leader)
	other := leader%3 + 1
	third := other%3 + 1
	round := 100
	eventually(t, "writes resume after the leader stopped", func() error {
		round++
		failed, err := c.put(other, "s", round, 40, got)
		if err == nil && failed > 0 {
			err = fmt.Errorf("%d records failed", failed)
		}
		return err
	})
	for range 3 {
		round++
		if failed, err := c.put(third, "s", round, 40, got); err != nil || failed > 0 {
			t.Fatalf("put after failover: %d failed, %v", failed, err)
		}
	}
	for _, id := range []uint64{other, third} {
		read, err := c.readAll(id, "s")
		if err == nil {
			err = sameRecords(got, read)
		}
		if err != nil {
			t.Fatalf("node %d after failover: %v", id, err)
		}
	}

	c.start(leader)
	eventually(t, "the restarted node catches up", func() error {
		read, err := c.readAll(leader, "s")
		if err == nil {
			err = sameRecords(got, read)
		}
		return err
	})
}

// TestStreamsEverywhere: ListStreams answers the same on every node, a
// deleted stream is gone everywhere, and the unsupported operations say so.
func TestStreamsEverywhere(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	for i, name := range []string{"b", "a", "c"} {
		if err := c.node(uint64(i%3+1)).CreateStream(ctx, storage.CreateStreamInput{Name: name, ShardCount: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitActive("c", 1)
	if err := c.node(3).DeleteStreamWith(ctx, "b", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		list, err := c.node(id).ListStreams(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range list {
			names = append(names, s.Name)
		}
		if !reflect.DeepEqual(names, []string{"a", "c"}) {
			t.Fatalf("node %d lists %v", id, names)
		}
		if _, err := c.node(id).DescribeStream(ctx, "b"); !errors.Is(err, storage.ErrStreamNotFound) {
			t.Fatalf("node %d describes the deleted stream: %v", id, err)
		}
	}
	_, err := c.node(2).Put(ctx, "b", []storage.PutEntry{{PartitionKey: "k", Data: []byte("x")}})
	if !errors.Is(err, storage.ErrStreamNotFound) {
		t.Fatalf("put to a deleted stream: %v", err)
	}
	err = c.node(1).SetRetention(ctx, "a", 48, true)
	var se *storage.Error
	if !errors.As(err, &se) || se.Reason != storage.ReasonClusterUnsupported || !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("SetRetention: %v", err)
	}
	err = c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "d", Mode: storage.ModeOnDemand, ShardCount: 4})
	if !errors.As(err, &se) || se.Reason != storage.ReasonClusterUnsupported {
		t.Fatalf("ON_DEMAND CreateStream: %v", err)
	}
	_, err = c.node(1).Position(ctx, "a", "shardId-000000000009", storage.TrimHorizon, "", time.Time{})
	if !errors.As(err, &se) || se.Reason != storage.ReasonShardGone || se.Shard != datadir.ShardID(9) {
		t.Fatalf("iterator of a missing shard: %v", err)
	}
}
