package segment

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// wantScan is what a scenario expects of Scan. Offsets are given as frame
// indexes of the undamaged segment, so they follow the test data.
type wantScan struct {
	err        error // Scan's error (a bad file header)
	tail       TailState
	frames     int  // valid frames, hence ValidEnd
	bad        int  // frame index of BadOffset (-1: ValidEnd)
	resume     int  // frame index of ResumeOffset (-1: none)
	resumeSeq  int  // frame index whose FirstSeq is ResumeSeq when it differs from resume's
	hopToo     bool // a header-only scan finds the same
	resumeZero bool // TailCorrupt without a resume point
}

func TestScanCrashScenarios(t *testing.T) {
	c := newTestCompressor(t)
	const n = 6
	ts := buildSegment(t, c, n)
	orig := ts.bytes(t)
	fr := ts.frames
	end := int64(len(orig))
	rng := rand.New(rand.NewPCG(7, 7))
	garbage := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// cut returns the file without frame i.
	cut := func(b []byte, i int) []byte {
		return append(append([]byte(nil), b[:fr[i].Offset]...), b[fr[i].End():]...)
	}
	flip := func(b []byte, off int64) []byte { b[off] ^= 0x10; return b }
	// badFrame appends an intact frame chained to the last one whose
	// records break an ordering rule.
	badFrame := func(recs []Record) []byte {
		frame, _ := c.EncodeFrame(nil, recs, fr[n-1].CRC)
		return append(append([]byte(nil), orig...), frame...)
	}
	last := fr[n-1]
	padded := 1 // a middle frame with padding
	for padded < n-1 && fr[padded].StoredLen%8 == 0 {
		padded++
	}
	if padded == n-1 {
		t.Fatal("no middle frame has padding")
	}

	tests := []struct {
		name   string
		damage func(b []byte) []byte
		opts   ScanOptions
		want   wantScan
	}{
		{"clean file", nil, ScanOptions{},
			wantScan{tail: TailClean, frames: n, hopToo: true}},
		{"empty segment just created", func(b []byte) []byte { return b[:FileHeaderSize] }, ScanOptions{},
			wantScan{tail: TailClean, frames: 0, hopToo: true}},
		{"torn creation: file shorter than its header", func(b []byte) []byte { return b[:30] }, ScanOptions{},
			wantScan{err: ErrTorn}},
		{"torn creation: empty file", func(b []byte) []byte { return nil }, ScanOptions{},
			wantScan{err: ErrTorn}},
		{"torn creation: header-sized zeros", func(b []byte) []byte { return make([]byte, FileHeaderSize) }, ScanOptions{},
			wantScan{err: ErrTorn}},
		{"torn header: EOF inside the last frame header", func(b []byte) []byte { return b[:last.Offset+20] }, ScanOptions{},
			wantScan{tail: TailTorn, frames: n - 1, bad: n - 1, resume: -1, hopToo: true}},
		{"torn payload: EOF inside the last payload", func(b []byte) []byte { return b[:last.Offset+FrameHeaderSize+10] }, ScanOptions{},
			wantScan{tail: TailTorn, frames: n - 1, bad: n - 1, resume: -1, hopToo: true}},
		{"torn padding: EOF inside the last frame's padding", func(b []byte) []byte { return b[:last.End()-1] }, ScanOptions{},
			wantScan{tail: TailTorn, frames: n - 1, bad: n - 1, resume: -1, hopToo: true}},
		{"zeroed tail: size grew but data is zeros", func(b []byte) []byte {
			clear(b[last.Offset:])
			return b
		}, ScanOptions{}, wantScan{tail: TailClean, frames: n - 1, hopToo: true}},
		{"zeroed tail shorter than a frame header", func(b []byte) []byte { return append(b, make([]byte, 24)...) }, ScanOptions{},
			wantScan{tail: TailClean, frames: n, hopToo: true}},
		{"zeroed tail after a complete file", func(b []byte) []byte { return append(b, make([]byte, 5000)...) }, ScanOptions{},
			wantScan{tail: TailClean, frames: n, hopToo: true}},
		{"half-zeroed last frame: its size reached the disk before all its data", func(b []byte) []byte {
			clear(b[last.Offset+FrameHeaderSize+8:])
			return b
		}, ScanOptions{}, wantScan{tail: TailTorn, frames: n - 1, bad: n - 1, resume: -1}},
		{"garbage tail", func(b []byte) []byte { return append(b, garbage(3000)...) }, ScanOptions{},
			wantScan{tail: TailTorn, frames: n, bad: -1, resume: -1, hopToo: true}},
		{"garbage tail after zeros", func(b []byte) []byte { return append(append(b, make([]byte, 200)...), garbage(100)...) }, ScanOptions{},
			wantScan{tail: TailTorn, frames: n, bad: -1, resume: -1, hopToo: true}},
		{"valid frames after a corrupt one", func(b []byte) []byte { return flip(b, fr[2].Offset+FrameHeaderSize+5) }, ScanOptions{},
			wantScan{tail: TailCorrupt, frames: 2, bad: 2, resume: 3}},
		{"valid frames after a corrupt frame header", func(b []byte) []byte { return flip(b, fr[2].Offset+frStored) }, ScanOptions{},
			wantScan{tail: TailCorrupt, frames: 2, bad: 2, resume: 3}},
		{"valid frames after a zeroed frame header", func(b []byte) []byte {
			clear(b[fr[3].Offset : fr[3].Offset+FrameHeaderSize])
			return b
		}, ScanOptions{}, wantScan{tail: TailCorrupt, frames: 3, bad: 3, resume: 4, hopToo: true}},
		{"valid frames after a zeroed frame", func(b []byte) []byte {
			clear(b[fr[1].Offset:fr[2].End()])
			return b
		}, ScanOptions{}, wantScan{tail: TailCorrupt, frames: 1, bad: 1, resume: 3, hopToo: true}},
		{"bit flip in the first frame", func(b []byte) []byte { return flip(b, fr[0].End()-9) }, ScanOptions{},
			wantScan{tail: TailCorrupt, frames: 0, bad: 0, resume: 1}},
		{"bit flip in the last frame", func(b []byte) []byte { return flip(b, last.Offset+FrameHeaderSize+1) }, ScanOptions{},
			wantScan{tail: TailTorn, frames: n - 1, bad: n - 1, resume: -1}},
		{"nonzero padding", func(b []byte) []byte { return flip(b, fr[padded].End()-1) }, ScanOptions{},
			wantScan{tail: TailCorrupt, frames: padded, bad: padded, resume: padded + 1, hopToo: true}},
		{"bad file header CRC", func(b []byte) []byte { return flip(b, fhSegmentID) }, ScanOptions{},
			wantScan{err: ErrCorrupt}},
		{"unsupported version", func(b []byte) []byte { b[fhVersion] = 9; resealFile(b); return b }, ScanOptions{},
			wantScan{err: ErrVersion}},
		{"prevCRC chain broken by a missing middle frame", func(b []byte) []byte { return cut(b, 2) }, ScanOptions{},
			wantScan{tail: TailCorrupt, frames: 2, bad: 2, resume: 2, resumeSeq: 3, hopToo: true}},
		{"prevCRC chain broken by a missing second-to-last frame", func(b []byte) []byte { return cut(b, n-2) }, ScanOptions{},
			wantScan{tail: TailCorrupt, frames: n - 2, bad: n - 2, resume: n - 2, resumeSeq: n - 1, hopToo: true}},
		{"replayed frame", func(b []byte) []byte { return append(b, b[fr[1].Offset:fr[1].End()]...) }, ScanOptions{},
			// A stale copy cannot follow the last sequence: a torn write may
			// expose old blocks, so this is not proof of lost data.
			wantScan{tail: TailTorn, frames: n, bad: -1, resume: -1, hopToo: true}},
		{"sequence goes backwards", func([]byte) []byte {
			return badFrame([]Record{{Seq: last.LastSeq, ArrivalMs: last.MaxTs, Data: []byte("again")}})
		}, ScanOptions{}, wantScan{tail: TailCorrupt, frames: n, bad: -1, resume: -1, resumeZero: true, hopToo: true}},
		{"time goes backwards", func([]byte) []byte {
			return badFrame([]Record{{Seq: last.LastSeq + 1, ArrivalMs: last.MaxTs - 1, Data: []byte("early")}})
		}, ScanOptions{}, wantScan{tail: TailCorrupt, frames: n, bad: -1, resume: -1, resumeZero: true, hopToo: true}},
		{"first frame below the expected sequence", nil, ScanOptions{ExpectFirstSeq: ptr(fr[0].FirstSeq + 1)},
			wantScan{tail: TailCorrupt, frames: 0, bad: 0, resume: 1, hopToo: true}},
		{"first frame at the expected sequence", nil, ScanOptions{ExpectFirstSeq: ptr(fr[0].FirstSeq)},
			wantScan{tail: TailClean, frames: n, hopToo: true}},
		{"start at a checkpoint", nil, ScanOptions{StartOffset: fr[3].Offset},
			wantScan{tail: TailClean, frames: n - 3, hopToo: true}},
	}
	modes := []struct {
		name string
		opts ScanOptions
	}{
		{"hop", ScanOptions{}},
		{"verify", ScanOptions{VerifyCRC: true}},
		{"deep", ScanOptions{Deep: true, Compressor: c}},
	}
	for _, tt := range tests {
		for _, m := range modes {
			if m.name == "hop" && !tt.want.hopToo && tt.want.err == nil {
				continue
			}
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				b := append([]byte(nil), orig...)
				if tt.damage != nil {
					b = tt.damage(b)
				}
				opts := tt.opts
				opts.VerifyCRC, opts.Deep, opts.Compressor = m.opts.VerifyCRC, m.opts.Deep, m.opts.Compressor
				checkScan(t, b, opts, tt.want, ts, end)
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func checkScan(t *testing.T, b []byte, opts ScanOptions, want wantScan, ts *testSegment, origEnd int64) {
	t.Helper()
	var visited []FrameInfo
	opts.Visit = func(f FrameInfo) error { visited = append(visited, f); return nil }
	res, err := Scan(bytes.NewReader(b), int64(len(b)), opts)
	if want.err != nil {
		if !errors.Is(err, want.err) {
			t.Fatalf("err %v, want %v", err, want.err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	fr := ts.frames
	first := 0
	if opts.StartOffset != 0 {
		for fr[first].Offset != opts.StartOffset {
			first++
		}
	}
	validEnd := int64(FileHeaderSize)
	if opts.StartOffset != 0 {
		validEnd = opts.StartOffset
	}
	if want.frames > 0 {
		validEnd = fr[first+want.frames-1].End()
	}
	if res.Tail != want.tail || res.Frames != want.frames || res.ValidEnd != validEnd {
		t.Fatalf("tail %v, %d frames, valid end %d; want %v, %d, %d (bad %d: %v)",
			res.Tail, res.Frames, res.ValidEnd, want.tail, want.frames, validEnd, res.BadOffset, res.BadErr)
	}
	if len(visited) != want.frames {
		t.Fatalf("visited %d frames", len(visited))
	}
	var records int64
	for i, f := range visited {
		if f.Offset != fr[first+i].Offset || f.FrameHeader != fr[first+i].FrameHeader {
			t.Fatalf("visited frame %d: %+v, want %+v", i, f, fr[first+i])
		}
		records += int64(f.Count)
	}
	if res.Records != records {
		t.Errorf("records %d, want %d", res.Records, records)
	}
	if want.frames > 0 {
		lastF := fr[first+want.frames-1]
		if res.FirstSeq != fr[first].FirstSeq || res.LastSeq != lastF.LastSeq || res.MinTs != fr[first].MinTs ||
			res.MaxTs != lastF.MaxTs || res.LastCRC != lastF.CRC {
			t.Errorf("ranges %+v", res)
		}
	}
	if res.Header != ts.hdr {
		t.Errorf("header %+v", res.Header)
	}
	if want.tail == TailClean {
		if res.BadErr != nil {
			t.Errorf("clean tail with BadErr %v", res.BadErr)
		}
		return
	}
	t.Logf("%v at %d: %v", res.Tail, res.BadOffset, res.BadErr)
	wantBad := validEnd
	if want.bad >= 0 {
		wantBad = fr[want.bad].Offset
	}
	if res.BadOffset != wantBad || res.BadOffset != res.ValidEnd {
		t.Errorf("bad offset %d, want %d", res.BadOffset, wantBad)
	}
	if !errors.Is(res.BadErr, ErrCorrupt) && !errors.Is(res.BadErr, ErrTorn) {
		t.Errorf("BadErr %v wraps neither ErrCorrupt nor ErrTorn", res.BadErr)
	}
	if want.tail != TailCorrupt || want.resumeZero {
		if res.ResumeOffset != 0 || res.ResumeSeq != 0 {
			t.Errorf("resume at %d seq %d, want none", res.ResumeOffset, res.ResumeSeq)
		}
		return
	}
	seqFrame := want.resume
	if want.resumeSeq != 0 {
		seqFrame = want.resumeSeq
	}
	if res.ResumeOffset != fr[want.resume].Offset || res.ResumeSeq != fr[seqFrame].FirstSeq {
		t.Errorf("resume at %d seq %d, want %d seq %d", res.ResumeOffset, res.ResumeSeq, fr[want.resume].Offset, fr[seqFrame].FirstSeq)
	}
}

func TestScanVisitError(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 4)
	stop := errors.New("stop")
	n := 0
	res, err := ts.scan(t, ScanOptions{VerifyCRC: true, Visit: func(FrameInfo) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	}})
	if err != stop || res.Frames != 2 {
		t.Fatalf("err %v, frames %d", err, res.Frames)
	}
}

func TestScanDeepNeedsCompressor(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 1)
	if _, err := ts.scan(t, ScanOptions{Deep: true}); err == nil {
		t.Fatal("no error")
	}
}

func TestScanBadStartOffset(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 2)
	for _, off := range []int64{8, 65, 1 << 30} {
		if _, err := ts.scan(t, ScanOptions{StartOffset: off}); err == nil {
			t.Errorf("start %d: no error", off)
		}
	}
}

// TestScanDeepCatchesBadRecords builds a frame whose CRC is right but whose
// records do not parse: only Deep sees it, and it is corruption, not a torn
// write, since the frame is intact and chained.
func TestScanDeepCatchesBadRecords(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 3)
	b := ts.bytes(t)
	last := ts.frames[2]
	raw := AppendRecords(nil, []Record{{Seq: last.LastSeq + 1, ArrivalMs: last.MaxTs, Data: []byte("abc")}})
	h := FrameHeader{Type: FrameRecords, StoredLen: uint32(len(raw)), RawLen: uint32(len(raw)), Count: 1,
		FirstSeq: last.LastSeq + 1, LastSeq: last.LastSeq + 1, MinTs: last.MaxTs, MaxTs: last.MaxTs, PrevCRC: last.CRC}
	raw[3] = 1 // the flags byte (after seq gap, arrival and an empty key's length)
	hdr := h.Encode()
	resealFrame(hdr[:], raw)
	b = append(append(b, hdr[:]...), raw...)
	b = append(b, make([]byte, align8(int64(len(raw)))-int64(len(raw)))...)
	res, err := Scan(bytes.NewReader(b), int64(len(b)), ScanOptions{VerifyCRC: true})
	if err != nil || res.Tail != TailClean || res.Frames != 4 {
		t.Fatalf("verify: %v %+v", err, res)
	}
	res, err = Scan(bytes.NewReader(b), int64(len(b)), ScanOptions{Deep: true, Compressor: c})
	if err != nil || res.Tail != TailCorrupt || res.Frames != 3 || !errors.Is(res.BadErr, ErrCorrupt) {
		t.Fatalf("deep: %v %+v", err, res)
	}
}

// TestScanLargeFrames scans frames bigger than the read-ahead window.
func TestScanLargeFrames(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 0)
	w, err := Create(ts.fs, "/shard/big.seg", ts.hdr, c)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 3; i++ {
		if _, err := w.Append(randomBatch(rng, 100+uint64(i)*10, 0, 3, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := ts.fs.Bytes("/shard/big.seg")
	for _, opts := range []ScanOptions{{}, {VerifyCRC: true}, {Deep: true, Compressor: c}} {
		res, err := Scan(bytes.NewReader(b), int64(len(b)), opts)
		if err != nil || res.Tail != TailClean || res.Frames != 3 || res.ValidEnd != int64(len(b)) {
			t.Fatalf("%+v: %v %+v", opts, err, res)
		}
	}
	// Damage the middle one: the look-ahead must find the third.
	b[len(b)/2] ^= 1
	res, err := Scan(bytes.NewReader(b), int64(len(b)), ScanOptions{VerifyCRC: true})
	if err != nil || res.Tail != TailCorrupt || res.Frames != 1 || res.ResumeSeq != 120 {
		t.Fatalf("%v %+v", err, res)
	}
}

// TestScanShortRead reports a file shorter than the size it was given as an
// I/O error, not as a torn tail.
func TestScanShortRead(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 2)
	b := ts.bytes(t)
	if _, err := Scan(bytes.NewReader(b[:len(b)-10]), int64(len(b)), ScanOptions{VerifyCRC: true}); err == nil {
		t.Fatal("no error")
	}
}

func TestTailStateString(t *testing.T) {
	for s, want := range map[TailState]string{TailClean: "clean", TailTorn: "torn", TailCorrupt: "corrupt", 9: "TailState(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q", int(s), s.String())
		}
	}
}

// TestLookaheadIsBounded: a tail crafted with thousands of plausible frame
// headers, each claiming a 2 MiB payload with a wrong CRC, would cost a 2 MiB
// CRC per candidate. The look-ahead gives up after a budget, and the tail is
// then called corrupt (never torn: nothing is cut that might be acknowledged).
func TestLookaheadIsBounded(t *testing.T) {
	c := newTestCompressor(t)
	ts := buildSegment(t, c, 1)
	file := ts.bytes(t)
	last := ts.frames[len(ts.frames)-1]
	const claim = 2 << 20
	h := FrameHeader{Type: FrameRecords, Codec: CodecNone, StoredLen: claim, RawLen: claim, Count: 1,
		FirstSeq: last.LastSeq + 1, LastSeq: last.LastSeq + 1, MinTs: last.MaxTs, MaxTs: last.MaxTs, CRC: 1}
	hb := h.Encode()
	region := make([]byte, 4<<20)
	for off := 0; off+FrameHeaderSize <= len(region); off += 64 {
		copy(region[off:], hb[:])
	}
	file = append(file, region...)
	res, err := Scan(bytes.NewReader(file), int64(len(file)), ScanOptions{VerifyCRC: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tail != TailCorrupt || res.ValidEnd != last.End() {
		t.Fatalf("tail %v, valid end %d; want corrupt after the last good frame at %d", res.Tail, res.ValidEnd, last.End())
	}
}
