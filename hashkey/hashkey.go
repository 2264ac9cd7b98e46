// Package hashkey is Kinesis's 128-bit hash-key space: the MD5 of a partition
// key read as a big-endian unsigned integer, decimal ExplicitHashKeys, and the
// even split of [0, 2^128-1] among a stream's shards.
package hashkey

import (
	"crypto/md5"
	"encoding/binary"
	"errors"
	"math/big"
	"math/bits"
)

// Key is an unsigned 128-bit integer, Hi holding the most significant bits.
type Key struct{ Hi, Lo uint64 }

// Max is 2^128-1, the top of the hash-key space.
var Max = Key{^uint64(0), ^uint64(0)}

// ErrSyntax means a hash key is not a decimal integer in [0, 2^128-1].
var ErrSyntax = errors.New("hashkey: not a decimal integer in [0, 2^128-1]")

// FromPartitionKey hashes a partition key the way Kinesis does: MD5 over its
// UTF-8 bytes, read big-endian.
func FromPartitionKey(pk string) Key {
	sum := md5.Sum([]byte(pk))
	return Key{binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:])}
}

// Cmp returns -1, 0 or +1.
func (k Key) Cmp(o Key) int {
	switch {
	case k.Hi < o.Hi || (k.Hi == o.Hi && k.Lo < o.Lo):
		return -1
	case k == o:
		return 0
	}
	return 1
}

// Add returns k+n, wrapping at 2^128.
func (k Key) Add(n uint64) Key {
	lo, c := bits.Add64(k.Lo, n, 0)
	return Key{k.Hi + c, lo}
}

// Sub returns k-n, wrapping at 0.
func (k Key) Sub(n uint64) Key {
	lo, b := bits.Sub64(k.Lo, n, 0)
	return Key{k.Hi - b, lo}
}

// Big returns k as a big.Int.
func (k Key) Big() *big.Int {
	b := new(big.Int).SetUint64(k.Hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(k.Lo))
}

func fromBig(b *big.Int) Key {
	lo := new(big.Int).And(b, new(big.Int).SetUint64(^uint64(0))).Uint64()
	hi := new(big.Int).Rsh(b, 64).Uint64()
	return Key{hi, lo}
}

// String renders k in decimal, as Kinesis prints hash keys.
func (k Key) String() string { return k.Big().String() }

// Parse reads a decimal hash key in AWS's pattern 0|([1-9]\d{0,38}): plain
// digits, no sign, spaces, exponent or leading zeros, and at most 2^128-1.
func Parse(s string) (Key, error) {
	if s == "" || len(s) > 39 || (s[0] == '0' && len(s) > 1) {
		return Key{}, ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return Key{}, ErrSyntax
		}
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok || b.BitLen() > 128 {
		return Key{}, ErrSyntax
	}
	return fromBig(b), nil
}

// Range is an inclusive hash-key range.
type Range struct{ Start, End Key }

// Contains reports whether k lies in r.
func (r Range) Contains(k Key) bool { return r.Start.Cmp(k) <= 0 && k.Cmp(r.End) <= 0 }

// Split divides [0, 2^128-1] into n ranges as CreateStream does: step =
// floor(2^128/n), range i is [i*step, (i+1)*step-1], and the last range ends at
// 2^128-1. n must be at least 1.
func Split(n int) []Range {
	two128 := new(big.Int).Lsh(big.NewInt(1), 128)
	step := new(big.Int).Div(two128, big.NewInt(int64(n)))
	out := make([]Range, n)
	for i := range n {
		start := new(big.Int).Mul(step, big.NewInt(int64(i)))
		end := new(big.Int).Add(start, step)
		end.Sub(end, big.NewInt(1))
		out[i] = Range{fromBig(start), fromBig(end)}
	}
	out[n-1].End = Max
	return out
}
