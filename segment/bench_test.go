package segment

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/shardlog/shardlog/vfs"
)

var benchLevels = []struct {
	name  string
	level zstd.EncoderLevel
}{{"default", zstd.SpeedDefault}, {"fastest", zstd.SpeedFastest}}

func benchCompressor(b *testing.B, level zstd.EncoderLevel) *Compressor {
	c, err := newCompressor(level)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// BenchmarkEncodeFrame encodes batches of 1 KiB JSON records; bytes are raw
// bytes, and ratio is stored/raw.
func BenchmarkEncodeFrame(b *testing.B) {
	for _, lv := range benchLevels {
		for _, n := range []int{1, 64, 500} {
			b.Run(fmt.Sprintf("level=%s/batch=%d", lv.name, n), func(b *testing.B) {
				c := benchCompressor(b, lv.level)
				recs := jsonBatch(rand.New(rand.NewPCG(1, 1)), 1, 1, n, 1024)
				buf, h := c.EncodeFrame(nil, recs, 0)
				b.SetBytes(int64(h.RawLen))
				for b.Loop() {
					buf, _ = c.EncodeFrame(buf[:0], recs, 0)
				}
				b.ReportMetric(float64(h.StoredLen)/float64(h.RawLen), "ratio")
			})
		}
	}
}

// BenchmarkDecodeFrame decodes frames of 1 KiB JSON records; bytes are raw
// bytes.
func BenchmarkDecodeFrame(b *testing.B) {
	c := benchCompressor(b, defaultLevel)
	for _, n := range []int{1, 64, 500} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			recs := jsonBatch(rand.New(rand.NewPCG(1, 1)), 1, 1, n, 1024)
			frame, h := c.EncodeFrame(nil, recs, 0)
			hdr, stored := splitFrame(frame, h)
			b.SetBytes(int64(h.RawLen))
			for b.Loop() {
				if _, err := c.DecodeFrame(hdr, stored, func(Record) bool { return true }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// scanBench is a ~64 MiB segment of 64-record frames of 1 KiB JSON records,
// built once.
var scanBench struct {
	once sync.Once
	data []byte
	err  error
}

func scanBenchSegment(b *testing.B, c *Compressor) []byte {
	scanBench.once.Do(func() {
		rng := rand.New(rand.NewPCG(2, 2))
		pool := jsonBatch(rng, 0, 0, 4096, 1024)
		hdr := FileHeader{SegmentID: 1, FirstSeq: 1, Codec: CodecZstd}.Encode()
		data := append(make([]byte, 0, 65<<20), hdr[:]...)
		var prev uint32
		seq := uint64(1)
		for len(data) < 64<<20 {
			recs := make([]Record, 64)
			for i := range recs {
				recs[i] = pool[rng.IntN(len(pool))]
				recs[i].Seq, recs[i].ArrivalMs = seq, int64(seq/100)
				seq++
			}
			var h FrameHeader
			data, h = c.EncodeFrame(data, recs, prev)
			prev = h.CRC
		}
		scanBench.data = data
	})
	return scanBench.data
}

// BenchmarkScanVerify scans a ~64 MiB segment; bytes are file bytes.
func BenchmarkScanVerify(b *testing.B) {
	c := benchCompressor(b, defaultLevel)
	data := scanBenchSegment(b, c)
	mem := vfs.NewMemFS()
	mem.MkdirAll("/d")
	mem.SetBytes("/d/s.seg", data)
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.seg"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	filesystems := []struct {
		name string
		fs   vfs.FS
		path string
	}{{"memfs", mem, "/d/s.seg"}, {"os", vfs.OS{}, filepath.Join(dir, "s.seg")}}
	modes := []struct {
		name string
		opts ScanOptions
	}{
		{"hop", ScanOptions{}},
		{"verify", ScanOptions{VerifyCRC: true}},
		{"deep", ScanOptions{Deep: true, Compressor: c}},
	}
	for _, fsys := range filesystems {
		for _, m := range modes {
			b.Run(fsys.name+"/"+m.name, func(b *testing.B) {
				f, err := fsys.fs.Open(fsys.path)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					res, err := Scan(f, int64(len(data)), m.opts)
					if err != nil || res.Tail != TailClean || res.ValidEnd != int64(len(data)) {
						b.Fatalf("%v %+v", err, res)
					}
				}
			})
		}
	}
}

// BenchmarkSealedFrame is the cost of encryption on the codec: encoding
// (compress, then seal) and decoding (open, then decompress) frames of 1 KiB
// JSON records and of incompressible ones, plaintext against sealed; bytes
// are raw bytes.
func BenchmarkSealedFrame(b *testing.B) {
	c := benchCompressor(b, defaultLevel)
	m, err := NewMasterKey(make([]byte, KeySize))
	if err != nil {
		b.Fatal(err)
	}
	_, ci, err := NewKeyBlock(m)
	if err != nil {
		b.Fatal(err)
	}
	data := map[string][]Record{
		"json/batch=64":    jsonBatch(rand.New(rand.NewPCG(1, 1)), 1, 1, 64, 1024),
		"random/batch=64":  randomBatch(rand.New(rand.NewPCG(1, 1)), 1, 1, 64, 1024),
		"json/batch=500":   jsonBatch(rand.New(rand.NewPCG(1, 1)), 1, 1, 500, 1024),
		"random/batch=500": randomBatch(rand.New(rand.NewPCG(1, 1)), 1, 1, 500, 1024),
	}
	for _, name := range []string{"json/batch=64", "random/batch=64", "json/batch=500", "random/batch=500"} {
		recs := data[name]
		for _, sealed := range []bool{false, true} {
			var cph *Cipher
			if sealed {
				cph = ci
			}
			b.Run(fmt.Sprintf("%s/sealed=%t/encode", name, sealed), func(b *testing.B) {
				buf, h := c.encodeFrame(nil, recs, 0, true, cph)
				b.SetBytes(int64(h.RawLen))
				for b.Loop() {
					buf, _ = c.encodeFrame(buf[:0], recs, 0, true, cph)
				}
			})
			b.Run(fmt.Sprintf("%s/sealed=%t/decode", name, sealed), func(b *testing.B) {
				frame, h := c.encodeFrame(nil, recs, 0, true, cph)
				hdr, stored := splitFrame(frame, h)
				b.SetBytes(int64(h.RawLen))
				// As Reader.ReadFrame: a fresh copy of the stored bytes,
				// opened in place.
				for b.Loop() {
					buf := append([]byte(nil), stored...)
					if _, err := c.decodeFrame(hdr, buf, cph, inPlace(buf), nil, func(Record) bool { return true }); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
