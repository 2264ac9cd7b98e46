package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestMaxRecordSize: CreateStream's and UpdateMaxRecordSize's size is what
// RecordLimit and DescribeStream give, it survives a restart, and with an
// UPDATING delay an update takes effect when UPDATING ends (here: at a
// restart after the delay passed).
func TestMaxRecordSize(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
	}{
		{"at once", 0},
		{"when UPDATING ends", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			fs, dir, clock := vfs.NewMemFS(), t.TempDir(), newCrashClock()
			opts := Options{Dir: dir, FS: fs, Now: clock.now, UpdateDelay: tt.delay, IndexInterval: time.Millisecond}
			s, err := Open(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close() }()
			for _, in := range []CreateStreamInput{{Name: "s", ShardCount: 1}, {Name: "big", ShardCount: 1, MaxRecordSizeKiB: MaxMaxRecordSizeKiB}} {
				if err := s.CreateStream(ctx, in); err != nil {
					t.Fatal(err)
				}
			}
			clock.add(time.Second) // CreateDelay 0: ACTIVE already
			wantLimit(t, s, "s", 1<<20, StatusActive)
			wantLimit(t, s, "big", 10<<20, StatusActive)
			if err := s.UpdateMaxRecordSize(ctx, "s", 4096); err != nil {
				t.Fatal(err)
			}
			if tt.delay > 0 {
				wantLimit(t, s, "s", 1<<20, StatusUpdating)
				wantKind(t, s.UpdateMaxRecordSize(ctx, "s", 2048), ErrResourceInUse, "update during UPDATING")
				s.Close()
				clock.add(2 * tt.delay)
				if s, err = Open(ctx, opts); err != nil {
					t.Fatal(err)
				}
			}
			wantLimit(t, s, "s", 4<<20, StatusActive)
			if err := s.UpdateMaxRecordSize(ctx, "s", 4096); err != nil { // the size it has: nothing to do
				t.Fatal(err)
			}
			wantLimit(t, s, "s", 4<<20, StatusActive)
			s.Close()
			if s, err = Open(ctx, opts); err != nil {
				t.Fatal(err)
			}
			wantLimit(t, s, "s", 4<<20, StatusActive)
			wantLimit(t, s, "big", 10<<20, StatusActive)
			wantKind(t, s.UpdateMaxRecordSize(ctx, "nope", 2048), ErrStreamNotFound, "update of a missing stream")
			if _, err := s.RecordLimit(ctx, "nope"); !errors.Is(err, ErrStreamNotFound) {
				t.Fatalf("RecordLimit of a missing stream: %v", err)
			}
			for _, kib := range []int{0, 1023, 10241} {
				if err := s.UpdateMaxRecordSize(ctx, "s", kib); err == nil {
					t.Fatalf("UpdateMaxRecordSize(%d) accepted", kib)
				}
			}
		})
	}
}

func wantLimit(t *testing.T, s *Store, name string, bytes int, status StreamStatus) {
	t.Helper()
	ctx := context.Background()
	got, err := s.RecordLimit(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.DescribeStream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got != bytes || info.MaxRecordSizeKiB != bytes>>10 || info.Status != status {
		t.Fatalf("%s: limit %d, %d KiB, %s; want %d bytes, %s", name, got, info.MaxRecordSizeKiB, info.Status, bytes, status)
	}
}

// TestLargeRecordSurvivesPowerCut: a 10 MiB record (data + key) is stored
// in a frame of its own, read back whole even when it alone is over what
// is left of a page's byte budget, and is still there, byte for byte,
// after a power cut that drops everything unsynced.
func TestLargeRecordSurvivesPowerCut(t *testing.T) {
	for _, mode := range []vfs.TearMode{vfs.TearNone, vfs.TearPrefix, vfs.TearZeros} {
		t.Run(fmt.Sprint("tear mode ", mode), func(t *testing.T) {
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(uint64(mode), 3))
			fs, dir, clock := vfs.NewMemFS(), t.TempDir(), newCrashClock()
			opts := Options{Dir: dir, FS: fs, Now: clock.now, SegmentSize: 4 << 20, IndexInterval: time.Millisecond}
			s, err := Open(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1, MaxRecordSizeKiB: MaxMaxRecordSizeKiB}); err != nil {
				t.Fatal(err)
			}
			big := make([]byte, 10<<20-1)
			for i := range big {
				big[i] = byte(rng.Uint32())
			}
			put(t, s, PutEntry{PartitionKey: "small", Data: []byte("x")})
			put(t, s, PutEntry{PartitionKey: "k", Data: big})
			put(t, s, PutEntry{PartitionKey: "after", Data: []byte("y")})
			fs.Crash(rng, mode)
			s.idx.Discard()
			s.Close()
			if s, err = Open(ctx, opts); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			pos, err := s.Position(ctx, "s", "shardId-000000000000", TrimHorizon, "", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			var pages [][]Record
			for len(pages) < 4 {
				res, err := s.Read(ctx, pos, 10000, 1<<20) // a budget far below the record
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Records) == 0 {
					break
				}
				pages = append(pages, res.Records)
				pos = *res.Next
			}
			if len(pages) != 3 || len(pages[0]) != 1 || len(pages[1]) != 1 || len(pages[2]) != 1 {
				t.Fatalf("pages %v, want [small] [big] [after]", pageKeys(pages))
			}
			if r := pages[1][0]; r.PartitionKey != "k" || !bytes.Equal(r.Data, big) {
				t.Fatalf("large record read back as key %q, %d bytes (equal: %v)", r.PartitionKey, len(r.Data), bytes.Equal(r.Data, big))
			}
		})
	}
}

func pageKeys(pages [][]Record) [][]string {
	out := make([][]string, len(pages))
	for i, p := range pages {
		for _, r := range p {
			out[i] = append(out[i], r.PartitionKey)
		}
	}
	return out
}

// TestLargeRecordBurstPerStream: with throttling on, a stream's shards get
// the burst of its maximum record size (ratelimit.Limits.LargeRecordBurst):
// an idle shard of a 10 MiB stream takes a 10 MiB record and then refuses
// writes while overdrawn, and UpdateMaxRecordSize gives a default stream's
// shards that burst (their buckets start again, full).
func TestLargeRecordBurstPerStream(t *testing.T) {
	ctx := context.Background()
	clock := newCrashClock()
	s, err := Open(ctx, Options{Dir: t.TempDir(), FS: vfs.NewMemFS(), Now: clock.now, Throttle: true, IndexInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, in := range []CreateStreamInput{{Name: "s", ShardCount: 1}, {Name: "big", ShardCount: 1, MaxRecordSizeKiB: MaxMaxRecordSizeKiB}} {
		if err := s.CreateStream(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	tenMiB := PutEntry{PartitionKey: "k", Data: make([]byte, 10<<20-1)}
	putErr := func(name string, e PutEntry) error {
		res, err := s.Put(ctx, name, []PutEntry{e})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Err
	}
	// The first write fixes the buckets' clock; a second later the 10 MiB
	// record finds the burst it needs only on the 10 MiB stream.
	for _, name := range []string{"s", "big"} {
		if err := putErr(name, PutEntry{PartitionKey: "k", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	clock.add(time.Second)
	if err := putErr("big", tenMiB); err != nil {
		t.Fatalf("10 MiB record on an idle 10 MiB stream: %v", err)
	}
	if err := putErr("big", PutEntry{PartitionKey: "k", Data: []byte("x")}); !errors.Is(err, ErrThrottled) {
		t.Fatalf("write right after a 10 MiB record: %v, want throttled", err)
	}
	if err := s.UpdateMaxRecordSize(ctx, "s", MaxMaxRecordSizeKiB); err != nil {
		t.Fatal(err)
	}
	if err := putErr("s", tenMiB); err != nil {
		t.Fatalf("10 MiB record after UpdateMaxRecordSize: %v", err)
	}
	if err := putErr("s", tenMiB); !errors.Is(err, ErrThrottled) {
		t.Fatalf("second 10 MiB record at once: %v, want throttled", err)
	}
}

// TestMaxRecordSizeTimer: the UPDATING timer itself (not a restart) puts a
// pending size into effect.
func TestMaxRecordSizeTimer(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: t.TempDir(), FS: vfs.NewMemFS(), UpdateDelay: 10 * time.Millisecond, IndexInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateMaxRecordSize(ctx, "s", 2048); err != nil {
		t.Fatal(err)
	}
	for range 3000 { // waits for the timer; no bound on how long it takes is asserted
		if info, _ := s.DescribeStream(ctx, "s"); info.Status == StatusActive {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantLimit(t, s, "s", 2<<20, StatusActive)
}
