package segment

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

func TestReaderReadsEveryFrame(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 6)
	r, err := OpenReader(ts.fs, ts.path, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Header() != ts.hdr {
		t.Fatalf("header %+v", r.Header())
	}
	for i, f := range ts.frames {
		h, err := r.FrameHeaderAt(f.Offset)
		if err != nil || h != f.FrameHeader {
			t.Fatalf("frame %d header: %+v, %v", i, h, err)
		}
		var got []Record
		h, err = r.ReadFrame(f.Offset, func(rec Record) bool { got = append(got, rec); return true })
		if err != nil || h != f.FrameHeader {
			t.Fatalf("frame %d: %+v, %v", i, h, err)
		}
		// fn may keep Data without copying it.
		if err := recordsEqual(got, ts.recs[i]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	end := ts.frames[len(ts.frames)-1].End()
	if _, err := r.FrameHeaderAt(end); !errors.Is(err, ErrEndOfData) {
		t.Errorf("header at end: %v", err)
	}
	if _, err := r.ReadFrame(end, nil); !errors.Is(err, ErrEndOfData) {
		t.Errorf("frame at end: %v", err)
	}
}

func TestReaderStopsEarly(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 1)
	r, err := OpenReader(ts.fs, ts.path, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	if _, err := r.ReadFrame(ts.frames[0].Offset, func(Record) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("n %d, err %v", n, err)
	}
}

func TestReaderErrors(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 3)
	b := ts.bytes(t)
	fr := ts.frames
	ts.fs.SetBytes("/shard/torn.seg", b[:fr[2].Offset+FrameHeaderSize+3])
	ts.fs.SetBytes("/shard/tornhdr.seg", b[:fr[2].Offset+10])
	flipped := append([]byte(nil), b...)
	flipped[fr[1].Offset+FrameHeaderSize] ^= 1
	ts.fs.SetBytes("/shard/flip.seg", flipped)
	tests := []struct {
		name string
		path string
		off  int64
		want error
	}{
		{"torn payload", "/shard/torn.seg", fr[2].Offset, ErrTorn},
		{"torn header", "/shard/tornhdr.seg", fr[2].Offset, ErrTorn},
		{"bit flip", "/shard/flip.seg", fr[1].Offset, ErrCorrupt},
		{"inside a payload", ts.path, fr[1].Offset + 64, ErrCorrupt},
		{"unaligned", ts.path, fr[1].Offset + 1, nil},
		{"inside the file header", ts.path, 0, nil},
		{"far past EOF", ts.path, 1 << 40, ErrEndOfData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := OpenReader(ts.fs, tt.path, c)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = r.ReadFrame(tt.off, func(Record) bool { return true })
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenReaderErrors(t *testing.T) {
	c := newTestCompressor(t)
	fs := vfs.NewMemFS()
	fs.MkdirAll("/d")
	fs.SetBytes("/d/short.seg", []byte("abc"))
	fs.SetBytes("/d/bad.seg", make([]byte, 100))
	for path, want := range map[string]error{"/d/none.seg": vfs.ErrNotExist, "/d/short.seg": ErrTorn, "/d/bad.seg": ErrCorrupt} {
		if _, err := OpenReader(fs, path, c); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", path, err, want)
		}
	}
}

// TestReaderNeverPanics reads frames at every aligned offset of damaged files.
func TestReaderNeverPanics(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 4)
	orig := ts.bytes(t)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 50; i++ {
		b := append([]byte(nil), orig...)
		for j := 0; j < 1+rng.IntN(8); j++ {
			b[FileHeaderSize+rng.IntN(len(b)-FileHeaderSize)] = byte(rng.Uint32())
		}
		ts.fs.SetBytes("/shard/x.seg", b)
		r, err := OpenReader(ts.fs, "/shard/x.seg", c)
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(FileHeaderSize); off <= int64(len(b)); off += 8 {
			r.FrameHeaderAt(off)
			r.ReadFrame(off, func(Record) bool { return true })
		}
		r.Close()
	}
}

// TestReaderConcurrent reads all frames from many goroutines; run with -race.
func TestReaderConcurrent(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 8)
	r, err := OpenReader(ts.fs, ts.path, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, f := range ts.frames {
				var got []Record
				if _, err := r.ReadFrame(f.Offset, func(rec Record) bool { got = append(got, rec); return true }); err != nil {
					t.Error(err)
					return
				}
				if err := recordsEqual(got, ts.recs[i]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestReaderWithoutCompressor reads raw frames and refuses compressed ones.
func TestReaderWithoutCompressor(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 2) // frame 0 is zstd, frame 1 raw
	r, err := OpenReader(ts.fs, ts.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.ReadFrame(ts.frames[0].Offset, func(Record) bool { return true }); err == nil {
		t.Error("compressed frame without a Compressor: no error")
	}
	if _, err := r.ReadFrame(ts.frames[1].Offset, func(Record) bool { return true }); err != nil {
		t.Error(err)
	}
}

// TestReaderScan scans a segment through a Reader, as recovery and fsck do.
func TestReaderScan(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 3)
	r, err := OpenReader(ts.fs, ts.path, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	size, err := r.Size()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Scan(r.ReaderAt(), size, ScanOptions{VerifyCRC: true})
	if err != nil || res.Tail != TailClean || res.Frames != 3 || res.ValidEnd != size || r.Path() != ts.path {
		t.Fatalf("%v %+v", err, res)
	}
}
