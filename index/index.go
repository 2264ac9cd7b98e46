package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shardlog/shardlog/datadir"
)

// Segment is the catalog entry of one segment file.
type Segment struct {
	ID       uint64
	FirstSeq uint64 // from the file header
	LastSeq  uint64 // last record's ordinal; meaningless when Frames == 0
	MinTs    int64
	MaxTs    int64
	End      int64 // offset just past the last frame
	Frames   int64
	Records  int64
}

// Seek is a sparse index point: the frame at (SegID, Offset) starts with Seq.
type Seek struct {
	Seq    uint64
	SegID  uint64
	Offset int64
	Ts     int64 // the frame's MinTs
}

// Update is one shard's change to the index.
type Update struct {
	Shard    string    // the shard's key, e.g. "<stream dir>/<shardId>"
	Replace  bool      // drop everything stored for Shard first (recovery, rebuild)
	Drop     bool      // drop the shard entirely (stream deleted)
	Segments []Segment // upserted catalog entries
	Seeks    []Seek    // added seek points
	Remove   []uint64  // segment IDs whose entries and seek points go away (retention)
}

// Index is the derived index. Updates are queued and committed in batches by
// one goroutine, at most every interval, so bbolt's two fsyncs per commit are
// paid once per batch, never per record.
//
// Invariant kept by callers: an Update is submitted only after the segment
// bytes it describes are synced, so the index may lag the segments but never
// leads them.
type Index struct {
	db       *bolt.DB
	interval time.Duration

	mu      sync.Mutex
	pending []Update
	flushed chan struct{} // closed and replaced after each commit
	err     error         // sticky commit error
	discard bool          // after Discard: updates are dropped, as after a crash
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	stop    sync.Once
	dbErr   error // from closing the file, once
}

// Open opens index.db at path. If the file is unreadable it is moved aside to
// path+".corrupt" and a fresh one is created; rebuilt reports that, and
// shards then rebuild their entries from the segments.
func Open(path string, interval time.Duration) (ix *Index, rebuilt bool, err error) {
	db, err := openBolt(path, false)
	if err != nil && !errors.Is(err, ErrLocked) {
		if rerr := os.Rename(path, path+datadir.CorruptExt); rerr != nil {
			return nil, false, fmt.Errorf("%w (and moving it aside failed: %v)", err, rerr)
		}
		db, err = openBolt(path, false)
		rebuilt = true
	}
	if err != nil {
		return nil, false, err
	}
	ix = &Index{db: db, interval: interval, flushed: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{})}
	ix.wg.Add(1)
	go ix.loop()
	return ix, rebuilt, nil
}

// OpenReadOnly opens index.db for inspection without a committer.
func OpenReadOnly(path string) (*Index, error) {
	db, err := openBolt(path, true)
	if err != nil {
		return nil, err
	}
	return &Index{db: db}, nil
}

// Submit queues u for the next batch commit.
func (ix *Index) Submit(u Update) {
	ix.mu.Lock()
	if !ix.discard {
		ix.pending = append(ix.pending, u)
	}
	ix.mu.Unlock()
}

// Flush commits everything submitted so far and waits for it.
func (ix *Index) Flush() error {
	ix.mu.Lock()
	ch := ix.flushed
	if ix.discard || ix.done == nil {
		ix.mu.Unlock()
		return ix.err
	}
	ix.mu.Unlock()
	select {
	case ix.kick <- struct{}{}:
	default:
	}
	<-ch
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.err
}

func (ix *Index) loop() {
	defer ix.wg.Done()
	t := time.NewTicker(ix.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ix.kick:
		case <-ix.done:
			ix.commit()
			return
		}
		ix.commit()
	}
}

func (ix *Index) commit() {
	ix.mu.Lock()
	batch, ch := ix.pending, ix.flushed
	ix.pending, ix.flushed = nil, make(chan struct{})
	ix.mu.Unlock()
	var err error
	if len(batch) > 0 {
		err = ix.db.Update(func(tx *bolt.Tx) error {
			for _, u := range batch {
				if err := apply(tx, u); err != nil {
					return err
				}
			}
			return nil
		})
	}
	ix.mu.Lock()
	if err != nil && ix.err == nil {
		ix.err = fmt.Errorf("index commit: %w", err)
	}
	ix.mu.Unlock()
	close(ch)
}

// Close commits what is pending and closes the file. It is idempotent.
func (ix *Index) Close() error {
	ix.shutdown()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.err != nil {
		return ix.err
	}
	return ix.dbErr
}

// shutdown stops the committer (which commits what is pending) and closes
// the file, once.
func (ix *Index) shutdown() {
	ix.stop.Do(func() {
		if ix.done != nil {
			close(ix.done)
			ix.wg.Wait()
		}
		ix.dbErr = ix.db.Close()
	})
}

var (
	bSegs  = []byte("seg")
	bSeeks = []byte("seek")
)

func apply(tx *bolt.Tx, u Update) error {
	key := []byte(u.Shard)
	if u.Replace || u.Drop {
		if tx.Bucket(key) != nil {
			if err := tx.DeleteBucket(key); err != nil {
				return err
			}
		}
		if u.Drop {
			return nil
		}
	}
	sb, err := tx.CreateBucketIfNotExists(key)
	if err != nil {
		return err
	}
	segs, err := sb.CreateBucketIfNotExists(bSegs)
	if err != nil {
		return err
	}
	seeks, err := sb.CreateBucketIfNotExists(bSeeks)
	if err != nil {
		return err
	}
	for _, s := range u.Segments {
		if err := segs.Put(u64(s.ID), encodeSegment(s)); err != nil {
			return err
		}
	}
	for _, s := range u.Seeks {
		if err := seeks.Put(u64(s.Seq), encodeSeek(s)); err != nil {
			return err
		}
	}
	return removeSegments(segs, seeks, u.Remove)
}

func removeSegments(segs, seeks *bolt.Bucket, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	gone := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		gone[id] = true
		if err := segs.Delete(u64(id)); err != nil {
			return err
		}
	}
	c := seeks.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if s, ok := decodeSeek(k, v); ok && gone[s.SegID] {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Load returns a shard's catalog (by segment ID) and seek points (by sequence).
func (ix *Index) Load(shard string) ([]Segment, []Seek, error) {
	var segs []Segment
	var seeks []Seek
	err := ix.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket([]byte(shard))
		if sb == nil {
			return nil
		}
		if b := sb.Bucket(bSegs); b != nil {
			b.ForEach(func(k, v []byte) error {
				if s, ok := decodeSegment(k, v); ok {
					segs = append(segs, s)
				}
				return nil
			})
		}
		if b := sb.Bucket(bSeeks); b != nil {
			b.ForEach(func(k, v []byte) error {
				if s, ok := decodeSeek(k, v); ok {
					seeks = append(seeks, s)
				}
				return nil
			})
		}
		return nil
	})
	return segs, seeks, err
}

// Shards lists the shard keys present in the index.
func (ix *Index) Shards() ([]string, error) {
	var out []string
	err := ix.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			out = append(out, string(name))
			return nil
		})
	})
	return out, err
}

// Check runs bbolt's own consistency check.
func (ix *Index) Check() []error {
	var errs []error
	ix.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	return errs
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// Values are fixed-width big-endian records; a version byte leads so the
// layout can grow.
const (
	segValueLen  = 1 + 8*7
	seekValueLen = 1 + 8*3
)

func encodeSegment(s Segment) []byte {
	b := []byte{1}
	for _, v := range []uint64{s.FirstSeq, s.LastSeq, uint64(s.MinTs), uint64(s.MaxTs), uint64(s.End), uint64(s.Frames), uint64(s.Records)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func decodeSegment(k, v []byte) (Segment, bool) {
	if len(k) != 8 || len(v) != segValueLen || v[0] != 1 {
		return Segment{}, false
	}
	f := func(i int) uint64 { return binary.BigEndian.Uint64(v[1+8*i:]) }
	return Segment{ID: binary.BigEndian.Uint64(k), FirstSeq: f(0), LastSeq: f(1), MinTs: int64(f(2)), MaxTs: int64(f(3)),
		End: int64(f(4)), Frames: int64(f(5)), Records: int64(f(6))}, true
}

func encodeSeek(s Seek) []byte {
	b := []byte{1}
	for _, v := range []uint64{s.SegID, uint64(s.Offset), uint64(s.Ts)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func decodeSeek(k, v []byte) (Seek, bool) {
	if len(k) != 8 || len(v) != seekValueLen || v[0] != 1 {
		return Seek{}, false
	}
	return Seek{Seq: binary.BigEndian.Uint64(k), SegID: binary.BigEndian.Uint64(v[1:]),
		Offset: int64(binary.BigEndian.Uint64(v[9:])), Ts: int64(binary.BigEndian.Uint64(v[17:]))}, true
}

// Discard drops every pending update and closes the file without committing
// them, as a crash would. Tests use it to simulate power loss.
func (ix *Index) Discard() error {
	ix.mu.Lock()
	ix.pending = nil
	ix.discard = true
	ix.mu.Unlock()
	ix.shutdown()
	return nil
}
