package segment

// This file is the byte layout of doc.go and nothing else: no I/O, no
// compression. Every decoder here bounds-checks its input and returns an error
// (never panics) on any bytes, because after a crash or media fault it reads
// whatever the disk holds.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

const (
	// FileHeaderSize is the size of the fixed header at the start of every
	// segment. An encrypted segment's key block follows it (FileHeader.Size).
	FileHeaderSize = 64
	// FrameHeaderSize is the size of the fixed header in front of every frame.
	FrameHeaderSize = 56
	// Version is the only format version this package reads and writes.
	Version = 1
	// MaxFramePayload caps both the stored and the raw length of a frame. A
	// header claiming more is corrupt, which bounds what a reader allocates for
	// damaged bytes. The shard gathers requests into frames of up to 4 MiB
	// raw, and a single request, which is never split, is at most 10 MiB of
	// records (a PutRecords, or one 10 MiB record) plus their headers.
	MaxFramePayload = 16 << 20
)

// Magic starts every segment file. Like PNG's, it has a high-bit byte (caught
// by 7-bit transfers) and CR LF (caught by newline translation), and its first
// byte is not a valid frame type.
var Magic = [8]byte{0x89, 'S', 'H', 'L', 'O', 'G', 0x0d, 0x0a}

// Codec is how a frame's payload is stored.
type Codec uint8

const (
	// CodecNone stores the raw payload.
	CodecNone Codec = 0
	// CodecZstd stores one zstd frame that decodes to the raw payload.
	CodecZstd Codec = 1
)

func (c Codec) valid() bool { return c <= CodecZstd }

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// FrameType is the first byte of a frame header.
type FrameType uint8

const (
	// FrameInvalid is never written: a zero type byte means "no frame here".
	FrameInvalid FrameType = 0
	// FrameRecords holds a batch of records (one group commit).
	FrameRecords FrameType = 1
)

func (t FrameType) String() string {
	switch t {
	case FrameInvalid:
		return "invalid"
	case FrameRecords:
		return "records"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

var (
	// ErrCorrupt means bytes that cannot have been written by a correct writer:
	// bad CRC, bad lengths, bad magic, nonzero reserved bytes and the like.
	ErrCorrupt = errors.New("segment: corrupt")
	// ErrTorn means the data stops inside a structure: EOF inside a header or a
	// frame, as an interrupted write leaves it.
	ErrTorn = errors.New("segment: torn write")
	// ErrVersion means a file header of a format version this build cannot
	// read, or with a flag this build does not know.
	ErrVersion = errors.New("segment: unsupported version")
	// ErrEndOfData means there is no frame here: an all-zero frame header, or
	// EOF exactly at a frame boundary.
	ErrEndOfData = errors.New("segment: end of data")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// File header field offsets (doc.go).
const (
	fhVersion   = 8
	fhHdrLen    = 10
	fhFlags     = 12
	fhSegmentID = 16
	fhFirstSeq  = 24
	fhShardKey  = 32
	fhCreated   = 40
	fhCodec     = 48
	fhRsvd1     = 49 // 3 bytes
	fhDictID    = 52
	fhFloorGap  = 56 // reserved (zero) without FlagSeqFloor
	fhCRC       = 60
)

// File header flags (doc.go). A reader rejects any bit it does not know
// (ErrVersion): a flag changes what the file means, so ignoring one could be
// wrong.
const (
	// FlagSeqFloor declares the gap before the segment intentional: the
	// sequences below its FirstSeq that no earlier segment holds were given
	// out once and lost (a repair dropped them), so they must never be given
	// out again, and no segment is missing there. Without it such a gap is a
	// missing segment.
	FlagSeqFloor uint32 = 1 << 0
	// FlagEncrypted: a KeyBlockSize key block (the wrapped data key) follows
	// the header, the frames start after it, and every frame is sealed
	// (AES-256-GCM, crypt.go). A build without the flag refuses the file
	// (ErrVersion), which is right: it would read ciphertext as records.
	FlagEncrypted uint32 = 1 << 1

	knownFlags = FlagSeqFloor | FlagEncrypted
)

// FileHeader is the first 64 bytes of a segment file, written once at creation.
type FileHeader struct {
	SegmentID uint64
	// FirstSeq is a lower bound for every sequence in the file: the first
	// frame's FirstSeq is >= it (the shard may skip ahead).
	FirstSeq uint64
	// ShardKey identifies the shard that owns the file, to catch misplaced files.
	ShardKey uint64
	// CreatedNs is the creation time in Unix nanoseconds.
	CreatedNs int64
	// Codec is the default codec of the file's frames; each frame still names
	// its own, since incompressible frames are stored raw.
	Codec Codec
	// Flags are FlagSeqFloor and FlagEncrypted, or 0.
	Flags uint32
	// FloorGap, with FlagSeqFloor, is the size of the declared gap: FirstSeq
	// minus the first lost seq, which is where the previous segment ends.
	// 0 means not recorded (a gap too large for 32 bits, or a file written
	// before the field existed): then any gap is the declared one. Without
	// the flag it is 0.
	FloorGap uint32
	// Key is the wrapped data key of an encrypted segment (FlagEncrypted);
	// zero otherwise.
	Key KeyBlock
}

// Encrypted reports whether the segment's frames are sealed.
func (h FileHeader) Encrypted() bool { return h.Flags&FlagEncrypted != 0 }

// Size is the length of the header area, where the first frame starts:
// FileHeaderSize, plus KeyBlockSize for an encrypted segment.
func (h FileHeader) Size() int64 {
	if h.Encrypted() {
		return MaxFileHeaderSize
	}
	return FileHeaderSize
}

// FloorGapOf is the FloorGap of a floor at first whose lost seqs start at
// from (first > from): first-from, or 0 (not recorded) if that does not fit.
func FloorGapOf(first, from uint64) uint32 {
	if gap := first - from; gap <= math.MaxUint32 {
		return uint32(gap)
	}
	return 0
}

// GapDeclared reports whether a floor header's gap (FirstSeq first, FloorGap
// gap) is the one between the previous segment's end and first (first >
// end). Any other gap hides a missing segment: the one the floor was
// declared after is gone too.
func GapDeclared(first uint64, gap uint32, end uint64) bool {
	return gap == 0 || first-end == uint64(gap)
}

// Encode returns the header area's h.Size() bytes, CRCs included: the 64-byte
// header and, with FlagEncrypted, the key block. The dictionary ID and the
// reserved bytes are zero in version 1. Flags and FloorGap are written as
// given; DecodeFileHeader rejects unknown flags, and a FloorGap without
// FlagSeqFloor.
func (h FileHeader) Encode() []byte {
	b := make([]byte, h.Size())
	copy(b[:], Magic[:])
	binary.LittleEndian.PutUint16(b[fhVersion:], Version)
	binary.LittleEndian.PutUint16(b[fhHdrLen:], FileHeaderSize)
	binary.LittleEndian.PutUint32(b[fhFlags:], h.Flags)
	binary.LittleEndian.PutUint64(b[fhSegmentID:], h.SegmentID)
	binary.LittleEndian.PutUint64(b[fhFirstSeq:], h.FirstSeq)
	binary.LittleEndian.PutUint64(b[fhShardKey:], h.ShardKey)
	binary.LittleEndian.PutUint64(b[fhCreated:], uint64(h.CreatedNs))
	b[fhCodec] = byte(h.Codec)
	binary.LittleEndian.PutUint32(b[fhFloorGap:], h.FloorGap)
	binary.LittleEndian.PutUint32(b[fhCRC:], crc32.Checksum(b[:fhCRC], castagnoli))
	if h.Encrypted() {
		h.Key.put(b)
	}
	return b
}

// DecodeFileHeader parses and validates a file header: magic, version, header
// length, CRC, known codec, no unknown flag, zero dictionary ID and
// reserved bytes, and a zero floor gap unless FlagSeqFloor is set; with
// FlagEncrypted also the key block after it (its CRC and reserved bytes).
// Fewer than FileHeaderSize bytes, or an encrypted header cut short of its
// key block, is ErrTorn. b may run on past the header area.
func DecodeFileHeader(b []byte) (FileHeader, error) {
	if len(b) < FileHeaderSize {
		return FileHeader{}, fmt.Errorf("%w: file header is %d bytes, want %d", ErrTorn, len(b), FileHeaderSize)
	}
	if [8]byte(b[:8]) != Magic {
		return FileHeader{}, fmt.Errorf("%w: bad magic %x", ErrCorrupt, b[:8])
	}
	// The version comes before the CRC: a later version may lay out (and
	// checksum) its header differently, so this build cannot judge its CRC.
	if v := binary.LittleEndian.Uint16(b[fhVersion:]); v != Version {
		return FileHeader{}, fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, v, Version)
	}
	if n := binary.LittleEndian.Uint16(b[fhHdrLen:]); n != FileHeaderSize {
		return FileHeader{}, fmt.Errorf("%w: file header length %d, want %d", ErrCorrupt, n, FileHeaderSize)
	}
	if got, want := crc32.Checksum(b[:fhCRC], castagnoli), binary.LittleEndian.Uint32(b[fhCRC:]); got != want {
		return FileHeader{}, fmt.Errorf("%w: file header CRC %08x, stored %08x", ErrCorrupt, got, want)
	}
	// The CRC holds, so an unknown flag was written on purpose, by a build
	// that gave it a meaning this one cannot honour: ErrVersion, not
	// ErrCorrupt, so that fsck does not "repair" it away.
	flags := binary.LittleEndian.Uint32(b[fhFlags:])
	if unknown := flags &^ knownFlags; unknown != 0 {
		return FileHeader{}, fmt.Errorf("%w: file header flags %#x unknown to this build", ErrVersion, unknown)
	}
	if !allZero(b[fhRsvd1:fhFloorGap]) {
		return FileHeader{}, fmt.Errorf("%w: nonzero dictionary ID or reserved bytes in file header", ErrCorrupt)
	}
	// Without the flag the floor gap bytes are reserved, as they were before
	// the field existed.
	gap := binary.LittleEndian.Uint32(b[fhFloorGap:])
	if gap != 0 && flags&FlagSeqFloor == 0 {
		return FileHeader{}, fmt.Errorf("%w: floor gap %d in a file header without FlagSeqFloor", ErrCorrupt, gap)
	}
	h := FileHeader{
		Flags:     flags,
		FloorGap:  gap,
		SegmentID: binary.LittleEndian.Uint64(b[fhSegmentID:]),
		FirstSeq:  binary.LittleEndian.Uint64(b[fhFirstSeq:]),
		ShardKey:  binary.LittleEndian.Uint64(b[fhShardKey:]),
		CreatedNs: int64(binary.LittleEndian.Uint64(b[fhCreated:])),
		Codec:     Codec(b[fhCodec]),
	}
	if !h.Codec.valid() {
		return FileHeader{}, fmt.Errorf("%w: file header codec %d", ErrCorrupt, b[fhCodec])
	}
	if h.Encrypted() {
		var err error
		if h.Key, err = readKeyBlock(b); err != nil {
			return FileHeader{}, err
		}
	}
	return h, nil
}

// readKeyBlock decodes the key block of an encrypted header b.
func readKeyBlock(b []byte) (KeyBlock, error) {
	if len(b) < MaxFileHeaderSize {
		return KeyBlock{}, fmt.Errorf("%w: encrypted file header is %d bytes, want %d with its key block", ErrTorn, len(b), MaxFileHeaderSize)
	}
	return decodeKeyBlock(b)
}

// Frame header field offsets (doc.go).
const (
	frType     = 0
	frCodec    = 1
	frFlags    = 2
	frRsvd     = 3
	frStored   = 4
	frRaw      = 8
	frCount    = 12
	frFirstSeq = 16
	frLastSeq  = 24
	frMinTs    = 32
	frMaxTs    = 40
	frPrevCRC  = 48
	frCRC      = 52
)

// FrameSealed is the frame flag (header byte 2) of a frame whose stored
// payload is sealed: nonce, AES-256-GCM ciphertext of the codec's output,
// tag. Exactly the frames of an encrypted segment have it.
const FrameSealed uint8 = 1 << 0

// FrameHeader is the fixed header in front of every frame.
type FrameHeader struct {
	Type  FrameType
	Codec Codec
	// Sealed: the stored payload is encrypted (FrameSealed). Then StoredLen
	// counts the SealOverhead too, and RawLen is still the records' length.
	Sealed bool
	// StoredLen is the payload length on disk, excluding padding.
	StoredLen uint32
	// RawLen is the payload length before compression.
	RawLen uint32
	// Count is the number of records, at least 1.
	Count uint32
	// FirstSeq and LastSeq are the first and last record's sequence.
	FirstSeq, LastSeq uint64
	// MinTs and MaxTs bound the records' arrival times, in Unix milliseconds.
	MinTs, MaxTs int64
	// PrevCRC is the previous frame's CRC, 0 for a file's first frame.
	PrevCRC uint32
	// CRC is the CRC32C of header bytes 0-51 and the stored payload.
	CRC uint32
}

// Size is the frame's full length in the file: header, payload and padding.
func (h FrameHeader) Size() int64 {
	return FrameHeaderSize + align8(int64(h.StoredLen))
}

func align8(n int64) int64 { return (n + 7) &^ 7 }

// Encode returns the header's 56 bytes with h.CRC as given; see FrameCRC.
func (h FrameHeader) Encode() [FrameHeaderSize]byte {
	var b [FrameHeaderSize]byte
	h.put(b[:])
	return b
}

func (h FrameHeader) put(b []byte) {
	_ = b[FrameHeaderSize-1]
	b[frType] = byte(h.Type)
	b[frCodec] = byte(h.Codec)
	b[frFlags], b[frRsvd] = 0, 0
	if h.Sealed {
		b[frFlags] = FrameSealed
	}
	binary.LittleEndian.PutUint32(b[frStored:], h.StoredLen)
	binary.LittleEndian.PutUint32(b[frRaw:], h.RawLen)
	binary.LittleEndian.PutUint32(b[frCount:], h.Count)
	binary.LittleEndian.PutUint64(b[frFirstSeq:], h.FirstSeq)
	binary.LittleEndian.PutUint64(b[frLastSeq:], h.LastSeq)
	binary.LittleEndian.PutUint64(b[frMinTs:], uint64(h.MinTs))
	binary.LittleEndian.PutUint64(b[frMaxTs:], uint64(h.MaxTs))
	binary.LittleEndian.PutUint32(b[frPrevCRC:], h.PrevCRC)
	binary.LittleEndian.PutUint32(b[frCRC:], h.CRC)
}

// minRecordSize is the smallest encoding of a record: four one-byte uvarints
// (seq gap, arrival delta, key length, data length) and the flags byte.
const minRecordSize = 5

// DecodeFrameHeader parses a frame header and checks that it is self-consistent:
// known type and codec, zero reserved bytes, lengths within MaxFramePayload,
// Count >= 1 and no more than the sequence range and raw length can hold,
// FirstSeq <= LastSeq, MinTs <= MaxTs, and StoredLen == RawLen for a raw frame.
// An all-zero header is ErrEndOfData and fewer than FrameHeaderSize bytes is
// ErrTorn. The CRC is not checked: that needs the payload (see FrameCRC).
func DecodeFrameHeader(b []byte) (FrameHeader, error) {
	if len(b) < FrameHeaderSize {
		return FrameHeader{}, fmt.Errorf("%w: frame header is %d bytes, want %d", ErrTorn, len(b), FrameHeaderSize)
	}
	b = b[:FrameHeaderSize]
	if allZero(b) {
		return FrameHeader{}, ErrEndOfData
	}
	h := FrameHeader{
		Type:      FrameType(b[frType]),
		Codec:     Codec(b[frCodec]),
		Sealed:    b[frFlags] == FrameSealed,
		StoredLen: binary.LittleEndian.Uint32(b[frStored:]),
		RawLen:    binary.LittleEndian.Uint32(b[frRaw:]),
		Count:     binary.LittleEndian.Uint32(b[frCount:]),
		FirstSeq:  binary.LittleEndian.Uint64(b[frFirstSeq:]),
		LastSeq:   binary.LittleEndian.Uint64(b[frLastSeq:]),
		MinTs:     int64(binary.LittleEndian.Uint64(b[frMinTs:])),
		MaxTs:     int64(binary.LittleEndian.Uint64(b[frMaxTs:])),
		PrevCRC:   binary.LittleEndian.Uint32(b[frPrevCRC:]),
		CRC:       binary.LittleEndian.Uint32(b[frCRC:]),
	}
	if b[frFlags]&^FrameSealed != 0 || b[frRsvd] != 0 {
		return FrameHeader{}, fmt.Errorf("%w: unknown frame flags %#x or nonzero reserved byte in frame header", ErrCorrupt, b[frFlags])
	}
	if err := h.check(); err != nil {
		return FrameHeader{}, fmt.Errorf("%w: frame header: %v", ErrCorrupt, err)
	}
	return h, nil
}

// check is DecodeFrameHeader's sanity check of the decoded fields.
func (h FrameHeader) check() error {
	// body is the codec's output: the stored payload without the sealing.
	body, maxStored := h.StoredLen, uint32(MaxFramePayload)
	if h.Sealed {
		body, maxStored = h.StoredLen-SealOverhead, MaxFramePayload+SealOverhead
	}
	switch {
	case h.Type != FrameRecords:
		return fmt.Errorf("type %d", h.Type)
	case !h.Codec.valid():
		return fmt.Errorf("codec %d", h.Codec)
	case h.StoredLen > maxStored || h.RawLen > MaxFramePayload:
		return fmt.Errorf("stored %d / raw %d bytes exceeds %d", h.StoredLen, h.RawLen, MaxFramePayload)
	case h.Sealed && h.StoredLen <= SealOverhead:
		return fmt.Errorf("sealed payload of %d bytes", h.StoredLen)
	case h.Codec == CodecNone && body != h.RawLen:
		return fmt.Errorf("raw frame with stored %d != raw %d bytes", h.StoredLen, h.RawLen)
	case h.StoredLen == 0:
		return errors.New("empty payload")
	case h.Count == 0:
		return errors.New("no records")
	case h.FirstSeq > h.LastSeq:
		return fmt.Errorf("first seq %d > last seq %d", h.FirstSeq, h.LastSeq)
	case uint64(h.Count)-1 > h.LastSeq-h.FirstSeq:
		// Sequences strictly increase, so count records span at least count seqs.
		return fmt.Errorf("%d records cannot fit seqs %d..%d", h.Count, h.FirstSeq, h.LastSeq)
	case uint64(h.Count)*minRecordSize > uint64(h.RawLen):
		return fmt.Errorf("%d records cannot fit in %d raw bytes", h.Count, h.RawLen)
	case h.MinTs > h.MaxTs:
		return fmt.Errorf("min ts %d > max ts %d", h.MinTs, h.MaxTs)
	}
	return nil
}

// FrameCRC is the CRC32C of a frame: header bytes 0-51 (everything but the CRC
// itself) followed by the stored payload. hdr must hold at least 52 bytes.
func FrameCRC(hdr []byte, stored []byte) uint32 {
	crc := crc32.Update(0, castagnoli, hdr[:frCRC])
	return crc32.Update(crc, castagnoli, stored)
}

// Record is one record of a frame.
type Record struct {
	Seq          uint64
	ArrivalMs    int64
	PartitionKey string
	Data         []byte
	// Sealed is set on decoding a record of a sealed frame (it was stored
	// encrypted); encoding ignores it.
	Sealed bool
}

// RawSize is the exact length AppendRecords adds for recs, for callers that
// cap frames before encoding them.
func RawSize(recs []Record) int {
	if len(recs) == 0 {
		return 0
	}
	n, prev, minTs := 0, recs[0].Seq, recs[0].ArrivalMs
	for i, r := range recs {
		gap := uint64(0)
		if i > 0 {
			gap = r.Seq - prev - 1
		}
		prev = r.Seq
		n += uvarintLen(gap) + uvarintLen(uint64(r.ArrivalMs-minTs)) +
			uvarintLen(uint64(len(r.PartitionKey))) + len(r.PartitionKey) + 1 +
			uvarintLen(uint64(len(r.Data))) + len(r.Data)
	}
	return n
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// AppendRecords appends the raw payload of recs (doc.go) to dst. The caller
// guarantees a non-empty batch with strictly increasing Seq and non-decreasing
// ArrivalMs (Writer.Append checks this); the frame's MinTs is recs[0].ArrivalMs.
// It panics otherwise, rather than write a frame that can never be decoded.
func AppendRecords(dst []byte, recs []Record) []byte {
	if len(recs) == 0 {
		panic("segment: AppendRecords of no records")
	}
	prev, minTs := recs[0].Seq, recs[0].ArrivalMs
	for i, r := range recs {
		gap := uint64(0) // the first record's seq is the frame's FirstSeq
		if i > 0 {
			if r.Seq <= prev || r.ArrivalMs < recs[i-1].ArrivalMs {
				panic(fmt.Sprintf("segment: AppendRecords: record %d (seq %d, arrival %d) out of order", i, r.Seq, r.ArrivalMs))
			}
			gap = r.Seq - prev - 1
		}
		prev = r.Seq
		dst = binary.AppendUvarint(dst, gap)
		dst = binary.AppendUvarint(dst, uint64(r.ArrivalMs-minTs))
		dst = binary.AppendUvarint(dst, uint64(len(r.PartitionKey)))
		dst = append(dst, r.PartitionKey...)
		dst = append(dst, 0) // flags, reserved
		dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
		dst = append(dst, r.Data...)
	}
	return dst
}

// DecodeRecords parses raw, a frame's decompressed payload, calling fn for each
// record in order until fn returns false. It checks what EncodeFrame
// guarantees: raw holds exactly h.Count records and nothing else, seqs run
// from h.FirstSeq to h.LastSeq, and arrival times do not decrease from h.MinTs
// (the first record's) to h.MaxTs (the last record's). Any mismatch is
// ErrCorrupt; checks on records after an early stop are skipped. Record.Data
// aliases raw; PartitionKey is a copy.
func DecodeRecords(raw []byte, h FrameHeader, fn func(Record) bool) error {
	d := recordDecoder{b: raw, h: h}
	for i := uint32(0); i < h.Count; i++ {
		r, err := d.next(i == 0)
		if err != nil {
			return fmt.Errorf("%w: record %d of %d: %v", ErrCorrupt, i, h.Count, err)
		}
		if !fn(r) {
			return nil
		}
	}
	switch {
	case len(d.b) != 0:
		return fmt.Errorf("%w: %d bytes after the last of %d records", ErrCorrupt, len(d.b), h.Count)
	case d.seq != h.LastSeq:
		return fmt.Errorf("%w: last record seq %d, frame header says %d", ErrCorrupt, d.seq, h.LastSeq)
	case d.ts != h.MaxTs:
		return fmt.Errorf("%w: last record arrival %d, frame header says max ts %d", ErrCorrupt, d.ts, h.MaxTs)
	}
	return nil
}

// recordDecoder consumes b one record at a time; seq and ts are the last
// record's.
type recordDecoder struct {
	b   []byte
	h   FrameHeader
	seq uint64
	ts  int64
}

func (d *recordDecoder) next(first bool) (Record, error) {
	gap, err := d.uvarint("seq gap")
	if err != nil {
		return Record{}, err
	}
	r := Record{Sealed: d.h.Sealed}
	switch {
	case first && gap != 0:
		return Record{}, fmt.Errorf("first record has seq gap %d", gap)
	case first:
		r.Seq = d.h.FirstSeq
	case gap >= d.h.LastSeq-d.seq: // d.seq+1+gap > LastSeq, without overflow
		return Record{}, fmt.Errorf("seq %d+1+%d beyond last seq %d", d.seq, gap, d.h.LastSeq)
	default:
		r.Seq = d.seq + 1 + gap
	}
	d.seq = r.Seq
	delta, err := d.uvarint("arrival")
	if err != nil {
		return Record{}, err
	}
	if delta > uint64(d.h.MaxTs)-uint64(d.h.MinTs) { // MaxTs >= MinTs, so exact modulo 2^64
		return Record{}, fmt.Errorf("arrival %d+%d beyond max ts %d", d.h.MinTs, delta, d.h.MaxTs)
	}
	r.ArrivalMs = int64(uint64(d.h.MinTs) + delta)
	switch {
	case first && delta != 0:
		return Record{}, fmt.Errorf("first record arrives at %d, after min ts %d", r.ArrivalMs, d.h.MinTs)
	case !first && r.ArrivalMs < d.ts:
		return Record{}, fmt.Errorf("arrival %d before the previous record's %d", r.ArrivalMs, d.ts)
	}
	d.ts = r.ArrivalMs
	key, err := d.bytes("partition key")
	if err != nil {
		return Record{}, err
	}
	r.PartitionKey = string(key)
	if len(d.b) == 0 || d.b[0] != 0 {
		return Record{}, errors.New("missing or nonzero flags byte")
	}
	d.b = d.b[1:]
	if r.Data, err = d.bytes("data"); err != nil {
		return Record{}, err
	}
	return r, nil
}

func (d *recordDecoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, fmt.Errorf("bad varint for %s", what)
	}
	d.b = d.b[n:]
	return v, nil
}

// bytes reads a uvarint length and that many bytes. The result's capacity is
// clipped so that appending to it cannot overwrite the next record.
func (d *recordDecoder) bytes(what string) ([]byte, error) {
	n, err := d.uvarint(what)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.b)) || n > math.MaxInt32 {
		return nil, fmt.Errorf("%s length %d, only %d bytes left", what, n, len(d.b))
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
