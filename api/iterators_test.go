package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// TestIteratorLayout: an iterator is AWS's shape for every stream name, from
// one character to the longest (128): base64 of 152 + 16k bytes starting
// 00 00 00 00 00 00 00 01, within the model's 512 characters; and it opens
// back to its position.
func TestIteratorLayout(t *testing.T) {
	h := newHarness(t)
	for _, n := range []int{1, 2, 10, 50, 63, 64, 100, 127, 128} {
		pos := storage.Position{Stream: strings.Repeat("s", n), StreamCreated: time.Now().UnixNano(), ShardIndex: 2147483647, Ordinal: 1<<63 - 1}
		tok := h.srv.encodeIterator(pos, h.now)
		raw, err := base64.StdEncoding.DecodeString(tok)
		switch {
		case err != nil || base64.StdEncoding.EncodeToString(raw) != tok:
			t.Fatalf("name length %d: %q is not canonical base64", n, tok)
		case !strings.HasPrefix(tok, "AAAAAAAAAAE") || string(raw[:8]) != "\x00\x00\x00\x00\x00\x00\x00\x01":
			t.Errorf("name length %d: starts %x", n, raw[:9])
		case len(raw) < 152 || (len(raw)-152)%16 != 0 || len(tok) > 512:
			t.Errorf("name length %d: %d bytes, %d characters", n, len(raw), len(tok))
		}
		got, issued, ok := h.srv.openIterator(tok)
		if !ok || got != pos || issued != h.now.UnixMilli() {
			t.Errorf("name length %d: opened as %+v, %d, %v", n, got, issued, ok)
		}
	}
	if tok := h.srv.encodeIterator(storage.Position{Stream: "s"}, h.now); len(tok) != 204 {
		t.Errorf("a one-character name gives %d characters, want 204 (152 bytes)", len(tok))
	}
}

// TestIteratorRejectsBadPadding: the padding is part of the canonical form,
// so a token whose padding or length field was changed does not open, even
// with a valid MAC over the changed bytes.
func TestIteratorRejectsBadPadding(t *testing.T) {
	h := newHarness(t)
	tok := h.srv.encodeIterator(storage.Position{Stream: "s", StreamCreated: 1}, h.now)
	raw, _ := base64.StdEncoding.DecodeString(tok)
	for _, i := range []int{17, 18, len(raw) - 33} { // the length field, the last padding byte
		bad := append([]byte(nil), raw[:len(raw)-32]...)
		bad[i] ^= 1
		m := hmac.New(sha256.New, h.srv.keys[wire.TokenIterator])
		m.Write(bad)
		bad = m.Sum(bad)
		if _, _, ok := h.srv.openIterator(base64.StdEncoding.EncodeToString(bad)); ok {
			t.Errorf("byte %d flipped: still opens", i)
		}
	}
}
