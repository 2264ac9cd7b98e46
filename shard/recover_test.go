package shard

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/vfs"
)

// TestRecovery is a list of crash scenarios. Each writes acknowledged
// batches, then an unacknowledged write that a crash leaves in some state,
// reopens, and checks that exactly the acknowledged records are served and
// the shard takes writes again (or, for corruption, refuses them).
func TestRecovery(t *testing.T) {
	tests := []struct {
		name string
		// damage rewrites the newest segment: synced is its durable content,
		// frame the bytes of one unacknowledged frame written after it.
		damage      func(synced, frame []byte) []byte
		wantCorrupt bool
	}{
		{"clean crash: unsynced frame lost", func(s, f []byte) []byte { return s }, false},
		{"torn header: EOF inside the last frame header", func(s, f []byte) []byte { return cat(s, f[:20]) }, false},
		{"torn payload: EOF inside the last payload", func(s, f []byte) []byte { return cat(s, f[:len(f)-9]) }, false},
		{"whole unacknowledged frame landed", func(s, f []byte) []byte { return cat(s, f) }, false},
		{"zeroed tail: size reached disk, data did not", func(s, f []byte) []byte { return cat(s, make([]byte, len(f))) }, false},
		{"garbage tail", func(s, f []byte) []byte { return cat(s, garbage(len(f))) }, false},
		{"bit flip in the last acknowledged frame, nothing after", func(s, f []byte) []byte { return flip(s, len(s)-30) }, false},
		{"valid frames after a corrupt one", func(s, f []byte) []byte { return flip(s, 64+60) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			var acked []uint64
			for i := range 5 {
				acked = append(acked, r.append(3, string(rune('a'+i)))...)
			}
			path := r.segFiles()[0]
			synced, _ := r.fs.Bytes(path)
			// One more write whose fsync fails: written, never acknowledged.
			r.fs.FailNextSync(nil)
			if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("unacked")}}, 0); err == nil {
				t.Fatal("append with failed fsync was acknowledged")
			}
			written, _ := r.fs.Bytes(path)
			frame := written[len(synced):]
			r.crash(nil, vfs.TearNone)
			r.fs.SetBytes(path, tt.damage(synced, frame))
			r.boot()

			got := seqsOf(r.readAll())
			if tt.wantCorrupt {
				if r.sh.Corrupt() == nil {
					t.Fatal("corruption of acknowledged data not detected")
				}
				if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); !errors.Is(err, ErrReadOnly) {
					t.Fatalf("corrupt shard accepted a write: %v", err)
				}
				if len(got) != 0 {
					// The flip hits the first frame: nothing before it is readable.
					t.Fatalf("served %v from before the damage, want nothing", got)
				}
				b, _ := r.fs.Bytes(path)
				if len(b) != len(synced) {
					t.Fatalf("corrupt segment was modified: %d bytes, had %d", len(b), len(synced))
				}
				return
			}
			want := acked
			if tt.name == "bit flip in the last acknowledged frame, nothing after" {
				want = acked[:len(acked)-3] // indistinguishable from a torn last write
			}
			if tt.name == "whole unacknowledged frame landed" {
				want = append(append([]uint64(nil), acked...), acked[len(acked)-1]+1)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("after recovery read %v, want %v", got, want)
			}
			more := r.append(2, "after")
			if more[0] <= want[len(want)-1] {
				t.Fatalf("sequence went backwards after recovery: %d after %d", more[0], want[len(want)-1])
			}
			if got := seqsOf(r.readAll()); !slices.Equal(got, append(want, more...)) {
				t.Fatalf("after new writes read %v", got)
			}
		})
	}
}

func TestRecoveryAcrossRollsAndRetention(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, r *rig) []uint64 // returns the ordinals that must survive
	}{
		{"crash between segment roll and index update", func(t *testing.T, r *rig) []uint64 {
			var acked []uint64
			for i := range 20 {
				acked = append(acked, r.append(4, string(rune('a'+i)))...)
			}
			if len(r.segFiles()) < 3 {
				t.Fatalf("expected rolls, have %d segments", len(r.segFiles()))
			}
			r.crash(nil, vfs.TearNone) // the index never heard of the rolls
			return acked
		}},
		{"index.db deleted while stopped", func(t *testing.T, r *rig) []uint64 {
			var acked []uint64
			for i := range 20 {
				acked = append(acked, r.append(4, string(rune('a'+i)))...)
			}
			r.sh.Close()
			r.idx.Close()
			r.sh, r.idx = nil, nil
			if err := removeFile(r.dir + "/index.db"); err != nil {
				t.Fatal(err)
			}
			return acked
		}},
		{"crash in the middle of retention deletion", func(t *testing.T, r *rig) []uint64 {
			for i := range 20 {
				r.append(4, string(rune('a'+i)))
			}
			r.idx.Flush()
			// Expire everything so far. The first unlink succeeds, the second
			// fails, and power goes before any directory sync: the first file
			// may come back, the index has lost its removal, nothing else moved.
			r.now = r.now.Add(48 * 3600e9)
			r.sh.opts.FS = &removeOnceFS{FS: r.fs}
			if n, err := r.sh.Trim(r.now.Add(-24 * 3600e9).UnixMilli()); err == nil || n != 1 {
				t.Fatalf("trim removed %d segments (%v), want 1 and then a failure", n, err)
			}
			r.crash(nil, vfs.TearNone)
			return nil // the files may come back; they hold expired data only
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(o *Options) { o.SegmentSize = 400 })
			must := tt.run(t, r)
			r.boot()
			if err := r.sh.Corrupt(); err != nil {
				t.Fatalf("recovery reported corruption: %v", err)
			}
			got := seqsOf(r.readAll())
			if must != nil && !slices.Equal(got, must) {
				t.Fatalf("read %d records %v, want %v", len(got), got, must)
			}
			last := uint64(0)
			if len(got) > 0 {
				last = got[len(got)-1]
			}
			next := r.append(1, "after")
			if next[0] <= last {
				t.Fatalf("sequence went backwards: %d after %d", next[0], last)
			}
		})
	}
}

func TestFailedFsyncPoisonsWriter(t *testing.T) {
	r := newRig(t, nil)
	r.append(1, "ok")
	r.fs.FailNextSync(nil)
	if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); err == nil {
		t.Fatal("append acknowledged despite failed fsync")
	}
	if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("y")}}, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("writer retried after a failed fsync: %v", err)
	}
	r.restart()
	if got := len(r.readAll()); got < 1 {
		t.Fatalf("lost the acknowledged record: %d", got)
	}
	r.append(1, "again") // a restart re-reads the disk and writes again
}

func cat(a, b []byte) []byte { return append(append([]byte(nil), a...), b...) }

func flip(b []byte, off int) []byte {
	out := append([]byte(nil), b...)
	out[off] ^= 0x10
	return out
}

func garbage(n int) []byte {
	rng := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

func TestArrivalNeverGoesBackwardsAcrossRestart(t *testing.T) {
	r := newRig(t, nil)
	r.append(2, "before")
	before := r.sh.Tip().LastTs
	r.restart()
	r.now = r.now.Add(-time.Hour) // the clock stepped back while stopped
	r.append(1, "after")
	recs := r.readAll()
	if last := recs[len(recs)-1].ArrivalMs; last < before {
		t.Fatalf("arrival went backwards across a restart: %d after %d", last, before)
	}
}

func TestSealedSegmentWithDamagedHeaderIsNotTrusted(t *testing.T) {
	r := newRig(t, func(o *Options) { o.SegmentSize = 400 })
	for i := range 10 {
		r.append(4, string(rune('a'+i)))
	}
	r.restart() // the index now holds the catalog of every sealed segment
	first := r.segFiles()[0]
	r.sh.Close()
	r.idx.Close()
	r.sh, r.idx = nil, nil
	r.fs.FlipBit(first, 30, 1) // inside the header's shard key
	r.boot()
	if r.sh.Corrupt() == nil {
		t.Fatal("a sealed segment with a damaged header was trusted from the catalog")
	}
}

// TestDiskFull: when the disk fills, writes fail with ErrDiskFull, nothing
// acknowledged is damaged, reads go on, and writes resume once space is
// freed, without a restart.
func TestDiskFull(t *testing.T) {
	r := newRig(t, nil)
	var acked []uint64
	for i := range 3 {
		acked = append(acked, r.append(5, string(rune('a'+i)))...)
	}
	r.fs.SetCapacity(r.fs.Used() + 300)
	var fullErr error
	for i := 0; fullErr == nil && i < 100; i++ {
		res, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: make([]byte, 200)}}, 0)
		if err != nil {
			fullErr = err
			break
		}
		acked = append(acked, res.First)
	}
	if !errors.Is(fullErr, ErrDiskFull) {
		t.Fatalf("filling the disk gave %v, want ErrDiskFull", fullErr)
	}
	if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a write with the disk still full gave %v", err)
	}
	if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
		t.Fatalf("while full, read %v, want %v", got, acked)
	}
	r.fs.SetCapacity(0) // space is freed
	acked = append(acked, r.append(2, "after")...)
	if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
		t.Fatalf("after space came back, read %v, want %v", got, acked)
	}
	r.restart()
	if err := r.sh.Corrupt(); err != nil {
		t.Fatalf("recovery after disk full found corruption: %v", err)
	}
	if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
		t.Fatalf("after restart, read %v, want %v", got, acked)
	}
}

// TestDiskFullAfterPartialWrite: ENOSPC after half a frame reached the file;
// the half frame must be cut before writes resume, or the next restart
// would find damage in a sealed segment.
func TestDiskFullAfterPartialWrite(t *testing.T) {
	r := newRig(t, nil)
	acked := r.append(3, "a")
	r.fs.FailNextWrite(syscall.ENOSPC, true)
	if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: garbage(500)}}, 0); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("short write with ENOSPC gave %v", err)
	}
	acked = append(acked, r.append(2, "b")...)
	r.restart()
	if err := r.sh.Corrupt(); err != nil {
		t.Fatalf("the half-written frame was left behind: %v", err)
	}
	if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
		t.Fatalf("read %v, want %v", got, acked)
	}
}

// removeOnceFS lets one Remove through and fails every later one, to stop a
// deletion half-way.
type removeOnceFS struct {
	vfs.FS
	removed bool
}

func (f *removeOnceFS) Remove(name string) error {
	if f.removed {
		return vfs.ErrInjected
	}
	f.removed = true
	return f.FS.Remove(name)
}

// TestClosedShardTrustsItsFinalCatalog: crash scenario "bit flip in the last
// frame of a shard closed by a reshard". The closed shard's newest segment
// was synced before it was closed, so at open its catalog is trusted like a
// sealed segment's: the damaged frame is left for fsck and reads to report,
// never cut as if it were a torn tail (which would silently drop
// acknowledged records), and the file is not CRC-scanned at every start.
// Without an agreeing catalog the segment is still scanned as a tail.
func TestClosedShardTrustsItsFinalCatalog(t *testing.T) {
	r := newRig(t, nil)
	r.append(20, "a")
	last := r.append(20, "b")
	if err := r.sh.Seal(); err != nil {
		t.Fatal(err)
	}
	r.opts.ReadOnly = true
	r.restart() // closes and reopens read-only; index.db has the final catalog
	files := r.segFiles()
	path := files[len(files)-1]
	size := r.fileSize(path)
	r.sh.Close()
	r.idx.Close()
	r.sh, r.idx = nil, nil
	r.fs.FlipBit(path, size-20, 3) // inside the last frame's payload
	r.boot()
	if got := r.fileSize(path); got != size {
		t.Fatalf("closed shard's last segment cut from %d to %d bytes", size, got)
	}
	if r.sh.Corrupt() != nil {
		t.Fatalf("trusted catalog, yet corrupt at open: %v", r.sh.Corrupt())
	}
	if _, err := r.sh.Read(last[0], 100, 1<<20, 0); err == nil {
		t.Fatal("read of the damaged frame succeeded")
	}
}

func (r *rig) fileSize(path string) int64 {
	r.t.Helper()
	f, err := r.fs.Open(path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// TestIntervalDiskFullThenCleanShutdownThenPowerLoss: crash scenario "under
// --sync interval the disk fills, writes resume in a new segment, the server
// shuts down cleanly, then the power goes". The records acknowledged on write
// before the disk filled must have been synced by then (the interval sync
// goes on while full, and leaving the full state syncs before it cuts), so
// none is lost and the old segment, trusted from its catalog, is not left
// shorter than it or full of zeros.
func TestIntervalDiskFullThenCleanShutdownThenPowerLoss(t *testing.T) {
	for _, tear := range []vfs.TearMode{vfs.TearNone, vfs.TearZeros, vfs.TearPrefix} {
		for seed := range uint64(3) {
			r := newRig(t, func(o *Options) { o.Sync, o.SyncInterval = SyncInterval, time.Hour })
			acked := r.append(3, "a") // the hourly interval sync never runs
			r.fs.FailNextWrite(syscall.ENOSPC, false)
			if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); !errors.Is(err, ErrDiskFull) {
				t.Fatalf("append on a full disk: %v, want ErrDiskFull", err)
			}
			acked = append(acked, r.append(2, "b")...) // a new segment
			r.restart()
			r.sh.Close()
			r.idx.Close()
			r.sh, r.idx = nil, nil
			r.fs.Crash(rand.New(rand.NewPCG(seed, 9)), tear)
			r.boot()
			if err := r.sh.Corrupt(); err != nil {
				t.Fatalf("tear %d seed %d: corrupt after a clean shutdown and a power cut: %v", tear, seed, err)
			}
			if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
				t.Fatalf("tear %d seed %d: read %v, want %v", tear, seed, got, acked)
			}
		}
	}
}

// TestFailedSealPoisonsShard: crash scenario "fdatasync fails while a
// reshard seals the shard". The shard refuses writes until a restart, and no
// catalog claiming the frames whose sync failed reaches the index (Close
// after the failed Seal included).
func TestFailedSealPoisonsShard(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Sync, o.SyncInterval = SyncInterval, time.Hour })
	r.append(3, "a")
	r.fs.FailNextSync(nil)
	if err := r.sh.Seal(); err == nil {
		t.Fatal("Seal succeeded despite a failed fsync")
	}
	if r.sh.Failed() == nil {
		t.Fatal("a failed Seal left the shard healthy")
	}
	if _, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append after a failed Seal: %v, want ErrReadOnly", err)
	}
	r.sh.Close()
	if err := r.idx.Flush(); err != nil {
		t.Fatal(err)
	}
	cat, _, err := r.idx.Load(r.opts.IndexKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cat {
		if c.Frames > 0 {
			t.Errorf("index.db claims %d frames (end %d) whose fsync failed", c.Frames, c.End)
		}
	}
}

// TestAgeRollOnFullDiskIsRecoverable: crash scenario "the disk is full when
// an idle shard's segment is old enough to roll". The roll cannot create the
// new segment; like a write that finds no space, that leaves the shard full,
// not poisoned, and it writes again once space is freed.
func TestAgeRollOnFullDiskIsRecoverable(t *testing.T) {
	var now atomic.Int64
	now.Store(1_700_000_000_000)
	logs := &lockedBuffer{}
	r := newRig(t, func(o *Options) {
		o.Sync, o.SyncInterval = SyncInterval, 5*time.Millisecond
		o.SegmentAge = time.Minute
		o.Now = func() time.Time { return time.UnixMilli(now.Load()) }
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})
	})
	r.append(1, "a")
	r.fs.SetCapacity(r.fs.Used())           // full: not one more byte
	now.Add(2 * time.Minute.Milliseconds()) // the next tick tries to roll
	for r.sh.Failed() == nil && !strings.Contains(logs.String(), "disk full") {
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.sh.Failed(); err != nil {
		t.Fatalf("the age roll on a full disk poisoned the shard: %v", err)
	}
	r.fs.SetCapacity(0)
	r.append(1, "b")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
