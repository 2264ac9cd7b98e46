package shard

import (
	"sync"

	"github.com/shardlog/shardlog/segment"
)

// sharedCacheBytes bounds the raw bytes of decoded frames a shard keeps for
// ReadShared: a few of the newest frames (the writer's frames are at most
// MaxFrameBytes, 4 MiB by default), which is where subscribers that keep up
// read.
const sharedCacheBytes = 8 << 20

// frameCache holds recently decoded frames, so that the subscribers of one
// shard decode each frame once between them, not once each: the first reader
// of a frame decodes it while the others wait for its result. Entries are
// evicted oldest first once their raw bytes exceed sharedCacheBytes; an
// evicted entry stays valid for readers that hold it. Errors are not cached.
type frameCache struct {
	mu    sync.Mutex
	m     map[frameKey]*frameEntry
	order []frameKey // insertion order, oldest first
	bytes int
}

// frameKey names a frame: segment IDs are never reused within a shard.
type frameKey struct {
	seg uint64
	off int64
}

type frameEntry struct {
	done chan struct{} // closed once recs and err are set
	recs []segment.Record
	err  error
	size int
}

// get returns the frame's records, decoding it with decode if no other
// reader has (or is doing so).
func (c *frameCache) get(k frameKey, size int, decode func() ([]segment.Record, error)) ([]segment.Record, error) {
	c.mu.Lock()
	if e := c.m[k]; e != nil {
		c.mu.Unlock()
		<-e.done
		return e.recs, e.err
	}
	if c.m == nil {
		c.m = map[frameKey]*frameEntry{}
	}
	e := &frameEntry{done: make(chan struct{}), size: size}
	c.m[k] = e
	c.order = append(c.order, k)
	c.bytes += size
	c.mu.Unlock()

	e.recs, e.err = decode()
	close(e.done)

	c.mu.Lock()
	defer c.mu.Unlock()
	if e.err != nil && c.m[k] == e {
		delete(c.m, k) // the next reader tries again
	}
	c.evictLocked()
	return e.recs, e.err
}

// evictLocked drops the oldest entries beyond the byte bound, keeping the
// newest one whatever its size.
func (c *frameCache) evictLocked() {
	for len(c.order) > 1 && c.bytes > sharedCacheBytes {
		k := c.order[0]
		c.order = c.order[1:]
		if e := c.m[k]; e != nil {
			c.bytes -= e.size
			delete(c.m, k)
		}
	}
	if len(c.order) == 0 || c.m[c.order[0]] == nil {
		c.rebuildLocked()
	}
}

// rebuildLocked recomputes order and bytes from the map after errors removed
// entries, so the accounting never drifts.
func (c *frameCache) rebuildLocked() {
	kept := c.order[:0]
	c.bytes = 0
	for _, k := range c.order {
		if e := c.m[k]; e != nil {
			kept = append(kept, k)
			c.bytes += e.size
		}
	}
	c.order = kept
}

// ReadShared is Read for many readers of the newest records (subscribers):
// each frame is decoded once and its records are shared among the readers
// through a small per-shard cache, so the returned records' Data and
// PartitionKey must be treated as read-only. It reads only what the writer
// has published.
func (s *Shard) ReadShared(from uint64, maxRecords, maxBytes int, minTs int64) (ReadResult, error) {
	return s.read(from, maxRecords, maxBytes, minTs, s.decodeShared)
}

// decodeShared decodes the frames at offs through the shard's frame cache.
func (s *Shard) decodeShared(r *segment.Reader, segID uint64, offs []int64) []decoded {
	out := make([]decoded, len(offs))
	for i, off := range offs {
		h, err := r.FrameHeaderAt(off)
		if err != nil {
			out[i].err = err
			return out[:i+1]
		}
		out[i].recs, out[i].err = s.frames.get(frameKey{segID, off}, int(h.RawLen), func() ([]segment.Record, error) {
			var recs []segment.Record
			_, err := r.ReadFrame(off, func(rec segment.Record) bool {
				recs = append(recs, rec)
				return true
			})
			return recs, err
		})
		if out[i].err != nil {
			return out[:i+1]
		}
	}
	return out
}
