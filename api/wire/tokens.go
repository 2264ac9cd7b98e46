package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
)

// Sealed tokens: shard iterators and pagination NextTokens are opaque to
// clients and verified by the server. Layout (then standard base64, with '='):
//
//	magic [8]byte = 00 00 00 00 00 00 00 01   (AWS iterators start so: "AAAAAAAAAAE")
//	kind  byte                                (what the token is for)
//	issued int64, unix milliseconds           (tokens expire after TokenTTLMillis)
//	[iterators only: payload length, uint16]
//	payload                                   (kind-specific)
//	[iterators only: zero padding]
//	mac   [32]byte = HMAC-SHA256(kindKey, everything before it)
//
// A shard iterator takes AWS's size: everything after the magic is padded
// to a multiple of 16 bytes, at least 144, so an iterator is 152 + 16k
// bytes, as AWS's are (k grows with the stream name: up to 200 bytes, 268
// base64 characters, for a 128-character name; the model allows 512
// characters). NextTokens keep the unpadded layout: AWS's look nothing like
// its iterators, and nothing pins their size.
//
// Each kind has its own key, derived from the data directory's secret, so a
// token of one kind never verifies as another. Tokens are deterministic: the
// same fields always seal to the same text, and a token decodes only from its
// canonical text (its padding, too, is checked), so decode(encode(x)) == x
// and encode(decode(s)) == s.

const (
	TokenIterator    byte = 1
	TokenListShards  byte = 2
	TokenListStreams byte = 3
	// TokenListConsumers is a ListStreamConsumers NextToken.
	TokenListConsumers byte = 4
	// TokenListChannels is a ListChannels NextToken.
	TokenListChannels byte = 9

	TokenTTLMillis = 300_000 // 5 minutes, for iterators and NextTokens alike

	tokenHeader = 8 + 1 + 8
	macSize     = sha256.Size

	// iterBlock and iterMinSealed shape an iterator: what follows the magic
	// is a multiple of iterBlock bytes, and at least iterMinSealed.
	iterBlock     = 16
	iterMinSealed = 144
	iterLenSize   = 2 // the payload length
)

var tokenMagic = [8]byte{0, 0, 0, 0, 0, 0, 0, 1}

var ErrBadToken = errors.New("wire: invalid token")

// TokenKeys holds one HMAC key per token kind.
type TokenKeys map[byte][]byte

func DeriveTokenKeys(secret []byte) TokenKeys {
	keys := TokenKeys{}
	for kind, label := range map[byte]string{
		TokenIterator:      "shardlog shard iterator v2", // v2: the padded layout
		TokenListShards:    "shardlog ListShards NextToken v1",
		TokenListStreams:   "shardlog ListStreams NextToken v1",
		TokenListConsumers: "shardlog ListStreamConsumers NextToken v1",
		TokenListChannels:  "shardlog ListChannels NextToken v1",
	} {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(label))
		keys[kind] = m.Sum(nil)
	}
	return keys
}

// padded reports whether tokens of kind take the iterator layout.
func padded(kind byte) bool { return kind == TokenIterator }

// iterPad is the zero padding after an iterator payload of n bytes.
func iterPad(n int) int {
	sealed := 1 + 8 + iterLenSize + n + macSize
	size := max(iterMinSealed, (sealed+iterBlock-1)/iterBlock*iterBlock)
	return size - sealed
}

// Seal builds a token of kind with issue time issued (unix ms) and payload.
// An iterator payload is at most 65535 bytes (callers pass a few hundred).
func (k TokenKeys) Seal(kind byte, issued int64, payload []byte) string {
	raw := make([]byte, 0, tokenHeader+iterLenSize+len(payload)+iterMinSealed)
	raw = append(raw, tokenMagic[:]...)
	raw = append(raw, kind)
	raw = binary.BigEndian.AppendUint64(raw, uint64(issued))
	if padded(kind) {
		raw = binary.BigEndian.AppendUint16(raw, uint16(len(payload)))
		raw = append(raw, payload...)
		raw = append(raw, make([]byte, iterPad(len(payload)))...)
	} else {
		raw = append(raw, payload...)
	}
	m := hmac.New(sha256.New, k[kind])
	m.Write(raw)
	raw = m.Sum(raw)
	return base64.StdEncoding.EncodeToString(raw)
}

// Open verifies a token of kind and returns its issue time and payload. It
// never panics on any input; every failure is ErrBadToken.
func (k TokenKeys) Open(kind byte, tok string) (issued int64, payload []byte, err error) {
	if len(tok) > 4096 || strings.ContainsAny(tok, "\r\n") {
		return 0, nil, ErrBadToken
	}
	raw, err := strictBase64.DecodeString(tok)
	if err != nil || len(raw) < tokenHeader+macSize {
		return 0, nil, ErrBadToken
	}
	body, mac := raw[:len(raw)-macSize], raw[len(raw)-macSize:]
	m := hmac.New(sha256.New, k[kind])
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) || [8]byte(body[:8]) != tokenMagic || body[8] != kind {
		return 0, nil, ErrBadToken
	}
	payload = body[tokenHeader:]
	if padded(kind) {
		if payload, err = unpad(payload); err != nil {
			return 0, nil, err
		}
	}
	return int64(binary.BigEndian.Uint64(body[9:17])), payload, nil
}

// unpad returns the payload of an iterator's length-prefixed, zero-padded
// part, if the padding is exactly what Seal writes.
func unpad(b []byte) ([]byte, error) {
	if len(b) < iterLenSize {
		return nil, ErrBadToken
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[iterLenSize:]
	if n > len(b) || len(b)-n != iterPad(n) {
		return nil, ErrBadToken
	}
	for _, c := range b[n:] {
		if c != 0 {
			return nil, ErrBadToken
		}
	}
	return b[:n], nil
}

// Expired reports whether a token issued at issued (unix ms) is past its
// lifetime at now (unix ms).
func Expired(issued, now int64) bool { return now-issued > TokenTTLMillis }

// PayloadReader decodes a token payload field by field; any short read marks
// it bad, so callers check ok once at the end.
type PayloadReader struct {
	b  []byte
	ok bool
}

func NewPayloadReader(b []byte) *PayloadReader { return &PayloadReader{b: b, ok: true} }

func (r *PayloadReader) Take(n int) []byte {
	if !r.ok || len(r.b) < n {
		r.ok = false
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *PayloadReader) U8() byte    { return r.Take(1)[0] }
func (r *PayloadReader) U32() uint32 { return binary.BigEndian.Uint32(r.Take(4)) }
func (r *PayloadReader) U64() uint64 { return binary.BigEndian.Uint64(r.Take(8)) }

// Str reads a length-prefixed (one byte) string.
func (r *PayloadReader) Str() string { return string(r.Take(int(r.U8()))) }

// Done reports whether every field was present and nothing is left over.
func (r *PayloadReader) Done() bool { return r.ok && len(r.b) == 0 }

func AppendStr(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255] // callers pass validated names (at most 128 bytes)
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}
