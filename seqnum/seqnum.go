// Package seqnum renders and parses Kinesis sequence numbers.
//
// Inside shardlog a record's position is a per-shard ordinal (uint64, strictly
// increasing within the shard; see "The shared counter" below). At the API
// edge it is rendered in the layout AWS uses (reverse engineered by
// kinesalite, "version 2"), 47 hex digits read as one integer and printed in
// decimal, which gives the familiar 56-digit strings:
//
//	"2" | shardCreateSecs (9 hex) | shardIndex&0xf (1 hex) | ordinal (16 hex, top bit 0)
//	    | "00" (2 hex) | arrivalSecs (9 hex) | shardIndex (8 hex) | "2"
//
// Because the shard's creation time and index sit above and below the ordinal,
// a number names the shard it came from, and numbers from one shard compare in
// ordinal order. A child shard created after its parents gets a later creation
// second, so its numbers are greater than every number of its parents.
//
// # The shared counter
//
// AWS fills the 16-hex-digit field from a counter shared by a group of shards
// (0-4, 5-9, ...): records put one after another to shards 0 and 1 get
// consecutive values. shardlog does the same without a second number per
// record: the field is the record's ordinal, and the ordinals of a group's
// writable shards are taken from one counter (shard.Counter; storage makes
// one per group of a stream). So a shard's ordinals are no longer dense: it
// skips the values its group's other shards took. The ordinal is still the
// shard's own record position, stored with every record in its frame and
// keyed in the index, so reads, iterators, retention, recovery and fsck are
// unchanged: the segment format has always allowed gaps
// (SequenceNumberForOrdering makes them too), and a new segment still starts
// at the previous one's end.
//
// Durability needs nothing new. The counter is never written anywhere:
//
//   - Order within a shard: the shard's single writer takes each request's
//     ordinals from the counter, never below its own next ordinal, so they
//     strictly increase in the order records are written.
//   - No reuse after kill -9 or power loss: what a shard acknowledged is on
//     disk with its ordinal (under --sync always), and recovery sets the
//     shard's next ordinal above it; reopening the shard raises the counter
//     to that, before the writer starts. So no acknowledged sequence number,
//     nor even its index within the group, is given out again. Ordinals
//     taken but never acknowledged (a torn tail, a failed write) may be taken
//     again, as a lone shard's always could; no client ever saw them.
//   - Numbers stay unique across shards anyway: they carry the shard index
//     and its creation second.
package seqnum

import (
	"errors"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
)

// MaxOrdinal is the largest ordinal (the top bit of the 16-hex field is clear).
// AWS renders a closed shard's EndingSequenceNumber with it.
const MaxOrdinal = 1<<63 - 1

// ErrSyntax means a string is not a sequence number in this layout.
var ErrSyntax = errors.New("seqnum: malformed sequence number")

// Seq is a decoded sequence number.
type Seq struct {
	ShardCreateSecs int64  // the shard's creation time, unix seconds (36 bits)
	ShardIndex      uint32 // the N in shardId-N
	Ordinal         uint64 // position within the shard
	ArrivalSecs     int64  // the record's arrival time, unix seconds (36 bits)
}

const secsMask = 1<<36 - 1

// String renders s as a decimal string.
func (s Seq) String() string {
	var v u192
	v.push(2, 4)
	v.push(uint64(s.ShardCreateSecs)&secsMask, 36)
	v.push(uint64(s.ShardIndex&0xf), 4)
	v.push(s.Ordinal&MaxOrdinal, 64)
	v.push(0, 8)
	v.push(uint64(s.ArrivalSecs)&secsMask, 36)
	v.push(uint64(s.ShardIndex), 32)
	v.push(2, 4)
	return v.decimal()
}

// decimal renders v in base 10 without math/big: GetRecords renders one
// number per record, so this is on the read path.
func (v u192) decimal() string {
	const chunk = 1e19 // the largest power of ten below 2^64
	var parts [4]uint64
	n := 0
	for v != (u192{}) {
		var r uint64
		v[0], r = bits.Div64(0, v[0], chunk)
		v[1], r = bits.Div64(r, v[1], chunk)
		v[2], r = bits.Div64(r, v[2], chunk)
		parts[n] = r
		n++
	}
	if n == 0 {
		return "0"
	}
	b := strconv.AppendUint(make([]byte, 0, 60), parts[n-1], 10)
	for i := n - 2; i >= 0; i-- {
		d := strconv.AppendUint(nil, parts[i], 10)
		for range 19 - len(d) {
			b = append(b, '0')
		}
		b = append(b, d...)
	}
	return string(b)
}

// u192 is a 192-bit integer, v[0] most significant.
type u192 [3]uint64

// push shifts v left by n bits (n <= 64) and ors in x.
func (v *u192) push(x uint64, n uint) {
	if n == 64 {
		v[0], v[1], v[2] = v[1], v[2], x
		return
	}
	v[0] = v[0]<<n | v[1]>>(64-n)
	v[1] = v[1]<<n | v[2]>>(64-n)
	v[2] = v[2]<<n | x
}

// pop returns the low n bits of v and shifts v right by n (n < 64).
func (v *u192) pop(n uint) uint64 {
	x := v[2] & (1<<n - 1)
	v[2] = v[2]>>n | v[1]<<(64-n)
	v[1] = v[1]>>n | v[0]<<(64-n)
	v[0] >>= n
	return x
}

// Parse decodes a decimal sequence number. It accepts only numbers in this
// layout: anything else (including well-formed numbers of other AWS versions)
// is ErrSyntax, which the API reports as an invalid sequence number.
func Parse(str string) (Seq, error) {
	// AWS's pattern is 0|([1-9]\d{0,128}): a leading zero is not a sequence
	// number (found by FuzzParse: it broke the one-string-per-number rule).
	if len(str) == 0 || len(str) > 129 || str[0] == '0' || strings.TrimLeft(str, "0123456789") != "" {
		return Seq{}, ErrSyntax
	}
	b, ok := new(big.Int).SetString(str, 10)
	if !ok || b.BitLen() != 186 {
		return Seq{}, ErrSyntax
	}
	var v u192
	words := b.Bits() // little-endian words; 64-bit platforms only
	for i, w := range words {
		v[2-i] = uint64(w)
	}
	var s Seq
	tail := v.pop(4)
	s.ShardIndex = uint32(v.pop(32))
	s.ArrivalSecs = int64(v.pop(36))
	zero := v.pop(8)
	s.Ordinal = v.pop(32)
	s.Ordinal |= v.pop(32) << 32
	nib := v.pop(4)
	s.ShardCreateSecs = int64(v.pop(36))
	head := v.pop(4)
	if head != 2 || tail != 2 || zero != 0 || nib != uint64(s.ShardIndex&0xf) || s.Ordinal > MaxOrdinal {
		return Seq{}, ErrSyntax
	}
	return s, nil
}

// Legacy is a sequence number of one of AWS's older layouts, which Parse
// refuses: shardlog never issues them, but AWS still reads them.
type Legacy struct {
	Version int // 0 or 1
	// ShardIndex is, for version 0, the shard the number names: its low 16
	// bits. Version 1's layout is not known well enough to read one.
	ShardIndex uint32
}

// legacyBound is 2^124: AWS reads a smaller number as a version-0 number by
// adding it, which leaves the low bits (the shard index) as they are.
var legacyBound = new(big.Int).Lsh(big.NewInt(1), 124)

// ParseLegacy recognises the older layouts AWS still accepts (captured from
// AWS responses; unverified against the current service):
//
//   - version 0: any number below 2^124, whose low 16 bits are a shard index;
//   - version 1: 47 hex digits, the first 2 and the last 1 (the last digit is
//     the layout version: version 2 ends in 2, and 3 and 4 are refused).
//
// str must be a valid number by AWS's pattern 0|[1-9]\d{0,128}.
func ParseLegacy(str string) (Legacy, bool) {
	if len(str) == 0 || len(str) > 129 || (str[0] == '0' && str != "0") || strings.TrimLeft(str, "0123456789") != "" {
		return Legacy{}, false
	}
	b, ok := new(big.Int).SetString(str, 10)
	switch {
	case !ok:
		return Legacy{}, false
	case b.Cmp(legacyBound) < 0:
		return Legacy{Version: 0, ShardIndex: uint32(b.Uint64() & 0xffff)}, true
	case b.BitLen() == 186 && b.Bit(185) == 1 && b.Bit(184) == 0 && b.Uint64()&0xf == 1:
		return Legacy{Version: 1}, true // BitLen 186 with bit 185 set, 184 clear: the top hex digit is 2
	}
	return Legacy{}, false
}

// Compare orders two sequence numbers as the integers they render to.
func Compare(a, b Seq) int {
	ka := [...]uint64{uint64(a.ShardCreateSecs) & secsMask, uint64(a.ShardIndex & 0xf), a.Ordinal, uint64(a.ArrivalSecs) & secsMask, uint64(a.ShardIndex)}
	kb := [...]uint64{uint64(b.ShardCreateSecs) & secsMask, uint64(b.ShardIndex & 0xf), b.Ordinal, uint64(b.ArrivalSecs) & secsMask, uint64(b.ShardIndex)}
	for i := range ka {
		switch {
		case ka[i] < kb[i]:
			return -1
		case ka[i] > kb[i]:
			return 1
		}
	}
	return 0
}
