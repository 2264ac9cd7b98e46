package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/vfs"
)

// forever is an idle period no test waits out: Next must return for another
// reason.
const forever = time.Hour

// putOne stores one record with data v on shard 0 of stream "s" and returns
// its sequence number.
func putOne(t *testing.T, s *Store, v string) string {
	t.Helper()
	k := hashkey.Key{}
	return put(t, s, PutEntry{PartitionKey: "k", ExplicitHashKey: &k, Data: []byte(v)})[0].SequenceNumber
}

func subscribe(t *testing.T, s *Store, in SubscribeInput, gone <-chan struct{}) *Subscription {
	t.Helper()
	if in.Stream == "" {
		in.Stream, in.ShardID = "s", "shardId-000000000000"
	}
	sub, err := s.Subscribe(context.Background(), in, gone)
	if err != nil {
		t.Fatalf("subscribe %+v: %v", in, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

func next(t *testing.T, sub *Subscription, maxBytes int, idle time.Duration) SubscribeEvent {
	t.Helper()
	ev, err := sub.Next(context.Background(), maxBytes, idle)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return ev
}

func datas(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

// TestSubscribeStartingPositions: every starting position delivers exactly
// the records from it, and LATEST waits for the next record (woken by its
// commit, not by the idle timer).
func TestSubscribeStartingPositions(t *testing.T) {
	s, c := newTestStore(t, 1)
	t0 := c.t
	seq1 := putOne(t, s, "r1")
	c.t = c.t.Add(time.Second)
	t1 := c.t
	seq2 := putOne(t, s, "r2")
	c.t = c.t.Add(time.Second)
	putOne(t, s, "r3")
	_ = seq1
	tests := []struct {
		in   SubscribeInput
		want []string
	}{
		{SubscribeInput{Type: TrimHorizon}, []string{"r1", "r2", "r3"}},
		{SubscribeInput{Type: AtSequenceNumber, StartSeq: seq2}, []string{"r2", "r3"}},
		{SubscribeInput{Type: AfterSequenceNumber, StartSeq: seq2}, []string{"r3"}},
		{SubscribeInput{Type: AtTimestamp, Timestamp: t1}, []string{"r2", "r3"}},
		{SubscribeInput{Type: AtTimestamp, Timestamp: t0.Add(-time.Hour)}, []string{"r1", "r2", "r3"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s", tc.in.Type, tc.want), func(t *testing.T) {
			sub := subscribe(t, s, tc.in, nil)
			ev := next(t, sub, 1<<20, forever)
			if got := datas(ev.Records); !slices.Equal(got, tc.want) {
				t.Fatalf("records %v, want %v", got, tc.want)
			}
			if ev.ContinuationSequenceNumber != ev.Records[len(ev.Records)-1].SequenceNumber {
				t.Fatalf("continuation %s, want the last record's %s", ev.ContinuationSequenceNumber, ev.Records[len(ev.Records)-1].SequenceNumber)
			}
		})
	}
	t.Run("LATEST waits for the next record", func(t *testing.T) {
		sub := subscribe(t, s, SubscribeInput{Type: Latest}, nil)
		got := make(chan SubscribeEvent, 1)
		go func() {
			ev, _ := sub.Next(context.Background(), 1<<20, forever)
			got <- ev
		}()
		putOne(t, s, "r4")
		if ev := <-got; !slices.Equal(datas(ev.Records), []string{"r4"}) {
			t.Fatalf("records %v, want [r4]", datas(ev.Records))
		}
	})
	t.Run("bad position", func(t *testing.T) {
		_, err := s.Subscribe(context.Background(), SubscribeInput{Stream: "s", ShardID: "shardId-000000000000", Type: AtSequenceNumber, StartSeq: "12"}, nil)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("error %v, want ErrInvalidArgument", err)
		}
		_, err = s.Subscribe(context.Background(), SubscribeInput{Stream: "s", ShardID: "shardId-000000000007", Type: TrimHorizon}, nil)
		if !errors.Is(err, ErrShardNotFound) {
			t.Fatalf("error %v, want ErrShardNotFound", err)
		}
	})
}

// TestSubscribeIdleAndResume: an idle event carries no records and the
// continuation unchanged; resuming AFTER a continuation loses and repeats
// nothing; maxBytes splits events (but never below one record).
func TestSubscribeIdleAndResume(t *testing.T) {
	s, _ := newTestStore(t, 1)
	sub := subscribe(t, s, SubscribeInput{Type: TrimHorizon}, nil)
	idle := next(t, sub, 1<<20, time.Millisecond)
	if len(idle.Records) != 0 || idle.ContinuationSequenceNumber == "" {
		t.Fatalf("idle event on an empty shard: %+v", idle)
	}
	// The continuation of an empty shard resumes at its start.
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("r%d", i))
		putOne(t, s, want[i])
	}
	resumed := subscribe(t, s, SubscribeInput{Type: AfterSequenceNumber, StartSeq: idle.ContinuationSequenceNumber}, nil)
	var got []string
	var cont string
	for len(got) < 3 {
		ev := next(t, resumed, 1, forever) // one record per event
		if len(ev.Records) != 1 {
			t.Fatalf("maxBytes 1 gave %d records, want 1", len(ev.Records))
		}
		got, cont = append(got, datas(ev.Records)...), ev.ContinuationSequenceNumber
	}
	again := subscribe(t, s, SubscribeInput{Type: AfterSequenceNumber, StartSeq: cont}, nil)
	ev := next(t, again, 1<<20, forever)
	got = append(got, datas(ev.Records)...)
	if !slices.Equal(got, want) {
		t.Fatalf("across a resume got %v, want %v", got, want)
	}
	idle = next(t, again, 1<<20, time.Millisecond)
	if len(idle.Records) != 0 || idle.ContinuationSequenceNumber != ev.ContinuationSequenceNumber {
		t.Fatalf("idle event %+v, want no records and continuation %s", idle, ev.ContinuationSequenceNumber)
	}
}

// TestSubscribeShardEnd: a split ends the parent's subscription with its
// remaining records, ChildShards and no continuation, waking a waiting Next.
func TestSubscribeShardEnd(t *testing.T) {
	s, _ := newTestStore(t, 1)
	putOne(t, s, "before")
	sub := subscribe(t, s, SubscribeInput{Type: TrimHorizon}, nil)
	if ev := next(t, sub, 1<<20, forever); !slices.Equal(datas(ev.Records), []string{"before"}) {
		t.Fatalf("records %v", datas(ev.Records))
	}
	got := make(chan SubscribeEvent, 1)
	go func() {
		ev, _ := sub.Next(context.Background(), 1<<20, forever)
		got <- ev
	}()
	half := hashkey.Split(2)[1].Start.String()
	if err := s.SplitShard(context.Background(), "s", "shardId-000000000000", half); err != nil {
		t.Fatal(err)
	}
	ev := <-got
	if !ev.End() || len(ev.ChildShards) != 2 {
		t.Fatalf("end event %+v, want ChildShards of 2 and no continuation", ev)
	}
	for i, c := range ev.ChildShards {
		if c.ShardID != fmt.Sprintf("shardId-%012d", i+1) || !slices.Equal(c.ParentShards, []string{"shardId-000000000000"}) {
			t.Fatalf("child %d: %+v", i, c)
		}
	}
	if _, err := sub.Next(context.Background(), 1<<20, forever); err == nil {
		t.Fatal("Next after the end event succeeded")
	}
	// A new subscription to the closed parent delivers everything, then ends.
	late := subscribe(t, s, SubscribeInput{Type: TrimHorizon}, nil)
	if ev := next(t, late, 1<<20, forever); !ev.End() || !slices.Equal(datas(ev.Records), []string{"before"}) {
		t.Fatalf("late subscriber: %+v", ev)
	}
}

// TestSubscribeEnds: a waiting Next returns with the right error when the
// stream is deleted, the consumer is gone, ctx ends, Close is called, or the
// store closes.
func TestSubscribeEnds(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		end   func(s *Store, gone chan struct{}, cancel func(), sub *Subscription)
		check func(err error) bool
	}{
		{"DeleteStream (DELETING)", time.Hour, func(s *Store, _ chan struct{}, _ func(), _ *Subscription) {
			s.DeleteStream(context.Background(), "s")
		}, func(err error) bool { return errors.Is(err, ErrShardNotFound) }},
		{"DeleteStream (removed at once)", 0, func(s *Store, _ chan struct{}, _ func(), _ *Subscription) {
			s.DeleteStream(context.Background(), "s")
		}, func(err error) bool { return errors.Is(err, ErrShardNotFound) }},
		{"consumer gone", 0, func(_ *Store, gone chan struct{}, _ func(), _ *Subscription) { close(gone) },
			func(err error) bool { return errors.Is(err, ErrConsumerNotFound) }},
		{"ctx canceled", 0, func(_ *Store, _ chan struct{}, cancel func(), _ *Subscription) { cancel() },
			func(err error) bool { return errors.Is(err, context.Canceled) }},
		{"Close", 0, func(_ *Store, _ chan struct{}, _ func(), sub *Subscription) { sub.Close() },
			func(err error) bool { return errors.Is(err, errSubscriptionEnded) }},
		{"store closed", 0, func(s *Store, _ chan struct{}, _ func(), _ *Subscription) { s.Close() },
			func(err error) bool { return errors.Is(err, ErrClosed) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openDelayed(t, vfs.NewMemFS(), t.TempDir(), Options{DeleteDelay: tc.delay})
			t.Cleanup(func() { s.Close() })
			if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
				t.Fatal(err)
			}
			gone := make(chan struct{})
			sub := subscribe(t, s, SubscribeInput{Type: Latest}, gone)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := sub.Next(ctx, 1<<20, forever)
				errc <- err
			}()
			tc.end(s, gone, cancel, sub)
			if err := <-errc; !tc.check(err) {
				t.Fatalf("Next returned %v", err)
			}
		})
	}
}

// TestSubscribeIsNotAGetRecordsCall: subscriptions never draw on the
// shard's GetRecords budget (5 calls/s), so GetRecords still works after
// many events.
func TestSubscribeIsNotAGetRecordsCall(t *testing.T) {
	c := &clock{time.Now()}
	s := openDelayed(t, vfs.NewMemFS(), t.TempDir(), Options{Throttle: true, Now: c.now})
	t.Cleanup(func() { s.Close() })
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		putOne(t, s, fmt.Sprint(i))
	}
	sub := subscribe(t, s, SubscribeInput{Type: TrimHorizon}, nil)
	for range 10 { // the clock stands still: no budget is refilled
		next(t, sub, 1, forever)
	}
	pos, err := s.Position(context.Background(), "s", "shardId-000000000000", TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(context.Background(), pos, 100, 1<<20); err != nil {
		t.Fatalf("GetRecords after 10 subscription events: %v", err)
	}
}
