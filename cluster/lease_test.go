package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// metaCut is a test's fault: while set, the metadata group's messages
// between nodes a and b are dropped both ways; every other group's pass.
type metaCut struct{ a, b atomic.Uint64 }

func (m *metaCut) filter(batch replica.Batch) replica.Batch {
	a, b := m.a.Load(), m.b.Load()
	if a == 0 || !(batch.From == a && batch.To == b || batch.From == b && batch.To == a) {
		return batch
	}
	out := replica.Batch{From: batch.From, To: batch.To, Chunks: batch.Chunks}
	for _, msg := range batch.Msgs {
		if msg.Group != metaGroup {
			out.Msgs = append(out.Msgs, msg)
		}
	}
	for _, beat := range batch.Beats {
		if beat.Group != metaGroup {
			out.Beats = append(out.Beats, beat)
		}
	}
	return out
}

// TestLeaseCutLeaderNeverPlaintext is review 7's scenario: the shard's
// leader A keeps its group's quorum through B but is cut off from the
// metadata leader C. StartStreamEncryption through C succeeds and the
// stream turns ACTIVE+KMS (with no UpdateDelay: the fence alone holds it
// UPDATING); from then on no put through A (local) or B (forwarded to A) is
// stored in plaintext: each is refused with ServiceUnavailable or stored
// encrypted, and no node's disk holds its plaintext.
func TestLeaseCutLeaderNeverPlaintext(t *testing.T) {
	rings := newTestRings(t, 3)
	var cut metaCut
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.tune = func(cfg *Config) {
			cfg.Keyring = rings.rings[cfg.NodeID]
			cfg.sendFilter = cut.filter
		}
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	a, metaLeader := c.leaderApartFromMeta("s")
	b := 6 - a - metaLeader
	want := map[string]readMode{}
	if err := c.putModes(a, "s", "plainmark", 2, want); err != nil {
		t.Fatal(err)
	}

	cut.a.Store(a)
	cut.b.Store(metaLeader)
	if err := c.node(metaLeader).StartEncryption(ctx, "s", "alias/orders", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ACTIVE+KMS on the metadata leader", func() error {
		info, err := c.node(metaLeader).DescribeStream(ctx, "s")
		if err == nil && (info.Status != storage.StatusActive || info.EncryptionType != storage.EncryptionKMS) {
			err = fmt.Errorf("%s %s", info.Status, info.EncryptionType)
		}
		return err
	})
	if lead := c.node(a).host.Status(c.rolesOf("s").group).Leader; lead != a {
		t.Skipf("node %d lost the shard's leadership to %d during the cut: the scenario did not happen", a, lead)
	}
	refused := 0
	for i, via := range []uint64{a, b, a, b} {
		err := c.putModes(via, "s", fmt.Sprintf("leakmark%d", i), 2, want)
		switch {
		case errors.Is(err, storage.ErrUnavailable):
			refused++
		case err != nil:
			t.Fatalf("put %d through node %d: %v", i, via, err)
		}
	}
	t.Logf("%d of 4 puts after ACTIVE refused with ServiceUnavailable", refused)

	cut.a.Store(0)
	if err := c.putModesEventually(a, "s", "healmark", want); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if w.encrypted == strings.HasPrefix(w.value, "plainmark") {
			t.Fatalf("%s acknowledged with encrypted %t", w.value, w.encrypted)
		}
	}
	c.checkReads(want, 1, 2, 3)
	for id := uint64(1); id <= 3; id++ {
		for i := range 4 {
			if found, err := c.diskHolds(id, fmt.Sprintf("leakmark%d", i)); err != nil || found {
				t.Fatalf("node %d: leakmark%d in plaintext on disk: %t, %v", id, i, found, err)
			}
		}
	}
}

// leaderApartFromMeta makes the metadata group's leader a node that does
// not lead stream's shard 0 (whose leadership the driver keeps on its
// preferred replica), and returns both.
func (c *testCluster) leaderApartFromMeta(stream string) (shardLeader, metaLeader uint64) {
	c.t.Helper()
	eventually(c.t, "the metadata led apart from the shard", func() error {
		roles := c.rolesOf(stream)
		metaLeader = c.node(roles.leader).host.Status(metaGroup).Leader
		switch {
		case metaLeader == 0:
			return errors.New("no metadata leader")
		case len(roles.followers) != 2:
			return fmt.Errorf("followers %v", roles.followers)
		case roles.leader != metaLeader:
			shardLeader = roles.leader
			return nil
		}
		_ = c.node(metaLeader).host.TransferLeader(metaGroup, roles.followers[0])
		return fmt.Errorf("node %d leads both", roles.leader)
	})
	return shardLeader, metaLeader
}

// putModesEventually retries a put of one record until it is taken.
func (c *testCluster) putModesEventually(id uint64, stream, prefix string, want map[string]readMode) error {
	var err error
	for i := 0; i < 200; i++ {
		if err = c.putModes(id, stream, fmt.Sprintf("%s%d", prefix, i), 1, want); !errors.Is(err, storage.ErrUnavailable) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// TestFencesPassed: a fenced change's clock starts at the first sight of
// its version, and again at a new version.
func TestFencesPassed(t *testing.T) {
	var f fences
	if f.passed("s", 3, 0) {
		t.Fatal("passed at its first sight")
	}
	if !f.passed("s", 3, 0) || f.passed("s", 3, time.Hour) {
		t.Fatal("the term not measured from the first sight")
	}
	if f.passed("s", 4, 0) {
		t.Fatal("a new version passed at its first sight")
	}
	f.keep(map[string]bool{})
	if f.passed("s", 4, 0) {
		t.Fatal("a forgotten stream's clock kept")
	}
}
