package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestInjectedThrottling: with InjectThrottleRate, a fraction of records is
// refused with ErrThrottled, and no refused record is ever stored.
func TestInjectedThrottling(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), FS: vfs.NewMemFS(), InjectThrottleRate: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	entries := make([]PutEntry, 400)
	for i := range entries {
		entries[i] = PutEntry{PartitionKey: "k", Data: []byte(fmt.Sprint(i))}
	}
	res, err := s.Put(context.Background(), "s", entries)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	throttled := 0
	for i, r := range res {
		switch {
		case r.Err == nil:
			stored[string(entries[i].Data)] = true
		case errors.Is(r.Err, ErrThrottled):
			throttled++
		default:
			t.Fatalf("record %d: %v", i, r.Err)
		}
	}
	if throttled < 120 || throttled > 280 { // 200 expected; p < 1e-9 outside
		t.Fatalf("%d of 400 records throttled at rate 0.5", throttled)
	}
	s.opts.InjectThrottleRate = 0 // injection throttles reads too; read back without it
	recs, err := readShard(s, "s", "shardId-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(stored) {
		t.Fatalf("%d records stored, %d accepted", len(recs), len(stored))
	}
	for _, r := range recs {
		if !stored[string(r.Data)] {
			t.Fatalf("throttled record %q was stored", r.Data)
		}
	}
}

// TestThrottleMultiplierTag: the stream tag scales one stream's write rate.
func TestThrottleMultiplierTag(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), FS: vfs.NewMemFS(), Throttle: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	accepted := func() int {
		entries := make([]PutEntry, 2000)
		for i := range entries {
			entries[i] = PutEntry{PartitionKey: "k", Data: []byte("x")}
		}
		res, err := s.Put(ctx, "s", entries)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range res {
			if r.Err == nil {
				n++
			}
		}
		return n
	}
	if got := accepted(); got != 500 { // half a second of 1,000 records/s
		t.Fatalf("idle shard admitted %d records at once, want 500", got)
	}
	if err := s.AddTags(ctx, "s", map[string]string{MultiplierTag: "4"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := accepted(); got != 2000 {
		t.Fatalf("with a 4x tag an idle shard admitted %d records at once, want 2000", got)
	}
}
