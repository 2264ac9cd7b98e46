package segment

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"github.com/shardlog/shardlog/vfs"
)

var (
	// ErrInvalidBatch is returned by Append for a batch that would make an
	// invalid frame: empty, too large, or out of order within itself or after
	// the frames already written. Nothing is written and the Writer stays
	// usable.
	ErrInvalidBatch = errors.New("segment: invalid record batch")
	// ErrClosed is returned by a closed Writer.
	ErrClosed = errors.New("segment: writer closed")
)

// Writer appends frames to one segment file. It is used by exactly one
// goroutine, the shard's writer; Committed may be read by any goroutine.
//
// A frame is written with one WriteAt and is durable, and may be acknowledged,
// only once Sync returns nil. The first write or sync failure is sticky: the
// Writer returns it from every later Append, and a sync failure from every
// later Sync, because after a failed fsync the kernel may already have
// dropped the dirty pages, so a retried fsync that succeeds proves nothing.
// The shard must go through recovery. (Sync after a failed write is allowed:
// it makes the whole frames before it durable.)
type Writer struct {
	f    vfs.File
	path string
	c    *Compressor
	hdr  FileHeader
	ci   *Cipher // the data key's, for an encrypted segment; else nil

	// Owned by the writer goroutine.
	end     int64  // offset just past the last frame written
	lastCRC uint32 // CRC of the last frame written, 0 if none
	lastSeq uint64 // LastSeq of the last frame written
	maxTs   int64  // MaxTs of the last frame written
	frames  int
	err     error // sticky: the first write or sync failure, or ErrClosed
	syncErr error // sticky: the first sync failure

	rawStreak int // frames in a row stored raw because they did not compress
	skip      int // frames still to store raw without trying compression
	probes    int // frames for which compression was tried (tests read it)

	// committed is the end offset as of the last successful Sync, published
	// for readers: every byte below it is durable and a valid frame sequence.
	committed atomic.Int64
}

// Create creates a new segment file at path (failing if it exists), writes and
// syncs its header, then syncs the parent directory, so that the file exists
// durably before any record in it is acknowledged. On failure it removes what
// it created.
func Create(fs vfs.FS, path string, h FileHeader, c *Compressor) (*Writer, error) {
	if h.Encrypted() {
		return nil, errors.New("segment: Create: FlagEncrypted needs CreateEncrypted")
	}
	return create(fs, path, h, c, nil)
}

// CreateEncrypted is Create for an encrypted segment: it draws a fresh data
// key, wraps it with m into the header's key block (setting FlagEncrypted),
// and the Writer seals every frame with it.
func CreateEncrypted(fs vfs.FS, path string, h FileHeader, c *Compressor, m MasterKey) (*Writer, error) {
	kb, ci, err := NewKeyBlock(m)
	if err != nil {
		return nil, err
	}
	h.Flags |= FlagEncrypted
	h.Key = kb
	return create(fs, path, h, c, ci)
}

func create(fs vfs.FS, path string, h FileHeader, c *Compressor, ci *Cipher) (*Writer, error) {
	if c == nil {
		return nil, errors.New("segment: Create: nil Compressor")
	}
	f, err := fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("segment: create %s: %w", path, err)
	}
	if err := writeHeader(fs, f, path, h); err != nil {
		f.Close()
		fs.Remove(path) // best effort: recovery also treats a torn creation
		return nil, err
	}
	w := &Writer{f: f, path: path, c: c, hdr: h, ci: ci, end: h.Size()}
	w.committed.Store(h.Size())
	return w, nil
}

func writeHeader(fs vfs.FS, f vfs.File, path string, h FileHeader) error {
	if _, err := f.WriteAt(h.Encode(), 0); err != nil {
		return fmt.Errorf("segment: write header of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("segment: sync %s: %w", path, err)
	}
	if err := fs.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("segment: sync directory of %s: %w", path, err)
	}
	return nil
}

// Append encodes recs as one frame, chained to the previous one, and writes it
// with a single WriteAt at the end of the file. It does not sync. recs must be
// non-empty, have strictly increasing Seq and non-decreasing ArrivalMs, start
// after the last sequence written (and at or after the file header's FirstSeq)
// and not arrive before the last frame's MaxTs; otherwise Append returns
// ErrInvalidBatch and writes nothing.
func (w *Writer) Append(recs []Record) (FrameInfo, error) {
	if w.err != nil {
		return FrameInfo{}, w.err
	}
	if err := w.checkBatch(recs); err != nil {
		return FrameInfo{}, err
	}
	// The frame buffer comes from the shared pool and goes back once the
	// write has copied it, so idle shards hold no multi-MiB buffers.
	bufp := rawPool.Get().(*[]byte)
	defer putRaw(bufp)
	buf, h := w.encode((*bufp)[:0], recs)
	*bufp = buf
	if _, err := w.f.WriteAt(buf, w.end); err != nil {
		w.err = fmt.Errorf("segment: write %s at %d: %w", w.path, w.end, err)
		return FrameInfo{}, w.err
	}
	info := FrameInfo{Offset: w.end, FrameHeader: h}
	w.end += int64(len(buf))
	w.lastCRC, w.lastSeq, w.maxTs = h.CRC, h.LastSeq, h.MaxTs
	w.frames++
	return info, nil
}

// Compression is adaptive: after rawStreakToSkip frames in a row that did
// not compress, the next skipFrames frames are stored raw without trying;
// then one frame is probed, and while probes keep failing every probe is
// followed by another skipFrames raw frames. Incompressible data (already
// compressed or encrypted payloads) then pays a compression attempt on one
// frame in skipFrames+1, and data that starts compressing is noticed within
// skipFrames+1 frames. (Restarting the streak after each skip, as a first
// version did, tried compression on 8 frames in 40: a fifth of the CPU of
// incompressible appends went to failed zstd attempts.)
const (
	rawStreakToSkip = 8
	skipFrames      = 32
)

func (w *Writer) encode(dst []byte, recs []Record) ([]byte, FrameHeader) {
	if w.skip > 0 {
		w.skip--
		return w.c.encodeFrame(dst, recs, w.lastCRC, false, w.ci)
	}
	w.probes++
	buf, h := w.c.encodeFrame(dst, recs, w.lastCRC, true, w.ci)
	if h.Codec == CodecNone {
		w.rawStreak++
	} else {
		w.rawStreak = 0
	}
	if w.rawStreak >= rawStreakToSkip {
		w.skip = skipFrames
	}
	return buf, h
}

// AdoptHistory continues prev's compression history in w, so that rolling to
// a new segment (every 16 frames of 4 MiB at the default size) does not make
// incompressible data pay rawStreakToSkip compression attempts again.
func (w *Writer) AdoptHistory(prev *Writer) {
	w.rawStreak, w.skip = prev.rawStreak, prev.skip
}

// checkBatch refuses a batch that Scan would reject once written.
func (w *Writer) checkBatch(recs []Record) error {
	if len(recs) == 0 {
		return fmt.Errorf("%w: no records", ErrInvalidBatch)
	}
	if n := RawSize(recs); n > MaxFramePayload {
		return fmt.Errorf("%w: %d raw bytes exceeds %d", ErrInvalidBatch, n, MaxFramePayload)
	}
	first := recs[0]
	switch {
	case w.frames == 0 && first.Seq < w.hdr.FirstSeq:
		return fmt.Errorf("%w: seq %d before the segment's first seq %d", ErrInvalidBatch, first.Seq, w.hdr.FirstSeq)
	case w.frames > 0 && first.Seq <= w.lastSeq:
		return fmt.Errorf("%w: seq %d does not follow seq %d", ErrInvalidBatch, first.Seq, w.lastSeq)
	case w.frames > 0 && first.ArrivalMs < w.maxTs:
		return fmt.Errorf("%w: arrival %d before %d", ErrInvalidBatch, first.ArrivalMs, w.maxTs)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq || recs[i].ArrivalMs < recs[i-1].ArrivalMs {
			return fmt.Errorf("%w: record %d (seq %d, arrival %d) out of order", ErrInvalidBatch, i, recs[i].Seq, recs[i].ArrivalMs)
		}
	}
	return nil
}

// Sync makes every frame appended so far durable (fdatasync) and then
// publishes the new end as Committed. It still works after a failed write
// (the frames before it are whole; the failed one is past Size, for recovery
// or the caller to cut): a shard that ran out of space must still make the
// frames it acknowledged under SyncInterval durable. After a failed sync, or
// once closed, it returns that error.
func (w *Writer) Sync() error {
	if w.syncErr != nil {
		return w.syncErr
	}
	if w.f == nil {
		return w.err
	}
	if w.end == w.committed.Load() {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		w.syncErr = fmt.Errorf("segment: sync %s: %w", w.path, err)
		w.err = w.syncErr
		return w.err
	}
	w.committed.Store(w.end)
	return nil
}

// Committed is the end offset as of the last successful Sync: the bytes below
// it are durable, valid frames. Readers bound their reads by it, never by the
// file size. Safe to call from any goroutine.
func (w *Writer) Committed() int64 { return w.committed.Load() }

// Size is the end offset of the frames written so far, synced or not.
func (w *Writer) Size() int64 { return w.end }

// LastCRC is the CRC of the last frame written, 0 if none.
func (w *Writer) LastCRC() uint32 { return w.lastCRC }

// Header is the file header the segment was created with.
func (w *Writer) Header() FileHeader { return w.hdr }

// Path is the segment file's path.
func (w *Writer) Path() string { return w.path }

// Err is the sticky error, nil while the Writer is healthy.
func (w *Writer) Err() error { return w.err }

// Close closes the file without syncing it; Sync first to keep what was
// appended. Later calls to Append and Sync return ErrClosed (or the earlier
// sticky error).
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if w.err == nil {
		w.err = ErrClosed
	}
	if err != nil {
		return fmt.Errorf("segment: close %s: %w", w.path, err)
	}
	return nil
}
