package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/shardlog/shardlog/vfs"
)

func sampleBatch() Batch {
	return Batch{From: 1, To: 2, Msgs: []GroupMessage{
		{Group: 3, Msg: &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(5)),
			Entries: []*pb.Entry{{Term: new(uint64(5)), Index: new(uint64(8)), Data: []byte("rec")}}}},
		{Group: 4, Msg: &pb.Message{Type: pb.MsgHeartbeat.Enum(), To: new(uint64(2)), From: new(uint64(1))}},
	}, Beats: []Beat{{Group: 5, Kind: BeatHeartbeat, Term: 5, Commit: 9}, {Group: 6, Kind: BeatQuiesce, Term: 5, Commit: 9, Index: 9}}}
}

func TestTransportFrames(t *testing.T) {
	payload, err := EncodeBatch(sampleBatch())
	if err != nil {
		t.Fatal(err)
	}
	good := appendFrame(nil, payload)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	zero := binary.LittleEndian.AppendUint32(nil, 0)
	zero = binary.LittleEndian.AppendUint32(zero, 0)
	huge := binary.LittleEndian.AppendUint32(nil, MaxFrame+1)
	huge = binary.LittleEndian.AppendUint32(huge, 0)
	for _, tc := range []struct {
		name    string
		stream  []byte
		want    int   // frames read before the error
		wantErr error // the error that ends the stream
	}{
		{"two frames then a clean end", append(bytes.Clone(good), good...), 2, io.EOF},
		{"flipped payload bit", flipped, 0, errFrame},
		{"zero length", zero, 0, errFrame},
		{"length beyond MaxFrame", huge, 0, errFrame},
		{"cut inside the payload", good[:len(good)-3], 0, errFrame},
		{"cut inside the header", good[:5], 0, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.stream)
			n := 0
			for {
				p, err := readFrame(r)
				if err != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("error %v, want %v", err, tc.wantErr)
					}
					break
				}
				if !bytes.Equal(p, payload) {
					t.Fatalf("frame %d differs", n)
				}
				n++
			}
			if n != tc.want {
				t.Fatalf("read %d frames, want %d", n, tc.want)
			}
		})
	}
}

// FuzzTransportFrame: any byte stream either yields frames whose batches
// re-encode to the same bytes, or ends in an error; never a panic.
func FuzzTransportFrame(f *testing.F) {
	payload, err := EncodeBatch(sampleBatch())
	if err != nil {
		f.Fatal(err)
	}
	good := appendFrame(nil, payload)
	f.Add(good)
	f.Add(append(bytes.Clone(good), good[:11]...))
	f.Add(appendFrame(nil, []byte{1, 2, 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			p, err := readFrame(r)
			if err != nil {
				return
			}
			b, err := DecodeBatch(p)
			if err != nil {
				continue
			}
			again, err := EncodeBatch(b)
			if err != nil {
				t.Fatalf("a decoded batch does not encode: %v", err)
			}
			b2, err := DecodeBatch(again)
			if err != nil || b2.From != b.From || b2.To != b.To || len(b2.Msgs) != len(b.Msgs) || !slices.Equal(b2.Beats, b.Beats) {
				t.Fatalf("re-encoded batch does not round-trip: %v", err)
			}
		}
	})
}

// proxy forwards one directed link (node A dialling node B) and can cut it:
// the test's partitions. Blocking closes the open connections and refuses new
// ones, so both directions of a node's links are cut by blocking its proxies.
type proxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		blocked := p.blocked
		p.mu.Unlock()
		if blocked {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close() // the node is down
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close(); c.Close() })
		p.wg.Go(func() { io.Copy(c, up); up.Close(); c.Close() })
	}
}

func (p *proxy) setBlocked(b bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = b
	if b {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.setBlocked(true)
	p.wg.Wait()
}

// tcpNode is one node of the loopback cluster: its disk outlives restarts.
type tcpNode struct {
	id   uint64
	fs   *vfs.MemFS
	addr string // the transport's listen address, fixed after the first start
	// ln holds addr from the reservation to the first start, so that no
	// other socket (a proxy's, another package's test) takes the port.
	ln     net.Listener
	tr     *TCPTransport
	host   *Host
	cancel context.CancelFunc
	done   chan error
}

type tcpCluster struct {
	t       *testing.T
	groups  []GroupConfig
	nodes   map[uint64]*tcpNode
	proxies map[[2]uint64]*proxy // by (from, to)
	mu      sync.Mutex           // guards tcpNode.host against restarts
	rng     *rand.Rand
	tweak   func(*Config) // optional: changes every host's configuration
}

func newTCPCluster(t *testing.T, n, groups int) *tcpCluster {
	return newTCPClusterWith(t, n, groups, nil)
}

func newTCPClusterWith(t *testing.T, n, groups int, tweak func(*Config)) *tcpCluster {
	c := &tcpCluster{t: t, nodes: map[uint64]*tcpNode{}, proxies: map[[2]uint64]*proxy{}, rng: rand.New(rand.NewPCG(1, 2)),
		tweak: tweak}
	var peers []uint64
	for id := uint64(1); id <= uint64(n); id++ {
		peers = append(peers, id)
		// Reserve each node's port before the proxies point at it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[id] = &tcpNode{id: id, fs: vfs.NewMemFS(), addr: ln.Addr().String(), ln: ln}
	}
	for g := range groups {
		c.groups = append(c.groups, GroupConfig{ID: uint64(g + 1), Peers: peers})
	}
	for _, a := range peers {
		for _, b := range peers {
			if a != b {
				c.proxies[[2]uint64{a, b}] = newProxy(t, c.nodes[b].addr)
			}
		}
	}
	for _, id := range peers {
		c.start(id)
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id, false)
		}
	})
	return c
}

func (c *tcpCluster) start(id uint64) {
	n := c.nodes[id]
	peers := map[uint64]string{}
	for other := range c.nodes {
		if other != id {
			peers[other] = c.proxies[[2]uint64{id, other}].ln.Addr().String()
		}
	}
	tr, err := ListenTCP(TCPConfig{NodeID: id, Listen: n.addr, Listener: n.ln, Peers: peers})
	n.ln = nil // the transport closes it; a restart listens on addr again
	if err != nil {
		c.t.Fatal(err)
	}
	// Small WAL files: the cluster rolls and truncates while it runs.
	cfg := Config{NodeID: id, FS: n.fs, Dir: "/data", Groups: c.groups, Transport: tr, WALSegmentSize: 32 << 10, CompactMinEntries: 50}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	h, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ticker := time.NewTicker(10 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		defer ticker.Stop()
		done <- h.Run(ctx, ticker.C, tr.Inbox())
	}()
	c.mu.Lock()
	n.tr, n.host, n.cancel, n.done = tr, h, cancel, done
	c.mu.Unlock()
}

// stop ends a node; with powerCut its disk then loses what was not synced.
func (c *tcpCluster) stop(id uint64, powerCut bool) {
	n := c.nodes[id]
	c.mu.Lock()
	h := n.host
	n.host = nil
	c.mu.Unlock()
	if h == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		c.t.Errorf("node %d: %v", id, err)
	}
	h.Close()
	n.tr.Close()
	if powerCut {
		n.fs.Crash(c.rng, vfs.TearPrefix)
	}
}

func (c *tcpCluster) partition(id uint64, cut bool) {
	for k, p := range c.proxies {
		if k[0] == id || k[1] == id {
			p.setBlocked(cut)
		}
	}
}

func (c *tcpCluster) host(id uint64) *Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].host
}

// leader is the node some live host believes leads group, or a random node.
func (c *tcpCluster) leader(group uint64, r *rand.Rand) uint64 {
	for id := uint64(1); id <= uint64(len(c.nodes)); id++ {
		if h := c.host(id); h != nil {
			if l := h.Status(group).Leader; l != 0 && c.host(l) != nil && r.IntN(4) != 0 {
				return l
			}
		}
	}
	return uint64(1 + r.IntN(len(c.nodes)))
}

// converged: every group has one leader known to all, and every node has
// applied its whole log, the same as the others.
func (c *tcpCluster) converged() bool {
	for _, g := range c.groups {
		var ref Status
		for id := uint64(1); id <= uint64(len(c.nodes)); id++ {
			h := c.host(id)
			if h == nil {
				return false
			}
			st := h.Status(g.ID)
			if st.Leader == 0 || st.Applied != st.LastIndex || st.Commit != st.LastIndex {
				return false
			}
			if id == 1 {
				ref = st
			} else if st.Leader != ref.Leader || st.Applied != ref.Applied {
				return false
			}
		}
	}
	return true
}

// clients proposes from concurrent goroutines until stop closes, recording
// every attempt as the simulation's checker expects; the logical clock orders
// proposals and acknowledgements in real time.
type clients struct {
	mu       sync.Mutex
	attempts []*attempt
	clock    atomic.Uint64
	acked    [4]atomic.Int64 // by group (1-3)
}

// total is the acknowledged proposals of every group.
func (cl *clients) total() (n int64) {
	for i := range cl.acked {
		n += cl.acked[i].Load()
	}
	return n
}

func (cl *clients) run(ctx context.Context, c *tcpCluster, ci int, group uint64, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(uint64(ci), 7))
	for next := 1; ; next++ {
		select {
		case <-stop:
			return
		default:
		}
		a := &attempt{group: group, node: c.leader(group, r)}
		var data [][]byte
		for i := range 1 + r.IntN(3) {
			a.records = append(a.records, fmt.Sprintf("c%d-%d-%d", ci, next, i))
			data = append(data, []byte(a.records[i]))
		}
		cl.decide(ctx, c, a, data)
		cl.mu.Lock()
		cl.attempts = append(cl.attempts, a)
		cl.mu.Unlock()
		if a.outcome != acked {
			time.Sleep(5 * time.Millisecond) // no leader here yet: do not spin
		}
	}
}

func (cl *clients) decide(ctx context.Context, c *tcpCluster, a *attempt, data [][]byte) {
	a.outcome = failed
	h := c.host(a.node)
	if h == nil {
		return
	}
	a.proposedAt = cl.clock.Add(1)
	p, err := h.Propose(a.group, data)
	if err != nil {
		return // refused before anything was appended: a definite failure
	}
	// A proposal on a leader that was just cut off stays pending until the
	// partition heals (it may yet commit), so the client gives up after a
	// while, as an SDK times out, and tries elsewhere: the outcome is unknown.
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	seqs, err := p.Wait(wctx)
	switch {
	case err == nil:
		a.outcome, a.seqs, a.ackAt = acked, seqs, cl.clock.Add(1)
		cl.acked[a.group].Add(1)
	case errors.Is(err, ErrDropped):
	default:
		a.outcome = unknown
	}
}

// TestTCPCluster: three hosts in one process over 127.0.0.1 TCP, each behind
// test-controlled proxies, with six concurrent clients on three groups. One
// node is partitioned and healed; another is stopped, loses its unsynced
// bytes, and restarts from its WAL. Afterwards every node holds the same log
// of every group, and the simulation's checker finds every acknowledged
// record exactly once with its acknowledged sequence number, in order, and no
// phantom or definitely failed one.
func TestTCPCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard, not a timing assertion
	defer cancel()
	const groups = 3
	c := newTCPCluster(t, 3, groups)
	cl := &clients{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ci := range 6 {
		wg.Go(func() { cl.run(ctx, c, ci, uint64(ci%groups+1), stop) })
	}
	// waitAcks waits until every group has more acknowledgements: each makes
	// progress through the fault, wherever its leader was.
	start := time.Now()
	waitAcks := func(more int64) {
		defer func() { t.Logf("%v: %d acknowledged", time.Since(start).Round(time.Millisecond), cl.total()) }()
		for g := 1; g <= groups; g++ {
			want := cl.acked[g].Load() + more
			for cl.acked[g].Load() < want {
				if ctx.Err() != nil {
					t.Fatalf("group %d: only %d of %d acknowledgements", g, cl.acked[g].Load(), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	waitAcks(30)
	c.partition(3, true)
	waitAcks(30)
	c.partition(3, false)
	c.stop(2, true)
	waitAcks(30)
	c.start(2)
	waitAcks(30)
	close(stop)
	wg.Wait()
	for !c.converged() {
		if ctx.Err() != nil {
			t.Fatal("the cluster did not converge")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := &sim{opt: simOptions{groups: groups}, attempts: cl.attempts}
	for _, g := range c.groups {
		ref := c.host(1).Records(g.ID)
		for id := uint64(2); id <= 3; id++ {
			if got := c.host(id).Records(g.ID); !sameLog(got, ref) {
				t.Fatalf("group %d: node %d's log (%d records) differs from node 1's (%d)", g.ID, id, len(got), len(ref))
			}
		}
		if err := s.checkLog(g.ID, ref); err != nil {
			t.Fatalf("group %d: %v", g.ID, err)
		}
	}
	if err := s.checkRealTime(); err != nil {
		t.Fatal(err)
	}
	var dropped uint64
	var compacted []uint64
	for id := uint64(1); id <= 3; id++ {
		dropped += c.nodes[id].tr.Dropped()
		compacted = append(compacted, c.host(id).Status(1).Compacted)
	}
	t.Logf("%d attempts, %d acknowledged; %d frames dropped by the transports; group 1 compacted to %v",
		len(cl.attempts), cl.total(), dropped, compacted)
}

// TestTCPSnapshotFetch: over real TCP, with the hosts' Run loops, a node
// that was down while the others compacted past it catches up from a
// snapshot whose files (many chunks of 512 bytes) it fetches from the
// leader; afterwards every node holds the same log, which the checker
// accepts.
func TestTCPSnapshotFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard, not a timing assertion
	defer cancel()
	c := newTCPClusterWith(t, 3, 1, func(cfg *Config) {
		cfg.CompactMinEntries, cfg.SnapshotLagEntries, cfg.StateSegmentSize, cfg.snapChunkBytes = 20, 30, 2048, 512
	})
	cl := &clients{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ci := range 3 {
		wg.Go(func() { cl.run(ctx, c, ci, 1, stop) })
	}
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			if ctx.Err() != nil {
				t.Fatalf("%s: not reached", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("30 acknowledgements", func() bool { return cl.acked[1].Load() >= 30 })
	last := c.host(3).Status(1).LastIndex
	c.stop(3, false)
	waitFor("the others compacted past the stopped node", func() bool {
		return c.host(1).Status(1).Compacted > last+50 && c.host(2).Status(1).Compacted > last+50
	})
	c.start(3)
	counters := func() (installed, chunks int) {
		h := c.host(3)
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.snapshotsInstalled, h.fetchChunks
	}
	waitFor("a snapshot installed on the returning node", func() bool { n, _ := counters(); return n > 0 })
	close(stop)
	wg.Wait()
	waitFor("convergence", c.converged)
	installed, chunks := counters()
	if chunks < 4 {
		t.Fatalf("%d snapshots installed from %d chunks: want a snapshot of several chunks", installed, chunks)
	}
	s := &sim{opt: simOptions{groups: 1}, attempts: cl.attempts}
	ref := c.host(1).Records(1)
	for id := uint64(2); id <= 3; id++ {
		if got := c.host(id).Records(1); !sameLog(got, ref) {
			t.Fatalf("node %d's log (%d records) differs from node 1's (%d)", id, len(got), len(ref))
		}
	}
	if err := s.checkLog(1, ref); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d acknowledged; node 3 installed %d snapshots from %d chunks", cl.total(), installed, chunks)
}

// TestTransportChunksApart (review5): a snapshot's file bytes wait in a
// short queue of their own, so answers to many fetches never crowd Raft's
// messages out of a peer's queue: with nothing draining the queues (the
// peer is unreachable), the chunks past chunkQueueLen are dropped, and
// every message up to QueueLen still waits. Before, both shared one queue
// and the messages after the chunks were dropped.
func TestTransportChunksApart(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := gone.Addr().String()
	gone.Close() // refused from now on: nothing ever drains the queues
	const queueLen, chunks = 8, 10
	tr, err := ListenTCP(TCPConfig{NodeID: 1, Listen: "127.0.0.1:0", Peers: map[uint64]string{2: addr}, QueueLen: queueLen})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for i := range chunks {
		tr.Send(Batch{From: 1, To: 2, Chunks: []SnapChunk{{Kind: ChunkData, Group: 1, Index: 9, Off: int64(i) << 10, Data: make([]byte, 1<<10)}}})
	}
	if got := tr.Dropped(); got != chunks-chunkQueueLen {
		t.Fatalf("%d chunk frames dropped, want %d", got, chunks-chunkQueueLen)
	}
	for range queueLen {
		tr.Send(Batch{From: 1, To: 2, Beats: []Beat{{Group: 1, Kind: BeatHeartbeat, Term: 3, Commit: 7}}})
	}
	if got := tr.Dropped(); got != chunks-chunkQueueLen {
		t.Fatalf("%d frames dropped: the queued chunks crowded out Raft's messages", got)
	}
}
