package cluster

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Enhanced fan-out consumers in cluster mode, with single-node mode's rules,
// limits and errors (storage/consumers.go). A stream's consumers are one
// metadata key, "consumers/<stream>" (consumersRec: single-node's
// datadir.ConsumerRecord list, in registration order, and the retired
// names), changed only by transactions conditional on that key's version and
// on the stream record's. So the per-stream limits (20 consumers, 5 CREATING)
// hold however many nodes register at once, and a DeleteStream racing a
// registration wins or loses whole. Reads follow a ReadIndex round of the
// metadata group, so every node answers the same.
//
// Lifecycle: a consumer is CREATING for Config.ConsumerDelay, then ACTIVE
// (at once when the delay is 0); DeregisterConsumer makes it DELETING, which
// ends its subscriptions at once, and it is removed after ConsumerDelay. The
// metadata leader's reconcile loop makes both transitions, by its clock
// (advanceConsumers), so a transition due while the leader changes is made by
// the next one.

const consumersPrefix = "consumers/"

func consumersKey(stream string) string { return consumersPrefix + stream }

// consumersRec is a stream's consumers. StreamCreatedNs names the stream
// incarnation they belong to (the key is deleted with the stream; this only
// guards against a stale read).
type consumersRec struct {
	StreamCreatedNs int64                    `json:"streamCreatedNs"`
	Consumers       []datadir.ConsumerRecord `json:"consumers"`
	// Retired maps a removed consumer's name to its creation second, so a
	// consumer registered again under it in that second gets another ARN.
	Retired map[string]int64 `json:"retired,omitempty"`
}

// consumersOf reads a stream's consumers from the local state, and the
// key's version for a compare-and-set (0: absent).
func (n *Node) consumersOf(rec streamRec) (consumersRec, uint64) {
	var cs consumersRec
	v, ok := n.getJSON(consumersKey(rec.Name), &cs)
	if !ok || cs.StreamCreatedNs != rec.CreatedNs {
		return consumersRec{StreamCreatedNs: rec.CreatedNs}, v
	}
	return cs, v
}

func (cs consumersRec) find(name string) int {
	return slices.IndexFunc(cs.Consumers, func(c datadir.ConsumerRecord) bool { return c.Name == name })
}

// clone copies what a change modifies.
func (cs consumersRec) clone() consumersRec {
	cs.Consumers = slices.Clone(cs.Consumers)
	cs.Retired = maps.Clone(cs.Retired)
	return cs
}

func consumerInfo(stream string, c datadir.ConsumerRecord) storage.ConsumerInfo {
	return storage.ConsumerInfo{Name: c.Name, Stream: stream, Status: c.Status, Created: time.UnixMilli(c.CreatedMs), Tags: maps.Clone(c.Tags)}
}

// readStream is a control-plane read's prologue: the stream's record after a
// ReadIndex round of the metadata group.
func (n *Node) readStream(ctx context.Context, name string) (streamRec, uint64, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return streamRec{}, 0, n.unavailable("", "", err)
	}
	rec, v, ok := n.stream(name)
	if !ok {
		return streamRec{}, 0, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
	}
	return rec, v, nil
}

// changeConsumers runs a consumer change as a compare-and-set on the stream
// record and its consumers, retried when another change came between the
// read and the commit. change returns the new consumers, or an error to
// answer (nothing is written).
func (n *Node) changeConsumers(ctx context.Context, stream string, change func(streamRec, consumersRec) (consumersRec, error)) error {
	for range maxTxnAttempts {
		rec, v, err := n.readStream(ctx, stream)
		if err != nil {
			return err
		}
		cs, cv := n.consumersOf(rec)
		next, err := change(rec, cs.clone())
		if err != nil {
			return err
		}
		key := consumersKey(stream)
		conds := []replica.MetaCond{{Key: replica.StreamKey(stream), Version: v}, {Key: key, Version: cv}}
		committed, err := n.txn(ctx, conds, []replica.MetaOp{{Key: key, Value: mustJSON(next)}})
		if err != nil {
			return n.unavailable("", "", err)
		}
		if committed {
			return nil
		}
	}
	return n.unavailable("", "", errNoLeader)
}

// RegisterConsumer registers a consumer of an ACTIVE or UPDATING stream.
// Errors, in single-node mode's order: ErrStreamNotFound, ErrResourceInUse
// (stream not ACTIVE or UPDATING, or the name is taken), ErrLimitExceeded
// (20 consumers, or 5 CREATING). Single-node mode waits for a reshard in
// progress to finish first; here the registration does not touch shards, so
// it is made at once.
func (n *Node) RegisterConsumer(ctx context.Context, stream, name string, tags map[string]string) (storage.ConsumerInfo, error) {
	var added datadir.ConsumerRecord
	err := n.changeConsumers(ctx, stream, func(rec streamRec, cs consumersRec) (consumersRec, error) {
		if err := n.checkRegister(rec, cs, name); err != nil {
			return cs, err
		}
		now := n.cfg.Now()
		pruneRetired(&cs, now)
		added = datadir.ConsumerRecord{Name: name, CreatedMs: consumerCreation(cs, name, now).UnixMilli(), Status: storage.ConsumerActive}
		if d := n.consumerDelay(); d > 0 {
			added.Status, added.PendingUntilNs = storage.ConsumerCreating, now.Add(d).UnixNano()
		}
		if len(tags) > 0 {
			added.Tags = maps.Clone(tags)
		}
		cs.Consumers = append(cs.Consumers, added)
		return cs, nil
	})
	if err != nil {
		return storage.ConsumerInfo{}, err
	}
	return consumerInfo(stream, added), nil
}

func (n *Node) checkRegister(rec streamRec, cs consumersRec, name string) error {
	f := storage.Facts{Stream: rec.Name, Consumer: name}
	switch {
	case !takesWrites(rec.Status): // ACTIVE or UPDATING, as single-node mode's checkRegisterLocked
		return n.fail(storage.ErrResourceInUse, storage.ReasonNotActive, storage.Facts{Stream: rec.Name, State: storage.StreamStatus(rec.Status)})
	case cs.find(name) >= 0:
		return n.fail(storage.ErrResourceInUse, storage.ReasonConsumerExists, f)
	case len(cs.Consumers) >= storage.MaxConsumersPerStream:
		f.Limit = storage.MaxConsumersPerStream
		return n.fail(storage.ErrLimitExceeded, storage.ReasonConsumerLimit, f)
	}
	creating := 0
	for _, c := range cs.Consumers {
		if c.Status == storage.ConsumerCreating {
			creating++
		}
	}
	if creating >= storage.MaxCreatingConsumers {
		f.Limit = storage.MaxCreatingConsumers
		return n.fail(storage.ErrLimitExceeded, storage.ReasonConsumersCreating, f)
	}
	return nil
}

// consumerCreation and pruneRetired are single-node mode's rule: a consumer
// registered again under a name removed in the same second is created at the
// start of the next second, so the two ARNs (which end with the creation
// second) differ.
func consumerCreation(cs consumersRec, name string, now time.Time) time.Time {
	if secs, ok := cs.Retired[name]; ok && secs >= now.Unix() {
		return time.Unix(secs+1, 0)
	}
	return now
}

func pruneRetired(cs *consumersRec, now time.Time) {
	maps.DeleteFunc(cs.Retired, func(_ string, secs int64) bool { return secs < now.Unix() })
	if len(cs.Retired) == 0 {
		cs.Retired = nil
	}
}

func retire(cs *consumersRec, i int) {
	c := cs.Consumers[i]
	cs.Consumers = slices.Delete(cs.Consumers, i, i+1)
	if cs.Retired == nil {
		cs.Retired = map[string]int64{}
	}
	cs.Retired[c.Name] = c.CreatedMs / 1000
}

func (n *Node) consumerNotFound(stream, name string) error {
	return n.fail(storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound, storage.Facts{Stream: stream, Consumer: name})
}

func (n *Node) consumerNotActive(stream string, c datadir.ConsumerRecord) error {
	return n.fail(storage.ErrResourceInUse, storage.ReasonConsumerNotActive, storage.Facts{Stream: stream, Consumer: c.Name, N: c.CreatedMs})
}

// DescribeConsumer returns a consumer of a stream, in any state.
func (n *Node) DescribeConsumer(ctx context.Context, stream, name string) (storage.ConsumerInfo, error) {
	rec, _, err := n.readStream(ctx, stream)
	if err != nil {
		return storage.ConsumerInfo{}, err
	}
	cs, _ := n.consumersOf(rec)
	i := cs.find(name)
	if i < 0 {
		return storage.ConsumerInfo{}, n.consumerNotFound(stream, name)
	}
	return consumerInfo(stream, cs.Consumers[i]), nil
}

// ListConsumers returns a stream's consumers in registration order; a
// stream still CREATING is ErrResourceInUse.
func (n *Node) ListConsumers(ctx context.Context, stream string) ([]storage.ConsumerInfo, error) {
	rec, _, err := n.readStream(ctx, stream)
	if err != nil {
		return nil, err
	}
	if rec.Status == string(storage.StatusCreating) {
		return nil, n.fail(storage.ErrResourceInUse, storage.ReasonNotActive, storage.Facts{Stream: stream, State: storage.StatusCreating})
	}
	cs, _ := n.consumersOf(rec)
	out := make([]storage.ConsumerInfo, 0, len(cs.Consumers))
	for _, c := range cs.Consumers {
		out = append(out, consumerInfo(stream, c))
	}
	return out, nil
}

// DeregisterConsumer makes an ACTIVE consumer DELETING (removed at once when
// ConsumerDelay is 0); its subscriptions end as every node applies the
// change. Errors: ErrStreamNotFound, ErrConsumerNotFound, ErrResourceInUse
// (not ACTIVE).
func (n *Node) DeregisterConsumer(ctx context.Context, stream, name string) error {
	return n.changeConsumers(ctx, stream, func(_ streamRec, cs consumersRec) (consumersRec, error) {
		i := cs.find(name)
		if i < 0 {
			return cs, n.consumerNotFound(stream, name)
		}
		c := cs.Consumers[i]
		if c.Status != storage.ConsumerActive {
			return cs, n.consumerNotActive(stream, c)
		}
		if n.consumerDelay() <= 0 {
			retire(&cs, i)
			return cs, nil
		}
		cs.Consumers[i].Status = storage.ConsumerDeleting
		cs.Consumers[i].PendingUntilNs = n.cfg.Now().Add(n.consumerDelay()).UnixNano()
		return cs, nil
	})
}

// ActiveConsumer resolves SubscribeToShard's consumer: it must exist with
// this creation second and be ACTIVE. gone closes when it stops being so
// (deregistered, its stream deleted) as this node applies the change
// (sweepGone), or when the node closes.
func (n *Node) ActiveConsumer(ctx context.Context, stream, name string, created time.Time) (storage.ConsumerInfo, <-chan struct{}, error) {
	rec, _, err := n.readStream(ctx, stream)
	if err != nil {
		return storage.ConsumerInfo{}, nil, err
	}
	cs, _ := n.consumersOf(rec)
	i := cs.find(name)
	if i < 0 || cs.Consumers[i].CreatedMs/1000 != created.Unix() {
		return storage.ConsumerInfo{}, nil, n.consumerNotFound(stream, name)
	}
	c := cs.Consumers[i]
	if c.Status != storage.ConsumerActive {
		return storage.ConsumerInfo{}, nil, n.consumerNotActive(stream, c)
	}
	return consumerInfo(stream, c), n.gone.channel(goneKey{stream, name, created.Unix()}), nil
}

// goneKey names one incarnation of a consumer.
type goneKey struct {
	stream, name string
	secs         int64
}

// goneSet holds the gone channels ActiveConsumer handed out: one per
// consumer incarnation, closed and forgotten once it is no longer ACTIVE
// here, so at most one per live consumer is kept.
type goneSet struct {
	mu    sync.Mutex
	chans map[goneKey]chan struct{}
}

func (s *goneSet) channel(k goneKey) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.chans[k]
	if !ok {
		if s.chans == nil {
			s.chans = map[goneKey]chan struct{}{}
		}
		ch = make(chan struct{})
		s.chans[k] = ch
	}
	return ch
}

// sweep closes the channels of the incarnations live reports gone (every
// one when live is nil).
func (s *goneSet) sweep(live func(goneKey) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ch := range s.chans {
		if live == nil || !live(k) {
			close(ch)
			delete(s.chans, k)
		}
	}
}

// sweepGone closes the gone channels of consumers no longer ACTIVE in the
// local metadata state. The reconcile loop runs it at every metadata change
// this node applies (and every few ticks, which covers a state replaced
// whole by a snapshot, which reports no changes).
func (n *Node) sweepGone() {
	n.gone.sweep(func(k goneKey) bool {
		rec, _, ok := n.stream(k.stream)
		if !ok {
			return false
		}
		cs, _ := n.consumersOf(rec)
		i := cs.find(k.name)
		return i >= 0 && cs.Consumers[i].CreatedMs/1000 == k.secs && cs.Consumers[i].Status == storage.ConsumerActive
	})
}

// advanceConsumers makes the consumer transitions that are due (CREATING to
// ACTIVE, DELETING to removed): on the metadata leader, from its reconcile
// loop. Each stream's is one compare-and-set; a lost race is redone at the
// next round.
func (n *Node) advanceConsumers(ctx context.Context) {
	now := n.cfg.Now()
	for _, rec := range n.streams() {
		cs, cv := n.consumersOf(rec)
		next, due := advanced(cs.clone(), now)
		if !due {
			continue
		}
		key := consumersKey(rec.Name)
		if _, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: cv}}, []replica.MetaOp{{Key: key, Value: mustJSON(next)}}); err != nil {
			n.cfg.Logger.Debug("advancing consumers", "stream", rec.Name, "error", err)
		}
	}
}

// advanced applies the transitions due at now; due reports whether any was.
func advanced(cs consumersRec, now time.Time) (consumersRec, bool) {
	due := false
	for i := len(cs.Consumers) - 1; i >= 0; i-- {
		c := &cs.Consumers[i]
		if c.PendingUntilNs == 0 || c.PendingUntilNs > now.UnixNano() {
			continue
		}
		switch c.Status {
		case storage.ConsumerCreating:
			c.Status, c.PendingUntilNs, due = storage.ConsumerActive, 0, true
		case storage.ConsumerDeleting:
			retire(&cs, i)
			due = true
		}
	}
	return cs, due
}

// consumersOnDelete is DeleteStream's part for consumers: refused while the
// stream has consumers CREATING or ACTIVE, unless EnforceConsumerDeletion;
// otherwise the consumers go with the stream, in its transaction.
func (n *Node) consumersOnDelete(rec streamRec, o storage.DeleteOptions) ([]replica.MetaCond, []replica.MetaOp, error) {
	cs, cv := n.consumersOf(rec)
	live := 0
	for _, c := range cs.Consumers {
		if c.Status != storage.ConsumerDeleting {
			live++
		}
	}
	if live > 0 && !o.EnforceConsumerDeletion {
		return nil, nil, n.fail(storage.ErrResourceInUse, storage.ReasonHasConsumers, storage.Facts{Stream: rec.Name, Current: int64(live)})
	}
	if cv == 0 {
		return nil, nil, nil
	}
	key := consumersKey(rec.Name)
	return []replica.MetaCond{{Key: key, Version: cv}}, []replica.MetaOp{{Key: key}}, nil
}

// consumerDelay is Config.ConsumerDelay, or what a test set since
// (setConsumerDelay): tests change it while the node runs, and the node's
// goroutines copy its Config, so it is kept apart from it.
func (n *Node) consumerDelay() time.Duration {
	if d := n.delay.Load(); d != nil {
		return *d
	}
	return n.cfg.ConsumerDelay
}

func (n *Node) setConsumerDelay(d time.Duration) { n.delay.Store(&d) }
