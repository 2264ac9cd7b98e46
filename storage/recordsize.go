package storage

import (
	"context"
	"fmt"

	"github.com/shardlog/shardlog/segment"
)

// A stream's maximum record size (data + partition key), in KiB: AWS's
// MaxRecordSizeInKiB, set by CreateStream and UpdateMaxRecordSize.
const (
	DefaultMaxRecordSizeKiB = 1024
	MinMaxRecordSizeKiB     = 1024
	MaxMaxRecordSizeKiB     = 10240
)

// The largest request, a PutRecords of 10 MiB of data and keys in at most
// 500 records, is written as one frame (a shard never splits a request), so
// it must fit segment.MaxFramePayload; each record adds a few varints, far
// below the 1 KiB allowed here. This does not compile if the cap shrinks.
const _ = uint(segment.MaxFramePayload - (MaxMaxRecordSizeKiB<<10 + 500<<10))

// recordSizeKiB is the stream's maximum record size in effect, in KiB.
func recordSizeKiB(m *streamMeta) int {
	if m.MaxRecordSizeKiB == 0 {
		return DefaultMaxRecordSizeKiB
	}
	return m.MaxRecordSizeKiB
}

// recordSizeBytes is the stream's maximum record size in effect, in bytes.
func recordSizeBytes(m *streamMeta) int { return recordSizeKiB(m) << 10 }

// RecordLimit is the largest record (data + partition-key bytes) the stream
// takes now. It fails as Put does: a stream that takes no writes (missing,
// CREATING, DELETING) is not found.
func (s *Store) RecordLimit(ctx context.Context, name string) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return 0, err
	}
	if st.meta.Status != StatusActive && st.meta.Status != StatusUpdating {
		return 0, s.notFound(name)
	}
	return recordSizeBytes(st.meta), nil
}

// UpdateMaxRecordSize sets an ACTIVE stream's maximum record size, kib in
// [MinMaxRecordSizeKiB, MaxMaxRecordSizeKiB] (the api has validated it).
// Like AWS's other stream updates, the stream is UPDATING for
// Options.UpdateDelay and the new size takes effect when it turns ACTIVE
// again; with no delay it takes effect at once and the stream stays ACTIVE.
// AWS's documentation does not say UpdateMaxRecordSize is asynchronous, but
// it lists ResourceInUseException (the stream must be ACTIVE), as for the
// updates that are, so this is the most plausible reading. Setting the size
// the stream already has changes nothing.
func (s *Store) UpdateMaxRecordSize(ctx context.Context, name string, kib int) error {
	if kib < MinMaxRecordSizeKiB || kib > MaxMaxRecordSizeKiB {
		return fmt.Errorf("storage: max record size %d KiB outside [%d, %d]", kib, MinMaxRecordSizeKiB, MaxMaxRecordSizeKiB)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return err
	}
	if st.meta.Status != StatusActive {
		return s.notActive(name, st.meta.Status)
	}
	if recordSizeKiB(st.meta) == kib {
		return nil
	}
	m := st.meta.Clone()
	if s.opts.UpdateDelay <= 0 {
		m.MaxRecordSizeKiB = kib
	} else {
		m.Status, m.PendingMaxRecordSizeKiB = StatusUpdating, kib
		m.PendingUntilNs = s.opts.Now().Add(s.opts.UpdateDelay).UnixNano()
	}
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	if m.Status == StatusActive {
		s.applyLimits(st)
		return nil
	}
	s.resumePending(st)
	return nil
}

// applyPendingRecordSize moves an UPDATING record's pending maximum record
// size into effect; it reports whether there was one.
func applyPendingRecordSize(m *streamMeta) bool {
	if m.PendingMaxRecordSizeKiB == 0 {
		return false
	}
	m.MaxRecordSizeKiB, m.PendingMaxRecordSizeKiB = m.PendingMaxRecordSizeKiB, 0
	return true
}
