package wire

import (
	"encoding/base64"
	"encoding/binary"
)

// GetRecords spends a third of its CPU encoding record data as base64
// (BENCHMARKS.md, "Per-request cost"). encoding/base64 turns 3 bytes into 4
// characters per step through a 64-entry table; appendBase64 turns 6 bytes
// into 8 characters per step through a table of character pairs, one
// 12-bit lookup per pair and one 8-byte store per step, and leaves the tail
// (and padding) to encoding/base64. The output is the same (checked against
// encoding/base64 for every length by TestAppendBase64).

const stdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// base64Pairs maps 12 bits to their two base64 characters, the first in the
// low byte (little-endian store order).
var base64Pairs = func() (t [4096]uint16) {
	for i := range t {
		t[i] = uint16(stdAlphabet[i>>6]) | uint16(stdAlphabet[i&63])<<8
	}
	return t
}()

// appendBase64 appends the standard (padded) base64 encoding of src to dst.
func appendBase64(dst, src []byte) []byte {
	n := base64.StdEncoding.EncodedLen(len(src))
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n+(start+n)/4)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	out := dst[start:]
	// Each step reads 8 bytes and uses 6 of them, so it stops 8 short of
	// the end; the slices shrink as it goes, so bounds checks stay cheap.
	for len(src) >= 8 && len(out) >= 8 {
		v := binary.BigEndian.Uint64(src)
		w := uint64(base64Pairs[v>>52]) |
			uint64(base64Pairs[v>>40&0xfff])<<16 |
			uint64(base64Pairs[v>>28&0xfff])<<32 |
			uint64(base64Pairs[v>>16&0xfff])<<48
		binary.LittleEndian.PutUint64(out, w)
		src, out = src[6:], out[8:]
	}
	base64.StdEncoding.Encode(out, src)
	return dst
}
