package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/storage"
)

// SubscribeToShard: enhanced fan-out's push. The request is checked and the
// subscription opened like any operation (errors are ordinary HTTP error
// responses); then the answer is a 200 event stream (wire.EventWriter):
// the initial-response, then one SubscribeToShardEvent per storage event,
// each flushed at once, paced to Config.SubscribeRate, with an empty event
// when nothing arrived for heartbeatEvery. It ends cleanly (the body just
// ends) after Config.SubscriptionLifetime, when the server closes
// (Server.Close, which the HTTP server's shutdown calls: Shutdown cancels no
// handler's context), when the client goes, and after the last event of a
// closed shard (ChildShards). Other failures (the consumer deregistered,
// the stream deleted) end it with an exception event.
//
// Back-pressure: events are written straight to the connection, one at a
// time; a slow client blocks the write, and nothing is read ahead meanwhile
// (storage reads each event from the segments when it is due).

// heartbeatEvery is how long an idle subscription waits before sending an
// empty event, as AWS does about every 5 s (kinesis-api.md §3.18).
const heartbeatEvery = 5 * time.Second

// resubscribeWindow: a SubscribeToShard for a consumer and shard within this
// long of the last successful one is ResourceInUseException, as on AWS.
const resubscribeWindow = 5 * time.Second

// endGrace bounds how long a write to a client that does not read may block
// once the subscription has to end.
const endGrace = time.Second

// maxEventBytes caps one event's record bytes, whatever the pacing budget.
const maxEventBytes = 2 << 20

// subKey names a consumer-shard pair: a consumer incarnation (stream, name,
// creation second) and a shard index.
type subKey struct {
	stream, consumer string
	secs             int64
	shard            string
}

// subscriptions is the server's registry of running subscriptions: one per
// consumer-shard pair, and when each pair last started one.
type subscriptions struct {
	mu     sync.Mutex
	active map[subKey]bool
	last   map[subKey]time.Time
	ctx    context.Context // canceled by Server.Close
	cancel context.CancelFunc
}

func newSubscriptions() *subscriptions {
	ctx, cancel := context.WithCancel(context.Background())
	return &subscriptions{active: map[subKey]bool{}, last: map[subKey]time.Time{}, ctx: ctx, cancel: cancel}
}

// claim marks k active if no subscription of k runs and none started within
// resubscribeWindow of now.
func (r *subscriptions) claim(k subKey, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[k] || now.Sub(r.last[k]) < resubscribeWindow {
		return false
	}
	for old, t := range r.last { // bounded: only pairs of the last few seconds stay
		if now.Sub(t) >= resubscribeWindow {
			delete(r.last, old)
		}
	}
	r.active[k] = true
	return true
}

// started records a successful start; release ends k's subscription.
func (r *subscriptions) started(k subKey, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[k] = now
}

func (r *subscriptions) release(k subKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, k)
}

// Close ends every running subscription cleanly and refuses none: give it
// to http.Server.RegisterOnShutdown, since Shutdown waits for handlers but
// cancels none of their contexts.
func (s *Server) Close() { s.subs.cancel() }

type startingPosition struct {
	Type           *string
	SequenceNumber *string
	Timestamp      wire.OptTime
}

type subscribeToShardInput struct {
	ConsumerARN      *string
	ShardId          *string
	StartingPosition *startingPosition
}

func (s *Server) subscribeToShard(rc *reqCtx, body []byte) (any, error) {
	var in subscribeToShardInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	if err := validateSubscribe(&in); err != nil {
		return nil, err
	}
	p, _ := wire.ParseConsumerARN(*in.ConsumerARN)
	if p.Account != s.account {
		return nil, reasonError(wire.TypeResourceNotFound, storage.ReasonConsumerNotFound,
			storage.Facts{Account: p.Account, Stream: p.Stream, Consumer: p.Consumer})
	}
	if err := s.admit(rc, s.consumerAdmission(rc, consumerRef{stream: p.Stream, name: p.Consumer, secs: p.CreatedSecs})); err != nil {
		return nil, err
	}
	sp := in.StartingPosition
	typ := storage.IteratorType(*sp.Type)
	if err := iteratorArgError(typ, sp.SequenceNumber != nil, sp.Timestamp, s.now()); err != nil {
		return nil, err
	}
	_, gone, err := s.b.ActiveConsumer(rc.ctx, p.Stream, p.Consumer, time.Unix(p.CreatedSecs, 0))
	if err != nil {
		return nil, err
	}
	key := subKey{stream: p.Stream, consumer: p.Consumer, secs: p.CreatedSecs, shard: *in.ShardId}
	if idx, ok := datadir.ParseShardID(*in.ShardId); ok {
		key.shard = datadir.ShardID(idx) // "1" and "shardId-000000000001" are one shard
	}
	if !s.subs.claim(key, s.now()) {
		return nil, wire.ClientError(wire.TypeResourceInUse, msgSubscriptionInUse(*in.ConsumerARN, *in.ShardId))
	}
	defer s.subs.release(key)
	sin := storage.SubscribeInput{Stream: p.Stream, ShardID: *in.ShardId, Type: typ, Timestamp: sp.Timestamp.T, Consumer: p.Consumer}
	if sp.SequenceNumber != nil {
		sin.StartSeq = *sp.SequenceNumber
	}
	sub, err := s.b.Subscribe(rc.ctx, sin, gone)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	s.subs.started(key, s.now())
	sm := s.metrics.stream(p.Stream)
	sm.subscribeSuccess.Inc()
	idx, _ := datadir.ParseShardID(*in.ShardId) // it resolved: the subscription exists
	s.stream(rc, sub, sm, idx)
	return streamed{}, nil
}

// streamed is the output of an operation that has written its own answer.
type streamed struct{}

func validateSubscribe(in *subscribeToShardInput) error {
	var v wire.Validator
	if v.NotNull("consumerARN", in.ConsumerARN != nil) {
		v.ConsumerARN("consumerARN", in.ConsumerARN)
	}
	v.ReqStr("shardId", in.ShardId, wire.PatternName, 1, 128)
	if v.NotNull("startingPosition", in.StartingPosition != nil) {
		sp := in.StartingPosition
		if v.NotNull("startingPosition.type", sp.Type != nil) {
			v.Enum("startingPosition.type", sp.Type, iteratorTypes)
		}
		v.Str("startingPosition.sequenceNumber", sp.SequenceNumber, wire.PatternSequence, 0, -1)
	}
	return v.Err()
}

// stream writes the event stream until the subscription ends.
func (s *Server) stream(rc *reqCtx, sub Subscription, sm *streamMetrics, shard uint32) {
	ctx, cancel := context.WithTimeout(rc.ctx, s.cfg.SubscriptionLifetime)
	defer cancel()
	stopOnClose := context.AfterFunc(s.subs.ctx, cancel)
	defer stopOnClose()
	ctl := http.NewResponseController(rc.w)
	// The server's ReadTimeout would end an HTTP/1.1 stream (its background
	// read fails and cancels the request); the request body is read.
	_ = ctl.SetReadDeadline(time.Time{})
	defer s.unblockWritesAtEnd(ctx, ctl)()

	h := rc.w.Header()
	h.Set("Content-Type", wire.ContentTypeEventStream)
	if rc.r.ProtoMajor == 1 {
		h.Set("Connection", "close") // write deadlines set below must not outlive the stream
	}
	rc.status, rc.wrote = http.StatusOK, true
	rc.w.WriteHeader(http.StatusOK)
	ew := wire.NewEventWriter(rc.w, rc.codec)
	if ew.InitialResponse() != nil || ctl.Flush() != nil {
		return
	}
	pace := ratelimit.NewBucket(s.cfg.SubscribeRate, s.cfg.SubscribeRate)
	for {
		maxBytes, ok := s.paceWait(ctx, pace)
		if !ok {
			return
		}
		ev, err := sub.Next(ctx, maxBytes, heartbeatEvery)
		if err != nil {
			s.endWithError(rc, ew, ctl, ctx, err)
			return
		}
		pace.Charge(s.now(), float64(ev.Bytes))
		if ew.Event(eventOut(ev)) != nil || ctl.Flush() != nil {
			return // the client went
		}
		sm.eventSent(shard, ev)
		if ev.End() {
			return // the shard ended
		}
	}
}

// unblockWritesAtEnd makes a write that blocks on a client that does not
// read give up endGrace after ctx ends (lifetime, shutdown, client gone), so
// the handler always returns. The returned func disarms it; call it before
// the handler returns (ResponseController may not be used after).
func (s *Server) unblockWritesAtEnd(ctx context.Context, ctl *http.ResponseController) func() {
	var mu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			_ = ctl.SetWriteDeadline(time.Now().Add(endGrace))
		}
	})
	return func() {
		stop()
		mu.Lock()
		done = true
		mu.Unlock()
	}
}

// paceWait waits until the pacing budget is not overdrawn and returns how
// many record bytes the next event may carry (at least one record goes out
// whatever its size, overdrawing the budget, which the next wait repays).
// ok is false when ctx ended first.
func (s *Server) paceWait(ctx context.Context, b *ratelimit.Bucket) (int, bool) {
	if s.cfg.SubscribeRate <= 0 {
		return maxEventBytes, ctx.Err() == nil
	}
	bal := b.Balance(s.now())
	if bal < 0 {
		t := time.NewTimer(time.Duration(-bal / s.cfg.SubscribeRate * float64(time.Second)))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return 0, false
		}
		bal = b.Balance(s.now())
	}
	return int(min(max(bal, 1), maxEventBytes)), true
}

// endWithError ends the stream after Next failed: quietly when the
// subscription was meant to end (its context: lifetime, shutdown, the client
// gone; or the store closing), with an exception event otherwise.
func (s *Server) endWithError(rc *reqCtx, ew *wire.EventWriter, ctl *http.ResponseController, ctx context.Context, err error) {
	if ctx.Err() != nil || errors.Is(err, storage.ErrClosed) {
		return
	}
	ae := toAPIError(err, rc.region)
	rc.errMsg = ae.Type + ": " + ae.Message
	if ae.Type == wire.TypeInternalFailure {
		ae = &wire.Error{Type: typeInternalFailureEvent, Message: ae.Message, Status: ae.Status}
	}
	if ew.Exception(ae) == nil {
		_ = ctl.Flush()
	}
}

// typeInternalFailureEvent is the in-stream type of a server fault: the
// SubscribeToShardEventStream union names it InternalFailureException.
const typeInternalFailureEvent = "InternalFailureException"

// eventOut renders a storage event for the wire.
func eventOut(ev storage.SubscribeEvent) wire.SubscribeToShardEvent {
	out := wire.SubscribeToShardEvent{Records: records(ev.Records), MillisBehindLatest: ev.MillisBehindLatest, SizeHint: ev.Bytes}
	if !ev.End() {
		cont := ev.ContinuationSequenceNumber
		out.ContinuationSequenceNumber = &cont
	} else {
		out.ChildShards = childShardsOut(ev.ChildShards)
	}
	return out
}
