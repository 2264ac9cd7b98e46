package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// TestReview3SealForgottenAtRestore: the tracker forgets a seal the
// metadata noted (noteSeals) as soon as the group's state is restored
// without the seal record in it: AddGroup (Restored with an empty state) or
// a snapshot whose sender's retention trimmed the seal's segment. From then
// on sealedAfter is false for the closed parent on this node.
func TestReview3SealForgottenAtRestore(t *testing.T) {
	const g = 7
	end := replica.Ordinal(100, 0)
	for _, tc := range []struct {
		name string
		recs []replica.Record
	}{
		{"AddGroup (empty state)", nil},
		{"snapshot without the trimmed seal", []replica.Record{{Seq: replica.Ordinal(150, 0), Data: []byte("late write")}}},
	} {
		tr := &sealTracker{at: map[uint64]uint64{}}
		tr.note(g, end) // noteSeals at Open: the shard is closed at End
		tr.Restored(g, slices.Values([][]replica.Record{tc.recs}))
		n := &Node{seals: tr}
		if !n.sealedAfter(g, replica.Ordinal(200, 0)) {
			t.Errorf("%s: a write committed after the parent's End is not refused (sealedAfter false): it would be acknowledged, then hidden by cutAtEnd", tc.name)
		}
	}
}

// TestReview3RetentionStaleMetadata: a node whose metadata has not applied
// an acknowledged IncreaseStreamRetentionPeriod trims by the old period and
// deletes records that are live under the new one; once caught up, it
// serves reads without them.
func TestReview3RetentionStaleMetadata(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	c := newTestClusterWith(t, 3, func(c *testCluster) { c.now, c.segSize = clock.Now, 1<<10 })
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	all := acked{}
	for round := range 10 {
		if failed, err := c.put(1+uint64(round%2), "s", round, 20, all); err != nil || failed > 0 {
			t.Fatalf("put round %d: %d failed, %v", round, failed, err)
		}
	}
	clock.Add(time.Hour)
	for round := 10; round < 13; round++ {
		if failed, err := c.put(1+uint64(round%2), "s", round, 20, all); err != nil || failed > 0 {
			t.Fatalf("put round %d: %d failed, %v", round, failed, err)
		}
	}
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	c.waitApplied(group, 260)
	c.stop(3)
	eventually(t, "retention raised to 48 hours", func() error {
		return c.node(1).SetRetention(ctx, "s", 48, true)
	})
	clock.Add(24 * time.Hour) // the first 200 records are 25 hours old: live under 48 hours
	c.start(3)
	rec, _, _ := c.node(3).stream("s")
	res := c.node(3).EnforceRetention()
	t.Logf("node 3 trimmed %d segments while its metadata said %d hours", res.Segments, rec.RetentionHours)
	eventually(t, "node 3 sees 48 hours", func() error {
		info, err := c.node(3).DescribeStream(ctx, "s")
		if err == nil && info.RetentionHours != 48 {
			err = fmt.Errorf("%d hours", info.RetentionHours)
		}
		return err
	})
	for _, id := range []uint64{1, 3} {
		var read acked
		var err error
		eventually(t, "a read", func() error {
			read, err = c.readAll(id, "s")
			if errors.Is(err, storage.ErrUnavailable) {
				return err
			}
			return nil
		})
		if err == nil {
			err = sameRecords(all, read)
		}
		if err != nil {
			t.Errorf("node %d: %v", id, err)
		}
	}
}

// TestSealTrackerRestoresInPages: a restore's seal is found on whatever
// page it lies, the earliest seal known wins (a restore never moves it
// later, nor forgets it), and no page after the first seal is read.
func TestSealTrackerRestoresInPages(t *testing.T) {
	const g = 7
	seal := func(idx uint64) replica.Record { return replica.Record{Seq: replica.Ordinal(idx, 0), Data: sealMarker} }
	data := func(idx uint64) replica.Record {
		return replica.Record{Seq: replica.Ordinal(idx, 0), Data: []byte("r")}
	}
	pagesOf := func(sealAt uint64) [][]replica.Record {
		var out [][]replica.Record
		for p := range uint64(6) {
			var page []replica.Record
			for i := range uint64(4) {
				if idx := 1 + p*4 + i; idx == sealAt {
					page = append(page, seal(idx))
				} else {
					page = append(page, data(idx))
				}
			}
			out = append(out, page)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		noted     uint64 // a seal known before the restore (0: none)
		sealAt    uint64 // the restored log's first seal entry (0: none)
		want      uint64 // 0: no seal known
		wantPages int
	}{
		{"seal on the third page", 0, 10, 10, 3},
		{"no seal: every page read", 0, 0, 0, 6},
		{"an earlier noted seal stays", 5, 14, 5, 4},
		{"a later noted seal gives way", 20, 9, 9, 3},
		{"a noted seal the restore lacks stays", 12, 0, 12, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &sealTracker{at: map[uint64]uint64{}}
			if tc.noted != 0 {
				tr.note(g, replica.Ordinal(tc.noted, 0))
			}
			read := 0
			tr.Restored(g, func(yield func([]replica.Record) bool) {
				for _, p := range pagesOf(tc.sealAt) {
					read++
					if !yield(p) {
						return
					}
				}
			})
			end, ok := tr.end(g)
			if ok != (tc.want != 0) || ok && end != replica.Ordinal(tc.want, 0) {
				t.Fatalf("seal at %d (known %v), want entry %d", end>>16, ok, tc.want)
			}
			if read != tc.wantPages {
				t.Fatalf("%d pages read, want %d", read, tc.wantPages)
			}
		})
	}
}
