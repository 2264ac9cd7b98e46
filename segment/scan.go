package segment

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// TailState classifies how a segment file ends.
type TailState int

const (
	// TailClean: the data ends at a frame boundary, followed by EOF or by
	// zeros only (an all-zero frame header marks the end of data).
	TailClean TailState = iota
	// TailTorn: everything from BadOffset on is the remnant of an interrupted,
	// hence unacknowledged, write (EOF inside a frame, garbage or zeros with no
	// valid frame after them). It is safe to cut at ValidEnd.
	TailTorn
	// TailCorrupt: the damage at BadOffset cannot be a torn write, because a
	// valid frame follows it (ResumeOffset) or because the bad frame is itself
	// intact and chained to its predecessor yet breaks an invariant. Frames
	// after BadOffset may have been acknowledged: never cut automatically.
	TailCorrupt
)

func (t TailState) String() string {
	switch t {
	case TailClean:
		return "clean"
	case TailTorn:
		return "torn"
	case TailCorrupt:
		return "corrupt"
	}
	return fmt.Sprintf("TailState(%d)", int(t))
}

// FrameInfo is a frame's header and where it starts in its file.
type FrameInfo struct {
	Offset int64
	FrameHeader
}

// End is the offset just past the frame, padding included.
func (f FrameInfo) End() int64 { return f.Offset + f.Size() }

// ScanOptions tunes Scan. The zero value hops from header to header without
// reading payloads.
type ScanOptions struct {
	// ExpectFirstSeq, if set, is a lower bound for the first frame's FirstSeq
	// (the file header's FirstSeq always is one).
	ExpectFirstSeq *uint64
	// VerifyCRC reads every payload and checks the CRC and padding (recovery
	// of a tail, fsck). Without it only headers are read.
	VerifyCRC bool
	// Deep also decompresses and parses every frame's records. It implies
	// VerifyCRC and needs Compressor, and for an encrypted segment Keys: Deep
	// opens every sealed frame. Without the key Scan fails with ErrNoKey
	// (the file is not judged: a missing key is not damage).
	Deep       bool
	Compressor *Compressor
	Keys       Keys
	// StartOffset, if nonzero, starts the walk at the frame there instead of
	// at the first frame (Header.Size()), e.g. at a trust checkpoint or at a ResumeOffset to
	// salvage what follows damage. The frames before it are not read, and the
	// first frame's PrevCRC is not checked. It must be 8-aligned.
	StartOffset int64
	// Visit, if set, is called for each valid frame in order. An error from it
	// stops the scan and is returned as is.
	Visit func(FrameInfo) error
}

// ScanResult describes a segment file. Frames, Records, FirstSeq, LastSeq,
// MinTs, MaxTs, LastCRC, StoredBytes and RawBytes cover the valid frames only
// (from the start up to ValidEnd); with Frames == 0 the ranges are zero.
type ScanResult struct {
	Header            FileHeader
	Frames            int
	Records           int64
	FirstSeq, LastSeq uint64
	MinTs, MaxTs      int64
	// LastCRC is the CRC of the last valid frame, 0 if none: the PrevCRC of
	// a frame appended at ValidEnd.
	LastCRC uint32
	// ValidEnd is the offset just past the last valid frame, padding included
	// (the header area's end, or StartOffset, if there is none). A writer may append
	// there.
	ValidEnd int64
	Tail     TailState
	// BadOffset is where the invalid region starts when Tail != TailClean
	// (always ValidEnd), and BadErr says why; it wraps ErrCorrupt or ErrTorn.
	BadOffset int64
	BadErr    error
	// ResumeOffset is, for TailCorrupt, the offset of the first valid frame
	// found after the damage, and ResumeSeq its FirstSeq. Both are 0 if the
	// damage is an intact frame that breaks an invariant and no valid frame
	// follows it.
	ResumeOffset          int64
	ResumeSeq             uint64
	StoredBytes, RawBytes int64
}

// Scan validates a segment file of the given size and classifies its tail. It
// is the single validator used by recovery, readers and fsck.
//
// It reads the file header first: a file shorter than a header, or exactly a
// header's length of zeros, is a torn creation (ErrTorn); any other bad header
// is returned as its ErrCorrupt or ErrVersion. Then it walks the frames. Each
// must have a sane header, fit in the file, have zero padding, chain to its
// predecessor (PrevCRC; 0 for the first), start after its predecessor's
// LastSeq (the first at or after the header's FirstSeq and ExpectFirstSeq),
// and have MinTs >= its predecessor's MaxTs. With VerifyCRC its CRC must
// match, and with Deep its records must decode.
//
// The walk ends cleanly at EOF on a frame boundary, or at an all-zero frame
// header followed only by zeros. At the first invalid frame it decides between
// TailTorn and TailCorrupt (see TailState and classify): it looks ahead, in
// 8-byte steps from the invalid frame itself, for a frame that is valid on its
// own (CRC included) and starts after the last valid sequence.
//
// A damaged tail is reported in the result, not as an error: Scan returns an
// error only for a bad file header, a failed read (including a file shorter
// than size) or an error from Visit, and then the result holds what was
// scanned so far.
func Scan(r io.ReaderAt, size int64, opts ScanOptions) (ScanResult, error) {
	if opts.Deep {
		opts.VerifyCRC = true
		if opts.Compressor == nil {
			return ScanResult{}, errors.New("segment: Scan: Deep needs a Compressor")
		}
	}
	hdr, err := readFileHeader(r, size)
	if err != nil {
		return ScanResult{}, err
	}
	start := hdr.Size()
	if opts.StartOffset != 0 {
		if opts.StartOffset < hdr.Size() || opts.StartOffset%8 != 0 || opts.StartOffset > size {
			return ScanResult{Header: hdr}, fmt.Errorf("segment: Scan: bad start offset %d", opts.StartOffset)
		}
		start = opts.StartOffset
	}
	s := newScanner(r, size, opts, hdr)
	defer s.release()
	if opts.Deep && hdr.Encrypted() {
		if s.ci, err = hdr.Key.Open(opts.Keys); err != nil {
			return s.res, err
		}
	}
	s.res.ValidEnd = start
	err = s.walk(start)
	return s.res, err
}

// readFileHeader reads and decodes the header area.
func readFileHeader(r io.ReaderAt, size int64) (FileHeader, error) {
	if size < FileHeaderSize {
		return FileHeader{}, fmt.Errorf("%w: file is %d bytes, shorter than its header", ErrTorn, size)
	}
	b := make([]byte, min(size, MaxFileHeaderSize))
	if err := readFull(r, b, 0); err != nil {
		return FileHeader{}, err
	}
	if size <= MaxFileHeaderSize && allZero(b) {
		// The header's only write never reached the disk; there are no frames.
		return FileHeader{}, fmt.Errorf("%w: file header is all zeros", ErrTorn)
	}
	h, err := DecodeFileHeader(b)
	if err != nil && size <= MaxFileHeaderSize && errors.Is(err, ErrCorrupt) && h0Encrypted(b) {
		// A file that is only an encrypted header whose key block is bad:
		// Create's one write of the header area was torn (nothing follows
		// it before its sync), so no record was ever in the file.
		return FileHeader{}, fmt.Errorf("%w: %v", ErrTorn, err)
	}
	return h, err
}

// h0Encrypted reports whether b starts with a valid file header that has
// FlagEncrypted: decoded alone, only its missing key block can be torn.
func h0Encrypted(b []byte) bool {
	_, err := DecodeFileHeader(b[:FileHeaderSize])
	return errors.Is(err, ErrTorn)
}

// readFull is ReadAt that treats a short read as an error.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("segment: read %d bytes at %d: %w", len(b), off, err)
}

// Read sizes: a header-only walk reads a page at a time, since large frames
// would waste most of a bigger read; payload walks read big chunks.
const (
	hopChunk  = 4 << 10
	scanChunk = 1 << 20
)

var windowPool = sync.Pool{New: func() any { b := make([]byte, scanChunk); return &b }}

// window is a read-ahead buffer over a file: buf holds file bytes
// [off, off+len(buf)).
type window struct {
	r     io.ReaderAt
	size  int64
	chunk int
	bufp  *[]byte
	buf   []byte
	off   int64
}

// get returns file bytes [off, off+n), reading ahead by chunk when they are not
// buffered. The caller ensures off+n <= size; the slice is valid until the
// next call.
func (w *window) get(off int64, n int) ([]byte, error) {
	if i := off - w.off; off >= w.off && i+int64(n) <= int64(len(w.buf)) {
		return w.buf[i : i+int64(n)], nil
	}
	want := int(min(int64(max(n, w.chunk)), w.size-off))
	if cap(w.buf) < want {
		w.buf = make([]byte, want)
	}
	w.buf = w.buf[:want]
	if err := readFull(w.r, w.buf, off); err != nil {
		w.buf = w.buf[:0]
		return nil, err
	}
	w.off = off
	return w.buf[:n], nil
}

type scanner struct {
	opts    ScanOptions
	size    int64
	win     window
	res     ScanResult
	scratch *[]byte // Deep: decompressed payloads
	plain   *[]byte // Deep, encrypted: opened payloads
	ci      *Cipher // Deep, encrypted: the segment's
}

func newScanner(r io.ReaderAt, size int64, opts ScanOptions, hdr FileHeader) *scanner {
	s := &scanner{opts: opts, size: size, res: ScanResult{Header: hdr}}
	s.win = window{r: r, size: size, chunk: hopChunk}
	if opts.VerifyCRC {
		s.win.chunk = scanChunk
	}
	s.win.bufp = windowPool.Get().(*[]byte)
	s.win.buf = (*s.win.bufp)[:0]
	if opts.Deep {
		s.scratch = rawPool.Get().(*[]byte)
		s.plain = rawPool.Get().(*[]byte)
	}
	return s
}

func (s *scanner) release() {
	if cap(s.win.buf) <= maxPooled {
		*s.win.bufp = s.win.buf
	}
	windowPool.Put(s.win.bufp)
	if s.scratch != nil {
		putRaw(s.scratch)
		putRaw(s.plain)
	}
}

// walk checks frames from off until the end of data or the first invalid one.
func (s *scanner) walk(off int64) error {
	for off < s.size {
		h, fault, err := s.frame(off, s.opts.VerifyCRC)
		if err != nil {
			return err
		}
		if errors.Is(fault, ErrEndOfData) {
			if fault, err = s.zerosTo(off); err != nil || fault == nil {
				return err // clean: zeros to EOF
			}
		}
		if fault == nil {
			fault = s.follows(h)
		}
		if fault == nil && s.opts.Deep {
			fault = s.decode(off, h)
		}
		if fault != nil {
			return s.classify(off, fault)
		}
		if err := s.accept(FrameInfo{Offset: off, FrameHeader: h}); err != nil {
			return err
		}
		off += h.Size()
	}
	return nil
}

// frame checks the frame at off on its own: header sanity, that it fits in the
// file and zero padding, plus its CRC if verify. A fault is returned as fault
// (ErrEndOfData for zeros), a read failure as err.
func (s *scanner) frame(off int64, verify bool) (h FrameHeader, fault, err error) {
	n := min(s.size-off, FrameHeaderSize)
	b, err := s.win.get(off, int(n))
	if err != nil {
		return h, nil, err
	}
	if n < FrameHeaderSize && allZero(b) {
		return h, ErrEndOfData, nil
	}
	if h, fault = DecodeFrameHeader(b); fault != nil {
		if n < FrameHeaderSize {
			fault = fmt.Errorf("%w: EOF inside the frame header at %d", ErrTorn, off)
		}
		return h, fault, nil
	}
	if h.Sealed != s.res.Header.Encrypted() {
		return h, fmt.Errorf("%w: frame at %d: sealed %t in a segment encrypted %t", ErrCorrupt, off, h.Sealed, s.res.Header.Encrypted()), nil
	}
	if end := off + h.Size(); end > s.size {
		return h, fmt.Errorf("%w: frame at %d ends at %d, past EOF at %d", ErrTorn, off, end, s.size), nil
	}
	payload := off + FrameHeaderSize
	if verify {
		b, err = s.win.get(off, int(h.Size()))
		if err != nil {
			return h, nil, err
		}
		if crc := FrameCRC(b, b[FrameHeaderSize:FrameHeaderSize+int(h.StoredLen)]); crc != h.CRC {
			return h, fmt.Errorf("%w: frame at %d: CRC %08x, stored %08x", ErrCorrupt, off, crc, h.CRC), nil
		}
		b = b[FrameHeaderSize+int(h.StoredLen):]
	} else if pad := h.Size() - FrameHeaderSize - int64(h.StoredLen); pad > 0 {
		// Reading the padding also reads ahead to the next frame header.
		if b, err = s.win.get(payload+int64(h.StoredLen), int(pad)); err != nil {
			return h, nil, err
		}
	} else {
		b = nil
	}
	if !allZero(b) {
		return h, fmt.Errorf("%w: frame at %d: nonzero padding", ErrCorrupt, off), nil
	}
	return h, nil, nil
}

// zerosTo is called on an all-zero frame header at off: if the file holds only
// zeros from there, the data ends cleanly at off. Otherwise the header is a
// fault: something was written after the end-of-data marker.
func (s *scanner) zerosTo(off int64) (fault, err error) {
	for pos := off; pos < s.size; {
		n := min(s.size-pos, scanChunk)
		b, err := s.win.get(pos, int(n))
		if err != nil {
			return nil, err
		}
		if !allZero(b) {
			return fmt.Errorf("%w: data near %d after an all-zero frame header at %d", ErrCorrupt, pos, off), nil
		}
		pos += n
	}
	s.res.Tail = TailClean
	return nil, nil
}

// follows checks a frame that is valid on its own against its predecessor.
func (s *scanner) follows(h FrameHeader) error {
	switch {
	case s.res.Frames == 0 && s.opts.StartOffset == 0 && h.PrevCRC != 0:
		return fmt.Errorf("%w: first frame has prev CRC %08x, want 0", ErrCorrupt, h.PrevCRC)
	case s.res.Frames > 0 && h.PrevCRC != s.res.LastCRC:
		return fmt.Errorf("%w: prev CRC %08x, previous frame's CRC is %08x (a frame is missing or replayed)", ErrCorrupt, h.PrevCRC, s.res.LastCRC)
	case !s.seqAfter(h.FirstSeq):
		return fmt.Errorf("%w: first seq %d does not follow seq %d", ErrCorrupt, h.FirstSeq, s.prevSeq())
	case s.res.Frames > 0 && h.MinTs < s.res.MaxTs:
		return fmt.Errorf("%w: min ts %d before previous frame's max ts %d", ErrCorrupt, h.MinTs, s.res.MaxTs)
	}
	return nil
}

// seqAfter reports whether a frame starting at seq may follow the valid frames.
func (s *scanner) seqAfter(seq uint64) bool {
	if s.res.Frames > 0 {
		return seq > s.res.LastSeq
	}
	return seq >= s.minFirstSeq()
}

// minFirstSeq is the lowest FirstSeq the first frame may have.
func (s *scanner) minFirstSeq() uint64 {
	lo := s.res.Header.FirstSeq
	if e := s.opts.ExpectFirstSeq; e != nil && *e > lo {
		lo = *e
	}
	return lo
}

// prevSeq is for messages: the seq a frame must follow.
func (s *scanner) prevSeq() uint64 {
	if s.res.Frames > 0 {
		return s.res.LastSeq
	}
	return s.minFirstSeq() - 1
}

// decode parses the records of the frame at off, whose CRC is verified and
// which is therefore in the window.
func (s *scanner) decode(off int64, h FrameHeader) error {
	b, err := s.win.get(off, int(h.Size()))
	if err != nil {
		return err
	}
	keep := func(Record) bool { return true }
	// The window must not change (lookahead may read it again), so a sealed
	// payload is opened into its own buffer.
	*s.plain = slices.Grow((*s.plain)[:0], int(h.StoredLen))
	if _, err := s.opts.Compressor.decodeFrame(b[:FrameHeaderSize], b[FrameHeaderSize:FrameHeaderSize+int(h.StoredLen)], s.ci, (*s.plain)[:0], s.scratch, keep); err != nil {
		return fmt.Errorf("frame at %d: %w", off, err)
	}
	return nil
}

// accept adds a valid frame to the result and visits it.
func (s *scanner) accept(f FrameInfo) error {
	r := &s.res
	if r.Frames == 0 {
		r.FirstSeq, r.MinTs = f.FirstSeq, f.MinTs
	}
	r.Frames++
	r.Records += int64(f.Count)
	r.LastSeq, r.MaxTs, r.LastCRC = f.LastSeq, f.MaxTs, f.CRC
	r.StoredBytes += int64(f.StoredLen)
	r.RawBytes += int64(f.RawLen)
	r.ValidEnd = f.End()
	if s.opts.Visit != nil {
		return s.opts.Visit(f)
	}
	return nil
}

// classify decides, for the first invalid frame at off, between a torn and a
// corrupt tail.
//
// A torn write cannot leave a frame that is intact (its CRC is right) and
// chained to the last valid frame, so such a frame that still fails (sequence
// or time order, Deep decoding) is corruption in itself. Otherwise the tail is
// corrupt only if a valid frame follows the damage; a stale frame (from reused
// disk blocks, say) does not count, since it cannot start after the last valid
// sequence.
func (s *scanner) classify(off int64, fault error) error {
	s.res.BadOffset, s.res.BadErr = off, fault
	s.res.Tail = TailTorn
	from := off
	if h, bad, err := s.frame(off, true); err != nil {
		return err
	} else if bad == nil && h.PrevCRC == s.res.LastCRC {
		s.res.Tail = TailCorrupt
		from = off + 8
	}
	s.win.chunk = scanChunk
	f, ok, err := s.lookahead(from)
	if errors.Is(err, errLookaheadBudget) {
		// Undecided: valid frames may still follow. Corrupt, never torn, so
		// nothing that might be acknowledged data is cut.
		s.res.Tail = TailCorrupt
		return nil
	}
	if err != nil || !ok {
		return err
	}
	s.res.Tail = TailCorrupt
	s.res.ResumeOffset, s.res.ResumeSeq = f.Offset, f.FirstSeq
	return nil
}

// errLookaheadBudget means lookahead gave up: candidates that passed the
// header checks but not the CRC cost more than its budget.
var errLookaheadBudget = errors.New("segment: look-ahead budget spent")

// lookahead finds the first frame at or after from, in 8-byte steps, that is
// valid on its own (sane header, fits in the file, valid CRC, zero padding) and
// starts after the last valid sequence.
//
// Each candidate costs a read and a CRC of up to MaxFramePayload, so a file
// crafted with thousands of plausible headers could make a scan (at server
// start) take minutes. The CRC work is capped at twice the file size plus
// one maximal frame; past that, errLookaheadBudget.
func (s *scanner) lookahead(from int64) (FrameInfo, bool, error) {
	budget := 2*s.size + MaxFramePayload
	for pos := from; pos+FrameHeaderSize <= s.size; pos += 8 {
		b, err := s.win.get(pos, FrameHeaderSize)
		if err != nil {
			return FrameInfo{}, false, err
		}
		// Cheap filter before the full decode: type, codec and flags.
		if b[frType] != byte(FrameRecords) || b[frCodec] > byte(CodecZstd) || b[frFlags] > FrameSealed || b[frRsvd] != 0 {
			continue
		}
		h, err := DecodeFrameHeader(b)
		if err != nil || h.Sealed != s.res.Header.Encrypted() || pos+h.Size() > s.size || !s.seqAfter(h.FirstSeq) {
			continue
		}
		if budget -= h.Size(); budget < 0 {
			return FrameInfo{}, false, errLookaheadBudget
		}
		if b, err = s.win.get(pos, int(h.Size())); err != nil {
			return FrameInfo{}, false, err
		}
		stored := b[FrameHeaderSize : FrameHeaderSize+int(h.StoredLen)]
		if FrameCRC(b, stored) == h.CRC && allZero(b[FrameHeaderSize+len(stored):]) {
			return FrameInfo{Offset: pos, FrameHeader: h}, true, nil
		}
	}
	return FrameInfo{}, false, nil
}
