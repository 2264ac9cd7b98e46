package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/vfs"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openTest(t *testing.T, fs vfs.FS, dir string, c *clock) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, FS: fs, Now: c.now, SegmentSize: 4 << 10, IndexInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestStore(t *testing.T, shards int) (*Store, *clock) {
	t.Helper()
	c := &clock{time.Now()}
	s := openTest(t, vfs.NewMemFS(), t.TempDir(), c)
	t.Cleanup(func() { s.Close() })
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "s", ShardCount: shards}); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func put(t *testing.T, s *Store, entries ...PutEntry) []PutResult {
	t.Helper()
	res, err := s.Put(context.Background(), "s", entries)
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

func TestRouterSendsHashToOwningShard(t *testing.T) {
	s, _ := newTestStore(t, 3)
	ranges := hashkey.Split(3)
	tests := []struct {
		name string
		key  hashkey.Key
		want string
	}{
		{"zero", hashkey.Key{}, "shardId-000000000000"},
		{"end of shard 0", ranges[0].End, "shardId-000000000000"},
		{"start of shard 1", ranges[1].Start, "shardId-000000000001"},
		{"end of shard 1", ranges[1].End, "shardId-000000000001"},
		{"start of shard 2", ranges[2].Start, "shardId-000000000002"},
		{"max", hashkey.Max, "shardId-000000000002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.key
			res := put(t, s, PutEntry{PartitionKey: "ignored", ExplicitHashKey: &k, Data: []byte("x")})
			if res[0].ShardID != tt.want {
				t.Fatalf("hash %v went to %s, want %s", tt.key, res[0].ShardID, tt.want)
			}
		})
	}
	// Without ExplicitHashKey the MD5 of the partition key decides.
	for i := range 50 {
		pk := fmt.Sprintf("key-%d", i)
		k := hashkey.FromPartitionKey(pk)
		want := ""
		for j, r := range ranges {
			if r.Contains(k) {
				want = fmt.Sprintf("shardId-%012d", j)
			}
		}
		if got := put(t, s, PutEntry{PartitionKey: pk, Data: []byte("x")})[0].ShardID; got != want {
			t.Fatalf("%s -> %s, want %s", pk, got, want)
		}
	}
}

func TestSequenceNumbersIncreaseAndNameTheirShard(t *testing.T) {
	s, _ := newTestStore(t, 2)
	var prev = map[string]seqnum.Seq{}
	for i := range 200 {
		r := put(t, s, PutEntry{PartitionKey: fmt.Sprint(i), Data: []byte("d")})[0]
		if len(r.SequenceNumber) != 56 {
			t.Fatalf("sequence number %q is not 56 digits", r.SequenceNumber)
		}
		p, err := seqnum.Parse(r.SequenceNumber)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("shardId-%012d", p.ShardIndex); want != r.ShardID {
			t.Fatalf("sequence encodes %s, record went to %s", want, r.ShardID)
		}
		if q, ok := prev[r.ShardID]; ok && seqnum.Compare(q, p) >= 0 {
			t.Fatalf("sequence did not increase on %s", r.ShardID)
		}
		prev[r.ShardID] = p
	}
}

func TestSequenceNumberForOrdering(t *testing.T) {
	s, _ := newTestStore(t, 1)
	first := put(t, s, PutEntry{PartitionKey: "k", Data: []byte("a")})[0]
	p, _ := seqnum.Parse(first.SequenceNumber)
	// A number far ahead (e.g. from before a restore) still orders the next put after it.
	ahead := p
	ahead.Ordinal += 1000
	r := put(t, s, PutEntry{PartitionKey: "k", Data: []byte("b"), SequenceNumberForOrdering: ahead.String()})[0]
	got, _ := seqnum.Parse(r.SequenceNumber)
	if seqnum.Compare(got, ahead) <= 0 {
		t.Fatalf("new sequence %s not after SequenceNumberForOrdering %s", r.SequenceNumber, ahead)
	}
	_, err := s.Put(context.Background(), "s", []PutEntry{{PartitionKey: "k", Data: []byte("c"), SequenceNumberForOrdering: "123"}})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad SequenceNumberForOrdering: %v", err)
	}
}

func TestRetentionHidesAndDeletesOldRecords(t *testing.T) {
	s, c := newTestStore(t, 1)
	for i := range 100 {
		put(t, s, PutEntry{PartitionKey: "k", Data: []byte(fmt.Sprintf("old-%d-%0200d", i, i))})
	}
	c.t = c.t.Add(23 * time.Hour)
	for i := range 5 {
		put(t, s, PutEntry{PartitionKey: "k", Data: []byte(fmt.Sprintf("new-%d", i))})
	}
	before := s.streams["s"].shards[0].Segments()
	c.t = c.t.Add(2 * time.Hour) // the old records are now 25h old, the new ones 2h
	recs, err := readShard(s, "s", "shardId-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || string(recs[0].Data) != "new-0" {
		t.Fatalf("TRIM_HORIZON read %d records starting %q, want the 5 new ones", len(recs), recs[0].Data)
	}
	s.EnforceRetention()
	after := s.streams["s"].shards[0].Segments()
	if len(after) >= len(before) {
		t.Fatalf("retention deleted no segment: %d before, %d after", len(before), len(after))
	}
	recs, _ = readShard(s, "s", "shardId-000000000000")
	if len(recs) != 5 {
		t.Fatalf("after deletion read %d records, want 5", len(recs))
	}
}

func TestPositions(t *testing.T) {
	s, c := newTestStore(t, 1)
	var res []PutResult
	for i := range 10 {
		res = append(res, put(t, s, PutEntry{PartitionKey: "k", Data: []byte{byte(i)}})...)
		c.t = c.t.Add(time.Second)
	}
	atTS := c.t.Add(-5 * time.Second) // records 5..9 arrived at or after this
	tests := []struct {
		name  string
		typ   IteratorType
		seq   string
		ts    time.Time
		first int // index of the first record read, -1 for none
	}{
		{"trim horizon", TrimHorizon, "", time.Time{}, 0},
		{"latest", Latest, "", time.Time{}, -1},
		{"at sequence", AtSequenceNumber, res[3].SequenceNumber, time.Time{}, 3},
		{"after sequence", AfterSequenceNumber, res[3].SequenceNumber, time.Time{}, 4},
		{"after the last", AfterSequenceNumber, res[9].SequenceNumber, time.Time{}, -1},
		{"at timestamp", AtTimestamp, "", atTS, 5},
		{"at old timestamp", AtTimestamp, "", atTS.Add(-time.Hour), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pos, err := s.Position(context.Background(), "s", "shardId-000000000000", tt.typ, tt.seq, tt.ts)
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Read(context.Background(), pos, 100, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if tt.first < 0 {
				if len(r.Records) != 0 {
					t.Fatalf("read %d records, want none", len(r.Records))
				}
				return
			}
			if len(r.Records) == 0 || r.Records[0].SequenceNumber != res[tt.first].SequenceNumber {
				t.Fatalf("first record read is not #%d", tt.first)
			}
		})
	}
}

func TestPositionErrors(t *testing.T) {
	s, c := newTestStore(t, 2)
	r0 := put(t, s, PutEntry{PartitionKey: "a", ExplicitHashKey: &hashkey.Key{}, Data: []byte("x")})[0]
	tests := []struct {
		name  string
		shard string
		typ   IteratorType
		seq   string
		ts    time.Time
		kind  error
	}{
		{"unparsable shard", "shardId-x", TrimHorizon, "", time.Time{}, ErrShardNotFound},
		{"absent shard", "shardId-000000000009", TrimHorizon, "", time.Time{}, ErrShardNotFound},
		{"garbage sequence", "shardId-000000000000", AtSequenceNumber, "12", time.Time{}, ErrInvalidArgument},
		{"sequence of another shard", "shardId-000000000001", AtSequenceNumber, r0.SequenceNumber, time.Time{}, ErrInvalidArgument},
		{"future timestamp", "shardId-000000000000", AtTimestamp, "", c.t.Add(time.Hour), ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Position(context.Background(), "s", tt.shard, tt.typ, tt.seq, tt.ts)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("got %v, want %v", err, tt.kind)
			}
		})
	}
	// Lenient shard ids, as AWS parses them.
	for _, id := range []string{"shardId-0", "0", "shardId-000000000000"} {
		if _, err := s.Position(context.Background(), "s", id, TrimHorizon, "", time.Time{}); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

func TestLifecycleSurvivesRestart(t *testing.T) {
	fs, dir, c := vfs.NewMemFS(), t.TempDir(), &clock{time.Now()}
	s := openTest(t, fs, dir, c)
	ctx := context.Background()
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "a", ShardCount: 2, Tags: map[string]string{"t": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "a", ShardCount: 1}); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "big", ShardCount: 499}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("shard limit: %v", err)
	}
	if err := s.SetRetention(ctx, "a", 48, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRetention(ctx, "a", 30, true); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("increase to a shorter period: %v", err)
	}
	if _, err := s.Put(ctx, "a", []PutEntry{{PartitionKey: "k", Data: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "gone", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteStream(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, fs, dir, c)
	defer s.Close()
	info, err := s.DescribeStream(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != StatusActive || info.RetentionHours != 48 || len(info.Shards) != 2 || info.Tags["t"] != "1" {
		t.Fatalf("after restart: %+v", info)
	}
	if _, err := s.DescribeStream(ctx, "gone"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("deleted stream came back: %v", err)
	}
	recs, err := readShard(s, "a", "shardId-000000000000")
	recs1, _ := readShard(s, "a", "shardId-000000000001")
	if err != nil || len(recs)+len(recs1) != 1 {
		t.Fatalf("records after restart: %d+%d, %v", len(recs), len(recs1), err)
	}
}

func TestCorruptShardRefusesWritesServesReads(t *testing.T) {
	fs, dir, c := vfs.NewMemFS(), t.TempDir(), &clock{time.Now()}
	s := openTest(t, fs, dir, c)
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		put(t, s, PutEntry{PartitionKey: "k", Data: []byte(fmt.Sprintf("rec-%d-%0100d", i, 0))})
	}
	sh := s.streams["s"].shards[0]
	seg := sh.Segments()[0]
	path := fmt.Sprintf("%s/streams/%s/shardId-000000000000/%020d-%016x.seg", dir, s.streams["s"].dir, seg.FirstSeq, seg.ID)
	s.Close()
	// Flip a bit in the second frame: the first stays readable, the third
	// proves the damage is not a torn tail.
	b, err := fs.Bytes(path)
	if err != nil {
		t.Fatal(err)
	}
	h := 64
	first := int(b[h+4]) | int(b[h+5])<<8
	second := h + 56 + (first+7)&^7
	fs.FlipBit(path, int64(second+60), 3)
	// After a clean shutdown the segment's catalog agrees with the file and
	// is trusted, damage included (fsck and reads find it); without index.db,
	// as after a crash, the newest segment is scanned and the damage found.
	removeIndex(t, dir)
	s = openTest(t, fs, dir, c)
	defer s.Close()
	_, err = s.Put(context.Background(), "s", []PutEntry{{PartitionKey: "k", Data: []byte("x")}})
	res, _ := s.Put(context.Background(), "s", []PutEntry{{PartitionKey: "k", Data: []byte("x")}})
	if err == nil && (len(res) == 0 || !errors.Is(res[0].Err, ErrShardReadOnly)) {
		t.Fatalf("corrupt shard accepted a write: %v %+v", err, res)
	}
	recs, err := readShard(s, "s", "shardId-000000000000")
	if err != nil || len(recs) != 1 {
		t.Fatalf("corrupt shard served %d records (%v), want the 1 before the damage", len(recs), err)
	}
}

func removeIndex(tb testing.TB, dir string) {
	tb.Helper()
	if err := os.Remove(dir + "/index.db"); err != nil {
		tb.Fatal(err)
	}
}

// TestInitialEpochIsBackdated: a new stream's shards carry a creation second
// about 3 s before the request (AWS's lies 2-7 s before its reply), distinct
// from a deleted stream of the same name, and a reshard's children still sort
// above their parents.
func TestInitialEpochIsBackdated(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Date(2026, 3, 1, 12, 0, 0, 999e6, time.UTC)}
	s := openTest(t, vfs.NewMemFS(), t.TempDir(), c)
	defer s.Close()
	epochs := func(name string) []int64 {
		t.Helper()
		info, err := s.DescribeStream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, sh := range info.Shards {
			p, err := seqnum.Parse(sh.StartingSeq)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.ShardCreateSecs)
		}
		return out
	}
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "f", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	first := epochs("f")
	if want := c.t.Unix() - 3; first[0] != want || first[1] != want {
		t.Fatalf("initial epochs %v, want %d (3 s before the request)", first, want)
	}
	if err := s.DeleteStream(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "f", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	again := epochs("f")
	if again[0] <= first[0] {
		t.Fatalf("re-created stream's epoch %d, not above the deleted one's %d", again[0], first[0])
	}
	if err := s.SplitShard(ctx, "f", "shardId-000000000000", "5"); err != nil {
		t.Fatal(err)
	}
	all := epochs("f")
	if all[2] <= again[0] || all[3] <= again[0] {
		t.Fatalf("children's epochs %v not above their parent's %d", all[2:], again[0])
	}
}

// TestSharedSequenceCounter: shards 0-4 number their records from one
// counter, 5-9 from the next, as AWS does: puts to shards 0 and 1, one after
// another or concurrently, get consecutive indexes with no gap and no
// repeat; shard 5 counts apart; and after a restart the counter goes on
// above every acknowledged index.
func TestSharedSequenceCounter(t *testing.T) {
	ctx := context.Background()
	fs, dir, c := vfs.NewMemFS(), t.TempDir(), &clock{time.Now()}
	s := openTest(t, fs, dir, c)
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 6}); err != nil {
		t.Fatal(err)
	}
	ranges := hashkey.Split(6)
	putTo := func(s *Store, shard int) seqnum.Seq {
		t.Helper()
		k := ranges[shard].Start
		r := put(t, s, PutEntry{PartitionKey: "k", ExplicitHashKey: &k, Data: []byte("x")})[0]
		p, err := seqnum.Parse(r.SequenceNumber)
		if err != nil || p.ShardIndex != uint32(shard) {
			t.Fatalf("put to shard %d: %s, %+v, %v", shard, r.ShardID, p, err)
		}
		return p
	}
	var seen []uint64
	for i := range 10 {
		seen = append(seen, putTo(s, i%2).Ordinal)
	}
	if five := putTo(s, 5).Ordinal; five != firstOrdinal {
		t.Fatalf("shard 5's first index %d: it shares a counter with shards 0-4", five)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 100 {
		for shard := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := putTo(s, shard).Ordinal
				mu.Lock()
				seen = append(seen, o)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	slices.Sort(seen)
	for i, o := range seen {
		if o != firstOrdinal+uint64(i) {
			t.Fatalf("index %d is %d: a gap or a repeat among shards 0 and 1", i, o)
		}
	}
	s.Close()
	s = openTest(t, fs, dir, c)
	defer s.Close()
	last := seen[len(seen)-1]
	if o := putTo(s, 2).Ordinal; o != last+1 {
		t.Fatalf("after a restart shard 2 got index %d, want %d (one above the group's last)", o, last+1)
	}
}
