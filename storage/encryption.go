package storage

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/segment"
)

// Encryption types, as Kinesis names them.
const (
	EncryptionNone = "NONE"
	EncryptionKMS  = "KMS"
)

// MaxKeyChangesPerDay is AWS's limit on StartStreamEncryption calls that
// apply a key, per stream and rolling 24 hours.
const MaxKeyChangesPerDay = 25

// StartEncryption is StartStreamEncryption: new segments of every shard of
// the stream are encrypted under the master key keyID names (resolved for
// region), from the next record on; the stream is UPDATING for UpdateDelay.
// The checks, in order: the stream exists and is ACTIVE, the key resolves
// (KMS errors), and fewer than MaxKeyChangesPerDay calls were accepted in
// the last 24 hours. AWS's order of the last two is not documented; a call
// refused for its key is not counted, which matches "you can successfully
// apply a new key 25 times".
func (s *Store) StartEncryption(ctx context.Context, name, keyID, region string) error {
	return s.changeEncryption(name, func(m *streamMeta) (*segment.MasterKey, error) {
		key, err := s.keys.Resolve(keyID, region)
		if err != nil {
			return nil, s.kmsError(name, keyID, err)
		}
		now := s.opts.Now()
		recent := recentScalings(m.KeyChangesNs, now)
		if len(recent) >= MaxKeyChangesPerDay {
			return nil, s.fail(ErrLimitExceeded, ReasonKeyChanges, Facts{Stream: name, Limit: MaxKeyChangesPerDay})
		}
		m.EncryptionType, m.KeyID, m.KeyFingerprint = EncryptionKMS, keyID, key.ID.String()
		m.KeyChangesNs = append(recent, now.UnixNano())
		return &key, nil
	})
}

// StopEncryption is StopStreamEncryption: new segments are plaintext from the
// next record on; what was written encrypted stays encrypted. The stream is
// UPDATING for UpdateDelay. keyID is not checked against the stream's key:
// AWS documents no error for a mismatch (unverified).
func (s *Store) StopEncryption(ctx context.Context, name, keyID string) error {
	return s.changeEncryption(name, func(m *streamMeta) (*segment.MasterKey, error) {
		m.EncryptionType, m.KeyID, m.KeyFingerprint = "", "", ""
		return nil, nil
	})
}

// changeEncryption applies change to an ACTIVE stream's metadata, makes the
// stream UPDATING, persists it, and then tells every open shard the key of
// its new segments (change's result; nil for plaintext).
func (s *Store) changeEncryption(name string, change func(m *streamMeta) (*segment.MasterKey, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return err
	}
	if st.meta.Status != StatusActive {
		return s.notActive(name, st.meta.Status)
	}
	m := st.meta.Clone()
	key, err := change(m)
	if err != nil {
		return err
	}
	m.Status, m.PendingUntilNs = StatusUpdating, s.opts.Now().Add(s.opts.UpdateDelay).UnixNano()
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	// The shards change once the record is durable: a crash before leaves
	// the old mode everywhere, after it every shard reopens in the new one.
	for _, sh := range st.shards {
		sh.SetEncryption(key)
	}
	st.keyMissing.Store(false)
	s.resumePending(st)
	return nil
}

// kmsError turns a keyring failure into the KMS error AWS answers.
func (s *Store) kmsError(name, keyID string, err error) error {
	f := Facts{Stream: name, Given: keyID, Detail: err.Error()}
	switch {
	case errors.Is(err, keyring.ErrNotFound):
		return s.fail(ErrKMSNotFound, ReasonKMSNotFound, f)
	case errors.Is(err, keyring.ErrDisabled):
		return s.fail(ErrKMSDisabled, ReasonKMSDisabled, f)
	case errors.Is(err, keyring.ErrInvalidState):
		return s.fail(ErrKMSInvalidState, ReasonKMSInvalidState, f)
	}
	return fmt.Errorf("resolve KMS key %s: %w", keyID, err)
}

// encryptionOf is the master key of m's new segments: nil for a plaintext
// stream. A stream whose key is no longer in the keyring gets an error,
// and its shards take no writes (never plaintext for an encrypted stream).
func (s *Store) encryptionOf(m *streamMeta) (*segment.MasterKey, error) {
	if m.EncryptionType != EncryptionKMS {
		return nil, nil
	}
	var fp segment.Fingerprint
	if b, err := hex.DecodeString(m.KeyFingerprint); err != nil || len(b) != len(fp) {
		return nil, fmt.Errorf("meta.db: stream %s: bad key fingerprint %q", m.Name, m.KeyFingerprint)
	} else {
		copy(fp[:], b)
	}
	key, err := s.keys.Keys()(fp)
	if err != nil {
		return nil, err
	}
	return &key, nil
}

// keyUsableLocked refuses writes to an encrypted stream whose master key
// the keyring now marks Disabled or PendingDeletion, as AWS answers
// PutRecord(s) with KMSDisabledException or KMSInvalidStateException then.
// A key missing from the keyring is keyMissing's case (healKey).
func (s *Store) keyUsableLocked(m *streamMeta) error {
	if m.EncryptionType != EncryptionKMS {
		return nil
	}
	var fp segment.Fingerprint
	if b, err := hex.DecodeString(m.KeyFingerprint); err == nil && len(b) == len(fp) {
		copy(fp[:], b)
	}
	if err := s.keys.Usable(fp); err != nil {
		return s.kmsError(m.Name, m.KeyID, err)
	}
	return nil
}

// healKey is called for a stream whose master key was missing when a shard
// opened (keyMissing): if the keyring has it now (a SIGHUP reload), every
// shard gets it and writes resume; if not, the write is refused with
// KMSNotFoundException, as AWS refuses writes to a stream whose key is gone,
// since writing plaintext to an encrypted stream would be wrong. Under the
// store lock, so it cannot race Start/StopEncryption.
func (s *Store) healKey(st *stream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.keyMissing.Load() {
		return nil
	}
	key, err := s.encryptionOf(st.meta)
	if err != nil {
		return s.fail(ErrKMSNotFound, ReasonKMSNotFound, Facts{Stream: st.name, Given: st.meta.KeyID, Detail: err.Error()})
	}
	for _, sh := range st.shards {
		sh.SetEncryption(key)
	}
	st.keyMissing.Store(false)
	return nil
}

// readKeyError maps a read that failed for a missing master key to AWS's
// KMSNotFoundException; other errors are returned as they are.
func (s *Store) readKeyError(name string, m *streamMeta, err error) error {
	if errors.Is(err, segment.ErrNoKey) || errors.Is(err, segment.ErrWrongKey) {
		return s.fail(ErrKMSNotFound, ReasonKMSNotFound, Facts{Stream: name, Given: m.KeyID, Detail: err.Error()})
	}
	return err
}
