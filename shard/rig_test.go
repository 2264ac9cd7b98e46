package shard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// rig is one shard on a MemFS, with its index.db in a temp directory, that
// can be crashed and reopened.
type rig struct {
	t    *testing.T
	fs   *vfs.MemFS
	dir  string
	comp *segment.Compressor
	idx  *index.Index
	sh   *Shard
	opts Options
	now  time.Time
}

const shardDir = "/data/streams/s-1/shardId-000000000000"

func newRig(t *testing.T, tweak func(*Options)) *rig {
	t.Helper()
	comp, err := segment.NewCompressor()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(comp.Close)
	r := &rig{t: t, fs: vfs.NewMemFS(), dir: t.TempDir(), comp: comp, now: time.UnixMilli(1_700_000_000_000)}
	r.opts = Options{FS: r.fs, Dir: shardDir, IndexKey: "s-1/shardId-000000000000", ShardKey: 42,
		Compressor: comp, Now: func() time.Time { return r.now }, FirstOrdinal: 1}
	if tweak != nil {
		tweak(&r.opts)
	}
	r.boot()
	t.Cleanup(func() {
		if r.sh != nil {
			r.sh.Close()
			r.idx.Close()
		}
	})
	return r
}

// boot opens the index and the shard, as a process start does.
func (r *rig) boot() {
	r.t.Helper()
	idx, _, err := index.Open(filepath.Join(r.dir, "index.db"), time.Hour)
	if err != nil {
		r.t.Fatal(err)
	}
	r.idx = idx
	opts := r.opts
	opts.Index = idx
	sh, err := Open(opts)
	if err != nil {
		r.t.Fatalf("open shard: %v", err)
	}
	r.sh = sh
}

// crash loses power: unsynced bytes and undurable names vanish (or tear),
// pending index updates are lost, and the process is gone.
func (r *rig) crash(rng *rand.Rand, mode vfs.TearMode) {
	r.fs.Crash(rng, mode)
	r.idx.Discard()
	r.sh.Close()
	r.sh, r.idx = nil, nil
}

// restart is a clean shutdown and start.
func (r *rig) restart() {
	r.sh.Close()
	r.idx.Close()
	r.boot()
}

func (r *rig) append(n int, tag string) []uint64 {
	r.t.Helper()
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{PartitionKey: fmt.Sprintf("pk-%d", i), Data: []byte(fmt.Sprintf(`{"tag":%q,"i":%d,"pad":"%s"}`, tag, i, strings.Repeat("x", 100)))}
	}
	res, err := r.sh.Append(context.Background(), entries, 0)
	if err != nil {
		r.t.Fatalf("append %s: %v", tag, err)
	}
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = res.First + uint64(i)
	}
	r.now = r.now.Add(time.Millisecond)
	return seqs
}

// readAll reads the whole shard from ordinal 0 in small pages.
func (r *rig) readAll() []segment.Record {
	r.t.Helper()
	var out []segment.Record
	from := uint64(0)
	for {
		res, err := r.sh.Read(from, 7, 1<<20, 0)
		if err != nil {
			r.t.Fatalf("read from %d: %v", from, err)
		}
		out = append(out, res.Records...)
		if res.AtTip && len(res.Records) == 0 {
			return out
		}
		from = res.Next
	}
}

func (r *rig) segFiles() []string {
	names, _ := r.fs.ReadDir(shardDir)
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ".seg") {
			out = append(out, shardDir+"/"+n)
		}
	}
	return out
}

func seqsOf(recs []segment.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}
