package storage

import (
	"context"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// Enhanced fan-out consumers. A stream's consumers live in its meta.db record
// (datadir.StreamRecord.Consumers), so they change in the same transaction
// as the stream, survive restarts and crashes, and are deleted with it.
//
// Lifecycle: RegisterConsumer stores a consumer CREATING; it turns ACTIVE
// after Options.ConsumerDelay. DeregisterConsumer makes it DELETING, which
// ends its subscriptions at once (its gone channel closes); it is removed
// after ConsumerDelay. Pending transitions resume at Open.
//
// Every change runs under the store lock with no reshard of the stream
// taking effect (lockIdleStream): a reshard commits the record it computed
// when it began, which must not drop a consumer registered meanwhile.

// ConsumerStatus is a consumer's lifecycle state, as Kinesis names it. It is
// stored in meta.db, so datadir defines it.
type ConsumerStatus = datadir.ConsumerStatus

const (
	ConsumerCreating = datadir.ConsumerCreating
	ConsumerActive   = datadir.ConsumerActive
	ConsumerDeleting = datadir.ConsumerDeleting
)

// Consumer limits, as AWS documents them for provisioned and on-demand
// standard streams.
const (
	MaxConsumersPerStream = 20
	MaxCreatingConsumers  = 5 // per stream; AWS words it "at the same time"
	MaxTagsPerConsumer    = 50
)

// ConsumerInfo describes one consumer.
type ConsumerInfo struct {
	Name    string
	Stream  string
	Status  ConsumerStatus
	Created time.Time // ConsumerCreationTimestamp (ms precision); Created.Unix() is the ARN's CREATIONEPOCH
	Tags    map[string]string
}

type consumerMeta = datadir.ConsumerRecord

// goneKey names one incarnation of a consumer: a consumer deregistered and
// registered again under its name has another creation second.
type goneKey struct {
	name string
	secs int64
}

func consumerInfoOf(stream string, c consumerMeta) ConsumerInfo {
	return ConsumerInfo{Name: c.Name, Stream: stream, Status: c.Status, Created: time.UnixMilli(c.CreatedMs), Tags: copyTags(c.Tags)}
}

func findConsumer(m *streamMeta, name string) int {
	for i, c := range m.Consumers {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func (s *Store) consumerNotFound(stream, name string) error {
	return s.fail(ErrConsumerNotFound, ReasonConsumerNotFound, Facts{Stream: stream, Consumer: name})
}

// RegisterConsumer registers a consumer of an ACTIVE (or UPDATING) stream; it
// is CREATING until Options.ConsumerDelay has passed. Errors: ErrStreamNotFound,
// ErrResourceInUse (stream not ACTIVE, or the name is taken), ErrLimitExceeded
// (20 consumers, or 5 CREATING).
func (s *Store) RegisterConsumer(ctx context.Context, stream, name string, tags map[string]string) (ConsumerInfo, error) {
	st, err := s.lockIdleStream(ctx, stream)
	if err != nil {
		return ConsumerInfo{}, err
	}
	defer s.mu.Unlock()
	if err := s.checkRegisterLocked(st, name); err != nil {
		return ConsumerInfo{}, err
	}
	now := s.opts.Now()
	m := st.meta.Clone()
	pruneRetired(m, now)
	c := consumerMeta{Name: name, CreatedMs: consumerCreation(m, name, now).UnixMilli(), Status: ConsumerCreating,
		PendingUntilNs: now.Add(s.opts.ConsumerDelay).UnixNano()}
	if len(tags) > 0 {
		c.Tags = copyTags(tags)
	}
	if s.opts.ConsumerDelay <= 0 {
		c.Status, c.PendingUntilNs = ConsumerActive, 0
	}
	m.Consumers = append(m.Consumers, c)
	if err := s.persistLocked(st, m); err != nil {
		return ConsumerInfo{}, err
	}
	s.scheduleConsumerLocked(st, c)
	return consumerInfoOf(stream, c), nil
}

func (s *Store) checkRegisterLocked(st *stream, name string) error {
	m := st.meta
	if m.Status != StatusActive && m.Status != StatusUpdating {
		return s.notActive(st.name, m.Status)
	}
	if findConsumer(m, name) >= 0 {
		return s.fail(ErrResourceInUse, ReasonConsumerExists, Facts{Stream: st.name, Consumer: name})
	}
	if len(m.Consumers) >= MaxConsumersPerStream {
		return s.fail(ErrLimitExceeded, ReasonConsumerLimit, Facts{Stream: st.name, Consumer: name, Limit: MaxConsumersPerStream})
	}
	creating := 0
	for _, c := range m.Consumers {
		if c.Status == ConsumerCreating {
			creating++
		}
	}
	if creating >= MaxCreatingConsumers {
		return s.fail(ErrLimitExceeded, ReasonConsumersCreating, Facts{Stream: st.name, Consumer: name, Limit: MaxCreatingConsumers})
	}
	return nil
}

// consumerCreation is the creation time of a consumer registered under name
// at now: now, unless a consumer of that name removed from m was created in
// now's second or later, when it is the start of the second after that one,
// so the two ARNs differ.
func consumerCreation(m *streamMeta, name string, now time.Time) time.Time {
	if secs, ok := m.RetiredConsumers[name]; ok && secs >= now.Unix() {
		return time.Unix(secs+1, 0)
	}
	return now
}

// pruneRetired forgets removed consumers whose creation second has passed:
// a new one's second cannot collide with theirs.
func pruneRetired(m *streamMeta, now time.Time) {
	for k, secs := range m.RetiredConsumers {
		if secs < now.Unix() {
			delete(m.RetiredConsumers, k)
		}
	}
	if len(m.RetiredConsumers) == 0 {
		m.RetiredConsumers = nil
	}
}

// DescribeConsumer returns a consumer of a stream, in any state.
func (s *Store) DescribeConsumer(ctx context.Context, stream, name string) (ConsumerInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(stream)
	if err != nil {
		return ConsumerInfo{}, err
	}
	i := findConsumer(st.meta, name)
	if i < 0 {
		return ConsumerInfo{}, s.consumerNotFound(stream, name)
	}
	return consumerInfoOf(stream, st.meta.Consumers[i]), nil
}

// ListConsumers returns a stream's consumers in registration order. A
// stream still CREATING is ErrResourceInUse.
func (s *Store) ListConsumers(ctx context.Context, stream string) ([]ConsumerInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(stream)
	if err != nil {
		return nil, err
	}
	if st.meta.Status == StatusCreating {
		return nil, s.notActive(stream, st.meta.Status)
	}
	out := make([]ConsumerInfo, 0, len(st.meta.Consumers))
	for _, c := range st.meta.Consumers {
		out = append(out, consumerInfoOf(stream, c))
	}
	return out, nil
}

// DeregisterConsumer makes an ACTIVE consumer DELETING: its subscriptions end
// at once, and it is removed after Options.ConsumerDelay. Errors:
// ErrStreamNotFound, ErrConsumerNotFound, ErrResourceInUse (not ACTIVE).
func (s *Store) DeregisterConsumer(ctx context.Context, stream, name string) error {
	st, err := s.lockIdleStream(ctx, stream)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	i := findConsumer(st.meta, name)
	if i < 0 {
		return s.consumerNotFound(stream, name)
	}
	c := st.meta.Consumers[i]
	if c.Status != ConsumerActive {
		return s.consumerNotActive(stream, c)
	}
	now := s.opts.Now()
	m := st.meta.Clone()
	c.Status, c.PendingUntilNs = ConsumerDeleting, now.Add(s.opts.ConsumerDelay).UnixNano()
	if s.opts.ConsumerDelay <= 0 {
		c.PendingUntilNs = 0
		retireConsumer(m, i)
	} else {
		m.Consumers[i] = c
	}
	if err := s.persistLocked(st, m); err != nil {
		return err
	}
	st.closeGoneLocked(c.Name)
	s.scheduleConsumerLocked(st, c)
	return nil
}

func (s *Store) consumerNotActive(stream string, c consumerMeta) error {
	return s.fail(ErrResourceInUse, ReasonConsumerNotActive, Facts{Stream: stream, Consumer: c.Name, N: c.CreatedMs})
}

// retireConsumer removes consumer i from m, remembering its creation second.
func retireConsumer(m *streamMeta, i int) {
	c := m.Consumers[i]
	m.Consumers = append(m.Consumers[:i:i], m.Consumers[i+1:]...)
	if m.RetiredConsumers == nil {
		m.RetiredConsumers = map[string]int64{}
	}
	m.RetiredConsumers[c.Name] = c.CreatedMs / 1000
}

// ActiveConsumer resolves a consumer for SubscribeToShard: it must exist with
// this creation second (created.Unix()) and be ACTIVE. gone is closed when the
// consumer is deregistered, its stream is deleted, or the store closes.
// Errors: ErrStreamNotFound, ErrConsumerNotFound, ErrResourceInUse (not ACTIVE).
func (s *Store) ActiveConsumer(ctx context.Context, stream, name string, created time.Time) (ConsumerInfo, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.lookupLocked(stream)
	if err != nil {
		return ConsumerInfo{}, nil, err
	}
	if st.meta.Status == StatusDeleting {
		return ConsumerInfo{}, nil, s.notFound(stream)
	}
	i := findConsumer(st.meta, name)
	if i < 0 || st.meta.Consumers[i].CreatedMs/1000 != created.Unix() {
		return ConsumerInfo{}, nil, s.consumerNotFound(stream, name)
	}
	c := st.meta.Consumers[i]
	if c.Status != ConsumerActive {
		return ConsumerInfo{}, nil, s.consumerNotActive(stream, c)
	}
	return consumerInfoOf(stream, c), st.goneLocked(goneKey{c.Name, c.CreatedMs / 1000}), nil
}

// goneLocked returns the channel that closes when consumer k goes. Callers
// hold Store.mu.
func (st *stream) goneLocked(k goneKey) <-chan struct{} {
	ch, ok := st.gone[k]
	if !ok {
		if st.gone == nil {
			st.gone = map[goneKey]chan struct{}{}
		}
		ch = make(chan struct{})
		st.gone[k] = ch
	}
	return ch
}

// closeGoneLocked closes the gone channels of the consumers named name (every
// consumer when name is ""). Callers hold Store.mu.
func (st *stream) closeGoneLocked(name string) {
	for k, ch := range st.gone {
		if name == "" || k.name == name {
			close(ch)
			delete(st.gone, k)
		}
	}
}

// scheduleConsumerLocked arranges c's pending transition (CREATING to ACTIVE,
// DELETING to removed) for when its PendingUntilNs has passed.
func (s *Store) scheduleConsumerLocked(st *stream, c consumerMeta) {
	if c.PendingUntilNs == 0 || (c.Status != ConsumerCreating && c.Status != ConsumerDeleting) {
		return
	}
	wait := max(time.Unix(0, c.PendingUntilNs).Sub(s.opts.Now()), 0)
	time.AfterFunc(wait, func() { s.advanceConsumer(st, c.Name, c.CreatedMs) })
}

// advanceConsumer makes the pending transition of one consumer incarnation
// once its time has come; it does nothing if the consumer or its stream has
// changed meanwhile, and retries later if meta.db could not be written.
func (s *Store) advanceConsumer(st *stream, name string, createdMs int64) {
	cur, err := s.lockIdleStream(s.ctx, st.name)
	if err != nil {
		return
	}
	defer s.mu.Unlock()
	i := findConsumer(cur.meta, name)
	if cur != st || cur.meta.Status == StatusDeleting || i < 0 || cur.meta.Consumers[i].CreatedMs != createdMs {
		return
	}
	c := cur.meta.Consumers[i]
	if time.Unix(0, c.PendingUntilNs).After(s.opts.Now()) {
		s.scheduleConsumerLocked(st, c)
		return
	}
	m := st.meta.Clone()
	switch c.Status {
	case ConsumerCreating:
		m.Consumers[i].Status, m.Consumers[i].PendingUntilNs = ConsumerActive, 0
	case ConsumerDeleting:
		retireConsumer(m, i)
	default:
		return
	}
	if err := s.persistLocked(st, m); err != nil {
		s.log.Error("cannot advance consumer; retrying", "stream", st.name, "consumer", name, "error", err)
		time.AfterFunc(time.Second, func() { s.advanceConsumer(st, name, createdMs) })
	}
}

// resumeConsumersLocked schedules the pending transitions of st's consumers
// (at Open).
func (s *Store) resumeConsumersLocked(st *stream) {
	for _, c := range st.meta.Consumers {
		s.scheduleConsumerLocked(st, c)
	}
}

// liveConsumers counts the consumers that hold a stream's deletion back:
// those CREATING or ACTIVE (a DELETING one is on its way out).
func liveConsumers(m *streamMeta) int {
	n := 0
	for _, c := range m.Consumers {
		if c.Status != ConsumerDeleting {
			n++
		}
	}
	return n
}
