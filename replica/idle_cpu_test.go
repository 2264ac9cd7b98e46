package replica

import (
	"context"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestIdleCPU measures the CPU an idle cluster burns (issue 17, "measure idle
// CPU at 1,000 shards"): three hosts in this process over loopback TCP, on
// real files, 1,000 groups of three replicas, nothing proposed. It runs once
// with quiescence off (Config.NoQuiesce: every group ticks and heartbeats)
// and once with it on, and reports the process's CPU (getrusage: user +
// system, all three nodes) over the idle window, and the traffic. It is a
// measurement, not a pass/fail test, and runs only when asked:
//
//	make idle-cpu                       (SHARDLOG_IDLE_CPU=1 go test -run TestIdleCPU -v ./replica/)
//	SHARDLOG_IDLE_GROUPS=1000 SHARDLOG_IDLE_SECONDS=20 SHARDLOG_IDLE_TICK=50ms
func TestIdleCPU(t *testing.T) {
	if os.Getenv("SHARDLOG_IDLE_CPU") == "" {
		t.Skip("a measurement: run with SHARDLOG_IDLE_CPU=1 (make idle-cpu)")
	}
	groups, secs, tick := 1000, 20, 50*time.Millisecond
	if v, err := strconv.Atoi(os.Getenv("SHARDLOG_IDLE_GROUPS")); err == nil {
		groups = v
	}
	if v, err := strconv.Atoi(os.Getenv("SHARDLOG_IDLE_SECONDS")); err == nil {
		secs = v
	}
	if v, err := time.ParseDuration(os.Getenv("SHARDLOG_IDLE_TICK")); err == nil {
		tick = v
	}
	t.Logf("3 nodes, %d groups, tick %v (election timeout 10-20 ticks), idle for %ds", groups, tick, secs)
	for _, mode := range []struct {
		name                  string
		noQuiesce, noCoalesce bool
	}{
		{"heartbeats as raft messages, no quiescence", true, true},
		{"coalesced heartbeats, no quiescence", true, false},
		{"coalesced heartbeats and quiescence", false, false},
	} {
		if only := os.Getenv("SHARDLOG_IDLE_QUIESCE"); only != "" && only != strconv.FormatBool(!mode.noQuiesce) {
			continue // SHARDLOG_IDLE_QUIESCE=true or false runs only those modes (to profile them)
		}
		c := startIdleCluster(t, groups, tick, mode.noQuiesce, mode.noCoalesce)
		settle := time.Now()
		c.await(t, mode.noQuiesce)
		t.Logf("%s: every group led (a third by each node) and applied everywhere%s after %v", mode.name,
			map[bool]string{true: "", false: ", and quiesced,"}[mode.noQuiesce], time.Since(settle).Round(time.Millisecond))
		u0, w0, s0 := cpuTime(t), time.Now(), c.sent()
		time.Sleep(time.Duration(secs) * time.Second)
		u1, w1, s1 := cpuTime(t), time.Now(), c.sent()
		wall := w1.Sub(w0).Seconds()
		cpu := (u1 - u0).Seconds() / wall * 100
		t.Logf("%s: process CPU %.2f%% of one core (%.2f%% per node); per second %.0f batches, %.0f raft messages, %.0f beats",
			mode.name, cpu, cpu/3, float64(s1.batches-s0.batches)/wall, float64(s1.msgs-s0.msgs)/wall, float64(s1.beats-s0.beats)/wall)
		c.stop(t)
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type traffic struct{ batches, msgs, beats uint64 }

// countingTransport counts what a host hands its transport.
type countingTransport struct {
	Transport
	batches, msgs, beats atomic.Uint64
}

func (c *countingTransport) Send(b Batch) {
	c.batches.Add(1)
	c.msgs.Add(uint64(len(b.Msgs)))
	c.beats.Add(uint64(len(b.Beats)))
	c.Transport.Send(b)
}

type idleCluster struct {
	groups int
	hosts  []*Host
	trs    []*TCPTransport
	counts []*countingTransport
	cancel context.CancelFunc
	done   chan error
}

func startIdleCluster(t *testing.T, groups int, tick time.Duration, noQuiesce, noCoalesce bool) *idleCluster {
	var gcs []GroupConfig
	for g := range groups {
		gcs = append(gcs, GroupConfig{ID: uint64(g + 1), Peers: []uint64{1, 2, 3}})
	}
	lns, addrs := make([]net.Listener, 3), map[uint64]string{}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[uint64(i+1)] = ln, ln.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &idleCluster{groups: groups, cancel: cancel, done: make(chan error, 3)}
	for i := range 3 {
		id := uint64(i + 1)
		tr, err := ListenTCP(TCPConfig{NodeID: id, Listener: lns[i], Peers: addrs, InboxLen: 4096})
		if err != nil {
			t.Fatal(err)
		}
		ct := &countingTransport{Transport: tr}
		h, err := Open(Config{NodeID: id, FS: vfs.OS{}, Dir: t.TempDir(), Groups: gcs, Transport: ct, NoQuiesce: noQuiesce,
			noCoalesce: noCoalesce})
		if err != nil {
			t.Fatal(err)
		}
		c.hosts, c.trs, c.counts = append(c.hosts, h), append(c.trs, tr), append(c.counts, ct)
		go func() {
			ticker := time.NewTicker(tick)
			defer ticker.Stop()
			c.done <- h.Run(ctx, ticker.C, tr.Inbox())
		}()
	}
	return c
}

// await waits until group g is led by node g%3+1 (as placement spreads
// leaders; the node started first would otherwise lead nearly all), known
// and applied everywhere, and (unless noQuiesce) every replica is quiesced.
func (c *idleCluster) await(t *testing.T, noQuiesce bool) {
	deadline := time.Now().Add(5 * time.Minute)
	for !c.idle(noQuiesce) {
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not settle within 5 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *idleCluster) idle(noQuiesce bool) bool {
	idle := true
	for g := range c.groups {
		id, want := uint64(g+1), uint64(g%3+1)
		ref := c.hosts[0].Status(id)
		if l := ref.Leader; l != 0 && l != want {
			_ = c.hosts[l-1].TransferLeader(id, want) // retried until it happens
			idle = false
		}
		for _, h := range c.hosts {
			st := h.Status(id)
			if st.Leader == 0 || st.Leader != ref.Leader || st.Applied != st.LastIndex || st.Commit != ref.Commit {
				idle = false
			}
			if !noQuiesce && !h.Quiesced(id) {
				idle = false
			}
		}
	}
	return idle
}

func (c *idleCluster) sent() (tr traffic) {
	for _, ct := range c.counts {
		tr.batches += ct.batches.Load()
		tr.msgs += ct.msgs.Load()
		tr.beats += ct.beats.Load()
	}
	return tr
}

func (c *idleCluster) stop(t *testing.T) {
	c.cancel()
	for range c.hosts {
		if err := <-c.done; err != nil {
			t.Error(err)
		}
	}
	for i, h := range c.hosts {
		h.Close()
		c.trs[i].Close()
	}
	if t.Failed() {
		t.FailNow()
	}
}
