package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
)

// Sealed tokens: shard iterators and pagination NextTokens are opaque to
// clients and verified by the server. Layout (then standard base64):
//
//	magic [8]byte = 00 00 00 00 00 00 00 01   (AWS iterators start so: "AAAAAAAAAAE")
//	kind  byte                                (what the token is for)
//	issued int64, unix milliseconds           (tokens expire after tokenTTL)
//	payload                                   (kind-specific)
//	mac   [32]byte = HMAC-SHA256(kindKey, everything before it)
//
// Each kind has its own key, derived from the data directory's secret, so a
// token of one kind never verifies as another. Tokens are deterministic: the
// same fields always seal to the same text, and a token decodes only from its
// canonical text, so decode(encode(x)) == x and encode(decode(s)) == s.

const (
	tokenKindIterator    byte = 1
	tokenKindListShards  byte = 2
	tokenKindListStreams byte = 3

	tokenTTLMillis = 300_000 // 5 minutes, for iterators and NextTokens alike

	tokenHeader = 8 + 1 + 8
	macSize     = sha256.Size
)

var tokenMagic = [8]byte{0, 0, 0, 0, 0, 0, 0, 1}

var errBadToken = errors.New("api: invalid token")

// tokenKeys holds one HMAC key per token kind.
type tokenKeys map[byte][]byte

func deriveTokenKeys(secret []byte) tokenKeys {
	keys := tokenKeys{}
	for kind, label := range map[byte]string{
		tokenKindIterator:    "shardlog shard iterator v1",
		tokenKindListShards:  "shardlog ListShards NextToken v1",
		tokenKindListStreams: "shardlog ListStreams NextToken v1",
	} {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(label))
		keys[kind] = m.Sum(nil)
	}
	return keys
}

// seal builds a token of kind with issue time issued (unix ms) and payload.
func (k tokenKeys) seal(kind byte, issued int64, payload []byte) string {
	raw := make([]byte, 0, tokenHeader+len(payload)+macSize)
	raw = append(raw, tokenMagic[:]...)
	raw = append(raw, kind)
	raw = binary.BigEndian.AppendUint64(raw, uint64(issued))
	raw = append(raw, payload...)
	m := hmac.New(sha256.New, k[kind])
	m.Write(raw)
	raw = m.Sum(raw)
	return base64.StdEncoding.EncodeToString(raw)
}

// open verifies a token of kind and returns its issue time and payload. It
// never panics on any input; every failure is errBadToken.
func (k tokenKeys) open(kind byte, tok string) (issued int64, payload []byte, err error) {
	if len(tok) > 4096 || strings.ContainsAny(tok, "\r\n") {
		return 0, nil, errBadToken
	}
	raw, err := strictBase64.DecodeString(tok)
	if err != nil || len(raw) < tokenHeader+macSize {
		return 0, nil, errBadToken
	}
	body, mac := raw[:len(raw)-macSize], raw[len(raw)-macSize:]
	m := hmac.New(sha256.New, k[kind])
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) || [8]byte(body[:8]) != tokenMagic || body[8] != kind {
		return 0, nil, errBadToken
	}
	return int64(binary.BigEndian.Uint64(body[9:17])), body[tokenHeader:], nil
}

// expired reports whether a token issued at issued (unix ms) is past its
// lifetime at now (unix ms).
func expired(issued, now int64) bool { return now-issued > tokenTTLMillis }

// payloadReader decodes a token payload field by field; any short read marks
// it bad, so callers check ok once at the end.
type payloadReader struct {
	b  []byte
	ok bool
}

func newPayloadReader(b []byte) *payloadReader { return &payloadReader{b: b, ok: true} }

func (r *payloadReader) take(n int) []byte {
	if !r.ok || len(r.b) < n {
		r.ok = false
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *payloadReader) u8() byte    { return r.take(1)[0] }
func (r *payloadReader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *payloadReader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

// str reads a length-prefixed (one byte) string.
func (r *payloadReader) str() string { return string(r.take(int(r.u8()))) }

// done reports whether every field was present and nothing is left over.
func (r *payloadReader) done() bool { return r.ok && len(r.b) == 0 }

func appendStr(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255] // callers pass validated names (at most 128 bytes)
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}
