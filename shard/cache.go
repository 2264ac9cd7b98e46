package shard

import "github.com/shardlog/shardlog/vfs"

// cacheWindow bounds how much of a shard's synced segment data stays in the
// OS page cache: once more than limit bytes have been synced since the
// oldest range still held, the oldest bytes are dropped (File.DropCache,
// posix_fadvise DONTNEED), in steps of at least cacheDropStep.
//
// Why drop at all: an append-only log writes every byte once into a new page,
// so without this the page cache grows by everything written until the
// kernel reclaims it. Dropping pages that are already on disk hands the same
// warm pages back to the next writes. On this project's Firecracker VM, whose
// free memory is returned to the host (free page reporting), writing into
// fresh pages cost 2-4 ms of system CPU per MiB written and held 4 MiB
// fdatasync'd appends to 240-430 MB/s; recycling them gave 1.0-1.5 GB/s
// (BENCHMARKS.md, "Against the disk at the frame size"). Elsewhere it keeps shardlog from filling memory with
// cold log pages. The cost: a consumer more than the window behind the tip
// reads from disk instead of memory.
//
// Only synced bytes are ever dropped (DONTNEED would merely start writeback
// of dirty ones, but the window makes no such claims). Used by one goroutine
// at a time: the one that acknowledges frames (the syncer under SyncAlways,
// the writer under SyncInterval).
type cacheWindow struct {
	fs     vfs.FS
	obs    Observer    // told of each drop; nil: nobody
	limit  int64       // < 0: never drop
	spans  []cacheSpan // oldest first
	cached int64       // bytes in spans
}

// cacheSpan is a synced range of one segment not yet dropped.
type cacheSpan struct {
	path     string
	from, to int64
}

// cacheDropStep is the least a drop covers, so small frames do not each pay
// for extra system calls.
const cacheDropStep = 1 << 20

// synced records that path is durable up to end.
func (c *cacheWindow) synced(path string, end int64) {
	if c.limit < 0 {
		return
	}
	if n := len(c.spans); n > 0 && c.spans[n-1].path == path {
		last := &c.spans[n-1]
		if end > last.to {
			c.cached += end - last.to
			last.to = end
		}
	} else {
		c.spans = append(c.spans, cacheSpan{path: path, to: end})
		c.cached += end
	}
	if c.cached >= c.limit+cacheDropStep {
		c.drop(c.cached - c.limit)
	}
}

// drop drops the oldest n bytes. Each drop opens the segment afresh rather
// than holding a descriptor, which would keep a file that retention deletes
// taking disk space. Failures are ignored: the pages just stay cached (or
// the file is gone).
func (c *cacheWindow) drop(n int64) {
	for n > 0 && len(c.spans) > 0 {
		sp := &c.spans[0]
		if k := min(n, sp.to-sp.from); k > 0 {
			if f, err := c.fs.Open(sp.path); err == nil {
				if f.DropCache(sp.from, k) == nil && c.obs != nil {
					c.obs.DroppedCache(k)
				}
				f.Close()
			}
			sp.from += k
			c.cached -= k
			n -= k
		}
		if sp.from < sp.to || len(c.spans) == 1 { // the newest span stays for growth
			return
		}
		c.spans = c.spans[1:]
	}
}
