package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// TestReview7OnDemandGuardOneSnapshot: the ON_DEMAND limit's guard takes
// the count and keyOnDemand's version from one snapshot, so a stream made
// ON_DEMAND after the count was taken fails the guard's condition (before,
// the version was read afresh and the limit could pass by one).
func TestReview7OnDemandGuardOneSnapshot(t *testing.T) {
	c := capacityCluster(t, newFakeClock(), func(cfg *Config) { cfg.OnDemandStreamLimit = 1 })
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: name, ShardCount: 1}); err != nil {
			t.Fatal(err)
		}
		c.waitActive(name, 1)
	}
	n := c.node(1)
	before := n.meta.Snapshot() // no ON_DEMAND stream yet
	if err := n.UpdateStreamMode(ctx, "a", storage.ModeOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	cond, op, err := n.onDemandGuardOf(before)
	if err != nil {
		t.Fatalf("the guard of a snapshot with no ON_DEMAND stream: %v", err)
	}
	// What "b"'s switch would commit with the count taken before "a"'s.
	committed, err := n.txn(ctx, []replica.MetaCond{cond}, []replica.MetaOp{op})
	if err != nil || committed {
		t.Fatalf("a guard counted before another stream went ON_DEMAND committed: %t, %v", committed, err)
	}
	if _, _, err := n.onDemandGuard(); err == nil {
		t.Fatal("the guard of the current state passes the limit of 1 with one ON_DEMAND stream")
	}
}

// TestReview7RateMeterTerm: a group's readings are kept only within one
// leader term; a leadership lost and regained between passes starts them
// afresh (unmeasured), as a first lead does.
func TestReview7RateMeterTerm(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1000, 0)
	window := time.Minute
	m.measure([]ledGroup{{group: 7, term: 3}}, t0, window)
	m.count(7, []entry{{key: "k", data: make([]byte, 99)}}, nil)
	if r := m.measure([]ledGroup{{group: 7, term: 3}}, t0.Add(10*time.Second), window); !r[0].Measured || r[0].Bytes == 0 {
		t.Fatalf("the same term: %+v, want a measured rate", r[0])
	}
	// Lost in term 4, regained in term 5: another node admitted the writes meanwhile.
	m.count(7, []entry{{key: "k", data: make([]byte, 99)}}, nil)
	if r := m.measure([]ledGroup{{group: 7, term: 5}}, t0.Add(20*time.Second), window); r[0].Measured {
		t.Fatalf("a new term measured over the old term's readings: %+v", r[0])
	}
	if r := m.measure([]ledGroup{{group: 7, term: 5}}, t0.Add(30*time.Second), window); !r[0].Measured || r[0].Bytes != 0 {
		t.Fatalf("the new term's second reading: %+v, want measured, no writes since", r[0])
	}
}

// slowMeta delays every batch of the metadata group's messages the node
// slow sends (its leader's appends): each metadata transaction takes about
// delay.
type slowMeta struct {
	slow  atomic.Uint64
	delay time.Duration
}

func (s *slowMeta) filter(b replica.Batch) replica.Batch {
	if b.From == s.slow.Load() && slices.ContainsFunc(b.Msgs, func(m replica.GroupMessage) bool { return m.Group == metaGroup }) {
		time.Sleep(s.delay)
	}
	return b
}

// TestReview7ScalerBudgetPerStream: with slow metadata transactions (a
// quarter of an election timeout each), one scaler pass records the daily
// peak of every ON_DEMAND stream, the last in name order too: each
// transaction has its own budget, not a share of the pass's (which held
// about four).
func TestReview7ScalerBudgetPerStream(t *testing.T) {
	slow := &slowMeta{}
	clk := newFakeClock()
	c := capacityCluster(t, clk, func(cfg *Config) {
		// A 3 s election timeout, so each step's budget is about seven times
		// what a slowed step takes (about 4 delays): room on a loaded machine;
		// the whole pass of 12 streams still takes longer than one budget.
		cfg.ElectionTicks = 150
		cfg.sendFilter = slow.filter
	})
	slow.delay = 100 * time.Millisecond
	ctx := context.Background()
	const streams = 12
	for i := range streams {
		name := fmt.Sprint("od", i)
		if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: name, ShardCount: 1}); err != nil {
			t.Fatal(err)
		}
		c.waitActive(name, 1, 2, 3)
		if err := c.node(1).UpdateStreamMode(ctx, name, storage.ModeOnDemand, nil); err != nil {
			t.Fatal(err)
		}
		c.waitActive(name, 1, 2, 3)
	}
	lead := c.node(1).host.Status(metaGroup).Leader
	if lead == 0 {
		t.Fatal("no metadata leader")
	}
	n := c.node(lead)
	// Every shard measured at 1000 B/s: the other nodes' on the board (as
	// if they reported), the metadata leader's by its own meter, which its
	// pass reports: a first reading, 1000 bytes admitted, a second.
	n.meter.measure(n.ledOnDemandGroups(), clk.Now(), n.cfg.OnDemand.Window)
	var rates []groupRate
	for _, rec := range n.streams() {
		for _, sh := range rec.Shards {
			n.meter.count(sh.Group, []entry{{key: "k", data: make([]byte, 999)}}, nil)
			rates = append(rates, groupRate{Group: sh.Group, Bytes: 1000, Records: 1, Measured: true, FullWindow: true})
		}
	}
	clk.Add(time.Second)
	n.board.put(rates, n.cfg.Now(), n.cfg.OnDemand.Window)
	slow.slow.Store(lead)
	began := time.Now()
	n.scaleTick(ctx)
	slow.slow.Store(0)
	t.Logf("the pass took %v", time.Since(began))
	for _, rec := range n.streams() {
		if len(rec.WritePeaks) == 0 {
			t.Fatalf("stream %s: no peak recorded in the pass", rec.Name)
		}
	}
}

// TestReview7ForwardedSubscribeSealed: a forwarded subscription carries
// encrypted records sealed and the receiving node opens them with its own
// keyring: with the key it delivers them in clear, marked encrypted;
// without it the subscription ends with KMSNotFoundException, as its
// GetRecords answers (before, the serving node opened them and the
// receiving node streamed them whatever its keyring held).
func TestReview7ForwardedSubscribeSealed(t *testing.T) {
	rings := newTestRings(t, 4)
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.secret = "review7-sealed-secret"
		c.tune = func(cfg *Config) { cfg.Keyring = rings.rings[cfg.NodeID] }
	})
	c.addNode(4, 2)
	eventually(t, "node 4 is live everywhere", func() error {
		for id := uint64(1); id <= 4; id++ {
			if got := c.node(id).liveNodes(); len(got) != 4 {
				return fmt.Errorf("node %d sees %v", id, got)
			}
		}
		return nil
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3, 4)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	outside, leader := c.outsideOf(t, "s")
	if err := c.node(1).StartEncryption(ctx, "s", "alias/orders", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3, 4)
	want := map[string]readMode{}
	if err := c.putModes(leader, "s", "secretmark", 3, want); err != nil {
		t.Fatal(err)
	}
	checkEncryptedCount(t, want, 3)
	c.checkSubscribed(outside, want)

	rings.set(outside, "")
	var err error
	eventually(t, "a consumer ready on the node without the key", func() error {
		_, err = c.subscribeOnce(outside, len(want))
		if errors.Is(err, storage.ErrResourceInUse) { // the previous subscription's 5 s rule, if the api applied it
			return err
		}
		return nil
	})
	wantReason(t, "a forwarded subscription through a node without the key", err, storage.ErrKMSNotFound, storage.ReasonKMSNotFound)
}
