package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// TestLayoutVerifiesClean: a data directory the server wrote verifies clean.
// The server (storage) writes the layout and fsck reads it, both through
// package datadir; if what one writes and the other expects ever drift
// apart (directory names, index and shard keys, meta.db's records, LOCK),
// verify reports errors or warnings here. The directory holds several
// streams (one whose name has '-' and '.'), an UpdateShardCount and a split
// (closed parents, children), segments retention deleted, an index.db the
// server rebuilt after a repair, and a shard whose repair wrote a floor
// segment.
func TestLayoutVerifiesClean(t *testing.T) {
	l := newLayoutRig(t)
	s := l.open()
	l.writeHistory(s)
	l.checkLive(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l.verifyClean("after the server wrote it")
	rep, err := fsck.Repair(fsck.Options{Dir: l.dir}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Actions) != 0 || rep.ExitCode() != fsck.ExitOK {
		t.Fatalf("repair of a healthy directory acted:\n%s", reportText(t, rep))
	}

	shard := l.dropNewestData()
	rep, err = fsck.Repair(fsck.Options{Dir: l.dir}, false)
	if err != nil {
		t.Fatal(err)
	}
	floor := slices.ContainsFunc(rep.Actions, func(a fsck.Action) bool { return a.Kind == "floor" && a.File == shard })
	if !floor || rep.ExitCode() != fsck.ExitRepaired {
		t.Fatalf("repair of %s: want exit 3 and a floor segment:\n%s", shard, reportText(t, rep))
	}
	if v := l.verifyClean("after the repair"); !hasCode(v, fsck.ISeqFloor) {
		t.Fatalf("verify after the repair does not report the floor:\n%s", reportText(t, v))
	}

	// The server opens the repaired directory, rebuilds index.db and takes
	// writes on every open shard; what it leaves verifies clean too.
	s = l.open()
	l.putAll(s, "after-repair", 40)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l.verifyClean("after the server ran on the repaired directory")
}

// layoutRig is a data directory on the real filesystem and a store clock
// that moves only when told. The clock starts in the past, so the stream
// status timers (real time) fire at once.
type layoutRig struct {
	t   *testing.T
	dir string
	mu  sync.Mutex
	now time.Time
	rng *rand.Rand
	// wantShards is how many shards the server listed, open and closed.
	wantShards int
}

var layoutStreams = []struct {
	name   string
	shards int
}{{"orders", 2}, {"events", 1}, {"audit-log.v2", 3}}

func newLayoutRig(t *testing.T) *layoutRig {
	return &layoutRig{t: t, dir: t.TempDir(), now: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(3, 5))}
}

func (l *layoutRig) clock() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

func (l *layoutRig) advance(d time.Duration) {
	l.mu.Lock()
	l.now = l.now.Add(d)
	l.mu.Unlock()
}

func (l *layoutRig) open() *storage.Store {
	l.t.Helper()
	s, err := storage.Open(context.Background(), storage.Options{Dir: l.dir, FS: vfs.OS{}, Now: l.clock,
		SegmentSize: 4 << 10, IndexInterval: time.Millisecond})
	if err != nil {
		l.t.Fatal(err)
	}
	return s
}

// writeHistory creates the streams, fills them, reshards two of them a day
// later, writes to the children, and lets retention delete the first day's
// segments.
func (l *layoutRig) writeHistory(s *storage.Store) {
	t, ctx := l.t, context.Background()
	for _, st := range layoutStreams {
		if err := s.CreateStream(ctx, storage.CreateStreamInput{Name: st.name, ShardCount: st.shards}); err != nil {
			t.Fatal(err)
		}
	}
	l.putAll(s, "old", 120)
	l.advance(23 * time.Hour)
	if _, err := s.UpdateShardCount(ctx, "orders", 4); err != nil {
		t.Fatal(err)
	}
	if err := s.SplitShard(ctx, "events", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Fatal(err)
	}
	l.putAll(s, "new", 80)
	l.advance(2 * time.Hour) // the old records are 25 h old, the new ones 2 h
	before := l.segmentFiles()
	s.EnforceRetention()
	if after := l.segmentFiles(); after >= before {
		t.Fatalf("retention deleted no segment: %d before, %d after", before, after)
	}
}

// putAll puts n batches of records into every stream, a few milliseconds
// apart. The data is random, so that it does not compress and the small
// segments roll.
func (l *layoutRig) putAll(s *storage.Store, tag string, n int) {
	l.t.Helper()
	for i := range n {
		for _, st := range layoutStreams {
			entries := make([]storage.PutEntry, 3)
			for j := range entries {
				data := make([]byte, 100+l.rng.IntN(100))
				for k := range data {
					data[k] = byte(l.rng.Uint32())
				}
				entries[j] = storage.PutEntry{PartitionKey: fmt.Sprintf("%s-%d-%d", tag, i, j), Data: data}
			}
			res, err := s.Put(context.Background(), st.name, entries)
			if err != nil {
				l.t.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil {
					l.t.Fatalf("put to %s: %v", st.name, r.Err)
				}
			}
		}
		l.advance(5 * time.Millisecond)
	}
}

func (l *layoutRig) segmentFiles() int {
	l.t.Helper()
	segs, err := filepath.Glob(filepath.Join(l.dir, "streams", "*", "*", "*.seg"))
	if err != nil {
		l.t.Fatal(err)
	}
	return len(segs)
}

// checkLive: beside the running server, verify sees the LOCK it holds and
// reports W_IN_USE, and repair refuses to run.
func (l *layoutRig) checkLive(s *storage.Store) {
	t := l.t
	rep, err := fsck.Verify(fsck.Options{Dir: l.dir})
	if err != nil {
		t.Fatal(err)
	}
	if !hasCode(rep, fsck.WInUse) {
		t.Fatalf("verify beside the server does not report it:\n%s", reportText(t, rep))
	}
	if _, err := fsck.Repair(fsck.Options{Dir: l.dir}, false); !errors.Is(err, fsck.ErrInUse) {
		t.Fatalf("repair beside the server: %v, want ErrInUse", err)
	}
	if _, err := storage.Open(context.Background(), storage.Options{Dir: l.dir, FS: vfs.OS{}}); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("a second server on the directory: %v, want ErrLocked", err)
	}
	l.wantShards = l.shardCount(s)
}

// shardCount is how many shards (open and closed) the server lists.
func (l *layoutRig) shardCount(s *storage.Store) int {
	n := 0
	for _, st := range layoutStreams {
		info, err := s.DescribeStream(context.Background(), st.name)
		if err != nil {
			l.t.Fatal(err)
		}
		n += len(info.Shards)
	}
	return n
}

// verifyClean runs a deep verify and fails on any error or warning, or if it
// did not find every shard the server listed.
func (l *layoutRig) verifyClean(when string) *fsck.Report {
	t := l.t
	t.Helper()
	rep, err := fsck.Verify(fsck.Options{Dir: l.dir, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Warnings != 0 || rep.ExitCode() != fsck.ExitOK {
		t.Fatalf("verify %s: want no errors or warnings:\n%s", when, reportText(t, rep))
	}
	if len(rep.Shards) != l.wantShards {
		t.Fatalf("verify %s checked %d shards, the server lists %d:\n%s", when, len(rep.Shards), l.wantShards, reportText(t, rep))
	}
	return rep
}

// dropNewestData restarts the server, after which every shard's newest
// segment is an empty one, and deletes the segment before it in a shard of
// orders: the shard loses its highest acknowledged records, so repair must
// write a floor segment (see fsck/floor.go). It returns the shard's
// directory, relative to the data directory.
func (l *layoutRig) dropNewestData() string {
	t := l.t
	if err := l.open().Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := fsck.Verify(fsck.Options{Dir: l.dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range rep.Shards {
		if !strings.HasPrefix(sh.Dir, "streams/orders-") {
			continue
		}
		var segs []fsck.SegmentSummary
		for _, sg := range rep.Segments {
			if strings.HasPrefix(sg.File, sh.Dir+"/") {
				segs = append(segs, sg)
			}
		}
		if n := len(segs); n >= 2 && segs[n-1].Frames == 0 && segs[n-2].Frames > 0 {
			if err := os.Remove(filepath.Join(l.dir, segs[n-2].File)); err != nil {
				t.Fatal(err)
			}
			return sh.Dir
		}
	}
	t.Fatalf("no shard of orders ends in a segment with frames and an empty one:\n%s", reportText(t, rep))
	return ""
}

func hasCode(rep *fsck.Report, c fsck.Code) bool {
	return slices.ContainsFunc(rep.Problems, func(p fsck.Problem) bool { return p.Code == c })
}

// verifyClean runs a deep fsck verify of the (stopped) server's data
// directory and fails the test on any error or warning, after what.
func verifyClean(t *testing.T, dir, what string) {
	t.Helper()
	rep, err := fsck.Verify(fsck.Options{Dir: dir, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors+rep.Warnings > 0 {
		t.Fatalf("fsck %s:\n%s", what, reportText(t, rep))
	}
}

func reportText(t *testing.T, rep *fsck.Report) string {
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
