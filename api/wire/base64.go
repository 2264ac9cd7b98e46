package wire

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
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

// base64Quads maps two base64 characters (the first in the high byte) to
// their 12 bits; 0xffff marks a pair with a character outside the alphabet.
var base64Quads = func() (t [65536]uint16) {
	var val [256]int
	for i := range val {
		val[i] = -1
	}
	for i := range len(stdAlphabet) {
		val[stdAlphabet[i]] = i
	}
	for i := range t {
		a, b := val[i>>8], val[i&0xff]
		if a < 0 || b < 0 {
			t[i] = 0xffff
			continue
		}
		t[i] = uint16(a<<6 | b)
	}
	return t
}()

// decodeBase64Strict decodes src, standard padded base64, into dst (at
// least DecodedLen(len(src)) long) as strictBase64.Decode does, and
// returns the same count and error: whole steps of 8 characters outside
// the last 8 go through base64Quads, 6 bytes each; the rest, and any step
// holding a character outside the alphabet (padding, newlines, garbage),
// go to strictBase64 from that step on, which words the error.
func decodeBase64Strict(dst, src []byte) (int, error) {
	out, in := dst, src
	for len(in) > 8 && len(out) >= 8 {
		a := base64Quads[uint16(in[0])<<8|uint16(in[1])]
		b := base64Quads[uint16(in[2])<<8|uint16(in[3])]
		c := base64Quads[uint16(in[4])<<8|uint16(in[5])]
		d := base64Quads[uint16(in[6])<<8|uint16(in[7])]
		if (a|b|c|d)&0xf000 != 0 { // a pair outside the alphabet
			break
		}
		// The store writes 8 bytes, the step's 6 and 2 that the next step
		// or the tail overwrites (the tail decodes at least 1 byte: the last
		// 8 characters are left to it), within dst either way.
		binary.BigEndian.PutUint64(out, uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		in, out = in[8:], out[6:]
	}
	done, read := len(dst)-len(out), len(src)-len(in)
	n, err := strictBase64.Decode(out, in)
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		return done + n, ce + base64.CorruptInputError(read)
	}
	return done + n, err
}
