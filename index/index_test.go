package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestIndexRoundTripAndRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, rebuilt, err := Open(path, time.Hour)
	if err != nil || rebuilt {
		t.Fatalf("open: %v rebuilt=%v", err, rebuilt)
	}
	ix.Submit(Update{Shard: "s/0", Segments: []Segment{{ID: 1, FirstSeq: 1, LastSeq: 9, End: 500, Frames: 2, Records: 9}, {ID: 2, FirstSeq: 10}},
		Seeks: []Seek{{Seq: 1, SegID: 1, Offset: 64}, {Seq: 5, SegID: 1, Offset: 300}, {Seq: 10, SegID: 2, Offset: 64}}})
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	ix.Submit(Update{Shard: "s/0", Remove: []uint64{1}})
	if err := ix.Close(); err != nil { // Close commits what is pending
		t.Fatal(err)
	}
	ix, _, err = Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	segs, seeks, err := ix.Load("s/0")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || segs[0].ID != 2 || len(seeks) != 1 || seeks[0].SegID != 2 {
		t.Fatalf("after removing segment 1: %+v %+v", segs, seeks)
	}
}

// TestUnreadableIndexIsMovedAside: index.db is derived, so a damaged one is
// set aside and a fresh one created, never a reason not to start.
func TestUnreadableIndexIsMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("this is not a bbolt file, not even close to one")},
		{"zeroed page", make([]byte, 8192)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			ix, rebuilt, err := Open(path, time.Hour)
			if err != nil || !rebuilt {
				t.Fatalf("open: %v rebuilt=%v", err, rebuilt)
			}
			defer ix.Close()
			if _, err := os.Stat(path + ".corrupt"); err != nil {
				t.Fatalf("the damaged file was not kept aside: %v", err)
			}
		})
	}
}

// newIndex opens a fresh index.db that commits only on Flush or Close: the
// hour-long interval never ticks during a test.
func newIndex(t *testing.T) (*Index, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	ix, rebuilt, err := Open(path, time.Hour)
	if err != nil || rebuilt {
		t.Fatalf("open: %v rebuilt=%v", err, rebuilt)
	}
	t.Cleanup(func() { ix.Close() })
	return ix, path
}

// txID is the ID of the last committed write transaction.
func txID(t *testing.T, ix *Index) int {
	t.Helper()
	var id int
	if err := ix.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func load(t *testing.T, ix *Index, shard string) ([]Segment, []Seek) {
	t.Helper()
	segs, seeks, err := ix.Load(shard)
	if err != nil {
		t.Fatal(err)
	}
	return segs, seeks
}

func shards(t *testing.T, ix *Index) []string {
	t.Helper()
	keys, err := ix.Shards()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestApply: what each kind of Update does to the stored catalog. Each batch
// is one Flush; updates within a batch apply in order.
func TestApply(t *testing.T) {
	full := Segment{ID: 7, FirstSeq: 1 << 40, LastSeq: 1<<40 + 99, MinTs: -5, MaxTs: 1 << 50, End: 1 << 33, Frames: 3, Records: 100}
	seg := func(id uint64, end int64) Segment { return Segment{ID: id, FirstSeq: id * 10, End: end} }
	seek := func(seq, segID uint64) Seek {
		return Seek{Seq: seq, SegID: segID, Offset: int64(seq) * 64, Ts: -int64(seq)}
	}
	for _, tc := range []struct {
		name      string
		batches   [][]Update
		segs      []Segment // for shard "s/0", by ID
		seeks     []Seek    // for shard "s/0", by Seq
		allShards []string
	}{
		{"every field round trips", [][]Update{{{Shard: "s/0", Segments: []Segment{full}, Seeks: []Seek{seek(1<<40, 7)}}}},
			[]Segment{full}, []Seek{seek(1<<40, 7)}, []string{"s/0"}},
		{"an upsert replaces the entry with its ID", [][]Update{
			{{Shard: "s/0", Segments: []Segment{seg(1, 10), seg(2, 10)}}},
			{{Shard: "s/0", Segments: []Segment{seg(1, 20)}}},
		}, []Segment{seg(1, 20), seg(2, 10)}, nil, []string{"s/0"}},
		{"seek points accumulate in sequence order", [][]Update{
			{{Shard: "s/0", Seeks: []Seek{seek(9, 1)}}},
			{{Shard: "s/0", Seeks: []Seek{seek(5, 1), seek(1, 1)}}},
		}, nil, []Seek{seek(1, 1), seek(5, 1), seek(9, 1)}, []string{"s/0"}},
		{"Remove drops a segment and only its seek points", [][]Update{
			{{Shard: "s/0", Segments: []Segment{seg(1, 1), seg(2, 1)}, Seeks: []Seek{seek(1, 1), seek(5, 1), seek(10, 2)}}},
			{{Shard: "s/0", Remove: []uint64{1, 99}}},
		}, []Segment{seg(2, 1)}, []Seek{seek(10, 2)}, []string{"s/0"}},
		{"Remove applies after the upserts of its update", [][]Update{
			{{Shard: "s/0", Segments: []Segment{seg(1, 1)}, Seeks: []Seek{seek(1, 1)}, Remove: []uint64{1}}},
		}, nil, nil, []string{"s/0"}},
		{"Replace drops the shard's entries first", [][]Update{
			{{Shard: "s/0", Segments: []Segment{seg(1, 1)}, Seeks: []Seek{seek(1, 1)}}},
			{{Shard: "s/0", Replace: true, Segments: []Segment{seg(2, 1)}}},
		}, []Segment{seg(2, 1)}, nil, []string{"s/0"}},
		{"Drop removes the shard, leaving the others", [][]Update{
			{{Shard: "s/0", Segments: []Segment{seg(1, 1)}}, {Shard: "s/1", Segments: []Segment{seg(1, 1)}}},
			{{Shard: "s/0", Drop: true}, {Shard: "gone", Drop: true}},
		}, nil, nil, []string{"s/1"}},
		{"updates in one batch apply in order", [][]Update{
			{{Shard: "s/0", Segments: []Segment{seg(1, 1)}}, {Shard: "s/0", Drop: true}, {Shard: "s/0", Segments: []Segment{seg(2, 1)}}},
		}, []Segment{seg(2, 1)}, nil, []string{"s/0"}},
		{"shards list in byte order", [][]Update{
			{{Shard: "s/2"}, {Shard: "s/10"}, {Shard: "a/0"}},
		}, nil, nil, []string{"a/0", "s/10", "s/2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix, _ := newIndex(t)
			for _, b := range tc.batches {
				for _, u := range b {
					ix.Submit(u)
				}
				if err := ix.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			segs, seeks := load(t, ix, "s/0")
			if !reflect.DeepEqual(segs, tc.segs) || !reflect.DeepEqual(seeks, tc.seeks) {
				t.Fatalf("Load:\n got %+v %+v\nwant %+v %+v", segs, seeks, tc.segs, tc.seeks)
			}
			if got := shards(t, ix); !reflect.DeepEqual(got, tc.allShards) {
				t.Fatalf("Shards = %q, want %q", got, tc.allShards)
			}
			if errs := ix.Check(); len(errs) != 0 {
				t.Fatalf("Check: %v", errs)
			}
		})
	}
}

// TestBatching: submitted updates wait for the committer, which commits
// everything pending in one bbolt transaction.
func TestBatching(t *testing.T) {
	ix, _ := newIndex(t)
	before := txID(t, ix)
	if err := ix.Flush(); err != nil || txID(t, ix) != before {
		t.Fatalf("Flush with nothing pending: %v, committed %d transactions", err, txID(t, ix)-before)
	}
	for i := range 100 {
		ix.Submit(Update{Shard: fmt.Sprintf("s/%d", i), Segments: []Segment{{ID: 1}}})
	}
	if got := shards(t, ix); len(got) != 0 {
		t.Fatalf("visible before Flush: %q", got)
	}
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := txID(t, ix) - before; n != 1 {
		t.Fatalf("100 updates took %d commits, want 1", n)
	}
	if got := shards(t, ix); len(got) != 100 {
		t.Fatalf("after Flush: %d shards, want 100", len(got))
	}
}

// TestIntervalCommits: without a Flush, the committer commits on its
// interval. The loop waits for that without a deadline (the test's timeout
// bounds it).
func TestIntervalCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, _, err := Open(path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ix.Submit(Update{Shard: "s/0", Segments: []Segment{{ID: 1}}})
	for len(shards(t, ix)) == 0 {
		time.Sleep(time.Millisecond)
	}
}

// TestConcurrentSubmitFlush: Submit and Flush from many goroutines (for the
// race detector); every update is committed by the time its Flush returns.
func TestConcurrentSubmitFlush(t *testing.T) {
	ix, _ := newIndex(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				key := fmt.Sprintf("g%d/%d", g, i)
				ix.Submit(Update{Shard: key, Segments: []Segment{{ID: 1}}})
				if err := ix.Flush(); err != nil {
					t.Error(err)
					return
				}
				if segs, _ := load(t, ix, key); len(segs) != 1 {
					t.Errorf("%s not committed when Flush returned", key)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := len(shards(t, ix)); got != 160 {
		t.Fatalf("%d shards, want 160", got)
	}
}

// TestCommitErrorIsSticky: a batch that fails to commit is lost whole, and
// every later Flush and Close report the first failure, though later batches
// still commit.
func TestCommitErrorIsSticky(t *testing.T) {
	ix, _ := newIndex(t)
	ix.Submit(Update{Shard: "s/0", Segments: []Segment{{ID: 1}}})
	ix.Submit(Update{Shard: ""}) // bbolt refuses an empty bucket name
	err := ix.Flush()
	if err == nil || !strings.Contains(err.Error(), "index commit") {
		t.Fatalf("Flush of a bad batch: %v", err)
	}
	if got := shards(t, ix); len(got) != 0 {
		t.Fatalf("part of the failed batch was committed: %q", got)
	}
	ix.Submit(Update{Shard: "s/1", Segments: []Segment{{ID: 1}}})
	if err2 := ix.Flush(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second Flush: %v, want the first error %v", err2, err)
	}
	if got := shards(t, ix); !reflect.DeepEqual(got, []string{"s/1"}) {
		t.Fatalf("later batch: shards %q", got)
	}
	if err2 := ix.Close(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("Close: %v, want %v", err2, err)
	}
}

// TestDiscard: Discard loses what is pending, as a crash would; afterwards
// Submit is dropped, Flush returns at once and Close is harmless.
func TestDiscard(t *testing.T) {
	ix, path := newIndex(t)
	ix.Submit(Update{Shard: "kept", Segments: []Segment{{ID: 1}}})
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	ix.Submit(Update{Shard: "lost", Segments: []Segment{{ID: 1}}})
	if err := ix.Discard(); err != nil {
		t.Fatal(err)
	}
	ix.Submit(Update{Shard: "after", Segments: []Segment{{ID: 1}}})
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix, _, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if got := shards(t, ix); !reflect.DeepEqual(got, []string{"kept"}) {
		t.Fatalf("after Discard and reopen: %q, want [kept]", got)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	ix, _ := newIndex(t)
	ix.Submit(Update{Shard: "s/0"})
	for i := range 3 {
		if err := ix.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
}

// TestOpenReadOnly: fsck's view of index.db reads what was committed, has no
// committer (Flush returns at once) and never creates a missing file.
func TestOpenReadOnly(t *testing.T) {
	ix, path := newIndex(t)
	ix.Submit(Update{Shard: "s/0", Segments: []Segment{{ID: 1}}, Seeks: []Seek{{Seq: 1, SegID: 1}}})
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Flush(); err != nil {
		t.Fatal(err)
	}
	if segs, seeks := load(t, ro, "s/0"); len(segs) != 1 || len(seeks) != 1 {
		t.Fatalf("Load = %+v %+v", segs, seeks)
	}
	if errs := ro.Check(); len(errs) != 0 {
		t.Fatalf("Check: %v", errs)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "index.db")
	if _, err := OpenReadOnly(missing); err == nil {
		t.Fatal("OpenReadOnly of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenReadOnly created the file: %v", err)
	}
}

// TestLoadSkipsUndecodableEntries: an entry of the wrong size or version is
// left out of Load, not an error, so the shard rebuilds it from the segment.
func TestLoadSkipsUndecodableEntries(t *testing.T) {
	ix, _ := newIndex(t)
	good := Segment{ID: 2, End: 9}
	ix.Submit(Update{Shard: "s/0", Segments: []Segment{good}, Seeks: []Seek{{Seq: 2, SegID: 2}}})
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	err := ix.db.Update(func(tx *bolt.Tx) error {
		sb := tx.Bucket([]byte("s/0"))
		bad := map[string][]byte{
			string(u64(3)): {1, 2, 3},
			string(u64(4)): append([]byte{2}, encodeSegment(good)[1:]...), // unknown version
			"short key":    encodeSegment(good),
		}
		for k, v := range bad {
			if err := sb.Bucket(bSegs).Put([]byte(k), v); err != nil {
				return err
			}
			if err := sb.Bucket(bSeeks).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	segs, seeks := load(t, ix, "s/0")
	if !reflect.DeepEqual(segs, []Segment{good}) || !reflect.DeepEqual(seeks, []Seek{{Seq: 2, SegID: 2}}) {
		t.Fatalf("Load = %+v %+v", segs, seeks)
	}
	if segs, seeks := load(t, ix, "no such shard"); segs != nil || seeks != nil {
		t.Fatalf("Load of an unknown shard = %+v %+v", segs, seeks)
	}
}
