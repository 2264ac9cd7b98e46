package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/shardlog/shardlog/cluster"
)

// TestClusterCrashLoop is `make cluster-crash-test` (docs/cluster.md §11.3):
// three real `shardlog serve --cluster` processes whose Raft links all go
// through in-process TCP proxies (tcpProxy), concurrent SDK writers
// (PutRecord and PutRecords through random nodes) and readers (GetRecords
// through random nodes) running throughout, and one fault per cycle, chosen
// from the seed:
//   - kill -9 of the leader of a shard (every shard is busy);
//   - kill -9 of a follower of a shard;
//   - SIGTERM of a node;
//   - a partition: one node's Raft links cut both ways, then healed; writes
//     through the cut-off node must be refused (503), end indeterminate, or
//     be acknowledged only through the majority (readable there at once);
//   - a full disk on one node (the hidden --debug-disk-full-file flag): the
//     node stops (fail-stop) and exits, the other two keep acknowledging,
//     and the node recovers when space returns.
//
// After every fault but the partition the node is restarted on its data
// directory; at most one node is impaired at a time, so a quorum remains
// and every fault is checked to leave the cluster acknowledging writes
// through the other nodes. At the end every node must serve every
// acknowledged record exactly once, in order, at its acknowledged sequence
// number; nothing unsent or refused; the same shard list everywhere.
//
// What the partition does not cut: forwarding between nodes goes over each
// node's client API (--advertise), and one address per node is registered
// for all its peers, so a proxy cannot cut it for one pair of nodes. The
// minority node can therefore still forward writes to the majority's
// leaders while it knows them; once it knows of no leader (an election
// timeout) it refuses writes with 503.
//
// SHARDLOG_CLUSTER_CRASH_CYCLES (default 20) and SHARDLOG_CLUSTER_CRASH_SEED
// (default 1) set the run.
func TestClusterCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop over three servers")
	}
	cycles, seed := envInt(t, "SHARDLOG_CLUSTER_CRASH_CYCLES", 20), envInt(t, "SHARDLOG_CLUSTER_CRASH_SEED", 1)
	cc := newCrashCluster(t, uint64(seed))
	for id := range cc.nodes {
		waitFor(t, "a metadata leader", func() error {
			st, err := cc.status(id)
			if err == nil && st.Groups["1"].Leader == 0 {
				err = fmt.Errorf("node %d knows no metadata leader", id)
			}
			return err
		})
	}
	createStream(t, cc.client(1), ccStream, int32(len(ccShards)))
	for id := range cc.nodes {
		waitFor(t, "the stream's shards have leaders", func() error { return cc.healthy(id) })
	}
	started := time.Now()
	w := startWorkload(cc, uint64(seed))
	for cycle := range cycles {
		cc.cycle(cycle, w)
	}
	w.stop()
	loop := time.Since(started)
	res := cc.checkEveryNode(w.log)
	t.Logf("cluster-crash-test: %d cycles in %v; %s", cycles, loop.Round(time.Millisecond), w.log.outcomes())
	line := fmt.Sprintf("cluster-crash-test: seed=%d cycles=%d acked=%d checked=%d lost=%d dups=%d phantoms=%d misnumbered=%d disordered=%d reader-violations=%d %s minority=[%s]",
		seed, cycles, res.acked, res.checked, res.lost, res.dups, res.phantoms, res.misnumbered, res.disordered, w.log.violationCount(), cc.faultCounts(), w.log.minorityCounts())
	line += fmt.Sprintf(" slowest-start=%v", cc.slowestStart.Round(time.Millisecond))
	t.Log(line)
	fmt.Println(line)
	if res.lost+res.dups+res.phantoms+res.misnumbered+res.disordered+w.log.violationCount() != 0 {
		t.Fatal("the checker found violations (above)")
	}
	if res.acked == 0 {
		t.Fatal("nothing was acknowledged")
	}
}

const (
	ccStream = "cc"
	// Fast Raft timing (an election timeout of 200-400 ms) keeps cycles
	// short; a loaded machine's stalls cost leader changes, which are
	// faults the checker must survive too.
	ccTick          = "20ms"
	ccElectionTicks = "10"
	ccElectionMax   = 400 * time.Millisecond
	// ccRecover bounds each wait for the cluster to do what it must (take
	// writes again, elect leaders, serve a record): generous, since the
	// machine is shared; a correct cluster needs a few election timeouts.
	ccRecover = 30 * time.Second
)

var ccShards = []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002"}

// ccNode is one node: its data directory outlives its processes.
type ccNode struct {
	id       uint64
	dir      string
	peerAddr string // the node's own Raft listener
	fullFlag string // the file that fills its disk (--debug-disk-full-file)
	proc     *process
	client   *kinesis.Client
}

// crashCluster is three nodes and the proxies of their Raft links. Its
// fields are the test goroutine's, except nodes' proc and client, which the
// workload reads under mu.
type crashCluster struct {
	t       *testing.T
	bin     string
	rng     *rand.Rand
	mu      sync.RWMutex
	nodes   map[uint64]*ccNode
	proxies map[[2]uint64]*tcpProxy // by (dialler, target)
	faults  map[string]int
	// slowestStart is the longest a node took from its start to serving
	// (it grows with the WAL it replays).
	slowestStart time.Duration
}

func newCrashCluster(t *testing.T, seed uint64) *crashCluster {
	cc := &crashCluster{t: t, bin: buildBinary(t), rng: rand.New(rand.NewPCG(seed, 17)), nodes: map[uint64]*ccNode{},
		proxies: map[[2]uint64]*tcpProxy{}, faults: map[string]int{}}
	for id := uint64(1); id <= 3; id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		cc.nodes[id] = &ccNode{id: id, dir: filepath.Join(root, "data"), peerAddr: ln.Addr().String(), fullFlag: filepath.Join(root, "disk-full")}
		ln.Close()
	}
	for a := range cc.nodes {
		for b := range cc.nodes {
			if a != b {
				cc.proxies[[2]uint64{a, b}] = newTCPProxy(t, cc.nodes[b].peerAddr)
			}
		}
	}
	for id := range cc.nodes {
		cc.start(id)
	}
	return cc
}

// start runs node id: its peers are reached through the proxies.
func (cc *crashCluster) start(id uint64) {
	n := cc.nodes[id]
	peers := []string{fmt.Sprintf("%d=%s", id, n.peerAddr)}
	for other := range cc.nodes {
		if other != id {
			peers = append(peers, fmt.Sprintf("%d=%s", other, cc.proxies[[2]uint64{id, other}].addr()))
		}
	}
	begun := time.Now()
	p := startProcess(cc.t, cc.bin, n.dir, "--cluster", "--node-id", fmt.Sprint(id), "--peers", strings.Join(peers, ","),
		"--cluster-token", clusterToken, "--raft-tick", ccTick, "--election-ticks", ccElectionTicks, "--debug-disk-full-file", n.fullFlag)
	cc.slowestStart = max(cc.slowestStart, time.Since(begun))
	cc.mu.Lock()
	n.proc, n.client = p, p.client()
	cc.mu.Unlock()
}

// client is node id's SDK client, nil while it is down.
func (cc *crashCluster) client(id uint64) *kinesis.Client {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	return cc.nodes[id].client
}

// down kills (SIGKILL) or stops (SIGTERM) node id.
func (cc *crashCluster) down(id uint64, graceful bool) {
	cc.mu.Lock()
	n := cc.nodes[id]
	p := n.proc
	n.proc, n.client = nil, nil
	cc.mu.Unlock()
	if graceful {
		p.terminate()
	} else {
		p.kill()
	}
}

// partition cuts (or heals) every Raft link to and from node id; hole
// makes the cut a black hole instead of a reset (tcpProxy).
func (cc *crashCluster) partition(id uint64, cut, hole bool) {
	for pair, p := range cc.proxies {
		if pair[0] == id || pair[1] == id {
			p.setCut(cut, hole)
		}
	}
}

// status is node id's view of the cluster (GET /_cluster/v1/status).
func (cc *crashCluster) status(id uint64) (cluster.NodeStatus, error) {
	var st cluster.NodeStatus
	cc.mu.RLock()
	p := cc.nodes[id].proc
	cc.mu.RUnlock()
	if p == nil {
		return st, fmt.Errorf("node %d is down", id)
	}
	req, _ := http.NewRequest(http.MethodGet, p.endpoint+"/_cluster/v1/status", nil)
	req.Header.Set(cluster.AuthHeader, cluster.ForwardAuth(clusterToken))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("node %d: status %s", id, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// healthy: node id is up, holds the stream's shards, and knows a leader
// for every group it holds.
func (cc *crashCluster) healthy(id uint64) error {
	st, err := cc.status(id)
	if err != nil {
		return err
	}
	if len(st.Shards) != len(ccShards) {
		return fmt.Errorf("node %d knows %d shards", id, len(st.Shards))
	}
	for g, gs := range st.Groups {
		if gs.Leader == 0 {
			return fmt.Errorf("node %d knows no leader of group %s", id, g)
		}
	}
	return nil
}

// leaderOf is the node that leads shard's group as one live node other
// than not sees it (0: none known).
func (cc *crashCluster) leaderOf(shard string, not uint64) uint64 {
	for id := range cc.nodes {
		if id == not {
			continue
		}
		if st, err := cc.status(id); err == nil {
			if l := st.Groups[fmt.Sprint(st.Shards[ccStream+"/"+shard])].Leader; l != 0 {
				return l
			}
		}
	}
	return 0
}

// knownLeader waits for a node to know shard's leader. Every node knew
// every group's leader when the cycle began (healthy), but a group may be
// between leaders a moment later: the placement driver's leadership
// balancing transfers leaders, and a transfer leaves no leader known until
// the transferee's first append. A group that stays leaderless fails the
// wait (90 s); a wait at all is logged with its length.
func (cc *crashCluster) knownLeader(cycle int, shard string) uint64 {
	start := time.Now()
	var id uint64
	waitFor(cc.t, fmt.Sprintf("cycle %d: a known leader of %s", cycle, shard), func() error {
		if id = cc.leaderOf(shard, 0); id == 0 {
			return fmt.Errorf("no node knows the leader of %s", shard)
		}
		return nil
	})
	if d := time.Since(start); d > 100*time.Millisecond {
		cc.t.Logf("cycle %d: %s had no known leader for %v after the cluster was healthy", cycle, shard, d.Round(time.Millisecond))
	}
	return id
}

func (cc *crashCluster) others(id uint64) []uint64 {
	var out []uint64
	for other := range cc.nodes {
		if other != id {
			out = append(out, other)
		}
	}
	return out
}

func (cc *crashCluster) hold(min, spread time.Duration) {
	time.Sleep(min + time.Duration(cc.rng.Int64N(int64(spread))))
}

// cycle waits for a healthy cluster, lets the workload run, injects one
// fault, checks that the other nodes keep acknowledging, and repairs it.
func (cc *crashCluster) cycle(cycle int, w *workload) {
	for id := range cc.nodes {
		waitFor(cc.t, fmt.Sprintf("cycle %d: node %d healthy", cycle, id), func() error { return cc.healthy(id) })
	}
	cc.hold(50*time.Millisecond, 200*time.Millisecond)
	switch fault := cc.rng.IntN(5); fault {
	case 0:
		shard := ccShards[cc.rng.IntN(len(ccShards))]
		id := cc.knownLeader(cycle, shard)
		cc.crash(cycle, w, "kill-leader", id, shard, false)
	case 1:
		shard := ccShards[cc.rng.IntN(len(ccShards))]
		lead := cc.leaderOf(shard, 0)
		others := cc.others(lead)
		cc.crash(cycle, w, "kill-follower", others[cc.rng.IntN(len(others))], shard, false)
	case 2:
		cc.crash(cycle, w, "sigterm", uint64(1+cc.rng.IntN(3)), "", true)
	case 3:
		cc.partitionCycle(cycle, w, uint64(1+cc.rng.IntN(3)))
	case 4:
		cc.diskFullCycle(cycle, w, uint64(1+cc.rng.IntN(3)))
	}
}

// crash takes node id down, checks that the other two acknowledge writes
// (to shard, unless it is "") meanwhile, and restarts it.
func (cc *crashCluster) crash(cycle int, w *workload, fault string, id uint64, shard string, graceful bool) {
	cc.faults[fault]++
	at := time.Now()
	cc.down(id, graceful)
	cc.awaitAcks(cycle, fault, w, at, cc.others(id), shard)
	cc.hold(50*time.Millisecond, 300*time.Millisecond)
	cc.start(id)
	cc.faults["restart"]++
}

// awaitAcks waits until a write (to shard, unless it is "") through one of
// via is acknowledged after at.
func (cc *crashCluster) awaitAcks(cycle int, fault string, w *workload, at time.Time, via []uint64, shard string) {
	waitFor(cc.t, fmt.Sprintf("cycle %d (%s): writes to %q acknowledged through nodes %v", cycle, fault, shard, via), func() error {
		if w.log.ackedSince(at, via, shard) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
}

// partitionCycle cuts node id off for longer than an election timeout, so
// that it both forwards to leaders it still knows and then knows none, and
// checks what writes through it were told: refusals, indeterminate
// answers, or acknowledgements that the majority serves at once.
func (cc *crashCluster) partitionCycle(cycle int, w *workload, id uint64) {
	hole := cc.rng.IntN(2) == 0
	cc.faults[map[bool]string{false: "partition-reset", true: "partition-blackhole"}[hole]]++
	at := time.Now()
	w.log.beginPartition(id)
	cc.partition(id, true, hole)
	cc.awaitAcks(cycle, "partition", w, at, cc.others(id), "")
	cc.hold(2*ccElectionMax, 400*time.Millisecond)
	acks := w.log.endPartition()
	majority := cc.others(id)
	for i, a := range acks {
		reader := majority[i%len(majority)]
		waitFor(cc.t, fmt.Sprintf("cycle %d: %s (acknowledged through partitioned node %d) served by node %d", cycle, a.seq, id, reader),
			func() error { return cc.readAcked(reader, a) })
	}
	cc.partition(id, false, false)
}

// readAcked reads the acknowledged record a through node id.
func (cc *crashCluster) readAcked(id uint64, a ackedRecord) error {
	c := cc.client(id)
	if c == nil {
		return fmt.Errorf("node %d is down", id)
	}
	got, err := readAt(c, a.shard, a.seq)
	if err != nil {
		return err
	}
	if got != a.data {
		return fmt.Errorf("read %q at %s, acknowledged %q", got, a.seq, a.data)
	}
	return nil
}

// diskFullCycle fills node id's disk: the node must stop (it exits by
// itself, non-zero, having logged the cause), the other two keep acknowledging, and once space
// returns the node restarts on its data directory and rejoins.
func (cc *crashCluster) diskFullCycle(cycle int, w *workload, id uint64) {
	cc.faults["disk-full"]++
	n := cc.nodes[id]
	logName := filepath.Join(n.dir, "..", "server.log")
	before, _ := os.Stat(logName)
	if err := os.WriteFile(n.fullFlag, nil, 0o644); err != nil {
		cc.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- n.proc.cmd.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			cc.t.Errorf("cycle %d: node %d exited with status 0 on a full disk", cycle, id)
		}
	case <-time.After(ccRecover):
		cc.t.Fatalf("cycle %d: node %d did not stop on its full disk", cycle, id)
	}
	logText, _ := os.ReadFile(logName)
	if !strings.Contains(string(logText[min(len(logText), int(before.Size())):]), "no space left on device") {
		cc.t.Errorf("cycle %d: node %d stopped without logging ENOSPC", cycle, id)
	}
	at := time.Now()
	cc.down(id, false) // the process has exited: this only marks the node down
	cc.awaitAcks(cycle, "disk-full", w, at, cc.others(id), "")
	cc.hold(50*time.Millisecond, 300*time.Millisecond)
	if err := os.Remove(n.fullFlag); err != nil {
		cc.t.Fatal(err)
	}
	cc.start(id)
	cc.faults["restart"]++
}

func (cc *crashCluster) faultCounts() string {
	var parts []string
	for _, f := range []string{"kill-leader", "kill-follower", "sigterm", "partition-reset", "partition-blackhole", "disk-full", "restart"} {
		parts = append(parts, fmt.Sprintf("%s=%d", f, cc.faults[f]))
	}
	return strings.Join(parts, " ")
}
