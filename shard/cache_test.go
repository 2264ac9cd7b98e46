package shard

import (
	"context"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

func TestCacheWindowDropsOldestSyncedBytes(t *testing.T) {
	const M = 1 << 20
	type sync struct {
		path string
		end  int64
	}
	tests := []struct {
		name   string
		limit  int64
		syncs  []sync
		drops  []vfs.CacheDrop // Path, Off, N
		cached int64
	}{
		{name: "under the window plus one step: nothing dropped", limit: 4 * M,
			syncs: []sync{{"/a", 2 * M}, {"/a", 5*M - 1}}, cached: 5*M - 1},
		{name: "one step over: drops down to the window", limit: 4 * M,
			syncs:  []sync{{"/a", 3 * M}, {"/a", 5 * M}},
			drops:  []vfs.CacheDrop{{Path: "/a", Off: 0, N: M}},
			cached: 4 * M},
		{name: "later drops continue where the last ended", limit: 2 * M,
			syncs:  []sync{{"/a", 3 * M}, {"/a", 4 * M}, {"/a", 6 * M}},
			drops:  []vfs.CacheDrop{{Path: "/a", Off: 0, N: M}, {Path: "/a", Off: M, N: M}, {Path: "/a", Off: 2 * M, N: 2 * M}},
			cached: 2 * M},
		{name: "a roll: the sealed segment is dropped before the active one", limit: M,
			syncs:  []sync{{"/a", M / 2}, {"/b", 3 * M}},
			drops:  []vfs.CacheDrop{{Path: "/a", Off: 0, N: M / 2}, {Path: "/b", Off: 0, N: 2 * M}},
			cached: M},
		{name: "a removed segment is skipped", limit: M,
			syncs:  []sync{{"/gone", M}, {"/b", 2 * M}},
			drops:  []vfs.CacheDrop{{Path: "/b", Off: 0, N: M}},
			cached: M},
		{name: "a repeated or older end changes nothing", limit: M,
			syncs: []sync{{"/a", M}, {"/a", M}, {"/a", M / 2}}, cached: M},
		{name: "negative limit never drops", limit: -1,
			syncs: []sync{{"/a", 64 * M}, {"/b", 64 * M}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			for _, p := range []string{"/a", "/b"} {
				f, err := fs.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			obs := &dropCounter{}
			c := cacheWindow{fs: fs, obs: obs, limit: tt.limit}
			for _, s := range tt.syncs {
				c.synced(s.path, s.end)
			}
			var got []vfs.CacheDrop
			var bytes int64
			for _, d := range fs.CacheDrops() {
				got = append(got, vfs.CacheDrop{Path: d.Path, Off: d.Off, N: d.N})
				bytes += d.N
			}
			if !slices.Equal(got, tt.drops) {
				t.Errorf("drops = %+v, want %+v", got, tt.drops)
			}
			if obs.drops != len(got) || obs.bytes != bytes {
				t.Errorf("observer told of %d drops, %d bytes; want %d, %d", obs.drops, obs.bytes, len(got), bytes)
			}
			if c.cached != tt.cached {
				t.Errorf("cached = %d, want %d", c.cached, tt.cached)
			}
		})
	}
}

// dropCounter is an Observer counting page-cache drops.
type dropCounter struct {
	nopObserver
	drops int
	bytes int64
}

func (d *dropCounter) DroppedCache(n int64) { d.drops++; d.bytes += n }

// TestShardDropsOnlySyncedPages appends well past a 1 MiB window under both
// policies and checks every drop the shard made: it covered synced bytes
// only, drops of one file never overlap or go backwards, and all but about a
// window plus a step of what was written was dropped.
func TestShardDropsOnlySyncedPages(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run([]string{"always", "interval"}[mode], func(t *testing.T) {
			r := newRig(t, func(o *Options) {
				o.Sync, o.SyncInterval = mode, time.Millisecond
				o.CacheWindow, o.SegmentSize = 1<<20, 3<<20
			})
			data := make([]byte, 64<<10)
			entries := make([]Entry, 4)
			for range 160 { // 40 MiB, incompressible, so stored = written
				for i := range entries {
					rand.Read(data)
					entries[i] = Entry{PartitionKey: "k", Data: append([]byte(nil), data...)}
				}
				if _, err := r.sh.Append(context.Background(), entries, 0); err != nil {
					t.Fatal(err)
				}
			}
			r.restart() // settles the writer and syncer: the drop log is final
			var dropped int64
			next := map[string]int64{}
			for _, d := range r.fs.CacheDrops() {
				if d.Off+d.N > d.SyncedBytes {
					t.Fatalf("dropped %s [%d, %d) with only %d bytes synced", d.Path, d.Off, d.Off+d.N, d.SyncedBytes)
				}
				if d.Off != next[d.Path] {
					t.Fatalf("drop of %s starts at %d, want %d", d.Path, d.Off, next[d.Path])
				}
				next[d.Path] = d.Off + d.N
				dropped += d.N
			}
			var written int64
			for _, p := range r.segFiles() {
				f, _ := r.fs.Open(p)
				n, _ := f.Size()
				f.Close()
				written += n
			}
			if kept := written - dropped; kept < 1<<20 || kept > 2<<20+4<<20 {
				t.Errorf("wrote %d bytes, dropped %d: %d left cached, want about 1 MiB (at most a step and a frame more)", written, dropped, kept)
			}
			if len(r.readAll()) != 640 {
				t.Errorf("records readable after drops: want 640")
			}
		})
	}
}
