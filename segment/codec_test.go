package segment

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

const anyCodec Codec = 255

// splitFrame returns a frame's header bytes and stored payload.
func splitFrame(frame []byte, h FrameHeader) (hdr, stored []byte) {
	return frame[:FrameHeaderSize], frame[FrameHeaderSize : FrameHeaderSize+int(h.StoredLen)]
}

func TestEncodeFrameRoundTrip(t *testing.T) {
	c := newTestCompressor(t)
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name  string
		recs  []Record
		codec Codec
	}{
		{"incompressible random bytes are stored raw", randomBatch(rng, 1, 5, 4, 2000), CodecNone},
		{"tiny record is stored raw", []Record{{Seq: 9, ArrivalMs: 1, PartitionKey: "k", Data: []byte("x")}}, CodecNone},
		{"json records are compressed", jsonBatch(rng, 1000, 7, 64, 1024), CodecZstd},
		{"one json record is compressed", jsonBatch(rng, 1000, 7, 1, 1024), CodecZstd},
		{"empty data and keys", []Record{{Seq: 1}, {Seq: 2}, {Seq: 3}}, anyCodec}, // 15 zero bytes: zstd's RLE block may win
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const prev = 0xabcdef01
			frame, h := c.EncodeFrame([]byte("junk"), tt.recs, prev)
			frame = frame[4:]
			if tt.codec != anyCodec && h.Codec != tt.codec {
				t.Errorf("codec %v, want %v", h.Codec, tt.codec)
			}
			if int64(len(frame)) != h.Size() || len(frame)%8 != 0 {
				t.Fatalf("frame is %d bytes, header says %d", len(frame), h.Size())
			}
			if h.PrevCRC != prev || h.RawLen != uint32(RawSize(tt.recs)) || h.Count != uint32(len(tt.recs)) {
				t.Fatalf("header %+v", h)
			}
			hdr, stored := splitFrame(frame, h)
			if !allZero(frame[FrameHeaderSize+len(stored):]) {
				t.Fatal("nonzero padding")
			}
			var got []Record
			dh, err := c.DecodeFrame(hdr, stored, collect(&got))
			if err != nil {
				t.Fatal(err)
			}
			if dh != h {
				t.Fatalf("decoded header %+v, encoded %+v", dh, h)
			}
			if err := recordsEqual(got, tt.recs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestJSONCompressionRatio(t *testing.T) {
	c := newTestCompressor(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 16, 64, 500} {
		recs := jsonBatch(rng, 1, 1, n, 1024)
		_, h := c.EncodeFrame(nil, recs, 0)
		ratio := float64(h.StoredLen) / float64(h.RawLen)
		t.Logf("%3d x 1 KiB JSON: raw %7d B, stored %7d B, ratio %.3f", n, h.RawLen, h.StoredLen, ratio)
		if n >= 16 && ratio >= 0.4 {
			t.Errorf("%d records: ratio %.3f, want well under 0.5", n, ratio)
		}
	}
}

// resealFrame recomputes a frame's CRC after a test edits it.
func resealFrame(hdr, stored []byte) {
	binary.LittleEndian.PutUint32(hdr[frCRC:], FrameCRC(hdr, stored))
}

func TestDecodeFrameRejects(t *testing.T) {
	c := newTestCompressor(t)
	rng := rand.New(rand.NewPCG(5, 6))
	zframe, zh := c.EncodeFrame(nil, jsonBatch(rng, 1, 1, 20, 500), 0)
	rframe, rh := c.EncodeFrame(nil, randomBatch(rng, 1, 1, 2, 50), 0)
	if zh.Codec != CodecZstd || rh.Codec != CodecNone {
		t.Fatal("unexpected codecs")
	}
	tests := []struct {
		name   string
		frame  []byte
		h      FrameHeader
		edit   func(hdr, stored []byte) (h2, s2 []byte)
		reseal bool
		want   error
	}{
		{"payload bit flip", zframe, zh, func(h, s []byte) ([]byte, []byte) { s[len(s)/2] ^= 8; return h, s }, false, ErrCorrupt},
		{"header bit flip", zframe, zh, func(h, s []byte) ([]byte, []byte) { h[frMaxTs] ^= 1; return h, s }, false, ErrCorrupt},
		{"CRC bit flip", rframe, rh, func(h, s []byte) ([]byte, []byte) { h[frCRC] ^= 1; return h, s }, false, ErrCorrupt},
		{"short payload", rframe, rh, func(h, s []byte) ([]byte, []byte) { return h, s[:len(s)-1] }, false, ErrCorrupt},
		{"long payload", rframe, rh, func(h, s []byte) ([]byte, []byte) { return h, append(s, 0) }, false, ErrCorrupt},
		{"short header", rframe, rh, func(h, s []byte) ([]byte, []byte) { return h[:50], s }, false, ErrTorn},
		{"zero header", rframe, rh, func(h, s []byte) ([]byte, []byte) { return make([]byte, 56), s }, false, ErrEndOfData},
		{"raw length too big", zframe, zh, func(h, s []byte) ([]byte, []byte) {
			binary.LittleEndian.PutUint32(h[frRaw:], zh.RawLen+1)
			return h, s
		}, true, ErrCorrupt},
		{"raw length too small", zframe, zh, func(h, s []byte) ([]byte, []byte) {
			binary.LittleEndian.PutUint32(h[frRaw:], zh.RawLen-1)
			return h, s
		}, true, ErrCorrupt},
		{"zstd payload damaged", zframe, zh, func(h, s []byte) ([]byte, []byte) { s[len(s)-3] ^= 0x55; return h, s }, true, ErrCorrupt},
		{"zstd payload truncated", zframe, zh, func(h, s []byte) ([]byte, []byte) {
			s = s[:len(s)-4]
			binary.LittleEndian.PutUint32(h[frStored:], uint32(len(s)))
			return h, s
		}, true, ErrCorrupt},
		{"count mismatch", rframe, rh, func(h, s []byte) ([]byte, []byte) { h[frCount] = 1; return h, s }, true, ErrCorrupt},
		{"raw frame says zstd", rframe, rh, func(h, s []byte) ([]byte, []byte) { h[frCodec] = byte(CodecZstd); return h, s }, true, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := append([]byte(nil), tt.frame...)
			hdr, stored := tt.edit(splitFrame(frame, tt.h))
			if tt.reseal {
				resealFrame(hdr, stored)
			}
			_, err := c.DecodeFrame(hdr, stored, func(Record) bool { return true })
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestCompressorConcurrent runs encoders and decoders in parallel on one
// Compressor; run it with -race.
func TestCompressorConcurrent(t *testing.T) {
	c := newTestCompressor(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for i := 0; i < 20; i++ {
				recs := jsonBatch(rng, uint64(i*1000), 1, 1+rng.IntN(50), 1+rng.IntN(2000))
				frame, h := c.EncodeFrame(nil, recs, uint32(i))
				var got []Record
				if _, err := c.DecodeFrame(frame[:FrameHeaderSize], frame[FrameHeaderSize:FrameHeaderSize+h.StoredLen], collect(&got)); err != nil {
					errs <- err
					return
				}
				if err := recordsEqual(got, recs); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
