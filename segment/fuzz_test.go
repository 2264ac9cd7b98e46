package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// The CRC would stop the fuzzer at the door, so both targets take a flag that
// fixes up CRCs (and, for Scan, the prevCRC chain) before decoding. Without it
// they test the damaged-bytes path; with it, the decoders behind the CRC.

// realFrames returns frames as EncodeFrame makes them, for seed corpora.
func realFrames(tb testing.TB, c *Compressor) [][]byte {
	rng := rand.New(rand.NewPCG(11, 12))
	batches := [][]Record{
		{{Seq: 1, ArrivalMs: 5, PartitionKey: "k", Data: []byte("hello")}},
		{{Seq: 7}, {Seq: 9, ArrivalMs: 3}},
		jsonBatch(rng, 100, 1_700_000_000_000, 8, 200),
		randomBatch(rng, 1<<40, -5, 2, 40),
	}
	var frames [][]byte
	for _, recs := range batches {
		f, _ := c.EncodeFrame(nil, recs, 0x1234)
		frames = append(frames, f)
	}
	return frames
}

func FuzzDecodeFrame(f *testing.F) {
	c := newTestCompressor(f)
	for _, frame := range realFrames(f, c) {
		f.Add(frame, false)
		f.Add(frame, true)
		f.Add(frame[:len(frame)/2], true)
		damaged := append([]byte(nil), frame...)
		damaged[len(damaged)-9] ^= 0x40
		f.Add(damaged, true)
	}
	f.Add(make([]byte, FrameHeaderSize), false)
	f.Add([]byte{1}, false)
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		h, err := DecodeFrameHeader(data)
		if len(data) < FrameHeaderSize {
			if err == nil {
				t.Fatalf("decoded a %d-byte header", len(data))
			}
			return
		}
		hdr := append([]byte(nil), data[:FrameHeaderSize]...)
		stored := data[FrameHeaderSize:]
		if err == nil && int(h.StoredLen) <= len(stored) {
			stored = stored[:h.StoredLen]
		}
		if fixCRC {
			resealFrame(hdr, stored)
		}
		var recs []Record
		dh, err := c.DecodeFrame(hdr, stored, collect(&recs))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEndOfData) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		checkDecoded(t, dh, recs)
		if dh.Codec == CodecNone && !bytes.Equal(AppendRecords(nil, recs), stored) {
			// Only non-minimal varints could differ.
			t.Logf("raw payload re-encodes differently")
		}
		// Re-encoding the records gives a frame that decodes to them again.
		frame, eh := c.EncodeFrame(nil, recs, dh.PrevCRC)
		if eh.Count != dh.Count || eh.FirstSeq != dh.FirstSeq || eh.LastSeq != dh.LastSeq ||
			eh.MinTs != dh.MinTs || eh.MaxTs != dh.MaxTs || eh.PrevCRC != dh.PrevCRC {
			t.Fatalf("re-encoded header %+v, decoded %+v", eh, dh)
		}
		var again []Record
		if _, err := c.DecodeFrame(frame[:FrameHeaderSize], frame[FrameHeaderSize:FrameHeaderSize+eh.StoredLen], collect(&again)); err != nil {
			t.Fatalf("re-encoded frame: %v", err)
		}
		if err := recordsEqual(again, recs); err != nil {
			t.Fatal(err)
		}
	})
}

// checkDecoded checks the records of a frame that decoded against its header.
func checkDecoded(t *testing.T, h FrameHeader, recs []Record) {
	t.Helper()
	if len(recs) != int(h.Count) || recs[0].Seq != h.FirstSeq || recs[len(recs)-1].Seq != h.LastSeq ||
		recs[0].ArrivalMs != h.MinTs || recs[len(recs)-1].ArrivalMs != h.MaxTs {
		t.Fatalf("%d records do not match header %+v", len(recs), h)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq || recs[i].ArrivalMs < recs[i-1].ArrivalMs {
			t.Fatalf("record %d out of order", i)
		}
	}
}

// fixChain rewrites the CRC and prevCRC of each frame that has a sane header
// and fits, walking from the first, so that the fuzzer reaches the checks
// behind them.
func fixChain(b []byte) {
	var prev uint32
	for off := int64(FileHeaderSize); off+FrameHeaderSize <= int64(len(b)); {
		h, err := DecodeFrameHeader(b[off:])
		if err != nil || off+h.Size() > int64(len(b)) {
			return
		}
		hdr := b[off : off+FrameHeaderSize]
		binary.LittleEndian.PutUint32(hdr[frPrevCRC:], prev)
		stored := b[off+FrameHeaderSize : off+FrameHeaderSize+int64(h.StoredLen)]
		resealFrame(hdr, stored)
		prev = binary.LittleEndian.Uint32(hdr[frCRC:])
		off += h.Size()
	}
}

// FuzzDecodeFileHeader: any 64 bytes either decode to a header that encodes
// back to exactly those bytes (the encoding is canonical, so nothing a
// decoder accepts is lost or invented, unknown flags included) or are
// rejected with a classified error.
func FuzzDecodeFileHeader(f *testing.F) {
	plain := FileHeader{SegmentID: 42, FirstSeq: 100, ShardKey: 7, CreatedNs: 1e18, Codec: CodecZstd}
	floor := plain
	floor.Flags = FlagSeqFloor
	gapped := floor
	gapped.FloorGap = 58
	for _, h := range []FileHeader{plain, floor, gapped, {}} {
		b := h.Encode()
		f.Add(b[:], false)
		f.Add(b[:], true)
	}
	f.Add(make([]byte, FileHeaderSize), true)
	f.Add([]byte{0x89}, false)
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC && len(data) >= FileHeaderSize {
			data = append([]byte(nil), data...)
			resealFile(data)
		}
		h, err := DecodeFileHeader(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTorn) && !errors.Is(err, ErrVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if h.Flags&^FlagSeqFloor != 0 {
			t.Fatalf("accepted unknown flags %#x", h.Flags)
		}
		if h.FloorGap != 0 && h.Flags&FlagSeqFloor == 0 {
			t.Fatalf("accepted floor gap %d without FlagSeqFloor", h.FloorGap)
		}
		if b := h.Encode(); !bytes.Equal(b[:], data[:FileHeaderSize]) {
			t.Fatalf("decoded %+v, which encodes to\n%x, not\n%x", h, b, data[:FileHeaderSize])
		}
	})
}

func FuzzScan(f *testing.F) {
	c := newTestCompressor(f)
	ts := buildSegment(f, c, 4)
	seg := ts.bytes(f)
	body := seg[FileHeaderSize:]
	for mode := uint8(0); mode < 2; mode++ {
		f.Add(body, true, mode)
		f.Add(body[:len(body)-13], true, mode)
		f.Add(append(append([]byte(nil), body...), make([]byte, 100)...), true, mode)
		f.Add(seg, false, mode)
	}
	damaged := append([]byte(nil), body...)
	damaged[ts.frames[1].Offset-FileHeaderSize+FrameHeaderSize+3] ^= 1
	f.Add(damaged, true, uint8(0))
	f.Add(damaged, true, uint8(1))
	f.Add([]byte{}, true, uint8(0))
	f.Add([]byte{}, false, uint8(0))
	hdr := ts.hdr.Encode()
	f.Fuzz(func(t *testing.T, data []byte, withHeader bool, mode uint8) {
		file := data
		if withHeader {
			file = append(hdr[:len(hdr):len(hdr)], data...)
		}
		if mode&1 != 0 {
			file = append([]byte(nil), file...)
			fixChain(file)
		}
		var ends [3]int64
		for i, opts := range []ScanOptions{{}, {VerifyCRC: true}, {Deep: true, Compressor: c}} {
			res, ok := checkScanInvariants(t, file, opts)
			if !ok {
				return
			}
			ends[i] = res.ValidEnd
		}
		// Each mode checks everything the previous one does, and more.
		if ends[0] < ends[1] || ends[1] < ends[2] {
			t.Fatalf("valid ends hop %d, verify %d, deep %d", ends[0], ends[1], ends[2])
		}
	})
}

// checkScanInvariants scans file and checks what must hold for any bytes. It
// returns false if Scan rejected the file header.
func checkScanInvariants(t *testing.T, file []byte, opts ScanOptions) (ScanResult, bool) {
	size := int64(len(file))
	var visited []FrameInfo
	opts.Visit = func(f FrameInfo) error { visited = append(visited, f); return nil }
	res, err := Scan(bytes.NewReader(file), size, opts)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTorn) && !errors.Is(err, ErrVersion) {
			t.Fatalf("unclassified error: %v", err)
		}
		return res, false
	}
	if res.ValidEnd < FileHeaderSize || res.ValidEnd > size || res.Frames != len(visited) {
		t.Fatalf("valid end %d of %d, %d frames, %d visited", res.ValidEnd, size, res.Frames, len(visited))
	}
	off := int64(FileHeaderSize)
	for _, f := range visited {
		if f.Offset != off || !frameOK(file, f, opts.VerifyCRC || opts.Deep) {
			t.Fatalf("visited an invalid frame %+v (expected offset %d)", f, off)
		}
		off = f.End()
	}
	if off != res.ValidEnd {
		t.Fatalf("valid end %d, frames end at %d", res.ValidEnd, off)
	}
	switch res.Tail {
	case TailClean:
		if !allZero(file[res.ValidEnd:]) {
			t.Fatalf("clean tail with data after %d", res.ValidEnd)
		}
	case TailTorn, TailCorrupt:
		if res.BadOffset != res.ValidEnd || res.BadErr == nil {
			t.Fatalf("bad offset %d, valid end %d, err %v", res.BadOffset, res.ValidEnd, res.BadErr)
		}
		if !errors.Is(res.BadErr, ErrCorrupt) && !errors.Is(res.BadErr, ErrTorn) {
			t.Fatalf("unclassified damage: %v", res.BadErr)
		}
	default:
		t.Fatalf("tail %v", res.Tail)
	}
	if res.ResumeOffset != 0 {
		h, _ := DecodeFrameHeader(file[res.ResumeOffset:])
		if res.Tail != TailCorrupt || res.ResumeOffset < res.BadOffset || !frameOK(file, FrameInfo{Offset: res.ResumeOffset, FrameHeader: h}, true) || h.FirstSeq != res.ResumeSeq {
			t.Fatalf("resume at %d seq %d: %+v", res.ResumeOffset, res.ResumeSeq, h)
		}
	}
	return res, true
}

// frameOK reports whether f is a frame of file, with a valid CRC if crc.
func frameOK(file []byte, f FrameInfo, crc bool) bool {
	if f.End() > int64(len(file)) {
		return false
	}
	hdr := file[f.Offset : f.Offset+FrameHeaderSize]
	h, err := DecodeFrameHeader(hdr)
	return err == nil && h == f.FrameHeader &&
		(!crc || FrameCRC(hdr, file[f.Offset+FrameHeaderSize:f.Offset+FrameHeaderSize+int64(h.StoredLen)]) == h.CRC)
}
