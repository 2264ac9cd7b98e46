package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/shard"
	"github.com/shardlog/shardlog/vfs"
)

func openReshardStore(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.FS == nil {
		opts.FS = vfs.NewMemFS()
	}
	opts.IndexInterval = time.Millisecond
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s *Store, name string, shards int) {
	t.Helper()
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: name, ShardCount: shards}); err != nil {
		t.Fatal(err)
	}
}

func putKeys(t *testing.T, s *Store, name string, keys ...string) []PutResult {
	t.Helper()
	var entries []PutEntry
	for _, k := range keys {
		entries = append(entries, PutEntry{PartitionKey: k, Data: []byte("d-" + k)})
	}
	res, err := s.Put(context.Background(), name, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	return res
}

func shardByID(t *testing.T, info StreamInfo, id string) ShardInfo {
	t.Helper()
	for _, sh := range info.Shards {
		if sh.ID == id {
			return sh
		}
	}
	t.Fatalf("no shard %s in %+v", id, info.Shards)
	return ShardInfo{}
}

func wantKind(t *testing.T, err, kind error, what string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got %v, want %v", what, err, kind)
	}
}

func seqOf(t *testing.T, s string) seqnum.Seq {
	t.Helper()
	p, err := seqnum.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSplitThenMerge: a split closes its parent (EndingSequenceNumber set,
// reads end with both children), children's numbers sort above the parent's,
// and a merge lists both parents.
func TestSplitThenMerge(t *testing.T) {
	ctx := context.Background()
	s := openReshardStore(t, Options{})
	mustCreate(t, s, "r", 1)
	before := putKeys(t, s, "r", "a", "b", "c")
	mid := hashkey.Split(2)[1].Start.String()
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", mid); err != nil {
		t.Fatal(err)
	}
	info, _ := s.DescribeStream(ctx, "r")
	if len(info.Shards) != 3 || info.Shards[0].Open() || info.OpenShardCount() != 2 {
		t.Fatalf("after split: %+v", info.Shards)
	}
	for _, id := range []string{"shardId-000000000001", "shardId-000000000002"} {
		if sh := shardByID(t, info, id); sh.Parent != "shardId-000000000000" || sh.AdjacentParent != "" {
			t.Fatalf("child %s: %+v", id, sh)
		}
	}
	after := putKeys(t, s, "r", "a", "b", "c")
	for i := range after {
		if seqnum.Compare(seqOf(t, after[i].SequenceNumber), seqOf(t, before[i].SequenceNumber)) <= 0 {
			t.Fatalf("child number %s not above parent's %s", after[i].SequenceNumber, before[i].SequenceNumber)
		}
	}
	recs, end := readToEnd(t, s, "r", "shardId-000000000000")
	if len(recs) != 3 || len(end) != 2 {
		t.Fatalf("parent read: %d records, children %+v", len(recs), end)
	}
	if err := s.MergeShards(ctx, "r", "shardId-000000000001", "shardId-000000000002"); err != nil {
		t.Fatal(err)
	}
	info, _ = s.DescribeStream(ctx, "r")
	m := shardByID(t, info, "shardId-000000000003")
	if m.Parent != "shardId-000000000001" || m.AdjacentParent != "shardId-000000000002" || m.HashRange != hashkey.Split(1)[0] {
		t.Fatalf("merge child: %+v", m)
	}
	_, end = readToEnd(t, s, "r", "shardId-000000000001")
	if len(end) != 1 || len(end[0].ParentShards) != 2 {
		t.Fatalf("merge child as seen from a parent: %+v", end)
	}
	wantKind(t, s.SplitShard(ctx, "r", "shardId-000000000000", mid), ErrInvalidArgument, "split a closed shard")
	wantKind(t, s.MergeShards(ctx, "r", "shardId-000000000001", "shardId-000000000003"), ErrInvalidArgument, "merge a closed shard")
}

// readToEnd reads a closed shard to its end and returns its records and the
// ChildShards of the last page.
func readToEnd(t *testing.T, s *Store, stream, id string) ([]Record, []ChildShard) {
	t.Helper()
	pos, err := s.Position(context.Background(), stream, id, TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for range 1000 {
		res, err := s.Read(context.Background(), pos, 2, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Records...)
		if res.Next == nil {
			return out, res.ChildShards
		}
		pos = *res.Next
	}
	t.Fatalf("%s never ended", id)
	return nil, nil
}

// TestReshardErrors: AWS's refusals.
func TestReshardErrors(t *testing.T) {
	ctx := context.Background()
	s := openReshardStore(t, Options{UpdateDelay: time.Hour, ShardLimit: 4})
	mustCreate(t, s, "r", 2)
	r0 := hashkey.Split(2)[0]
	wantKind(t, s.SplitShard(ctx, "r", "shardId-000000000000", r0.Start.String()), ErrInvalidArgument, "split at the start")
	wantKind(t, s.SplitShard(ctx, "r", "shardId-000000000000", r0.End.Add(1).String()), ErrInvalidArgument, "split past the end")
	wantKind(t, s.SplitShard(ctx, "r", "shardId-000000000009", "5"), ErrShardNotFound, "split a missing shard")
	wantKind(t, s.SplitShard(ctx, "r", "nope-x", "5"), ErrShardNotFound, "split an unparsable shard")
	wantKind(t, s.MergeShards(ctx, "r", "shardId-000000000000", "shardId-000000000000"), ErrInvalidArgument, "merge with itself")
	wantKind(t, s.SplitShard(ctx, "x", "shardId-000000000000", "5"), ErrStreamNotFound, "missing stream")
	_, err := s.UpdateShardCount(ctx, "r", 5)
	wantKind(t, err, ErrLimitExceeded, "more than double")
	mustCreate(t, s, "one", 1)
	_, err = s.UpdateShardCount(ctx, "r", 4)
	wantKind(t, err, ErrLimitExceeded, "account shard limit")
	wantKind(t, s.SplitShard(ctx, "r", "shardId-000000000000", r0.End.String()), ErrInvalidArgument, "a one-key upper child")
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", r0.End.Sub(1).String()); err != nil {
		t.Fatal(err) // a two-key upper child is allowed
	}
	wantKind(t, s.SplitShard(ctx, "r", "shardId-000000000001", "5"), ErrResourceInUse, "stream UPDATING")
	s2 := openReshardStore(t, Options{})
	if err := s2.CreateStream(ctx, CreateStreamInput{Name: "od", Mode: ModeOnDemand, ShardCount: 4}); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s2.MergeShards(ctx, "od", "shardId-000000000000", "shardId-000000000001"), ErrValidation, "on-demand stream")
}

// TestMergeNotAdjacent: the last and first shards are not adjacent, though
// the end of the hash space wraps to its start.
func TestMergeNotAdjacent(t *testing.T) {
	s := openReshardStore(t, Options{})
	mustCreate(t, s, "r", 3)
	wantKind(t, s.MergeShards(context.Background(), "r", "shardId-000000000002", "shardId-000000000000"), ErrInvalidArgument, "wrap-around merge")
	wantKind(t, s.MergeShards(context.Background(), "r", "shardId-000000000000", "shardId-000000000002"), ErrInvalidArgument, "gap merge")
}

// TestUpdateShardCountDailyLimit: the rolling 24-hour call limit.
func TestUpdateShardCountDailyLimit(t *testing.T) {
	s := openReshardStore(t, Options{ScalingCallsPerDay: 2})
	mustCreate(t, s, "r", 1)
	for _, n := range []int{2, 1} {
		if _, err := s.UpdateShardCount(context.Background(), "r", n); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.UpdateShardCount(context.Background(), "r", 2)
	wantKind(t, err, ErrLimitExceeded, "third call in a day")
}

// TestUpdateShardCountUniform: every target's open shards are the uniform
// ranges, each shard names at most two parents, and every parent named is
// closed.
func TestUpdateShardCountUniform(t *testing.T) {
	s := openReshardStore(t, Options{})
	mustCreate(t, s, "r", 5)
	for _, n := range []int{3, 6, 12, 7, 4, 8, 5, 10, 5} {
		res, err := s.UpdateShardCount(context.Background(), "r", n)
		if err != nil {
			t.Fatalf("to %d: %v", n, err)
		}
		if res.Target != n {
			t.Fatalf("result %+v", res)
		}
		checkUniform(t, s, n)
	}
}

func checkUniform(t *testing.T, s *Store, n int) {
	t.Helper()
	info, _ := s.DescribeStream(context.Background(), "r")
	closed := map[string]bool{}
	var open []hashkey.Range
	for _, sh := range info.Shards {
		closed[sh.ID] = !sh.Open()
		if sh.Open() {
			open = append(open, sh.HashRange)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].Start.Cmp(open[j].Start) < 0 })
	want := hashkey.Split(n)
	if fmt.Sprint(open) != fmt.Sprint(want) {
		t.Fatalf("target %d: open ranges %v, want %v", n, open, want)
	}
	for _, sh := range info.Shards {
		for _, p := range []string{sh.Parent, sh.AdjacentParent} {
			if p != "" && !closed[p] {
				t.Fatalf("%s names %s, which is open", sh.ID, p)
			}
		}
	}
}

// TestReshardUnderLoad: four writers keep writing through a split, a merge
// and UpdateShardCount 1→2→4→3→(2)→1; a reader that follows lineage reads every
// acknowledged record exactly once, each key's records in order.
func TestReshardUnderLoad(t *testing.T) {
	s := openReshardStore(t, Options{Dir: t.TempDir(), FS: vfs.OS{}})
	mustCreate(t, s, "r", 1)
	var stop atomic.Bool
	acks := make([][]ack, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[w] = writeUntil(t, s, w, &stop)
		}()
	}
	ctx := context.Background()
	steps := []func() error{
		func() error {
			return s.SplitShard(ctx, "r", "shardId-000000000000", hashkey.Split(2)[1].Start.String())
		},
		func() error { return s.MergeShards(ctx, "r", "shardId-000000000001", "shardId-000000000002") },
		func() error { _, err := s.UpdateShardCount(ctx, "r", 2); return err },
		func() error { _, err := s.UpdateShardCount(ctx, "r", 4); return err },
		func() error { _, err := s.UpdateShardCount(ctx, "r", 3); return err },
		func() error {
			// AWS refuses 3→1 (below half), so 3→1 goes by way of 2.
			if _, err := s.UpdateShardCount(ctx, "r", 1); !errors.Is(err, ErrLimitExceeded) {
				return fmt.Errorf("3→1: got %v, want limit exceeded", err)
			}
			_, err := s.UpdateShardCount(ctx, "r", 2)
			return err
		},
		func() error { _, err := s.UpdateShardCount(ctx, "r", 1); return err },
	}
	for _, step := range steps {
		time.Sleep(30 * time.Millisecond)
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(30 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	checkLineageRead(t, s, "r", acks)
}

// writeUntil puts records of writer w (keys w-0..w-3, data numbered) until
// stop, and returns what was acknowledged.
func writeUntil(t *testing.T, s *Store, w int, stop *atomic.Bool) []ack {
	var out []ack
	for i := 0; !stop.Load(); i++ {
		entries := make([]PutEntry, 5)
		for j := range entries {
			entries[j] = PutEntry{PartitionKey: fmt.Sprintf("%d-%d", w, j%4), Data: []byte(fmt.Sprintf("%d-%d-%d", w, i, j))}
		}
		res, err := s.Put(context.Background(), "r", entries)
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
			return out
		}
		for j, r := range res {
			if r.Err != nil {
				t.Errorf("writer %d: record refused: %v", w, r.Err)
				return out
			}
			out = append(out, ack{r.ShardID, r.SequenceNumber, string(entries[j].Data)})
		}
	}
	return out
}

// checkLineageRead reads parents before children and checks exactly-once
// delivery and per-key order.
func checkLineageRead(t *testing.T, s *Store, stream string, acks [][]ack) {
	t.Helper()
	info, _ := s.DescribeStream(context.Background(), stream)
	done := map[string]bool{}
	seen := map[string]int{}
	lastByKey := map[string]seqnum.Seq{}
	for len(done) < len(info.Shards) {
		progress := false
		for _, sh := range info.Shards {
			if done[sh.ID] || (sh.Parent != "" && !done[sh.Parent]) || (sh.AdjacentParent != "" && !done[sh.AdjacentParent]) {
				continue
			}
			recs, err := readShard(s, stream, sh.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				seen[string(r.Data)]++
				p := seqOf(t, r.SequenceNumber)
				if prev, ok := lastByKey[r.PartitionKey]; ok && seqnum.Compare(prev, p) >= 0 {
					t.Fatalf("key %s: %s read after a greater number", r.PartitionKey, r.SequenceNumber)
				}
				lastByKey[r.PartitionKey] = p
			}
			done[sh.ID], progress = true, true
		}
		if !progress {
			t.Fatalf("lineage has a cycle or a missing parent: %+v", info.Shards)
		}
	}
	n := 0
	for _, as := range acks {
		for _, a := range as {
			n++
			if seen[a.data] != 1 {
				t.Fatalf("acknowledged %s read %d times", a.data, seen[a.data])
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("read %d distinct records, %d acknowledged", len(seen), n)
	}
	t.Logf("%d records across %d shards", n, len(info.Shards))
}

// TestReshardCrashAtEachStep: crash scenarios of a split (a power cut while
// writers write, then a reopen), with no UPDATING delay (the split takes
// effect within the call) and with one (it takes effect when the delay ends,
// which the test brings about by moving the clock and firing the timer's
// function). Wherever the cut comes, the stream reopens with the old shard
// set or the new one, never a mix, every acknowledged record readable:
//   - "accept", before the plan is stored: the old set, ACTIVE (the call
//     never answered);
//   - "updating", during UPDATING before the change: the old set, still
//     UPDATING and writable, if the delay has not passed at the restart, and
//     the change happens when it does; the new set at Open if the delay
//     passed while the server was down ("updating-passed");
//   - "begin", "sealed", "children", "committed" (each step of the change),
//     "none" (after it): the new set, ACTIVE (the accepted plan is carried out
//     again at Open).
//
// Afterwards the stream can be resharded again.
func TestReshardCrashAtEachStep(t *testing.T) {
	for _, delayed := range []bool{false, true} {
		steps := []string{"accept", "begin", "sealed", "children", "committed", "none"}
		if delayed {
			steps = append(steps, "updating", "updating-passed")
		}
		for _, step := range steps {
			for seed := range uint64(5) {
				name := fmt.Sprintf("delay=%v/%s/%d", delayed, step, seed)
				t.Run(name, func(t *testing.T) { crashReshard(t, step, delayed, seed) })
			}
		}
	}
}

// crashClock is a settable clock.
type crashClock struct{ ns atomic.Int64 }

func (c *crashClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *crashClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newCrashClock() *crashClock          { c := &crashClock{}; c.ns.Store(time.Now().UnixNano()); return c }
func crashOpts(dir string, fs vfs.FS, c *crashClock, delay time.Duration) Options {
	return Options{Dir: dir, FS: fs, IndexInterval: time.Millisecond, SegmentSize: 2048, Now: c.now, UpdateDelay: delay}
}

func crashReshard(t *testing.T, step string, delayed bool, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	fs := vfs.NewMemFS()
	clock := newCrashClock()
	delay := time.Duration(0)
	if delayed {
		delay = time.Hour // the timer never fires by itself during the test
	}
	opts := crashOpts(t.TempDir(), fs, clock, delay)
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "pl", 2)
	var crashed atomic.Bool
	powerCut := func() {
		crashed.Store(true) // first: a Put that returns after this is not trusted
		fs.Crash(rng, vfs.TearMode(rng.IntN(3)))
		s.idx.Discard()
	}
	reshardHook = func(at string) error {
		if at != step {
			return nil
		}
		powerCut()
		return errCrashStop
	}
	defer func() { reshardHook = nil }()
	acks, attempted := writeDuring(s, &crashed, func() error {
		err := s.SplitShard(context.Background(), "pl", "shardId-000000000001", hashkey.Split(4)[3].Start.String())
		if err != nil || !delayed {
			return err
		}
		time.Sleep(5 * time.Millisecond) // writers write to the parents during UPDATING
		if strings.HasPrefix(step, "updating") {
			powerCut()
			return nil
		}
		clock.add(2 * delay)
		return endUpdating(s, "pl") // what the timer does when UPDATING ends
	}, t)
	if step == "none" {
		powerCut()
	}
	s.Close()
	reshardHook = nil

	if step == "updating-passed" {
		clock.add(2 * delay)
	}
	s, err = Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if err := verifyAcked(s, acks, attempted); err != nil {
		t.Fatal(err)
	}
	if step == "updating" {
		checkShardSet(t, s, false, StatusUpdating)
		res := putKeys(t, s, "pl", "x", "y", "z") // writes during UPDATING land in the old shards
		for _, r := range res {
			if r.ShardID != "shardId-000000000000" && r.ShardID != "shardId-000000000001" {
				t.Fatalf("put during UPDATING after the restart landed on %s", r.ShardID)
			}
		}
		acks = append(acks, acksOf(res, "x", "y", "z")...)
		attempted["d-x"], attempted["d-y"], attempted["d-z"] = true, true, true
		clock.add(2 * delay)
		if err := endUpdating(s, "pl"); err != nil {
			t.Fatal(err)
		}
		if err := verifyAcked(s, acks, attempted); err != nil {
			t.Fatal(err)
		}
	}
	checkShardSet(t, s, step != "accept", StatusActive)
	if err := s.SplitShard(context.Background(), "pl", "shardId-000000000000", "5"); err != nil {
		t.Fatalf("reshard after recovery: %v", err)
	}
	if delayed {
		clock.add(2 * delay)
		if err := endUpdating(s, "pl"); err != nil {
			t.Fatal(err)
		}
	}
	putKeys(t, s, "pl", "x", "y", "z")
}

// endUpdating does what the UPDATING timer of the named stream does when it
// fires.
func endUpdating(s *Store, name string) error {
	s.mu.RLock()
	st := s.streams[name]
	s.mu.RUnlock()
	return s.endUpdating(st)
}

func acksOf(res []PutResult, keys ...string) []ack {
	out := make([]ack, len(res))
	for i, r := range res {
		out[i] = ack{r.ShardID, r.SequenceNumber, "d-" + keys[i]}
	}
	return out
}

// writeDuring runs two writers while op runs and until crashed is set (or
// op has returned), and returns the acknowledgements.
func writeDuring(s *Store, crashed *atomic.Bool, op func() error, t *testing.T) ([]ack, map[string]bool) {
	var mu sync.Mutex
	var acks []ack
	attempted := map[string]bool{}
	var opDone atomic.Bool
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !crashed.Load() && !opDone.Load() || i < 5; i++ {
				if crashed.Load() {
					return
				}
				d := fmt.Sprintf("w%d-%d", w, i)
				mu.Lock()
				attempted[d] = true
				mu.Unlock()
				res, err := s.Put(context.Background(), "pl", []PutEntry{{PartitionKey: fmt.Sprintf("k%d", i%7), Data: []byte(d)}})
				if err != nil || res[0].Err != nil || crashed.Load() {
					// A Put that ends after the power cut would never have
					// answered: the process was dead.
					continue
				}
				mu.Lock()
				acks = append(acks, ack{res[0].ShardID, res[0].SequenceNumber, d})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	err := op()
	opDone.Store(true)
	wg.Wait()
	if err != nil && !errors.Is(err, errCrashStop) {
		t.Fatalf("reshard: %v", err)
	}
	return acks, attempted
}

// checkShardSet asserts the shard set is entirely the old one (two open
// shards) or entirely the new one (shard 1 closed, children 2 and 3), and the
// stream's status.
func checkShardSet(t *testing.T, s *Store, wantNew bool, status StreamStatus) {
	t.Helper()
	info, err := s.DescribeStream(context.Background(), "pl")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sh := range info.Shards {
		got = append(got, fmt.Sprintf("%s:%v:%s", sh.ID, sh.Open(), sh.Parent))
	}
	want := "[shardId-000000000000:true: shardId-000000000001:true:]"
	if wantNew {
		want = "[shardId-000000000000:true: shardId-000000000001:false: shardId-000000000002:true:shardId-000000000001 shardId-000000000003:true:shardId-000000000001]"
	}
	if fmt.Sprint(got) != want {
		t.Fatalf("shards %v, want %v", got, want)
	}
	if info.Status != status {
		t.Fatalf("status %s after recovery, want %s", info.Status, status)
	}
}

// TestPutReroutedAfterSplit: a Put that read the routing table before a
// split and reaches the sealed parent is re-routed to the children.
func TestPutReroutedAfterSplit(t *testing.T) {
	ctx := context.Background()
	s := openReshardStore(t, Options{})
	mustCreate(t, s, "r", 1)
	st, pl, err := s.writableStream("r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Fatal(err)
	}
	var entries []PutEntry
	for i := range 20 {
		entries = append(entries, PutEntry{PartitionKey: fmt.Sprint(i), Data: []byte{byte(i)}})
	}
	groups, err := s.groupByShard(st, pl, entries)
	if err != nil {
		t.Fatal(err)
	}
	results := make([]PutResult, len(entries))
	s.putGroups(ctx, "r", groups, results)
	s.rerouteClosed(ctx, "r", entries, results)
	for i, r := range results {
		k := hashkey.FromPartitionKey(entries[i].PartitionKey)
		want := "shardId-000000000001"
		if !hashkey.Split(2)[0].Contains(k) {
			want = "shardId-000000000002"
		}
		if r.Err != nil || r.ShardID != want {
			t.Fatalf("entry %d: %+v, want it stored on %s", i, r, want)
		}
	}
}

// TestClosedShardExpires: once a closed shard's end is older than the
// retention period, retention removes its metadata and files; its children
// stay, and the removal survives a restart.
func TestClosedShardExpires(t *testing.T) {
	ctx := context.Background()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	fs := vfs.NewMemFS()
	opts := Options{Dir: t.TempDir(), FS: fs, IndexInterval: time.Millisecond, Now: func() time.Time { return time.Unix(0, clock.Load()) }}
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "r", 1)
	putKeys(t, s, "r", "a", "b")
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Fatal(err)
	}
	s.EnforceRetention()
	if info, _ := s.DescribeStream(ctx, "r"); len(info.Shards) != 3 {
		t.Fatalf("closed shard expired early: %+v", info.Shards)
	}
	clock.Add(int64(25 * time.Hour))
	s.EnforceRetention()
	check := func(s *Store) {
		t.Helper()
		info, _ := s.DescribeStream(ctx, "r")
		if len(info.Shards) != 2 || info.Shards[0].ID != "shardId-000000000001" {
			t.Fatalf("after expiry: %+v", info.Shards)
		}
		_, err := s.Position(ctx, "r", "shardId-000000000000", TrimHorizon, "", time.Time{})
		wantKind(t, err, ErrShardNotFound, "expired shard")
		if names, _ := fs.ReadDir(filepath.Join(opts.Dir, "streams", s.streams["r"].dir)); len(names) != 2 {
			t.Fatalf("shard directories left: %v", names)
		}
	}
	check(s)
	s.Close()
	s, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
	putKeys(t, s, "r", "c", "d")
}

// TestReshardFailureRollsBack: a failure at any step before the commit
// leaves the old shard set, writable, with its records, and no trace of the
// children (the one that failed half-way included); the next reshard
// succeeds.
func TestReshardFailureRollsBack(t *testing.T) {
	for _, step := range []string{"sealed", "children", "child-create-fails"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			mem := vfs.NewMemFS()
			fs := &failCreateFS{FS: mem, match: "shardId-000000000002/"}
			s := openReshardStore(t, Options{FS: fs})
			mustCreate(t, s, "r", 1)
			putKeys(t, s, "r", "a", "b", "c")
			injected := errors.New("injected")
			reshardHook = func(at string) error {
				if at == step {
					return injected
				}
				return nil
			}
			defer func() { reshardHook = nil }()
			fs.on = step == "child-create-fails"
			mid := hashkey.Split(2)[1].Start.String()
			if err := s.SplitShard(ctx, "r", "shardId-000000000000", mid); err == nil {
				t.Fatal("split succeeded")
			}
			reshardHook, fs.on = nil, false
			info, _ := s.DescribeStream(ctx, "r")
			if len(info.Shards) != 1 || !info.Shards[0].Open() || info.Status != StatusActive {
				t.Fatalf("after a failed split: %+v", info)
			}
			checkNoChildren(t, s, mem, "r")
			putKeys(t, s, "r", "d")
			if recs, _ := readShard(s, "r", "shardId-000000000000"); len(recs) != 4 {
				t.Fatalf("records after rollback: %d, want 4", len(recs))
			}
			if err := s.SplitShard(ctx, "r", "shardId-000000000000", mid); err != nil {
				t.Fatal(err)
			}
			putKeys(t, s, "r", "e", "f")
		})
	}
}

// TestReshardSealFsyncFailureNeedsRestart: crash scenario "fdatasync fails
// while a reshard seals the parent". The split fails, and the parent is not
// reopened writable in the same process (a failed fsync is never retried):
// it refuses writes and serves its records until a restart, after which it
// is writable and can be split.
func TestReshardSealFsyncFailureNeedsRestart(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	dir := t.TempDir()
	s := openReshardStore(t, Options{FS: fs, Dir: dir})
	mustCreate(t, s, "r", 1)
	putKeys(t, s, "r", "a", "b")
	fs.FailNextSync(nil)
	mid := hashkey.Split(2)[1].Start.String()
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", mid); err == nil {
		t.Fatal("split succeeded despite a failed fsync")
	}
	res, err := s.Put(ctx, "r", []PutEntry{{PartitionKey: "z", Data: []byte("after")}})
	if err != nil || !errors.Is(res[0].Err, ErrShardReadOnly) {
		t.Fatalf("put after the failed fsync: %v %+v, want the shard read-only", err, res)
	}
	if recs, _ := readShard(s, "r", "shardId-000000000000"); len(recs) != 2 {
		t.Fatalf("records served after the failed fsync: %d, want 2", len(recs))
	}
	s.Close()
	s = openReshardStore(t, Options{FS: fs, Dir: dir})
	putKeys(t, s, "r", "c")
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", mid); err != nil {
		t.Fatalf("split after restart: %v", err)
	}
}

// failCreateFS fails creating files whose path contains match while on.
type failCreateFS struct {
	vfs.FS
	match string
	on    bool
}

func (f *failCreateFS) Create(name string) (vfs.File, error) {
	if f.on && strings.Contains(name, f.match) {
		return nil, errors.New("injected create failure")
	}
	return f.FS.Create(name)
}

// checkNoChildren: no shard directory but shardId-000000000000 is left in
// the stream's directory, and index.db knows no other shard of it.
func checkNoChildren(t *testing.T, s *Store, mem *vfs.MemFS, stream string) {
	t.Helper()
	st := s.streams[stream]
	names, _ := mem.ReadDir(filepath.Join(s.streamsDir(), st.dir))
	if !slices.Equal(names, []string{"shardId-000000000000/"}) {
		t.Errorf("stream directory after a failed split: %v", names)
	}
	if err := s.idx.Flush(); err != nil {
		t.Fatal(err)
	}
	keys, _ := s.idx.Shards()
	for _, k := range keys {
		if strings.HasPrefix(k, st.dir+"/") && k != st.dir+"/shardId-000000000000" {
			t.Errorf("index.db keeps the uncommitted child %s", k)
		}
	}
}

// TestReshardFileWorkRunsWithoutStoreLock: while a reshard seals its parents
// and creates its children, the store lock is free, so other streams are
// served; the resharded stream shows UPDATING, a second reshard of it is
// refused, a Put that meets a sealed parent waits and lands on a child, and
// Close waits for a reshard in progress to commit.
func TestReshardFileWorkRunsWithoutStoreLock(t *testing.T) {
	s, _ := newTestStore(t, 1)
	mustCreate(t, s, "other", 1)
	var rerouted chan []PutResult
	var closed chan error
	reshardHook = func(at string) error {
		if at != "sealed" {
			return nil
		}
		if !s.mu.TryLock() {
			t.Error("the store lock is held while the reshard seals and creates shards")
			return nil
		}
		s.mu.Unlock()
		if closed != nil { // the second reshard
			go func() { closed <- s.Close() }()
			return nil
		}
		putKeys(t, s, "other", "a", "b")
		info, err := s.DescribeStream(context.Background(), "s")
		if err != nil || info.Status != StatusUpdating {
			t.Errorf("during the reshard: status %v, %v; want UPDATING", info.Status, err)
		}
		if err := s.SplitShard(context.Background(), "s", "shardId-000000000000", "1"); !errors.Is(err, ErrResourceInUse) {
			t.Errorf("second reshard during the first: %v, want ResourceInUse", err)
		}
		rerouted = make(chan []PutResult, 1)
		go func() {
			res, err := s.Put(context.Background(), "s", []PutEntry{{PartitionKey: "k", Data: []byte("x")}})
			if err != nil {
				t.Error(err)
			}
			rerouted <- res
		}()
		return nil
	}
	defer func() { reshardHook = nil }()
	split := func(id string, at hashkey.Key) error {
		return s.SplitShard(context.Background(), "s", id, at.String())
	}
	if err := split("shardId-000000000000", hashkey.Split(2)[1].Start); err != nil {
		t.Fatal(err)
	}
	if res := <-rerouted; len(res) != 1 || res[0].Err != nil || res[0].ShardID == "shardId-000000000000" {
		t.Fatalf("put that met the sealed parent: %+v, want it stored on a child", res)
	}
	closed = make(chan error, 1)
	if err := split("shardId-000000000001", hashkey.Split(4)[1].Start); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close during the reshard: %v", err)
	}
	for i, sh := range s.streams["s"].shards { // the children too: Close waited for them
		if _, err := sh.Append(context.Background(), []shard.Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); !errors.Is(err, shard.ErrClosed) {
			t.Errorf("shard %d after Close: %v, want closed", i, err)
		}
	}
}

// TestReshardOnFullDiskKeepsParentServing: crash scenario "the disk is full
// when a split creates its children". The split fails and the parent is
// unsealed in place: it serves reads all along, refuses writes only while
// the disk is full, and takes them again once space is freed, without a
// restart.
func TestReshardOnFullDiskKeepsParentServing(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMemFS()
	s := openReshardStore(t, Options{FS: mem})
	mustCreate(t, s, "r", 1)
	putKeys(t, s, "r", "a", "b", "c")
	mem.SetCapacity(mem.Used())
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err == nil {
		t.Fatal("split succeeded on a full disk")
	}
	if recs, err := readShard(s, "r", "shardId-000000000000"); err != nil || len(recs) != 3 {
		t.Fatalf("reads on a full disk after the failed split: %d records, %v", len(recs), err)
	}
	mem.SetCapacity(0)
	putKeys(t, s, "r", "d")
	if recs, err := readShard(s, "r", "shardId-000000000000"); err != nil || len(recs) != 4 {
		t.Fatalf("after space was freed: %d records, %v; want 4", len(recs), err)
	}
}

// TestReadsDoNotRaceMetadataChanges: GetShardIterator and GetRecords run
// while a reshard and a tag change replace the stream's metadata (the race
// detector checks that reads use the metadata they looked up under the lock).
func TestReadsDoNotRaceMetadataChanges(t *testing.T) {
	ctx := context.Background()
	s := openReshardStore(t, Options{})
	mustCreate(t, s, "r", 1)
	putKeys(t, s, "r", "a", "b", "c")
	var stop atomic.Bool
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			if pos, err := s.Position(ctx, "r", "shardId-000000000000", TrimHorizon, "", time.Time{}); err == nil {
				s.Read(ctx, pos, 10, 1<<20)
			}
			if i == 0 {
				close(started)
			}
		}
	}()
	<-started
	if err := s.SplitShard(ctx, "r", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Error(err)
	}
	if err := s.AddTags(ctx, "r", map[string]string{"x": "y"}, nil); err != nil && !errors.Is(err, ErrResourceInUse) {
		t.Error(err)
	}
	stop.Store(true)
	<-done
}

// openDelayed opens a store on a settable clock whose UPDATING lasts an hour
// (the timer never fires by itself during a test; endUpdating stands for it).
func openUpdatingStore(t *testing.T, o Options) (*Store, *crashClock) {
	t.Helper()
	c := newCrashClock()
	o.Now, o.UpdateDelay = c.now, time.Hour
	return openReshardStore(t, o), c
}

// TestReshardTakesEffectWhenUpdatingEnds (aws-fidelity.md F1): while a merge
// or a split is UPDATING, descriptions, reads and writes see the old shards,
// and another reshard is refused; when UPDATING ends the parents close, the
// children appear with the next indexes and writes go to them.
func TestReshardTakesEffectWhenUpdatingEnds(t *testing.T) {
	merge := func(s *Store) error {
		return s.MergeShards(context.Background(), "r", "shardId-000000000000", "shardId-000000000001")
	}
	split := func(s *Store) error {
		return s.SplitShard(context.Background(), "r", "shardId-000000000000", hashkey.Split(2)[1].Start.String())
	}
	third := hashkey.Split(3)[1].Start
	tests := []struct {
		name         string
		shards       int
		reshard      func(*Store) error
		key          hashkey.Key
		parent, kid  string
		after        []string // shard ids and open flags once it took effect
		childParents int
	}{
		{"merge", 3, merge, third, "shardId-000000000001", "shardId-000000000003",
			[]string{"shardId-000000000000:false", "shardId-000000000001:false", "shardId-000000000002:true", "shardId-000000000003:true"}, 2},
		{"split", 1, split, hashkey.Key{}.Add(1), "shardId-000000000000", "shardId-000000000001",
			[]string{"shardId-000000000000:false", "shardId-000000000001:true", "shardId-000000000002:true"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, clock := openUpdatingStore(t, Options{})
			mustCreate(t, s, "r", tt.shards)
			if err := tt.reshard(s); err != nil {
				t.Fatal(err)
			}
			before := shardStates(t, s)
			if info, _ := s.DescribeStream(ctx, "r"); info.Status != StatusUpdating || len(info.Shards) != tt.shards || info.OpenShardCount() != tt.shards {
				t.Fatalf("during UPDATING: %s %v, want UPDATING with the %d old shards open", info.Status, before, tt.shards)
			}
			putOn(t, s, tt.key, tt.parent)
			if _, children := readAll(t, s, tt.parent); children != nil {
				t.Fatalf("an open parent read to its tip lists children %+v", children)
			}
			wantKind(t, merge(s), ErrResourceInUse, "merge during UPDATING")
			wantKind(t, split(s), ErrResourceInUse, "split during UPDATING")
			clock.add(2 * time.Hour)
			if err := endUpdating(s, "r"); err != nil {
				t.Fatal(err)
			}
			if got := shardStates(t, s); fmt.Sprint(got) != fmt.Sprint(tt.after) {
				t.Fatalf("after UPDATING: %v, want %v", got, tt.after)
			}
			if info, _ := s.DescribeStream(ctx, "r"); info.Status != StatusActive {
				t.Fatalf("status %s after UPDATING", info.Status)
			}
			putOn(t, s, tt.key, tt.kid)
			recs, children := readAll(t, s, tt.parent)
			if len(recs) != 1 || len(children) == 0 || len(children[0].ParentShards) != tt.childParents {
				t.Fatalf("parent read to its end: %d records, children %+v", len(recs), children)
			}
		})
	}
}

func shardStates(t *testing.T, s *Store) []string {
	t.Helper()
	info, err := s.DescribeStream(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sh := range info.Shards {
		out = append(out, fmt.Sprintf("%s:%v", sh.ID, sh.Open()))
	}
	return out
}

// putOn puts one record at hash key k and checks the shard it landed on.
func putOn(t *testing.T, s *Store, k hashkey.Key, want string) {
	t.Helper()
	res, err := s.Put(context.Background(), "r", []PutEntry{{PartitionKey: "p", ExplicitHashKey: &k, Data: []byte("x")}})
	if err != nil || res[0].Err != nil || res[0].ShardID != want {
		t.Fatalf("put at %s: %v %+v, want it on %s", k.String(), err, res, want)
	}
}

// readAll reads a shard of stream "r" from its start until its end or tip.
func readAll(t *testing.T, s *Store, id string) ([]Record, []ChildShard) {
	t.Helper()
	return readLineageShard(t, s, "r", id)
}

// TestReshardSequenceTimes (aws-fidelity.md F2): with C the second the
// reshard takes effect, every parent's EndingSequenceNumber keeps its
// creation second and index, with the largest sequence index and time C;
// every child's StartingSequenceNumber has creation second and time C + 1 and
// sequence index 0.
func TestReshardSequenceTimes(t *testing.T) {
	tests := []struct {
		name    string
		shards  int
		reshard func(*Store) error
		parents []string
		kids    []string
	}{
		{"merge", 2, func(s *Store) error {
			return s.MergeShards(context.Background(), "r", "shardId-000000000000", "shardId-000000000001")
		}, []string{"shardId-000000000000", "shardId-000000000001"}, []string{"shardId-000000000002"}},
		{"split", 1, func(s *Store) error {
			return s.SplitShard(context.Background(), "r", "shardId-000000000000", "5")
		}, []string{"shardId-000000000000"}, []string{"shardId-000000000001", "shardId-000000000002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clock := openUpdatingStore(t, Options{})
			mustCreate(t, s, "r", tt.shards)
			clock.add(10 * time.Second)
			if err := tt.reshard(s); err != nil {
				t.Fatal(err)
			}
			clock.add(2*time.Hour + 500*time.Millisecond)
			c := clock.now().Unix()
			if err := endUpdating(s, "r"); err != nil {
				t.Fatal(err)
			}
			info, _ := s.DescribeStream(context.Background(), "r")
			for _, id := range tt.parents {
				sh := shardByID(t, info, id)
				// The parent's creation second, as its first number says (a new
				// stream's is back-dated, aws-fidelity.md F4).
				created := seqOf(t, sh.StartingSeq).ShardCreateSecs
				want := seqnum.Seq{ShardCreateSecs: created, ShardIndex: sh.Index, Ordinal: seqnum.MaxOrdinal, ArrivalSecs: c}
				if got := seqOf(t, sh.EndingSeq); got != want {
					t.Errorf("%s EndingSequenceNumber %+v, want %+v", id, got, want)
				}
			}
			for _, id := range tt.kids {
				sh := shardByID(t, info, id)
				want := seqnum.Seq{ShardCreateSecs: c + 1, ShardIndex: sh.Index, ArrivalSecs: c + 1}
				if got := seqOf(t, sh.StartingSeq); got != want {
					t.Errorf("%s StartingSequenceNumber %+v, want %+v", id, got, want)
				}
			}
		})
	}
}

// TestPendingReshardDecisions: what happens to a pending reshard (UPDATING,
// not yet in effect) when other things happen to its stream or account.
func TestPendingReshardDecisions(t *testing.T) {
	ctx := context.Background()
	split := func(s *Store) error { return s.SplitShard(ctx, "r", "shardId-000000000000", "5") }
	tests := []struct {
		name  string
		opts  Options
		check func(t *testing.T, s *Store, clock *crashClock)
	}{
		{"the account shard limit reserves the shards a pending split adds", Options{ShardLimit: 3}, func(t *testing.T, s *Store, _ *crashClock) {
			err := s.CreateStream(ctx, CreateStreamInput{Name: "other", ShardCount: 1})
			wantKind(t, err, ErrLimitExceeded, "a stream beyond the reserved shards")
		}},
		{"DeleteStream drops the pending reshard", Options{}, func(t *testing.T, s *Store, clock *crashClock) {
			if err := s.DeleteStream(ctx, "r"); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, s, "r", 2)
			clock.add(2 * time.Hour)
			if err := endUpdating(s, "r"); err != nil {
				t.Fatal(err)
			}
			if got := shardStates(t, s); fmt.Sprint(got) != "[shardId-000000000000:true shardId-000000000001:true]" {
				t.Fatalf("recreated stream: %v", got)
			}
		}},
		{"DeleteStream with a delay drops it too", Options{DeleteDelay: time.Hour}, func(t *testing.T, s *Store, clock *crashClock) {
			if err := s.DeleteStream(ctx, "r"); err != nil {
				t.Fatal(err)
			}
			clock.add(30 * time.Minute)
			if err := endUpdating(s, "r"); err != nil {
				t.Fatal(err)
			}
			if info, _ := s.DescribeStream(ctx, "r"); info.Status != StatusDeleting || len(info.Shards) != 2 || s.streams["r"].meta.Reshard != nil {
				t.Fatalf("deleting stream: %+v", info)
			}
		}},
		{"a failure to take effect leaves it pending, parents writable, and it is retried", Options{}, func(t *testing.T, s *Store, clock *crashClock) {
			reshardHook = func(at string) error {
				if at == "children" {
					return errors.New("injected")
				}
				return nil
			}
			defer func() { reshardHook = nil }()
			clock.add(2 * time.Hour)
			if err := endUpdating(s, "r"); err == nil {
				t.Fatal("no failure")
			}
			if info, _ := s.DescribeStream(ctx, "r"); info.Status != StatusUpdating || fmt.Sprint(shardStates(t, s)) != "[shardId-000000000000:true shardId-000000000001:true]" {
				t.Fatalf("after a failure: %s %v", info.Status, shardStates(t, s))
			}
			putOn(t, s, hashkey.Key{}, "shardId-000000000000")
			s.mu.RLock()
			retry := s.streams["r"].timer != nil
			s.mu.RUnlock()
			if !retry {
				t.Fatal("no retry scheduled")
			}
			reshardHook = nil
			if err := endUpdating(s, "r"); err != nil { // what the retry does
				t.Fatal(err)
			}
			if info, _ := s.DescribeStream(ctx, "r"); info.Status != StatusActive || info.OpenShardCount() != 3 {
				t.Fatalf("after the retry: %s %v", info.Status, shardStates(t, s))
			}
		}},
		{"Close keeps it for the next Open", Options{}, func(t *testing.T, s *Store, clock *crashClock) {
			s.Close()
			s2, err := Open(ctx, s.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if info, _ := s2.DescribeStream(ctx, "r"); info.Status != StatusUpdating || info.OpenShardCount() != 2 {
				t.Fatalf("reopened before the delay ended: %s %v", info.Status, shardStates(t, s2))
			}
			clock.add(2 * time.Hour)
			if err := endUpdating(s2, "r"); err != nil {
				t.Fatal(err)
			}
			if info, _ := s2.DescribeStream(ctx, "r"); info.Status != StatusActive || info.OpenShardCount() != 3 {
				t.Fatalf("after the delay: %s %v", info.Status, shardStates(t, s2))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clock := openUpdatingStore(t, tt.opts)
			mustCreate(t, s, "r", 2)
			if err := split(s); err != nil {
				t.Fatal(err)
			}
			tt.check(t, s, clock)
		})
	}
}
