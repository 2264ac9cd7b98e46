package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
)

func TestFileHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    FileHeader
	}{
		{"zero", FileHeader{}},
		{"typical", FileHeader{SegmentID: 0x2a, FirstSeq: 100, ShardKey: 0xdeadbeefcafe, CreatedNs: 1_700_000_000_000_000_000, Codec: CodecZstd}},
		{"extremes", FileHeader{SegmentID: math.MaxUint64, FirstSeq: math.MaxUint64, ShardKey: math.MaxUint64, CreatedNs: math.MinInt64, Codec: CodecNone}},
		{"sequence floor", FileHeader{SegmentID: 9, FirstSeq: 79, ShardKey: 0xdeadbeefcafe, CreatedNs: 1, Codec: CodecZstd, Flags: FlagSeqFloor}},
		{"sequence floor with its gap", FileHeader{SegmentID: 9, FirstSeq: 79, ShardKey: 0xdeadbeefcafe, CreatedNs: 1, Codec: CodecZstd, Flags: FlagSeqFloor, FloorGap: 7}},
		{"sequence floor with the largest gap", FileHeader{SegmentID: 9, FirstSeq: math.MaxUint64, Codec: CodecZstd, Flags: FlagSeqFloor, FloorGap: math.MaxUint32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.h.Encode()
			if !bytes.Equal(b[:8], Magic[:]) {
				t.Fatalf("magic %x", b[:8])
			}
			got, err := DecodeFileHeader(b[:])
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.h {
				t.Fatalf("got %+v, want %+v", got, tt.h)
			}
		})
	}
}

// resealFile recomputes a file header's CRC after a test edits it.
func resealFile(b []byte) {
	binary.LittleEndian.PutUint32(b[fhCRC:], crc32.Checksum(b[:fhCRC], castagnoli))
}

func TestDecodeFileHeaderErrors(t *testing.T) {
	good := FileHeader{SegmentID: 1, FirstSeq: 2, ShardKey: 3, CreatedNs: 4, Codec: CodecZstd}.Encode()
	tests := []struct {
		name   string
		edit   func(b []byte) []byte
		reseal bool
		want   error
	}{
		{"short", func(b []byte) []byte { return b[:63] }, false, ErrTorn},
		{"empty", func(b []byte) []byte { return nil }, false, ErrTorn},
		{"bad magic", func(b []byte) []byte { b[1] = 'X'; return b }, true, ErrCorrupt},
		{"all zero", func(b []byte) []byte { return make([]byte, 64) }, false, ErrCorrupt},
		{"future version", func(b []byte) []byte { b[fhVersion] = 2; return b }, true, ErrVersion},
		{"version bit flip", func(b []byte) []byte { b[fhVersion] ^= 4; return b }, false, ErrVersion},
		{"header length", func(b []byte) []byte { b[fhHdrLen] = 128; return b }, true, ErrCorrupt},
		{"bad CRC", func(b []byte) []byte { b[fhFirstSeq] ^= 1; return b }, false, ErrCorrupt},
		{"CRC bit flip", func(b []byte) []byte { b[fhCRC+3] ^= 0x80; return b }, false, ErrCorrupt},
		{"unknown flag next to the encryption flag", func(b []byte) []byte { b[fhFlags] = 4; return b }, true, ErrVersion},
		{"floor flag with an unknown one", func(b []byte) []byte { b[fhFlags] = 5; return b }, true, ErrVersion},
		{"encryption flag without a key block", func(b []byte) []byte { b[fhFlags] = 2; return b }, true, ErrTorn},
		{"unknown flag in the high byte", func(b []byte) []byte { b[fhFlags+3] = 0x80; return b }, true, ErrVersion},
		{"floor flag set without a new CRC", func(b []byte) []byte { b[fhFlags] = 1; return b }, false, ErrCorrupt},
		{"reserved after codec", func(b []byte) []byte { b[fhRsvd1+1] = 1; return b }, true, ErrCorrupt},
		{"dictionary ID", func(b []byte) []byte { b[fhDictID] = 9; return b }, true, ErrCorrupt},
		{"floor gap without the floor flag", func(b []byte) []byte { b[fhFloorGap] = 1; return b }, true, ErrCorrupt},
		{"floor gap high byte without the floor flag", func(b []byte) []byte { b[fhFloorGap+3] = 0x80; return b }, true, ErrCorrupt},
		{"floor gap changed without a new CRC", func(b []byte) []byte { b[fhFlags] = 1; b[fhFloorGap] = 1; resealFile(b); b[fhFloorGap] = 2; return b }, false, ErrCorrupt},
		{"unknown codec", func(b []byte) []byte { b[fhCodec] = 7; return b }, true, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.edit(bytes.Clone(good))
			if tt.reseal {
				resealFile(in)
			}
			_, err := DecodeFileHeader(in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestFileHeaderFlagsLayout pins the flags field: a little-endian uint32 at
// bytes 12-15, zero in every file written before flags existed, so those
// files encode (and decode) exactly as they did.
func TestFileHeaderFlagsLayout(t *testing.T) {
	plain := FileHeader{SegmentID: 1, FirstSeq: 2, ShardKey: 3, CreatedNs: 4, Codec: CodecZstd}
	floor := plain
	floor.Flags = FlagSeqFloor
	pb, fb := plain.Encode(), floor.Encode()
	if !allZero(pb[fhFlags:fhSegmentID]) {
		t.Fatalf("flags 0 encoded as %x", pb[fhFlags:fhSegmentID])
	}
	if want := []byte{1, 0, 0, 0}; !bytes.Equal(fb[fhFlags:fhSegmentID], want) {
		t.Fatalf("FlagSeqFloor encoded as %x, want %x", fb[fhFlags:fhSegmentID], want)
	}
	if !bytes.Equal(pb[:fhFlags], fb[:fhFlags]) || !bytes.Equal(pb[fhSegmentID:fhCRC], fb[fhSegmentID:fhCRC]) {
		t.Fatal("the flag changed bytes outside the flags field and the CRC")
	}
}

// TestFileHeaderFloorGapLayout pins the floor gap: a little-endian uint32 at
// bytes 56-59, where a header without it (gap 0) has the zero reserved bytes
// of files written before the field existed.
func TestFileHeaderFloorGapLayout(t *testing.T) {
	floor := FileHeader{SegmentID: 1, FirstSeq: 2, ShardKey: 3, CreatedNs: 4, Codec: CodecZstd, Flags: FlagSeqFloor}
	gapped := floor
	gapped.FloorGap = 0x01020304
	fb, gb := floor.Encode(), gapped.Encode()
	if !allZero(fb[fhFloorGap:fhCRC]) {
		t.Fatalf("floor gap 0 encoded as %x", fb[fhFloorGap:fhCRC])
	}
	if want := []byte{4, 3, 2, 1}; !bytes.Equal(gb[fhFloorGap:fhCRC], want) {
		t.Fatalf("floor gap encoded as %x, want %x", gb[fhFloorGap:fhCRC], want)
	}
	if !bytes.Equal(fb[:fhFloorGap], gb[:fhFloorGap]) {
		t.Fatal("the floor gap changed bytes outside its field and the CRC")
	}
}

func TestFloorGap(t *testing.T) {
	for _, tt := range []struct {
		first, from uint64
		want        uint32
	}{{10, 3, 7}, {1 << 40, 1<<40 - math.MaxUint32, math.MaxUint32}, {1 << 40, 1<<40 - math.MaxUint32 - 1, 0}, {math.MaxUint64, 0, 0}} {
		if got := FloorGapOf(tt.first, tt.from); got != tt.want {
			t.Errorf("FloorGapOf(%d, %d) = %d, want %d", tt.first, tt.from, got, tt.want)
		}
	}
	for _, tt := range []struct {
		first uint64
		gap   uint32
		end   uint64
		want  bool
	}{
		{10, 7, 3, true},
		{10, 7, 2, false}, // the segment the floor followed is gone: a bigger gap
		{10, 7, 4, false},
		{10, 0, 2, true}, // not recorded
		{math.MaxUint64, 0, 0, true},
		{5, math.MaxUint32, 1, false}, // a gap larger than FirstSeq cannot match
	} {
		if got := GapDeclared(tt.first, tt.gap, tt.end); got != tt.want {
			t.Errorf("GapDeclared(%d, %d, %d) = %v, want %v", tt.first, tt.gap, tt.end, got, tt.want)
		}
	}
}

func TestFrameHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    FrameHeader
	}{
		{"one record", FrameHeader{Type: FrameRecords, Codec: CodecNone, StoredLen: 5, RawLen: 5, Count: 1, FirstSeq: 7, LastSeq: 7, MinTs: 1, MaxTs: 1}},
		{"zstd with gaps", FrameHeader{Type: FrameRecords, Codec: CodecZstd, StoredLen: 100, RawLen: 5000, Count: 10, FirstSeq: 1, LastSeq: 1000, MinTs: -5, MaxTs: 5, PrevCRC: 0xffffffff, CRC: 0x12345678}},
		{"max lengths", FrameHeader{Type: FrameRecords, Codec: CodecZstd, StoredLen: MaxFramePayload, RawLen: MaxFramePayload, Count: 1, FirstSeq: math.MaxUint64, LastSeq: math.MaxUint64, MinTs: math.MinInt64, MaxTs: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.h.Encode()
			got, err := DecodeFrameHeader(b[:])
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.h {
				t.Fatalf("got %+v, want %+v", got, tt.h)
			}
		})
	}
}

func TestFrameHeaderSize(t *testing.T) {
	for _, tt := range []struct {
		stored uint32
		want   int64
	}{{1, 64}, {7, 64}, {8, 64}, {9, 72}, {16, 72}, {MaxFramePayload, FrameHeaderSize + MaxFramePayload}} {
		if got := (FrameHeader{StoredLen: tt.stored}).Size(); got != tt.want {
			t.Errorf("Size(stored %d) = %d, want %d", tt.stored, got, tt.want)
		}
	}
}

func TestDecodeFrameHeaderErrors(t *testing.T) {
	good := FrameHeader{Type: FrameRecords, Codec: CodecZstd, StoredLen: 40, RawLen: 100, Count: 3, FirstSeq: 10, LastSeq: 20, MinTs: 5, MaxTs: 6}
	tests := []struct {
		name string
		edit func(h *FrameHeader, b []byte) []byte
		want error
	}{
		{"all zero", func(_ *FrameHeader, b []byte) []byte { return make([]byte, FrameHeaderSize) }, ErrEndOfData},
		{"short", func(_ *FrameHeader, b []byte) []byte { return b[:55] }, ErrTorn},
		{"type zero", func(h *FrameHeader, _ []byte) []byte { h.Type = FrameInvalid; return nil }, ErrCorrupt},
		{"unknown type", func(h *FrameHeader, _ []byte) []byte { h.Type = 2; return nil }, ErrCorrupt},
		{"unknown codec", func(h *FrameHeader, _ []byte) []byte { h.Codec = 2; return nil }, ErrCorrupt},
		{"reserved", func(_ *FrameHeader, b []byte) []byte { b[frRsvd] = 1; return b }, ErrCorrupt},
		{"unknown frame flag", func(_ *FrameHeader, b []byte) []byte { b[frFlags] = 2; return b }, ErrCorrupt},
		{"stored too long", func(h *FrameHeader, _ []byte) []byte { h.StoredLen = MaxFramePayload + 1; return nil }, ErrCorrupt},
		{"raw too long", func(h *FrameHeader, _ []byte) []byte { h.RawLen = MaxFramePayload + 1; return nil }, ErrCorrupt},
		{"raw codec lengths differ", func(h *FrameHeader, _ []byte) []byte { h.Codec = CodecNone; return nil }, ErrCorrupt},
		{"empty payload", func(h *FrameHeader, _ []byte) []byte { h.StoredLen = 0; return nil }, ErrCorrupt},
		{"no records", func(h *FrameHeader, _ []byte) []byte { h.Count = 0; return nil }, ErrCorrupt},
		{"first after last", func(h *FrameHeader, _ []byte) []byte { h.FirstSeq = 21; return nil }, ErrCorrupt},
		{"more records than seqs", func(h *FrameHeader, _ []byte) []byte { h.Count = 12; return nil }, ErrCorrupt},
		{"more records than bytes", func(h *FrameHeader, _ []byte) []byte { h.RawLen = 14; return nil }, ErrCorrupt},
		{"min ts after max", func(h *FrameHeader, _ []byte) []byte { h.MinTs = 7; return nil }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good
			enc := h.Encode()
			in := tt.edit(&h, enc[:])
			if in == nil {
				enc = h.Encode()
				in = enc[:]
			}
			_, err := DecodeFrameHeader(in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// headerFor is the frame header EncodeFrame would give recs' raw payload.
func headerFor(recs []Record, raw []byte) FrameHeader {
	return FrameHeader{Type: FrameRecords, StoredLen: uint32(len(raw)), RawLen: uint32(len(raw)), Count: uint32(len(recs)),
		FirstSeq: recs[0].Seq, LastSeq: recs[len(recs)-1].Seq, MinTs: recs[0].ArrivalMs, MaxTs: recs[len(recs)-1].ArrivalMs}
}

func TestRecordsRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	tests := []struct {
		name string
		recs []Record
	}{
		{"one record", []Record{{Seq: 1, ArrivalMs: 1000, PartitionKey: "k", Data: []byte("hello")}}},
		{"empty data", []Record{{Seq: 5, ArrivalMs: 1, PartitionKey: "pk"}, {Seq: 6, ArrivalMs: 1, PartitionKey: "pk", Data: []byte{}}}},
		{"empty partition keys", []Record{{Seq: 0, Data: []byte("a")}, {Seq: 1, PartitionKey: "", Data: []byte("b")}, {Seq: 2, PartitionKey: "x"}}},
		{"long partition key", []Record{{Seq: 9, PartitionKey: strings.Repeat("p", 256), Data: []byte("d")}}},
		{"1 MiB data", []Record{{Seq: 3, ArrivalMs: 10, PartitionKey: "big", Data: big}, {Seq: 4, ArrivalMs: 11, PartitionKey: "small", Data: []byte("x")}}},
		{"seq gaps", []Record{{Seq: 10}, {Seq: 11}, {Seq: 200}, {Seq: 1 << 40}, {Seq: 1<<40 + 1}}},
		{"seq at max", []Record{{Seq: math.MaxUint64 - 1}, {Seq: math.MaxUint64}}},
		{"arrival spread", []Record{{Seq: 1, ArrivalMs: -1000}, {Seq: 2, ArrivalMs: 0}, {Seq: 3, ArrivalMs: 1 << 50}}},
		{"arrival extremes", []Record{{Seq: 1, ArrivalMs: math.MinInt64}, {Seq: 2, ArrivalMs: math.MaxInt64}}},
		{"binary data", []Record{{Seq: 1, PartitionKey: "\x00\xff", Data: []byte{0, 0, 0, 0xff}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := AppendRecords([]byte("prefix"), tt.recs)[len("prefix"):]
			if n := RawSize(tt.recs); n != len(raw) {
				t.Fatalf("RawSize = %d, encoded %d bytes", n, len(raw))
			}
			var got []Record
			if err := DecodeRecords(raw, headerFor(tt.recs, raw), collect(&got)); err != nil {
				t.Fatal(err)
			}
			if err := recordsEqual(got, tt.recs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeRecordsStopsEarly(t *testing.T) {
	recs := []Record{{Seq: 1}, {Seq: 2}, {Seq: 3}}
	raw := AppendRecords(nil, recs)
	n := 0
	err := DecodeRecords(raw, headerFor(recs, raw), func(Record) bool { n++; return n < 2 })
	if err != nil || n != 2 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
}

func TestDecodeRecordsCorrupt(t *testing.T) {
	recs := []Record{
		{Seq: 10, ArrivalMs: 100, PartitionKey: "a", Data: []byte("one")},
		{Seq: 12, ArrivalMs: 101, PartitionKey: "b", Data: []byte("two")},
	}
	raw := AppendRecords(nil, recs)
	tests := []struct {
		name string
		edit func(h *FrameHeader, raw []byte) []byte
	}{
		{"truncated", func(_ *FrameHeader, raw []byte) []byte { return raw[:len(raw)-1] }},
		{"trailing byte", func(_ *FrameHeader, raw []byte) []byte { return append(raw, 0) }},
		{"count too high", func(h *FrameHeader, raw []byte) []byte { h.Count = 3; return raw }},
		{"count too low", func(h *FrameHeader, raw []byte) []byte { h.Count = 1; return raw }},
		{"last seq mismatch", func(h *FrameHeader, raw []byte) []byte { h.LastSeq = 13; return raw }},
		{"seq beyond last", func(h *FrameHeader, raw []byte) []byte { h.LastSeq = 11; return raw }},
		{"first seq gap", func(_ *FrameHeader, raw []byte) []byte { raw[0] = 1; return raw }},
		{"arrival beyond max", func(h *FrameHeader, raw []byte) []byte { h.MaxTs = 100; return raw }},
		{"max ts not reached", func(h *FrameHeader, raw []byte) []byte { h.MaxTs = 102; return raw }},
		{"first record after min ts", func(h *FrameHeader, raw []byte) []byte { h.MinTs = 99; return raw }},
		{"arrival goes back", func(h *FrameHeader, _ []byte) []byte {
			// Three records arriving at 100, 102, 101; max ts 102.
			var b []byte
			for _, delta := range []byte{0, 2, 1} {
				b = append(b, 0, delta, 0, 0, 0) // gap, arrival, key length, flags, data length
			}
			*h = FrameHeader{Type: FrameRecords, RawLen: uint32(len(b)), StoredLen: uint32(len(b)), Count: 3, FirstSeq: 1, LastSeq: 3, MinTs: 100, MaxTs: 102}
			return b
		}},
		{"nonzero flags", func(_ *FrameHeader, raw []byte) []byte { raw[4] = 1; return raw }},
		{"key length overruns", func(_ *FrameHeader, raw []byte) []byte { raw[2] = 100; return raw }},
		{"bad varint", func(_ *FrameHeader, raw []byte) []byte {
			return append(bytes.Repeat([]byte{0xff}, 11), raw...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := headerFor(recs, raw)
			in := tt.edit(&h, append([]byte(nil), raw...))
			err := DecodeRecords(in, h, func(Record) bool { return true })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestAppendRecordsPanicsOnDisorder(t *testing.T) {
	for name, recs := range map[string][]Record{
		"empty":              nil,
		"seq repeats":        {{Seq: 1}, {Seq: 1}},
		"seq goes back":      {{Seq: 2}, {Seq: 1}},
		"arrival goes back":  {{Seq: 1, ArrivalMs: 5}, {Seq: 2, ArrivalMs: 4}},
		"arrival goes back2": {{Seq: 1, ArrivalMs: 5}, {Seq: 2, ArrivalMs: 6}, {Seq: 3, ArrivalMs: 5}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			AppendRecords(nil, recs)
		})
	}
}

func TestEnumStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{CodecNone.String(), "none"}, {CodecZstd.String(), "zstd"}, {Codec(9).String(), "codec(9)"},
		{FrameInvalid.String(), "invalid"}, {FrameRecords.String(), "records"}, {FrameType(9).String(), "type(9)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
