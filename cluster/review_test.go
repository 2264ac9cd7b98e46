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
// on sealedAfter is false for the closed parent on this node. (review5: a
// restore reads no pages; the settled seal is simply kept, and the search
// that would find nothing is never asked.)
func TestReview3SealForgottenAtRestore(t *testing.T) {
	const g = 7
	end := replica.Ordinal(100, 0)
	for _, name := range []string{"AddGroup (empty state)", "snapshot without the trimmed seal"} {
		tr := newSealTracker()
		tr.find = func(context.Context, uint64) (uint64, bool, error) { return 0, false, nil }
		tr.note(g, end) // noteSeals at Open: the shard is closed at End
		tr.Restored(g, nil)
		n := &Node{seals: tr}
		if sealed, err := n.sealedAfter(context.Background(), g, replica.Ordinal(200, 0)); err != nil || !sealed {
			t.Errorf("%s: a write committed after the parent's End is not refused (sealedAfter %v, %v): it would be acknowledged, then hidden by cutAtEnd", name, sealed, err)
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

// TestFirstSeal: a search finds the first seal on whatever page it lies,
// and reads no page after it.
func TestFirstSeal(t *testing.T) {
	seal := func(idx uint64) replica.Record { return replica.Record{Seq: replica.Ordinal(idx, 0), Data: sealMarker} }
	data := func(idx uint64) replica.Record {
		return replica.Record{Seq: replica.Ordinal(idx, 0), Data: []byte("r")}
	}
	for _, tc := range []struct {
		name      string
		sealAt    []uint64 // the log's seal entries
		want      uint64   // 0: none
		wantPages int
	}{
		{"seal on the third page", []uint64{10}, 10, 3},
		{"no seal: every page read", nil, 0, 7}, // and the empty read at the end
		{"two seals: the first", []uint64{9, 14}, 9, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := 0
			end, ok, err := firstSeal(func(from uint64) ([]replica.Record, error) {
				read++
				var page []replica.Record
				for idx := uint64(1); idx <= 24 && len(page) < 4; idx++ {
					switch {
					case replica.Ordinal(idx, 0) < from:
					case slices.Contains(tc.sealAt, idx):
						page = append(page, seal(idx))
					default:
						page = append(page, data(idx))
					}
				}
				return page, nil
			})
			if err != nil || ok != (tc.want != 0) || ok && end != replica.Ordinal(tc.want, 0) {
				t.Fatalf("seal at %d (found %v, %v), want entry %d", end>>16, ok, err, tc.want)
			}
			if read != tc.wantPages {
				t.Fatalf("%d pages read, want %d", read, tc.wantPages)
			}
		})
	}
}

// TestSealTrackerSettles (review5): a restore reads no page; the first
// question about an unsure group settles it once (find), and the earliest
// seal known wins: a restore never moves a seal later nor forgets it. A
// restore during a search makes its "no seal" stale: asked again. A
// settled group's restore asks nothing.
func TestSealTrackerSettles(t *testing.T) {
	const g = 7
	for _, tc := range []struct {
		name      string
		noted     uint64 // a metadata End noted before the restore (0: none)
		applied   uint64 // a seal applied after the restore (0: none)
		found     uint64 // the search's answer (0: none)
		want      uint64 // 0: no seal known
		wantFinds int
	}{
		{"never sealed", 0, 0, 0, 0, 1},
		{"found by the search", 0, 0, 10, 10, 1},
		{"noted End settles: no search", 5, 0, 14, 5, 0},
		{"a later applied seal gives way to the found one", 0, 20, 9, 9, 1},
		{"an earlier applied seal stays", 0, 3, 9, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newSealTracker()
			finds := 0
			tr.find = func(context.Context, uint64) (uint64, bool, error) {
				finds++
				return replica.Ordinal(tc.found, 0), tc.found != 0, nil
			}
			tr.Restored(g, func(func([]replica.Record, error) bool) { t.Fatal("a restore read a page") })
			if tc.noted != 0 {
				tr.note(g, replica.Ordinal(tc.noted, 0))
			}
			if tc.applied != 0 {
				tr.Applied(g, []replica.Record{{Seq: replica.Ordinal(tc.applied, 0), Data: sealMarker}})
			}
			for range 2 { // the second question asks nothing more
				end, ok, err := tr.end(context.Background(), g)
				if err != nil || ok != (tc.want != 0) || ok && end != replica.Ordinal(tc.want, 0) {
					t.Fatalf("seal at %d (known %v, %v), want entry %d", end>>16, ok, err, tc.want)
				}
			}
			if finds != tc.wantFinds {
				t.Fatalf("%d searches, want %d", finds, tc.wantFinds)
			}
			tr.Restored(g, nil) // settled with a seal: nothing to ask
			if _, _, err := tr.end(context.Background(), g); err != nil || finds != tc.wantFinds+boolInt(tc.want == 0) {
				t.Fatalf("after a second restore: %d searches, %v", finds, err)
			}
		})
	}
	t.Run("a restore during the search", func(t *testing.T) {
		tr := newSealTracker()
		finds := 0
		tr.find = func(context.Context, uint64) (uint64, bool, error) {
			if finds++; finds == 1 {
				tr.Restored(g, nil) // a snapshot installed meanwhile, holding a seal
				return 0, false, nil
			}
			return replica.Ordinal(4, 0), true, nil
		}
		tr.Restored(g, nil)
		if end, ok, err := tr.end(context.Background(), g); err != nil || !ok || end != replica.Ordinal(4, 0) || finds != 2 {
			t.Fatalf("seal %d (known %v, %v) after %d searches; want entry 4 after 2", end>>16, ok, err, finds)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSealFacts: what the metadata says of a group's seal.
func TestSealFacts(t *testing.T) {
	open := replica.MetaShard{ID: "a", Group: 1}
	closed := replica.MetaShard{ID: "b", Group: 2, ClosedMs: 5, End: 77}
	sealing := replica.MetaShard{ID: "c", Group: 3, ClosedMs: 5}
	child := replica.MetaShard{ID: "d", Group: 4, Parent: "c"}
	rec := streamRec{}
	rec.Shards = []replica.MetaShard{open, closed, {ID: "c", Group: 3}}
	rec.Reshard = &reshardRec{Shards: []replica.MetaShard{open, closed, sealing, child}}
	for _, tc := range []struct {
		g           uint64
		end         uint64
		pending     bool
		description string
	}{
		{1, 0, false, "an open shard, not a parent"},
		{2, 77, false, "a closed shard: its End"},
		{3, 0, true, "a pending reshard's parent: searched"},
		{4, 0, false, "a pending child"},
		{9, 0, false, "unknown (a deleted stream's)"},
	} {
		end, pending := sealFacts([]streamRec{rec}, tc.g)
		if end != tc.end || pending != tc.pending {
			t.Errorf("%s: end %d pending %v; want %d %v", tc.description, end, pending, tc.end, tc.pending)
		}
	}
}
