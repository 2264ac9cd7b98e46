package segment

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// newWriter creates a segment in a fresh MemFS.
func newWriter(t *testing.T, c *Compressor) (*vfs.MemFS, *Writer) {
	t.Helper()
	fs := vfs.NewMemFS()
	if err := fs.MkdirAll("/shard"); err != nil {
		t.Fatal(err)
	}
	w, err := Create(fs, testPath, FileHeader{SegmentID: 42, FirstSeq: 100, Codec: CodecZstd}, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return fs, w
}

// scanFS scans a MemFS file with CRCs verified.
func scanFS(t *testing.T, fs *vfs.MemFS, path string) ScanResult {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Scan(f, size, ScanOptions{VerifyCRC: true})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCreateIsDurable(t *testing.T) {
	c := newTestCompressor(t)
	fs, w := newWriter(t, c)
	if w.Committed() != FileHeaderSize || w.Size() != FileHeaderSize || w.Path() != testPath {
		t.Fatalf("committed %d size %d path %s", w.Committed(), w.Size(), w.Path())
	}
	fs.Crash(nil, vfs.TearNone)
	res := scanFS(t, fs, testPath)
	if res.Header != w.Header() || res.Frames != 0 || res.Tail != TailClean {
		t.Fatalf("%+v", res)
	}
}

func TestCreateFails(t *testing.T) {
	c := newTestCompressor(t)
	fs := vfs.NewMemFS()
	fs.MkdirAll("/shard")
	if _, err := Create(fs, "/missing/x.seg", FileHeader{}, c); !vfs.IsNotExist(err) {
		t.Errorf("missing dir: %v", err)
	}
	fs.SetBytes(testPath, nil)
	if _, err := Create(fs, testPath, FileHeader{}, c); err == nil {
		t.Error("existing file: no error")
	}
	fs.FailNextSync(nil)
	if _, err := Create(fs, "/shard/b.seg", FileHeader{}, c); !errors.Is(err, vfs.ErrInjected) {
		t.Errorf("failed sync: %v", err)
	}
	if _, err := fs.Bytes("/shard/b.seg"); !vfs.IsNotExist(err) {
		t.Errorf("file left behind after failed create: %v", err)
	}
}

func TestWriterCommittedOnlyAfterSync(t *testing.T) {
	c := newTestCompressor(t)
	_, w := newWriter(t, c)
	rng := rand.New(rand.NewPCG(1, 1))
	f1, err := w.Append(jsonBatch(rng, 100, 1, 10, 200))
	if err != nil {
		t.Fatal(err)
	}
	if f1.Offset != FileHeaderSize || w.Size() != f1.End() || w.Committed() != FileHeaderSize || w.LastCRC() != f1.CRC {
		t.Fatalf("after append: frame %+v size %d committed %d", f1, w.Size(), w.Committed())
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if w.Committed() != f1.End() {
		t.Fatalf("committed %d, want %d", w.Committed(), f1.End())
	}
	f2, err := w.Append(jsonBatch(rng, 110, 10, 10, 200))
	if err != nil {
		t.Fatal(err)
	}
	if f2.Offset != f1.End() || f2.PrevCRC != f1.CRC || w.Committed() != f1.End() {
		t.Fatalf("second frame %+v, committed %d", f2, w.Committed())
	}
	if err := w.Sync(); err != nil || w.Committed() != f2.End() {
		t.Fatalf("sync: %v, committed %d", err, w.Committed())
	}
}

func TestWriterStickySyncError(t *testing.T) {
	c := newTestCompressor(t)
	fs, w := newWriter(t, c)
	rng := rand.New(rand.NewPCG(1, 2))
	if _, err := w.Append(jsonBatch(rng, 100, 1, 3, 100)); err != nil {
		t.Fatal(err)
	}
	fs.FailNextSync(nil)
	err := w.Sync()
	if !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("sync: %v", err)
	}
	if w.Committed() != FileHeaderSize {
		t.Fatalf("committed %d after failed sync", w.Committed())
	}
	// The fault is gone, but the writer must not trust a retried fsync.
	if err2 := w.Sync(); !errors.Is(err2, vfs.ErrInjected) {
		t.Fatalf("second sync: %v", err2)
	}
	if _, err2 := w.Append(jsonBatch(rng, 200, 1, 3, 100)); !errors.Is(err2, vfs.ErrInjected) {
		t.Fatalf("append after failed sync: %v", err2)
	}
	if w.Err() == nil || w.Committed() != FileHeaderSize {
		t.Fatalf("err %v, committed %d", w.Err(), w.Committed())
	}
}

// TestWriterStickyWriteError: after a failed write, Append keeps failing,
// while Sync still commits the frames before it.
func TestWriterStickyWriteError(t *testing.T) {
	for _, short := range []bool{false, true} {
		c := newTestCompressor(t)
		fs, w := newWriter(t, c)
		rng := rand.New(rand.NewPCG(1, 3))
		good, err := w.Append(jsonBatch(rng, 100, 1, 3, 100))
		if err != nil {
			t.Fatal(err)
		}
		fs.FailNextWrite(nil, short)
		if _, err := w.Append(jsonBatch(rng, 200, 2, 3, 100)); !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("short=%v: append: %v", short, err)
		}
		if w.Size() != good.End() {
			t.Fatalf("size advanced to %d after failed write", w.Size())
		}
		// Sync still makes the whole frame before the failed write durable
		// (a shard out of space must keep what it acknowledged), and only it.
		if err := w.Sync(); err != nil {
			t.Fatalf("sync after failed write: %v", err)
		}
		if _, err := w.Append(jsonBatch(rng, 300, 3, 3, 100)); !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("append after failed write: %v", err)
		}
		if w.Committed() != good.End() {
			t.Fatalf("committed %d, want %d", w.Committed(), good.End())
		}
		// What the failed write left is a torn tail after the good frame.
		res := scanFS(t, fs, testPath)
		wantTail := TailClean
		if short {
			wantTail = TailTorn
		}
		if res.Frames != 1 || res.Tail != wantTail || res.ValidEnd != good.End() {
			t.Fatalf("short=%v: %+v", short, res)
		}
	}
}

func TestWriterRejectsInvalidBatches(t *testing.T) {
	c := newTestCompressor(t)
	_, w := newWriter(t, c)
	if _, err := w.Append([]Record{{Seq: 100, ArrivalMs: 10}, {Seq: 102, ArrivalMs: 11}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		recs []Record
	}{
		{"empty", nil},
		{"seq repeats the last frame", []Record{{Seq: 102, ArrivalMs: 11}}},
		{"seq before the last frame", []Record{{Seq: 50, ArrivalMs: 11}}},
		{"arrival before the last frame", []Record{{Seq: 103, ArrivalMs: 10}}},
		{"seq repeats within", []Record{{Seq: 103, ArrivalMs: 11}, {Seq: 103, ArrivalMs: 11}}},
		{"arrival goes back within", []Record{{Seq: 103, ArrivalMs: 12}, {Seq: 104, ArrivalMs: 11}}},
		{"too large", []Record{{Seq: 103, ArrivalMs: 11, Data: make([]byte, MaxFramePayload)}}},
	}
	for _, tt := range tests {
		if _, err := w.Append(tt.recs); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// None of that is sticky.
	if _, err := w.Append([]Record{{Seq: 103, ArrivalMs: 11}}); err != nil {
		t.Fatal(err)
	}
	_, w2 := newWriter(t, c)
	if _, err := w2.Append([]Record{{Seq: 99}}); !errors.Is(err, ErrInvalidBatch) {
		t.Errorf("seq below the header's first seq: %v", err)
	}
}

func TestWriterClose(t *testing.T) {
	c := newTestCompressor(t)
	_, w := newWriter(t, c)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := w.Append([]Record{{Seq: 100}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

// TestWriterPowerLoss checks that a power cut keeps exactly the synced frames
// (TearNone), and that a torn unsynced remnant is never mistaken for
// corruption and never hides a synced frame.
func TestWriterPowerLoss(t *testing.T) {
	c := newTestCompressor(t)
	modes := []struct {
		name string
		mode vfs.TearMode
	}{{"none", vfs.TearNone}, {"prefix", vfs.TearPrefix}, {"zeros", vfs.TearZeros}}
	for _, m := range modes {
		for seed := uint64(0); seed < 20; seed++ {
			fs, w := newWriter(t, c)
			rng := rand.New(rand.NewPCG(seed, 5))
			seq := uint64(100)
			var synced []FrameInfo
			for i := 0; i < 3; i++ {
				f, err := w.Append(jsonBatch(rng, seq, int64(i), 5, 100))
				if err != nil {
					t.Fatal(err)
				}
				seq = f.LastSeq + 1
				synced = append(synced, f)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			committed := w.Committed()
			for i := 0; i < 2; i++ {
				f, err := w.Append(randomBatch(rng, seq, 10, 2, 300))
				if err != nil {
					t.Fatal(err)
				}
				seq = f.LastSeq + 1
			}
			fs.Crash(rand.New(rand.NewPCG(seed, 6)), m.mode)
			res := scanFS(t, fs, testPath)
			switch {
			case res.Tail == TailCorrupt:
				t.Fatalf("%s/%d: corrupt after a power cut: %+v", m.name, seed, res)
			case res.Frames < len(synced) || res.ValidEnd < committed:
				t.Fatalf("%s/%d: lost synced frames: %+v", m.name, seed, res)
			case m.mode == vfs.TearNone && (res.Frames != len(synced) || res.ValidEnd != committed || res.Tail != TailClean):
				t.Fatalf("%s/%d: want exactly the synced frames: %+v", m.name, seed, res)
			}
		}
	}
}

// TestWriterAdaptiveCompression: incompressible frames stop paying for
// compression attempts after a streak (then one probe per skip period), and
// compression resumes within a skip period once the data compresses again.
func TestWriterAdaptiveCompression(t *testing.T) {
	c := newTestCompressor(t)
	_, w := newWriter(t, c)
	rng := rand.New(rand.NewPCG(3, 4))
	seq := uint64(100)
	appendBatch := func(recs []Record) FrameInfo {
		t.Helper()
		fi, err := w.Append(recs)
		if err != nil {
			t.Fatal(err)
		}
		seq += uint64(len(recs))
		return fi
	}
	const random = rawStreakToSkip + 10*(skipFrames+1)
	for range random {
		if fi := appendBatch(randomBatch(rng, seq, int64(seq), 4, 256)); fi.Codec != CodecNone {
			t.Fatalf("random data stored as codec %d", fi.Codec)
		}
	}
	if want := rawStreakToSkip + 10; w.probes != want {
		t.Errorf("compression tried on %d of %d incompressible frames, want %d", w.probes, random, want)
	}
	for i := range skipFrames + 1 {
		if appendBatch(jsonBatch(rng, seq, int64(seq), 16, 512)).Codec == CodecZstd {
			return
		}
		if i == skipFrames {
			t.Fatalf("compressible frames still stored raw after %d frames", skipFrames+1)
		}
	}
}

func TestWriterAdoptHistory(t *testing.T) {
	c := newTestCompressor(t)
	_, w := newWriter(t, c)
	rng := rand.New(rand.NewPCG(5, 6))
	seq := uint64(100)
	for range rawStreakToSkip {
		if _, err := w.Append(randomBatch(rng, seq, int64(seq), 4, 256)); err != nil {
			t.Fatal(err)
		}
		seq += 4
	}
	fs := vfs.NewMemFS()
	fs.MkdirAll("/next")
	next, err := Create(fs, "/next/x.seg", FileHeader{SegmentID: 43, FirstSeq: seq, Codec: CodecZstd}, c)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	next.AdoptHistory(w)
	if _, err := next.Append(randomBatch(rng, seq, int64(seq), 4, 256)); err != nil {
		t.Fatal(err)
	}
	if next.probes != 0 {
		t.Errorf("the next segment tried compression %d times right after a raw streak", next.probes)
	}
}
