package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/shard"
)

// MaxTagsPerStream is AWS's limit on tags on one stream.
const MaxTagsPerStream = 50

// notActive is the ResourceInUseException of an operation that needs an
// ACTIVE stream.
func (s *Store) notActive(name string, state StreamStatus) error {
	return s.fail(ErrResourceInUse, ReasonNotActive, Facts{Stream: name, State: state})
}

func (s *Store) notFound(name string) error {
	return s.fail(ErrStreamNotFound, ReasonStreamNotFound, Facts{Stream: name})
}

// lookup returns a stream's current metadata. Callers hold s.mu.
func (s *Store) lookupLocked(name string) (*stream, error) {
	if s.closed {
		return nil, s.fail(ErrClosed, ReasonShutdown, Facts{})
	}
	st, ok := s.streams[name]
	if !ok {
		return nil, s.notFound(name)
	}
	return st, nil
}

// CreateStream creates a stream in CREATING status; it turns ACTIVE after
// Options.CreateDelay. Its shards exist on disk before this returns.
func (s *Store) CreateStream(ctx context.Context, in CreateStreamInput) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.fail(ErrClosed, ReasonShutdown, Facts{})
	}
	if _, ok := s.streams[in.Name]; ok {
		return s.fail(ErrStreamExists, ReasonStreamExists, Facts{Stream: in.Name})
	}
	if k := in.MaxRecordSizeKiB; k != 0 && (k < MinMaxRecordSizeKiB || k > MaxMaxRecordSizeKiB) {
		return fmt.Errorf("storage: max record size %d KiB outside [%d, %d]", k, MinMaxRecordSizeKiB, MaxMaxRecordSizeKiB)
	}
	if err := s.checkCreateOnDemandLocked(&in); err != nil {
		return err
	}
	if err := s.checkShardLimitLocked(in.ShardCount); err != nil {
		return err
	}
	m := s.newStreamMeta(in)
	if err := s.persist(m); err != nil {
		return err
	}
	st := &stream{name: m.Name, dir: m.Dir(), meta: m, shards: map[uint32]*shard.Shard{}}
	if err := s.openShards(ctx, st); err != nil {
		return err
	}
	if err := s.opts.FS.SyncDir(s.streamsDir()); err != nil {
		return err
	}
	s.streams[m.Name] = st
	s.resumePending(st)
	return nil
}

// checkCreateOnDemandLocked applies the on-demand rules to a CreateStream:
// the account's ON_DEMAND stream limit, then a warm throughput's (checkWarm),
// which raises the shard count to it.
func (s *Store) checkCreateOnDemandLocked(in *CreateStreamInput) error {
	return CheckCreateOnDemand(s.opts.AccountID, in, s.onDemandCountLocked(), s.opts.OnDemandStreamLimit, s.commitment())
}

// CheckCreateOnDemand is checkCreateOnDemandLocked's rule for an account
// with onDemand ON_DEMAND streams of limit and the commitment c; cluster
// mode shares it.
func CheckCreateOnDemand(account string, in *CreateStreamInput, onDemand, limit int, c Commitment) error {
	if in.Mode == ModeOnDemand {
		if err := CheckOnDemandLimit(account, onDemand, limit); err != nil {
			return err
		}
	}
	if in.WarmMiBps == nil {
		return nil
	}
	if err := CheckWarm(account, in.Name, in.Mode, c, *in.WarmMiBps); err != nil {
		return err
	}
	target := max(in.ShardCount, *in.WarmMiBps)
	if target > MaxShardsPerStream { // as UpdateStreamWarmThroughput refuses it (warmPlan)
		return newError(ErrLimitExceeded, ReasonMaxShards, Facts{Account: account, Stream: in.Name, Limit: MaxShardsPerStream, Target: int64(target)})
	}
	in.ShardCount = target
	return nil
}

func (s *Store) newStreamMeta(in CreateStreamInput) *streamMeta {
	now := s.opts.Now()
	mode := in.Mode
	if mode == "" {
		mode = ModeProvisioned
	}
	m := &streamMeta{Name: in.Name, CreatedNs: now.UnixNano(), Status: StatusCreating, Mode: mode,
		RetentionHours: DefaultRetentionHours, Tags: copyTags(in.Tags), NextShardIndex: uint32(in.ShardCount),
		Distribution:   storedDistribution(in.Distribution),
		PendingUntilNs: now.Add(s.opts.CreateDelay).UnixNano(), MaxRecordSizeKiB: in.MaxRecordSizeKiB}
	if in.WarmMiBps != nil {
		m.WarmMiBps = *in.WarmMiBps
	}
	epoch := max(now.Unix()-initialEpochLag, s.maxEpochLocked()+1)
	s.reservedEpoch = max(s.reservedEpoch, epoch) // outlives the stream: a re-created one gets another
	for i, r := range hashkey.Split(in.ShardCount) {
		m.Shards = append(m.Shards, shardMeta{Index: uint32(i), HashStart: r.Start.String(), HashEnd: r.End.String(), CreateSecs: epoch})
	}
	return m
}

// initialEpochLag back-dates a new stream's first shards: AWS's creation
// second inside their StartingSequenceNumbers lies 2 to 7 seconds before the
// CreateStream reply (captured from AWS responses; unverified against the
// current service). Three seconds before the request's arrival second puts it
// there whatever the fraction of the second. It stays above every epoch the
// store has given out (maxEpochLocked), so epochs remain unique and a
// reshard's children, whose epochs are at least the reshard's own second,
// still sort above their parents.
const initialEpochLag = 3

// maxEpochLocked is the newest shard epoch of any stream. A new stream's
// epoch is above it, so sequence numbers (which carry the epoch) from two
// streams never coincide even when both were created in the same second, and
// a number from another stream is recognised as such.
func (s *Store) maxEpochLocked() int64 {
	e := s.reservedEpoch
	for _, st := range s.streams {
		for _, sm := range st.meta.Shards {
			e = max(e, sm.CreateSecs)
		}
	}
	return e
}

// openShardsLocked counts the account's open shards, with those that pending
// reshards will add.
func (s *Store) openShardsLocked() int {
	n := 0
	for _, st := range s.streams {
		if st.meta.Status != StatusDeleting {
			n += len(st.routes) + pendingGrowth(st.meta)
		}
	}
	return n
}

// resumePending schedules the completion of a pending status change: for an
// UPDATING stream with a pending reshard, the reshard taking effect
// (endUpdating). Callers hold s.mu (or own st exclusively during Open).
func (s *Store) resumePending(st *stream) {
	if st.meta.Status == StatusActive {
		return
	}
	wait := time.Unix(0, st.meta.PendingUntilNs).Sub(s.opts.Now())
	if st.meta.Reshard != nil { // taking effect needs the store lock released
		st.timer = time.AfterFunc(max(wait, 0), func() { s.endUpdating(st) })
		return
	}
	if wait <= 0 && st.meta.Status != StatusDeleting {
		s.finishPendingLocked(st)
		return
	}
	st.timer = time.AfterFunc(max(wait, 0), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cur, ok := s.streams[st.name]; ok && cur == st && !s.closed {
			s.finishPendingLocked(st)
		}
	})
}

func (s *Store) finishPendingLocked(st *stream) {
	switch st.meta.Status {
	case StatusCreating, StatusUpdating:
		m := st.meta.Clone()
		m.Status, m.PendingUntilNs = StatusActive, 0
		resized := applyPendingRecordSize(m)
		if err := s.persist(m); err != nil {
			s.log.Error("cannot activate stream", "stream", st.name, "error", err)
			return
		}
		st.meta = m
		if resized {
			s.applyLimits(st)
		}
	case StatusDeleting:
		if err := s.removeStreamLocked(st); err != nil {
			s.log.Error("cannot finish deleting stream", "stream", st.name, "error", err)
		}
	}
}

// DeleteStream marks the stream DELETING with its consumers, as AWS's
// DeleteStream with EnforceConsumerDeletion does; see DeleteStreamWith.
func (s *Store) DeleteStream(ctx context.Context, name string) error {
	return s.DeleteStreamWith(ctx, name, DeleteOptions{EnforceConsumerDeletion: true})
}

// DeleteOptions are DeleteStream's options.
type DeleteOptions struct {
	// EnforceConsumerDeletion deletes a stream that has registered consumers
	// (CREATING or ACTIVE) with them; without it such a stream is
	// ErrResourceInUse, as on AWS.
	EnforceConsumerDeletion bool
}

// DeleteStreamWith marks the stream DELETING; its files go after
// DeleteDelay. A pending reshard is dropped; one taking effect is waited for
// first. Its consumers' subscriptions end at once.
func (s *Store) DeleteStreamWith(ctx context.Context, name string, o DeleteOptions) error {
	st, err := s.lockIdleStream(ctx, name)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if st.meta.Status == StatusDeleting {
		return nil
	}
	// AWS refuses to delete a stream that has channels ("A stream cannot be
	// deleted while it has active deliveries"), whatever the options.
	if n := liveChannels(st.meta); n > 0 {
		return s.fail(ErrResourceInUse, ReasonHasChannels, Facts{Stream: name, Current: int64(n)})
	}
	if !o.EnforceConsumerDeletion && liveConsumers(st.meta) > 0 {
		return s.fail(ErrResourceInUse, ReasonHasConsumers, Facts{Stream: name, Current: int64(liveConsumers(st.meta))})
	}
	m := st.meta.Clone()
	m.DeletedCreating = st.meta.Status == StatusCreating
	m.Status, m.PendingUntilNs = StatusDeleting, s.opts.Now().Add(s.opts.DeleteDelay).UnixNano()
	m.Reshard = nil
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	st.wake() // subscriptions end
	st.closeGoneLocked("")
	if st.timer != nil {
		st.timer.Stop()
	}
	if s.opts.DeleteDelay <= 0 {
		return s.removeStreamLocked(st)
	}
	s.resumePending(st)
	return nil
}

// lockIdleStream returns the named stream with the store lock held once no
// reshard of it is taking effect (it waits for one that is); on error the
// lock is not held.
func (s *Store) lockIdleStream(ctx context.Context, name string) (*stream, error) {
	for {
		s.awaitReshard(ctx, name)
		s.mu.Lock()
		st, err := s.lookupLocked(name)
		if err == nil && st.resharding != nil { // another began since awaitReshard
			err = ctx.Err()
			if err == nil {
				s.mu.Unlock()
				continue
			}
		}
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		return st, nil
	}
}

// removeStreamLocked deletes a DELETING stream's files, then its metadata. A
// crash in between leaves the DELETING record, and Open finishes the job.
func (s *Store) removeStreamLocked(st *stream) error {
	st.closeGoneLocked("")
	st.closeShards()
	dir := datadir.StreamPath(s.opts.Dir, st.dir)
	if err := s.opts.FS.RemoveAll(dir); err != nil {
		return err
	}
	if err := s.opts.FS.SyncDir(s.streamsDir()); err != nil {
		return err
	}
	for _, sm := range st.meta.Shards {
		s.idx.Submit(index.Update{Shard: datadir.IndexKey(st.dir, sm.Index), Drop: true})
	}
	if err := s.meta.DeleteStream(st.name); err != nil {
		return err
	}
	delete(s.streams, st.name)
	st.wake()
	return nil
}

// DescribeStream returns a stream's metadata with its shards.
func (s *Store) DescribeStream(ctx context.Context, name string) (StreamInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return StreamInfo{}, err
	}
	return streamInfoOf(st.meta, true), nil
}

// ListStreams returns every stream, sorted by name, without shards.
func (s *Store) ListStreams(ctx context.Context) ([]StreamInfo, error) {
	out := []StreamInfo{}
	for _, st := range s.sortedStreams() {
		s.mu.RLock()
		out = append(out, streamInfoOf(st.meta, false))
		s.mu.RUnlock()
	}
	return out, nil
}

// TagCheck is a caller's check of the tags of AddTags or RemoveTags (their
// characters), which storage runs once the stream is found; its error is
// returned as it is. AWS reports a missing stream before bad characters
// (captured from AWS responses; unverified against the current service), so
// the check cannot run before the lookup; running it under the same lock as
// the lookup and the change, rather than after a separate existence check,
// means no second lookup, and no tags are stored that were not checked.
type TagCheck func() error

// updateMeta applies change to an ACTIVE stream's metadata and persists it.
// check, when not nil, runs once the stream is found, before its status is
// looked at.
func (s *Store) updateMeta(name string, check TagCheck, change func(m *streamMeta) error) error {
	var pre func(*streamMeta) error
	if check != nil {
		pre = func(*streamMeta) error { return check() }
	}
	return s.updateMetaWith(name, pre, change)
}

// updateMetaWith is updateMeta with a check that sees the stream's current
// metadata (read only), so it can look up what the request names inside the
// stream (a consumer) before the stream's status is looked at.
func (s *Store) updateMetaWith(name string, pre func(m *streamMeta) error, change func(m *streamMeta) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return err
	}
	if pre != nil {
		if err := pre(st.meta); err != nil {
			return err
		}
	}
	if st.meta.Status != StatusActive {
		return s.notActive(name, st.meta.Status)
	}
	old, m := st.meta, st.meta.Clone()
	if err := change(m); err != nil {
		return err
	}
	if err := s.persist(m); err != nil {
		return err
	}
	st.meta = m
	if m.Tags[MultiplierTag] != old.Tags[MultiplierTag] {
		s.applyLimits(st)
	}
	return nil
}

// SetRetention is Increase/DecreaseStreamRetentionPeriod.
func (s *Store) SetRetention(ctx context.Context, name string, hours int, increase bool) error {
	return s.updateMeta(name, nil, func(m *streamMeta) error {
		cur := m.RetentionHours
		switch {
		case hours < MinRetentionHours:
			return s.fail(ErrInvalidArgument, ReasonRetentionMin, Facts{Stream: name, N: int64(hours), Limit: MinRetentionHours})
		case hours > MaxRetentionHours:
			return s.fail(ErrInvalidArgument, ReasonRetentionMax, Facts{Stream: name, N: int64(hours), Limit: MaxRetentionHours})
		case increase && hours < cur:
			return s.fail(ErrInvalidArgument, ReasonRetentionLower, Facts{Stream: name, N: int64(hours), Current: int64(cur)})
		case !increase && hours > cur:
			return s.fail(ErrInvalidArgument, ReasonRetentionRaise, Facts{Stream: name, N: int64(hours), Current: int64(cur)})
		}
		m.RetentionHours = hours
		return nil
	})
}

// AddTags adds or overwrites tags (TagsAdded's limit). check (may be nil)
// runs after the stream lookup and before the 50-tag limit.
func (s *Store) AddTags(ctx context.Context, name string, tags map[string]string, check TagCheck) error {
	return s.updateMeta(name, check, func(m *streamMeta) error {
		merged, err := TagsAdded(s.opts.AccountID, name, m.Tags, tags)
		if err != nil {
			return err
		}
		m.Tags = merged
		return nil
	})
}

// RemoveTags removes tags; absent keys are ignored. check (may be nil) runs
// after the stream lookup.
func (s *Store) RemoveTags(ctx context.Context, name string, keys []string, check TagCheck) error {
	return s.updateMeta(name, check, func(m *streamMeta) error {
		m.Tags = TagsRemoved(m.Tags, keys)
		return nil
	})
}
