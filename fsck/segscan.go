package fsck

import (
	"errors"
	"fmt"
	"io"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// segCheck is what fsck learns about one segment file.
type segCheck struct {
	segName
	path string // FS path
	rel  string // path relative to the data directory, for reports
	size int64

	// hdr is the header as read or, when hdrCode is set, rebuilt from the
	// file's name and shard; frames are scanned against it either way.
	hdr     segment.FileHeader
	hdrCode Code  // "" for a good header: EFileHeader, EFileVersion or EHeaderMismatch
	hdrErr  error // why
	// tornCreate: shorter than a header, or a header's length of zeros: Create
	// crashed before its sync, so no record was ever in the file.
	tornCreate bool
	readErr    error

	// regions are consecutive Scans: the first from the header, each next one
	// from where the previous one's damage ended (its ResumeOffset).
	regions []region
	// undecoded, for a --deep scan of an encrypted segment whose master key
	// is not available, says why its records were not decoded: its frames
	// were checked as without --deep (CRCs cover the ciphertext).
	undecoded error
}

// decoder is what decoding frames takes: the codec, and the master keys of
// encrypted segments (nil: none).
type decoder struct {
	comp *segment.Compressor
	keys segment.Keys
}

// decode decodes a frame of a segment with header hdr, opening it with the
// segment's data key if it is encrypted.
func (d *decoder) decode(hdr segment.FileHeader, frame, stored []byte, fn func(segment.Record) bool) error {
	var ci *segment.Cipher
	if hdr.Encrypted() {
		var err error
		if ci, err = hdr.Key.Open(d.keys); err != nil {
			return err
		}
	}
	_, err := d.comp.DecodeFrameWith(frame[:segment.FrameHeaderSize], stored, ci, fn)
	return err
}

// region is one Scan: valid frames from start up to a clean end or damage.
type region struct {
	start int64 // StartOffset passed to Scan (0: from the header)
	res   segment.ScanResult
	cause Code   // for a damaged end (Tail != TailClean): what is wrong at BadOffset
	next  uint64 // the lowest seq a frame at BadOffset could have had
	// badLast is the LastSeq of the frame at BadOffset if its CRC holds (0
	// if not, or no damage): the server wrote those seqs, so they count
	// toward the shard's sequence floor even if the frame is dropped.
	badLast uint64
	// tsBack: this region's first frame arrives before the previous region's
	// last frame (only checked across damage; Scan checks it within a region).
	tsBack bool
}

// frameVisitor sees every valid frame of a segment, in file order.
type frameVisitor func(segment.FrameInfo) error

// analyzeSegment opens and scans one segment. shardKey 0 skips the shard key
// check (dump of a lone file). visit may be nil.
func analyzeSegment(fs vfs.FS, path, rel string, sn segName, shardKey uint64, deep bool, dec *decoder, visit frameVisitor) *segCheck {
	sc := &segCheck{segName: sn, path: path, rel: rel}
	f, err := fs.Open(path)
	if err != nil {
		sc.readErr = err
		return sc
	}
	defer f.Close()
	if sc.size, err = f.Size(); err != nil {
		sc.readErr = err
		return sc
	}
	r, ok := sc.readHeader(f, shardKey)
	if !ok {
		return sc
	}
	sc.readErr = sc.scanRegions(r, deep, dec, visit)
	return sc
}

// readHeader decodes the file header. It returns the reader to scan frames
// through: the file itself, or the file with a header rebuilt from the name
// laid over its first bytes when the stored one is unusable, so that the
// frames of a segment with a damaged header are still checked (and can be
// salvaged). ok is false when there are no frames to scan.
func (sc *segCheck) readHeader(f io.ReaderAt, shardKey uint64) (io.ReaderAt, bool) {
	if sc.size < segment.FileHeaderSize {
		sc.tornCreate = true
		return nil, false
	}
	b := make([]byte, min(sc.size, segment.MaxFileHeaderSize))
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		sc.readErr = err
		return nil, false
	}
	if sc.size <= segment.MaxFileHeaderSize && allZero(b) {
		sc.tornCreate = true
		return nil, false
	}
	h, err := segment.DecodeFileHeader(b)
	switch {
	case errors.Is(err, segment.ErrTorn), err != nil && sc.size <= segment.MaxFileHeaderSize && tornKeyBlock(b):
		// An encrypted header cut short of its key block, or only a header
		// area whose key block is bad: Create's one write was torn, as
		// segment.Scan judges it (no record was ever in the file).
		sc.tornCreate = true
		return nil, false
	case errors.Is(err, segment.ErrVersion):
		sc.hdrCode, sc.hdrErr = EFileVersion, err
		return nil, false
	case err != nil:
		sc.hdrCode, sc.hdrErr = EFileHeader, err
		h = segment.FileHeader{Codec: segment.CodecZstd}
	case sc.anon:
		sc.firstSeq, sc.id = h.FirstSeq, h.SegmentID
	case h.FirstSeq != sc.firstSeq || h.SegmentID != sc.id:
		sc.hdrCode = EHeaderMismatch
		sc.hdrErr = fmt.Errorf("header says first seq %d, segment ID %d; the name says %d, %d", h.FirstSeq, h.SegmentID, sc.firstSeq, sc.id)
	case shardKey != 0 && h.ShardKey != shardKey:
		sc.hdrCode = EHeaderMismatch
		sc.hdrErr = fmt.Errorf("header shard key %016x, this shard's is %016x: the file belongs to another shard", h.ShardKey, shardKey)
	}
	if sc.hdrCode == "" {
		sc.hdr = h
		return f, true
	}
	// The name is the server's truth for ordering (listSegments); rebuild the
	// header from it and keep the creation time and codec if they were read,
	// and an encrypted segment's key block if it is intact: without it the
	// frames could never be read again.
	sc.hdr = segment.FileHeader{SegmentID: sc.id, FirstSeq: sc.firstSeq, ShardKey: shardKey, CreatedNs: h.CreatedNs, Codec: h.Codec}
	if kb, ok := segment.SalvageKeyBlock(b); ok {
		sc.hdr.Flags, sc.hdr.Key = segment.FlagEncrypted, kb
	}
	return headerOverlay{f, sc.hdr.Encode()}, true
}

// tornKeyBlock reports whether header bytes b hold a fixed header that is
// valid on its own and has FlagEncrypted: decoded alone, only its missing
// key block can fail it.
func tornKeyBlock(b []byte) bool {
	_, err := segment.DecodeFileHeader(b[:segment.FileHeaderSize])
	return errors.Is(err, segment.ErrTorn)
}

// headerOverlay reads a file with its header area replaced by hdr.
type headerOverlay struct {
	r   io.ReaderAt
	hdr []byte
}

func (o headerOverlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.r.ReadAt(p, off)
	if off < int64(len(o.hdr)) {
		copy(p[:n], o.hdr[off:])
	}
	return n, err
}

// scanRegions runs Scan from the header and, past each corrupt region that
// valid frames follow, again from where they resume, so every valid frame is
// seen. Scan with a StartOffset skips the first frame's prevCRC check, which
// is what makes the frame after damage acceptable as the start of a region.
func (sc *segCheck) scanRegions(r io.ReaderAt, deep bool, dec *decoder, visit frameVisitor) error {
	start := int64(0)
	var expect *uint64
	for {
		opts := segment.ScanOptions{VerifyCRC: true, Deep: deep, StartOffset: start, ExpectFirstSeq: expect}
		if deep {
			opts.Compressor, opts.Keys = dec.comp, dec.keys
		}
		if visit != nil {
			opts.Visit = visit
		}
		res, err := segment.Scan(r, sc.size, opts)
		if deep && errors.Is(err, segment.ErrNoKey) {
			// Scan refuses before it reads a frame: check the frames
			// without decoding them instead (a missing key is not damage).
			sc.undecoded, deep = err, false
			continue
		}
		if err != nil {
			return err
		}
		reg := region{start: start, res: res, next: sc.nextSeq(expect)}
		if res.Frames > 0 && len(sc.regions) > 0 {
			reg.tsBack = res.MinTs < sc.maxTs()
		}
		if res.Tail != segment.TailClean {
			if reg.cause, reg.badLast, err = diagnose(r, sc.size, reg, deep, dec); err != nil {
				return err
			}
		}
		sc.regions = append(sc.regions, reg)
		if res.Tail != segment.TailCorrupt || res.ResumeOffset == 0 {
			return nil
		}
		if res.ResumeOffset <= start {
			// The frame found after the damage is the one this region started
			// at and could not accept (only --deep decoding does that): no
			// progress is possible, so everything from here on is damaged.
			sc.regions[len(sc.regions)-1].res.ResumeOffset = 0
			return nil
		}
		start = res.ResumeOffset
		if sc.frames() > 0 {
			expect = u64p(sc.lastSeq() + 1)
		}
	}
}

// nextSeq is the lowest seq the next frame may start at.
func (sc *segCheck) nextSeq(expect *uint64) uint64 {
	if expect != nil && *expect > sc.hdr.FirstSeq {
		return *expect
	}
	return sc.hdr.FirstSeq
}

// Totals over the valid frames of all regions.

func (sc *segCheck) frames() int64 {
	var n int64
	for _, r := range sc.regions {
		n += int64(r.res.Frames)
	}
	return n
}

func (sc *segCheck) lastSeq() uint64 {
	for i := len(sc.regions) - 1; i >= 0; i-- {
		if sc.regions[i].res.Frames > 0 {
			return sc.regions[i].res.LastSeq
		}
	}
	return 0
}

func (sc *segCheck) maxTs() int64 {
	for i := len(sc.regions) - 1; i >= 0; i-- {
		if sc.regions[i].res.Frames > 0 {
			return sc.regions[i].res.MaxTs
		}
	}
	return 0
}

// nextAfter is the first seq the following segment must start at
// (shard/recover.go seg.nextAfter).
func (sc *segCheck) nextAfter() uint64 {
	if sc.frames() == 0 {
		return sc.firstSeq
	}
	return sc.lastSeq() + 1
}

// declaresFloor reports whether the header, read intact and matching the
// file, has segment.FlagSeqFloor: the gap before the segment is a declared
// loss. A header rebuilt from the name declares nothing.
func (sc *segCheck) declaresFloor() bool {
	return sc.hdrCode == "" && sc.hdr.Flags&segment.FlagSeqFloor != 0
}

// declaredGap reports whether sc starts above prev's end and declares that
// very gap (shard/recover.go checkChain): a floor whose recorded gap is
// shorter was declared after a segment that is gone too.
func declaredGap(prev, sc *segCheck) bool {
	return sc.firstSeq > prev.nextAfter() && sc.declaresFloor() &&
		segment.GapDeclared(sc.firstSeq, sc.hdr.FloorGap, prev.nextAfter())
}

// missingTo is one past the seqs a gap between prev and sc leaves
// unexplained: sc's first seq, or, for a floor whose recorded gap is
// shorter than the gap, where its declared loss begins (that loss was
// reported by the repair that declared it).
func missingTo(prev, sc *segCheck) uint64 {
	want, gap := prev.nextAfter(), uint64(sc.hdr.FloorGap)
	if sc.declaresFloor() && gap != 0 && sc.firstSeq > want && sc.firstSeq-want > gap {
		return sc.firstSeq - gap
	}
	return sc.firstSeq
}

// damaged reports whether the frames have damage (the header aside).
func (sc *segCheck) damaged() bool {
	n := len(sc.regions)
	return n > 1 || n == 1 && sc.regions[0].res.Tail != segment.TailClean
}

// tail is the segment's state for summaries: clean, torn or corrupt (any
// damage before the last region), or unknown (unreadable).
func (sc *segCheck) tail() string {
	switch {
	case sc.tornCreate:
		return "torn"
	case sc.readErr != nil || sc.hdrCode == EFileVersion:
		return "unknown"
	case len(sc.regions) == 0:
		return "clean"
	case len(sc.regions) > 1:
		return segment.TailCorrupt.String()
	}
	return sc.regions[0].res.Tail.String()
}

// validEnd is the end of the last valid frame (or of the header).
func (sc *segCheck) validEnd() int64 {
	if n := len(sc.regions); n > 0 {
		return sc.regions[n-1].res.ValidEnd
	}
	return sc.hdr.Size()
}

func (sc *segCheck) summary() SegmentSummary {
	s := SegmentSummary{File: sc.rel, ID: sc.id, NameSeq: sc.firstSeq, Size: sc.size, Tail: sc.tail()}
	for _, r := range sc.regions {
		if r.res.Frames == 0 {
			continue
		}
		if s.Frames == 0 {
			s.FirstSeq, s.MinTs = r.res.FirstSeq, r.res.MinTs
		}
		s.Frames += int64(r.res.Frames)
		s.Records += r.res.Records
		s.LastSeq, s.MaxTs = r.res.LastSeq, r.res.MaxTs
		s.Stored += r.res.StoredBytes
		s.Raw += r.res.RawBytes
	}
	return s
}

// diagnose names what is wrong at a region's BadOffset. Scan has already
// decided torn against corrupt; this re-derives the first failing check, in
// Scan's order (frame on its own, then against its predecessor, then --deep),
// so the code agrees with Scan's BadErr. badLast is the frame's LastSeq if
// its CRC holds, else 0.
func diagnose(r io.ReaderAt, size int64, reg region, deep bool, dec *decoder) (code Code, badLast uint64, err error) {
	off := reg.res.BadOffset
	n := min(size-off, segment.FrameHeaderSize)
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	if allZero(b) {
		return EZeroRange, 0, nil
	}
	h, err := segment.DecodeFrameHeader(b)
	if err != nil || off+h.Size() > size || h.Sealed != reg.res.Header.Encrypted() {
		return EFrameHeader, 0, nil
	}
	frame := make([]byte, h.Size())
	if _, err := r.ReadAt(frame, off); err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	stored := frame[segment.FrameHeaderSize : segment.FrameHeaderSize+int(h.StoredLen)]
	switch {
	case segment.FrameCRC(frame, stored) != h.CRC:
		return EFrameCRC, 0, nil
	case !allZero(frame[segment.FrameHeaderSize+len(stored):]):
		return EFramePadding, h.LastSeq, nil
	}
	return diagnoseOrder(reg, h, frame, stored, deep, dec), h.LastSeq, nil
}

// diagnoseOrder checks an intact frame against its predecessor, then decodes.
func diagnoseOrder(reg region, h segment.FrameHeader, frame, stored []byte, deep bool, dec *decoder) Code {
	res := reg.res
	switch {
	case res.Frames == 0 && reg.start == 0 && h.PrevCRC != 0:
		return EFrameChain
	case res.Frames > 0 && h.PrevCRC != res.LastCRC:
		return EFrameChain
	case res.Frames > 0 && h.FirstSeq <= res.LastSeq, res.Frames == 0 && h.FirstSeq < reg.next:
		return ESeqOrder
	case res.Frames > 0 && h.MinTs < res.MaxTs:
		return ETsOrder
	}
	if deep {
		if err := dec.decode(reg.res.Header, frame, stored, func(segment.Record) bool { return true }); err != nil {
			return EFrameDecode
		}
	}
	return ECorruptTail
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
