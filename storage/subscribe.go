package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/shard"
)

// SubscribeToShard's push path. A Subscription is a position in one shard
// that Next advances. Next never polls: it waits on the shard's Changed (the
// acknowledged tip moved, or the shard was sealed or closed), on the
// stream's own wake-up (a reshard committed, the stream is being deleted or
// was removed), on the consumer's gone channel and on ctx, and reads with
// shard.ReadShared, which decodes each frame once for all the subscribers of
// a shard. It reads only what the shard has published, so it never returns
// a record before its frame's fdatasync (under the default sync policy).
// Nothing is buffered: each Next reads at most maxBytes from the segments
// (or the shard's small cache of decoded frames), so a slow subscriber costs
// memory for one event at most.

// SubscribeInput is a subscription's shard and starting position.
type SubscribeInput struct {
	Stream, ShardID string
	Type            IteratorType // all five
	StartSeq        string       // AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER
	Timestamp       time.Time    // AT_TIMESTAMP
	// Consumer is the subscribing consumer's name, which the error of a
	// consumer gone mid-stream names.
	Consumer string
}

// SubscribeEvent is one SubscribeToShardEvent.
type SubscribeEvent struct {
	Records []Record // read-only: their Data may be shared with other subscribers
	// ContinuationSequenceNumber resumes the subscription with
	// AFTER_SEQUENCE_NUMBER: the last record delivered, or a number just
	// before the position if none was. "" only at a closed shard's end.
	ContinuationSequenceNumber string
	MillisBehindLatest         int64
	ChildShards                []ChildShard // at a closed shard's end
	Bytes                      int          // data + partition-key bytes in Records
}

// End reports whether the event is the last one: the shard is closed and
// read to its end.
func (e SubscribeEvent) End() bool { return e.ContinuationSequenceNumber == "" }

// EventSource is an open subscription as the api serves it (api.Subscription):
// a *Subscription, or cluster mode's, which follows the same rules.
type EventSource interface {
	Next(ctx context.Context, maxBytes int, idle time.Duration) (SubscribeEvent, error)
	Close()
}

var _ EventSource = (*Subscription)(nil)

// maxEventRecords caps the records of one event, as GetRecords' 10,000.
const maxEventRecords = 10000

// errSubscriptionEnded is Next's error after the end event or Close.
var errSubscriptionEnded = errors.New("subscription ended")

// Subscription is one subscriber's position in a shard. Next and Close may
// be called from different goroutines; Next from one at a time.
type Subscription struct {
	s        *Store
	st       *stream
	name     string
	created  int64 // the stream's CreatedNs: a re-created stream is another stream
	index    uint32
	epoch    int64 // the shard's creation second, in its sequence numbers
	gone     <-chan struct{}
	consumer string
	done     chan struct{} // closed by Close
	once     sync.Once

	next  uint64 // the next ordinal to deliver
	cont  string // the continuation sequence number so far
	ended bool
}

// Subscribe opens a subscription at the starting position. gone (the
// consumer's, from ActiveConsumer) ends it. It does not count against the
// shard's GetRecords or GetShardIterator limits: a consumer's subscription
// has its own dedicated throughput, which the caller paces.
func (s *Store) Subscribe(ctx context.Context, in SubscribeInput, gone <-chan struct{}) (*Subscription, error) {
	ref, err := s.shardOf(in.Stream, in.ShardID)
	if err != nil {
		return nil, err
	}
	ord, err := s.startOrdinal(ref.st, ref.sm, ref.sh, in.Type, in.StartSeq, in.Timestamp)
	if err != nil {
		return nil, err
	}
	sub := &Subscription{s: s, st: ref.st, name: in.Stream, created: ref.meta.CreatedNs, index: ref.sm.Index,
		epoch: ref.sm.CreateSecs, gone: gone, consumer: in.Consumer, done: make(chan struct{}), next: ord}
	sub.cont = sub.seqBefore(ord, ref.sh.Tip().LastTs)
	return sub, nil
}

// seqBefore is a continuation number for a position with nothing delivered
// yet: the number of ordinal ord-1 (AFTER it is ord), or the shard's
// StartingSequenceNumber at ordinal 0. Its arrival second (which orders
// nothing: the ordinal is more significant) is the newest record's.
func (sub *Subscription) seqBefore(ord uint64, lastTs int64) string {
	return seqBefore(sub.epoch, sub.index, ord, lastTs)
}

// seqBefore is Subscription.seqBefore for shard index of epoch.
func seqBefore(epoch int64, index uint32, ord uint64, lastTs int64) string {
	if ord == 0 {
		return seqnum.Seq{ShardCreateSecs: epoch, ShardIndex: index, ArrivalSecs: epoch}.String()
	}
	return seqnum.Seq{ShardCreateSecs: epoch, ShardIndex: index, Ordinal: ord - 1,
		ArrivalSecs: max(epoch, lastTs/1000)}.String()
}

// Close ends the subscription; a Next waiting returns.
func (sub *Subscription) Close() { sub.once.Do(func() { close(sub.done) }) }

// Next blocks until durable records past the position exist, or idle
// elapses (then an event without records, the continuation unchanged), or
// the shard ends (ChildShards, ContinuationSequenceNumber ""), and returns
// at most maxBytes of records (at least one record if any). It fails with a
// *Error (ErrShardNotFound for a deleted stream, ErrConsumerNotFound for a
// gone consumer, ErrClosed when the store closes) or with ctx's error.
func (sub *Subscription) Next(ctx context.Context, maxBytes int, idle time.Duration) (SubscribeEvent, error) {
	timer := time.NewTimer(idle)
	defer timer.Stop()
	retried := false
	for {
		if err := sub.check(ctx); err != nil {
			return SubscribeEvent{}, err
		}
		stCh := sub.st.watch() // before reading anything, so no change is missed
		ref, err := sub.shard()
		if err != nil {
			return SubscribeEvent{}, err
		}
		shCh := ref.sh.Changed()
		ev, ok, err := sub.read(ref, max(maxBytes, 1))
		if errors.Is(err, shard.ErrClosed) && !retried {
			retried = true // the handle was closed under us: look the shard up again
			continue
		}
		if err != nil || ok {
			return ev, err
		}
		select {
		case <-stCh:
		case <-shCh:
		case <-sub.gone:
		case <-sub.done:
		case <-ctx.Done():
		case <-timer.C:
			return SubscribeEvent{ContinuationSequenceNumber: sub.cont}, nil
		}
	}
}

// check reports why the subscription cannot go on, if it cannot.
func (sub *Subscription) check(ctx context.Context) error {
	select {
	case <-sub.done:
		return errSubscriptionEnded
	case <-sub.gone:
		return sub.s.fail(ErrConsumerNotFound, ReasonConsumerNotFound, Facts{Stream: sub.name, Consumer: sub.consumer})
	default:
	}
	if sub.ended {
		return errSubscriptionEnded
	}
	return ctx.Err()
}

// shard looks the subscription's shard up afresh: a reshard may have closed
// it, and the stream may be gone or be another stream of the same name.
func (sub *Subscription) shard() (shardRef, error) {
	ref, err := sub.s.shardOf(sub.name, shardID(sub.index))
	if err == nil && ref.meta.CreatedNs != sub.created {
		err = sub.s.shardGone(sub.name, sub.index)
	}
	return ref, err
}

// read reads what is published past the position. ok is false when there
// is nothing to send yet.
func (sub *Subscription) read(ref shardRef, maxBytes int) (ev SubscribeEvent, ok bool, err error) {
	horizon := sub.s.opts.Now().Add(-time.Duration(ref.meta.RetentionHours) * time.Hour).UnixMilli()
	r, err := ref.sh.ReadShared(sub.next, maxEventRecords, maxBytes, horizon)
	if err != nil {
		return ev, false, sub.s.readKeyError(sub.name, ref.meta, fmt.Errorf("subscription to %s/%s: %w", sub.name, shardID(sub.index), err))
	}
	ev.Records, ev.Bytes = recordsOf(ref.sm, r.Records), r.Bytes
	switch {
	case len(ev.Records) > 0:
		sub.cont = ev.Records[len(ev.Records)-1].SequenceNumber
	case r.Next != sub.next: // skipped records past retention
		sub.cont = sub.seqBefore(r.Next, ref.sh.Tip().LastTs)
	}
	sub.next = r.Next
	if r.AtTip && ref.sm.Closed {
		// The shard is sealed (its metadata says closed only after the
		// reshard committed), so this is its end.
		sub.ended = true
		ev.ChildShards = sub.s.children(sub.name, shardID(sub.index))
		return ev, true, nil
	}
	ev.ContinuationSequenceNumber = sub.cont
	if len(ev.Records) == 0 {
		return ev, false, nil
	}
	if !r.AtTip {
		ev.MillisBehindLatest = max(0, ref.sh.Tip().LastTs-r.Records[len(r.Records)-1].ArrivalMs)
	}
	return ev, true, nil
}

// recordsOf converts a shard's records to the API's, numbered in shard sm.
func recordsOf(sm shardMeta, recs []segment.Record) []Record {
	out := make([]Record, len(recs))
	for i, rec := range recs {
		out[i] = Record{
			SequenceNumber: seqnum.Seq{ShardCreateSecs: sm.CreateSecs, ShardIndex: sm.Index, Ordinal: rec.Seq, ArrivalSecs: rec.ArrivalMs / 1000}.String(),
			Arrival:        time.UnixMilli(rec.ArrivalMs), PartitionKey: rec.PartitionKey, Data: rec.Data,
			Encrypted: rec.Sealed,
		}
	}
	return out
}
