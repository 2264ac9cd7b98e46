package segment

// Encryption at rest (doc.go, "Encryption"): a segment with FlagEncrypted has
// a random 256-bit data key, wrapped by a master key in the key block that
// follows the file header, and every frame's stored payload sealed with
// AES-256-GCM under it. This file holds the key handling and the sealing; it
// knows nothing of where master keys come from (the caller's Keys does).

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
)

const (
	// KeySize is the size of master keys and data keys: AES-256.
	KeySize = 32
	// KeyBlockSize is the size of the key block that follows the file header
	// of an encrypted segment.
	KeyBlockSize = 96
	// MaxFileHeaderSize is the largest header area: an encrypted segment's
	// frames start here.
	MaxFileHeaderSize = FileHeaderSize + KeyBlockSize
	// SealOverhead is what sealing adds to a frame's stored payload: the
	// nonce in front and the GCM tag behind.
	SealOverhead = nonceSize + tagSize

	nonceSize = 12
	tagSize   = 16
)

// Key block field offsets, from the start of the file (doc.go).
const (
	kbMaster  = FileHeaderSize      // 16: the master key's fingerprint
	kbNonce   = kbMaster + 16       // 12: the wrapping nonce
	kbWrapped = kbNonce + nonceSize // 48: the sealed data key and its tag
	kbRsvd    = kbWrapped + KeySize + tagSize
	kbCRC     = MaxFileHeaderSize - 4 // CRC32C of bytes 64..155
)

var (
	// ErrNoKey means the master key that wrapped a segment's data key is not
	// available (not in the keyring, or no keyring was given). The file is
	// not damaged: nothing may treat this as corruption.
	ErrNoKey = errors.New("segment: encryption key not available")
	// ErrWrongKey means a master key with the segment's fingerprint does not
	// unwrap its data key: the key block was altered (with its CRC
	// recomputed), or the keyring maps the fingerprint to other bytes.
	ErrWrongKey = errors.New("segment: data key does not unwrap with the master key")
)

// Fingerprint names a master key without revealing it: the first 16 bytes of
// HMAC-SHA256(key, "shardlog master key fingerprint v1"). A segment records
// the fingerprint of the master key that wrapped its data key, so any
// keyring entry holding the same bytes opens it, whatever its names.
type Fingerprint [16]byte

func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// MasterKey is a key-encryption key: it wraps segments' data keys.
type MasterKey struct {
	ID  Fingerprint
	key [KeySize]byte
}

// NewMasterKey makes a master key of 32 bytes of key material.
func NewMasterKey(material []byte) (MasterKey, error) {
	if len(material) != KeySize {
		return MasterKey{}, fmt.Errorf("segment: master key is %d bytes, want %d", len(material), KeySize)
	}
	m := MasterKey{key: [KeySize]byte(material)}
	mac := hmac.New(sha256.New, material)
	mac.Write([]byte("shardlog master key fingerprint v1"))
	copy(m.ID[:], mac.Sum(nil))
	return m, nil
}

// Keys finds the master key with a fingerprint. It returns an error wrapping
// ErrNoKey when it has none.
type Keys func(Fingerprint) (MasterKey, error)

// KeyBlock is an encrypted segment's wrapped data key (doc.go).
type KeyBlock struct {
	// Master is the fingerprint of the master key that wrapped the data key.
	Master Fingerprint
	// Nonce and Wrapped are the AES-256-GCM sealing of the data key under
	// the master key, with Master as additional data.
	Nonce   [nonceSize]byte
	Wrapped [KeySize + tagSize]byte
}

// NewKeyBlock draws a fresh data key from crypto/rand and wraps it with m.
func NewKeyBlock(m MasterKey) (KeyBlock, *Cipher, error) {
	var dk [KeySize]byte
	kb := KeyBlock{Master: m.ID}
	rand.Read(dk[:]) // never fails (see seal)
	rand.Read(kb.Nonce[:])
	wrap, err := newGCM(m.key[:])
	if err != nil {
		return KeyBlock{}, nil, err
	}
	wrap.Seal(kb.Wrapped[:0], kb.Nonce[:], dk[:], kb.Master[:])
	c, err := newCipher(dk[:])
	return kb, c, err
}

// Open unwraps the data key with the master key keys finds for kb.Master.
func (kb KeyBlock) Open(keys Keys) (*Cipher, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: master key %s (no keyring)", ErrNoKey, kb.Master)
	}
	m, err := keys(kb.Master)
	if err != nil {
		return nil, err
	}
	if m.ID != kb.Master {
		return nil, fmt.Errorf("%w: asked for master key %s, got %s", ErrWrongKey, kb.Master, m.ID)
	}
	wrap, err := newGCM(m.key[:])
	if err != nil {
		return nil, err
	}
	var dk [KeySize]byte
	if _, err := wrap.Open(dk[:0], kb.Nonce[:], kb.Wrapped[:], kb.Master[:]); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrWrongKey, kb.Master, err)
	}
	return newCipher(dk[:])
}

func (kb KeyBlock) put(b []byte) {
	_ = b[kbCRC+3]
	copy(b[kbMaster:], kb.Master[:])
	copy(b[kbNonce:], kb.Nonce[:])
	copy(b[kbWrapped:], kb.Wrapped[:])
	clear(b[kbRsvd:kbCRC])
	binary.LittleEndian.PutUint32(b[kbCRC:], crc32.Checksum(b[kbMaster:kbCRC], castagnoli))
}

// decodeKeyBlock reads the key block of a file header b (at least
// MaxFileHeaderSize bytes): CRC, then zero reserved bytes.
func decodeKeyBlock(b []byte) (KeyBlock, error) {
	if got, want := crc32.Checksum(b[kbMaster:kbCRC], castagnoli), binary.LittleEndian.Uint32(b[kbCRC:]); got != want {
		return KeyBlock{}, fmt.Errorf("%w: key block CRC %08x, stored %08x", ErrCorrupt, got, want)
	}
	if !allZero(b[kbRsvd:kbCRC]) {
		return KeyBlock{}, fmt.Errorf("%w: nonzero reserved bytes in the key block", ErrCorrupt)
	}
	var kb KeyBlock
	copy(kb.Master[:], b[kbMaster:])
	copy(kb.Nonce[:], b[kbNonce:])
	copy(kb.Wrapped[:], b[kbWrapped:])
	return kb, nil
}

// Cipher seals and opens the frames of one segment with its data key. It is
// safe for concurrent use.
type Cipher struct {
	aead cipher.AEAD
}

func newCipher(dataKey []byte) (*Cipher, error) {
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	return &Cipher{aead: aead}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	return cipher.NewGCM(block)
}

// frameAAD is the part of a frame header that sealing authenticates: bytes
// 0-47, everything but prevCRC and the CRC. The records' type, codec,
// lengths, count, sequences and times are thus bound to the ciphertext; the
// chain is left out so that a repair may re-chain frames without keys.
func frameAAD(hdr []byte) []byte { return hdr[:frPrevCRC] }

// seal encrypts the plaintext at dst[body:] in place under a fresh random
// nonce, stored at dst[body-nonceSize:body], and appends the tag. hdr is the
// frame's header with every field sealing authenticates already set.
//
// The nonce is random rather than derived from the frame's offset or
// sequence: after a crash, recovery cuts a torn frame and the next frame is
// written at the same offset with the same seqs, which would reuse a derived
// nonce under the same data key with another plaintext. A 96-bit random
// nonce is safe for far more frames than one data key ever seals (NIST SP
// 800-38D allows 2^32 per key; a segment holds at most a few hundred
// thousand frames).
func (c *Cipher) seal(dst []byte, body int, hdr []byte) []byte {
	nonce := dst[body-nonceSize : body]
	rand.Read(nonce) // never fails: crypto/rand crashes the program rather than return an error
	// With room for the tag, Seal writes over the plaintext in place.
	dst = slices.Grow(dst, tagSize)
	out := c.aead.Seal(dst[body:body], nonce, dst[body:], frameAAD(hdr))
	return dst[:body+len(out)]
}

// open decrypts a sealed stored payload, appending the plaintext to dst
// (stored[nonceSize:nonceSize] decrypts in place), and returns it. A failure means the
// ciphertext, the authenticated header fields or the key is not what was
// sealed: since the CRC was checked first, not a torn write or a media
// error.
func (c *Cipher) open(dst, hdr, stored []byte) ([]byte, error) {
	if len(stored) < SealOverhead {
		return nil, fmt.Errorf("%w: sealed payload of %d bytes", ErrCorrupt, len(stored))
	}
	pt, err := c.aead.Open(dst, stored[:nonceSize], stored[nonceSize:], frameAAD(hdr))
	if err != nil {
		return nil, fmt.Errorf("%w: frame fails GCM authentication although its CRC holds "+
			"(its ciphertext or header was altered and the CRC recomputed, or the segment's data key is not the one that sealed it)", ErrCorrupt)
	}
	return pt, nil
}

// inPlace is the dst that makes open decrypt a sealed payload over its own
// ciphertext (AEAD.Open allows only that exact overlap).
func inPlace(stored []byte) []byte {
	if len(stored) < nonceSize {
		return nil
	}
	return stored[nonceSize:nonceSize]
}

// SalvageKeyBlock reads the key block of header bytes b whose own header is
// damaged: ok if the key block after it is intact (its CRC holds and its
// reserved bytes are zero), so that a repair that rebuilds the header can
// keep the data key and, with it, every frame. The damaged header's flags
// are not asked: the damage may be the cleared FlagEncrypted itself. In a
// plaintext segment these bytes are the first frame's, which pass the key
// block's CRC and zero checks by chance about once in 2^32 or less.
func SalvageKeyBlock(b []byte) (KeyBlock, bool) {
	if len(b) < MaxFileHeaderSize {
		return KeyBlock{}, false
	}
	kb, err := decodeKeyBlock(b)
	return kb, err == nil
}

// Seal appends to dst a fresh random nonce and plaintext sealed under the
// data key with aad authenticated, for callers that seal their own units
// rather than segment frames (cluster mode seals each record before it is
// proposed). The random nonce is safe for the same reason as seal's, as
// long as the caller bounds how many units one data key seals.
func (c *Cipher) Seal(dst, plaintext, aad []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, nonceSize+len(plaintext)+tagSize)[:n+nonceSize]
	rand.Read(dst[n:]) // never fails (see seal)
	return c.aead.Seal(dst, dst[n:n+nonceSize], plaintext, aad)
}

// Open opens what Seal sealed with the same aad, appending the plaintext to
// dst. A failure wraps ErrCorrupt: the bytes, aad or data key are not the
// ones sealed.
func (c *Cipher) Open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("%w: sealed unit of %d bytes", ErrCorrupt, len(sealed))
	}
	pt, err := c.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: sealed unit fails GCM authentication", ErrCorrupt)
	}
	return pt, nil
}
