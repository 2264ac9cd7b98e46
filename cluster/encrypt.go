package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/storage"
)

// Encryption at rest in cluster mode (docs/cluster.md §12). A stream's
// record says whether it is encrypted and under which master key (its
// fingerprint); StartStreamEncryption and StopStreamEncryption change that
// by compare-and-set, with single-node mode's checks in its order. Records
// are encrypted where they enter the replicated log: the shard's leader
// encrypts each record of a proposal (partition key and data) before it
// proposes it, so the Raft WAL, every replica's segments, snapshots, the
// peer transport and forwarded reads carry only ciphertext; the node that
// answers the client decrypts it, with its own keyring (a forwarded
// SubscribeToShard's frames carry the records sealed: subforward.go). Each encrypted record is self-contained: it
// carries the wrapped data key it was sealed under (segment.KeyBlock), so
// any node whose keyring holds the master key opens it, whatever the
// stream's setting is now; StopStreamEncryption leaves it encrypted.
//
// A leader keeps one data key per group and master key, and draws a new
// one after maxSealsPerDataKey records (random GCM nonces stay far inside
// NIST SP 800-38D's 2^32 per key) or at a new master key; a new leader
// draws its own. Readers cache unwrapped data keys by their key block.

// An encrypted stored record is
//
//	[u64 arrival unix ms][u32 encryptedMark][key block: 16 master key
//	fingerprint, 12 nonce, 48 wrapped data key][segment.Cipher.Seal of
//	([u32 key length][key][data]): 12 nonce, ciphertext, 16 tag]
//
// with the first 88 bytes (arrival, mark, key block) authenticated as
// additional data, so neither the time nor the data key can be swapped. The
// mark is never a plaintext record's key length (at most its length minus
// 12), nor a seal entry's (2^32-1, seal.go). The arrival time stays in
// clear: retention and AT_TIMESTAMP need no key.
const (
	encryptedMark = 0xFFFFFFFE
	keyBlockBytes = 16 + 12 + segment.KeySize + 16
	encHeader     = recordHeader + keyBlockBytes
	// encOverhead is what encryption adds to a record's stored size.
	encOverhead = keyBlockBytes + 4 + segment.SealOverhead
	// maxSealsPerDataKey bounds the records one data key seals.
	maxSealsPerDataKey = 1 << 24
	// maxOpenedKeys bounds the cache of unwrapped data keys.
	maxOpenedKeys = 4096
)

// keyDefaultKey is the metadata key of the generated alias/aws/kinesis
// master key (defaultKeyRec): made once, absent-only, like the cluster
// secret, so every node encrypts and decrypts under the same key.
const keyDefaultKey = "cluster/kinesis-default-key"

type defaultKeyRec struct {
	Material string `json:"material"` // base64 of segment.KeySize bytes
}

// crypt is a node's encryption state: the keyring, the data keys it seals
// under as a leader, and the data keys it has unwrapped to read.
type crypt struct {
	keys    *keyring.Keyring
	sealing sync.Map // group → *dataKey
	opened  sync.Map // string(key block) → *segment.Cipher
	nOpened atomic.Int64
}

// dataKey is a leader's current data key of a group.
type dataKey struct {
	master segment.Fingerprint
	block  [keyBlockBytes]byte
	c      *segment.Cipher
	used   atomic.Int64
}

func newCrypt(keys *keyring.Keyring) *crypt { return &crypt{keys: keys} }

// StartEncryption is StartStreamEncryption: single-node mode's checks in
// its order (storage.Store.StartEncryption): the stream exists and is
// ACTIVE, the key resolves (the KMS errors), then the 25 key changes per
// rolling 24 hours. The stream is UPDATING for Config.UpdateDelay, and at
// least the metadata fence (lease.go), after which every put is sealed by it.
func (n *Node) StartEncryption(ctx context.Context, name, keyID, region string) error {
	change := func(rec *streamRec) (bool, error) {
		key, err := n.crypt.keys.Resolve(keyID, region)
		if errors.Is(err, keyring.ErrNoDefault) {
			return false, err
		}
		if err != nil {
			return false, n.kmsError(name, keyID, err)
		}
		now := n.cfg.Now()
		recent := recentNs(rec.KeyChangesNs, now)
		if len(recent) >= storage.MaxKeyChangesPerDay {
			return false, n.fail(storage.ErrLimitExceeded, storage.ReasonKeyChanges, storage.Facts{Stream: name, Limit: storage.MaxKeyChangesPerDay})
		}
		rec.EncryptionType, rec.KeyID, rec.KeyFingerprint = storage.EncryptionKMS, keyID, key.ID.String()
		rec.KeyChangesNs = append(recent, now.UnixNano())
		n.beginFencedUpdate(rec) // leaders seal by it: lease.go
		return true, nil
	}
	err := n.updateStream(ctx, name, nil, change)
	if errors.Is(err, keyring.ErrNoDefault) {
		// The first use of alias/aws/kinesis in this cluster: make its key,
		// then resolve again (updateStream reads the metadata anew).
		if err := n.makeDefaultKey(ctx); err != nil {
			return err
		}
		err = n.updateStream(ctx, name, nil, change)
	}
	return err
}

// StopEncryption is StopStreamEncryption: new records are plaintext; the
// encrypted ones stay encrypted. keyID is not checked against the stream's,
// as in single-node mode (AWS documents no error for a mismatch).
func (n *Node) StopEncryption(ctx context.Context, name, keyID string) error {
	return n.updateStream(ctx, name, nil, func(rec *streamRec) (bool, error) {
		rec.EncryptionType, rec.KeyID, rec.KeyFingerprint = "", "", ""
		n.beginFencedUpdate(rec) // leaders seal by it: lease.go
		return true, nil
	})
}

func recentNs(ns []int64, now time.Time) []int64 {
	var out []int64
	for _, t := range ns {
		if t > now.Add(-24*time.Hour).UnixNano() {
			out = append(out, t)
		}
	}
	return out
}

// kmsError turns a keyring failure into the KMS error single-node mode
// answers (storage.Store's kmsError).
func (n *Node) kmsError(name, keyID string, err error) error {
	f := storage.Facts{Stream: name, Given: keyID, Detail: err.Error()}
	switch {
	case errors.Is(err, keyring.ErrNotFound):
		return n.fail(storage.ErrKMSNotFound, storage.ReasonKMSNotFound, f)
	case errors.Is(err, keyring.ErrDisabled):
		return n.fail(storage.ErrKMSDisabled, storage.ReasonKMSDisabled, f)
	case errors.Is(err, keyring.ErrInvalidState):
		return n.fail(storage.ErrKMSInvalidState, storage.ReasonKMSInvalidState, f)
	}
	return fmt.Errorf("resolve KMS key %s: %w", keyID, err)
}

// makeDefaultKey stores a new random alias/aws/kinesis key in the metadata
// unless one is there: of two nodes' attempts one wins, and the key never
// changes. It is in the Raft log and every node's metadata state, as
// single-node mode keeps it in the data directory.
func (n *Node) makeDefaultKey(ctx context.Context) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		if _, ok := n.meta.Get(keyDefaultKey); ok {
			return nil, nil, nil
		}
		raw := make([]byte, segment.KeySize)
		rand.Read(raw)
		rec := defaultKeyRec{Material: base64.StdEncoding.EncodeToString(raw)}
		return []replica.MetaCond{{Key: keyDefaultKey}}, []replica.MetaOp{{Key: keyDefaultKey, Value: mustJSON(rec)}}, nil
	})
}

// defaultKeyMaterial is the keyring's keyring.DefaultSource: the key as
// this node's metadata state holds it.
func (n *Node) defaultKeyMaterial() ([]byte, bool) {
	var rec defaultKeyRec
	if _, ok := n.getJSON(keyDefaultKey, &rec); !ok {
		return nil, false
	}
	raw, err := base64.StdEncoding.DecodeString(rec.Material)
	return raw, err == nil && len(raw) == segment.KeySize
}

// writeKey is the master key new records of rec are encrypted under (nil:
// plaintext), as this node's keyring has it. Single-node mode's refusals,
// in its order: a key the keyring marks Disabled or PendingDeletion, then
// a key missing from it. Never plaintext for an encrypted stream.
func (n *Node) writeKey(rec streamRec) (*segment.MasterKey, error) {
	if rec.EncryptionType != storage.EncryptionKMS {
		return nil, nil
	}
	var fp segment.Fingerprint
	if b, err := hex.DecodeString(rec.KeyFingerprint); err != nil || len(b) != len(fp) {
		return nil, fmt.Errorf("cluster: stream %s: bad key fingerprint %q", rec.Name, rec.KeyFingerprint)
	} else {
		copy(fp[:], b)
	}
	if err := n.crypt.keys.Usable(fp); err != nil {
		return nil, n.kmsError(rec.Name, rec.KeyID, err)
	}
	key, err := n.crypt.keys.Keys()(fp)
	if err != nil {
		return nil, n.fail(storage.ErrKMSNotFound, storage.ReasonKMSNotFound, storage.Facts{Stream: rec.Name, Given: rec.KeyID, Detail: err.Error()})
	}
	return &key, nil
}

// isKMS reports whether err is one of the KMS family of refusals.
func isKMS(err error) bool {
	return errors.Is(err, storage.ErrKMSNotFound) || errors.Is(err, storage.ErrKMSDisabled) || errors.Is(err, storage.ErrKMSInvalidState)
}

// sealer is the data key a leader encrypts group's next records under with
// master key m.
func (c *crypt) sealer(group uint64, m segment.MasterKey) (*dataKey, error) {
	if v, ok := c.sealing.Load(group); ok {
		if d := v.(*dataKey); d.master == m.ID && d.used.Load() < maxSealsPerDataKey {
			return d, nil
		}
	}
	kb, ci, err := segment.NewKeyBlock(m)
	if err != nil {
		return nil, err
	}
	d := &dataKey{master: m.ID, c: ci}
	b := append(append(append(d.block[:0], kb.Master[:]...), kb.Nonce[:]...), kb.Wrapped[:]...)
	if len(b) != keyBlockBytes {
		panic("cluster: key block layout")
	}
	// Of two concurrent proposals that both found the key used up, the
	// later store wins; each sealed under a valid data key.
	c.sealing.Store(group, d)
	return d, nil
}

// appendEncrypted appends e, encrypted under d, as a stored record.
func (d *dataKey) appendEncrypted(b []byte, arrivalMs int64, e entry) []byte {
	d.used.Add(1)
	start := len(b)
	b = binary.LittleEndian.AppendUint64(b, uint64(arrivalMs))
	b = binary.LittleEndian.AppendUint32(b, encryptedMark)
	b = append(b, d.block[:]...)
	aad := b[start:len(b):len(b)]
	pt := make([]byte, 0, 4+len(e.key)+len(e.data))
	pt = binary.LittleEndian.AppendUint32(pt, uint32(len(e.key)))
	pt = append(append(pt, e.key...), e.data...)
	return d.c.Seal(b, pt, aad)
}

// encryptedSize is an encrypted record's stored size.
func encryptedSize(e entry) int { return recordHeader + encOverhead + len(e.key) + len(e.data) }

func isEncrypted(b []byte) bool {
	return len(b) >= encHeader+segment.SealOverhead && binary.LittleEndian.Uint32(b[8:]) == encryptedMark
}

// recordArrival is a stored record's arrival time, encrypted or not.
func recordArrival(b []byte) (int64, error) {
	if isEncrypted(b) {
		return int64(binary.LittleEndian.Uint64(b)), nil
	}
	arrival, _, _, err := decodeRecord(b)
	return arrival, err
}

// recordBytes is the size of a stored record's partition key and data, in
// clear: what admission and GetRecords count.
func recordBytes(b []byte) int {
	if isEncrypted(b) {
		return len(b) - recordHeader - encOverhead
	}
	return max(len(b)-recordHeader, 0)
}

// errNoRecordKey: a record's data key does not open with this node's
// keyring; a read answers KMSNotFoundException, as single-node mode's.
var errNoRecordKey = errors.New("cluster: the record's master key is not in this node's keyring")

// openRecord decodes a stored record, decrypting an encrypted one.
func (n *Node) openRecord(b []byte) (arrivalMs int64, key string, data []byte, encrypted bool, err error) {
	if !isEncrypted(b) {
		arrivalMs, key, data, err = decodeRecord(b)
		return arrivalMs, key, data, false, err
	}
	c, err := n.crypt.dataKeyOf(b[recordHeader:encHeader])
	if err != nil {
		return 0, "", nil, true, err
	}
	pt, err := c.Open(nil, b[encHeader:], b[:encHeader])
	if err != nil {
		return 0, "", nil, true, err
	}
	if len(pt) < 4 || int(binary.LittleEndian.Uint32(pt)) > len(pt)-4 {
		return 0, "", nil, true, errMalformed
	}
	kl := int(binary.LittleEndian.Uint32(pt))
	return int64(binary.LittleEndian.Uint64(b)), string(pt[4 : 4+kl]), pt[4+kl:], true, nil
}

// dataKeyOf unwraps a record's key block with the keyring, once per block.
// A cached data key is used only while the keyring still holds its master
// key: removing a key from the keyring makes what it encrypted unreadable
// at once, as in single-node mode.
func (c *crypt) dataKeyOf(block []byte) (*segment.Cipher, error) {
	var kb segment.KeyBlock
	copy(kb.Master[:], block)
	copy(kb.Nonce[:], block[16:])
	copy(kb.Wrapped[:], block[28:])
	keys := c.keys.Keys()
	if v, ok := c.opened.Load(string(block)); ok {
		if _, err := keys(kb.Master); err != nil {
			return nil, fmt.Errorf("%w: %w", errNoRecordKey, err)
		}
		return v.(*segment.Cipher), nil
	}
	ci, err := kb.Open(keys)
	if errors.Is(err, segment.ErrNoKey) || errors.Is(err, segment.ErrWrongKey) {
		return nil, fmt.Errorf("%w: %w", errNoRecordKey, err)
	}
	if err != nil {
		return nil, err
	}
	if c.nOpened.Add(1) > maxOpenedKeys {
		c.opened.Clear()
		c.nOpened.Store(1)
	}
	c.opened.Store(string(block), ci)
	return ci, nil
}

// readKeyError maps a read that found a record whose master key this node
// lacks to single-node mode's KMSNotFoundException.
func (n *Node) readKeyError(rec streamRec, err error) error {
	if errors.Is(err, errNoRecordKey) {
		return n.fail(storage.ErrKMSNotFound, storage.ReasonKMSNotFound, storage.Facts{Stream: rec.Name, Given: rec.KeyID, Detail: err.Error()})
	}
	return err
}
