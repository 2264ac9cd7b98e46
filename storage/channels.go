package storage

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// Channels deliver a stream's records to a destination (CreateChannel and
// the rest). A channel lives in its source stream's meta.db record
// (datadir.StreamRecord.Channels), so it changes in the same transaction as
// the stream and survives restarts; its name is unique in the account.
// Storage keeps a channel's configuration, lifecycle and delivery progress;
// package channel does the delivery, through Channels, Subscribe and
// SaveChannelProgress.
//
// Lifecycle: CREATING for Options.ChannelDelay, then ACTIVE; UpdateChannel
// makes it UPDATING for the delay (delivery goes on), DeleteChannel makes it
// DELETING (delivery stops: AWS does not deliver what is undelivered), after
// which it is removed. Pending transitions resume at Open. Every change runs
// under the store lock with no reshard of the stream taking effect
// (lockIdleStream), as consumers' do.

// ChannelStatus is a channel's lifecycle state; datadir defines it.
type ChannelStatus = datadir.ChannelStatus

const (
	ChannelCreating = datadir.ChannelCreating
	ChannelActive   = datadir.ChannelActive
	ChannelUpdating = datadir.ChannelUpdating
	ChannelDeleting = datadir.ChannelDeleting
)

type (
	// ChannelConfig is a channel's configuration; datadir defines it.
	ChannelConfig = datadir.ChannelConfig
	// ChannelProgress is how far a channel has delivered.
	ChannelProgress = datadir.ChannelProgress
	// ChannelLogging is a channel's logging configuration.
	ChannelLogging = datadir.ChannelLogging
	// ChannelPending is a batch of objects being delivered.
	ChannelPending = datadir.ChannelPending
)

// MaxChannelsPerStream is AWS's launch quota: one S3 channel per stream
// (and one S3 Tables channel, which shardlog does not deliver to).
const MaxChannelsPerStream = 1

// ChannelInfo describes one channel.
type ChannelInfo struct {
	Name, ID      string
	Stream        string
	StreamCreated time.Time
	Status        ChannelStatus
	Created       time.Time // ms precision
	Tags          map[string]string
	Config        ChannelConfig
	// Progress is nil until the channel first turns ACTIVE; it is shared,
	// read-only.
	Progress *ChannelProgress
}

// CreateChannelInput is a channel to create; the api layer has checked its
// syntax.
type CreateChannelInput struct {
	Name, Stream string
	Config       ChannelConfig
	Tags         map[string]string
}

type channelMeta = datadir.ChannelRecord

func channelInfoOf(m *streamMeta, c channelMeta) ChannelInfo {
	return ChannelInfoOf(m.Name, time.Unix(0, m.CreatedNs), c)
}

func findChannel(m *streamMeta, name string) int {
	for i, c := range m.Channels {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func (s *Store) channelNotFound(name string) error {
	return ChannelNotFound(s.opts.AccountID, name)
}

// channelStreamLocked finds the stream holding the named channel. Callers
// hold s.mu.
func (s *Store) channelStreamLocked(name string) (*stream, int, error) {
	if s.closed {
		return nil, -1, s.fail(ErrClosed, ReasonShutdown, Facts{})
	}
	for _, st := range s.streams {
		if i := findChannel(st.meta, name); i >= 0 {
			return st, i, nil
		}
	}
	return nil, -1, s.channelNotFound(name)
}

// lockChannel returns the named channel's stream with the store lock held
// and no reshard of it taking effect; on error the lock is not held.
func (s *Store) lockChannel(ctx context.Context, name string) (*stream, int, error) {
	s.mu.RLock()
	st, _, err := s.channelStreamLocked(name)
	s.mu.RUnlock()
	if err != nil {
		return nil, -1, err
	}
	cur, err := s.lockIdleStream(ctx, st.name)
	if err != nil {
		return nil, -1, err
	}
	i := findChannel(cur.meta, name)
	if i < 0 {
		s.mu.Unlock()
		return nil, -1, s.channelNotFound(name)
	}
	return cur, i, nil
}

// CreateChannel creates a channel reading an ACTIVE stream; it is CREATING
// until Options.ChannelDelay has passed. Errors: ErrStreamNotFound,
// ErrResourceInUse (stream not ACTIVE, or the name is taken in the account),
// ErrInvalidArgument (a PROVISIONED stream, unless Options.ChannelAnyMode),
// ErrLimitExceeded (the stream has its one channel).
func (s *Store) CreateChannel(ctx context.Context, in CreateChannelInput) (ChannelInfo, error) {
	st, err := s.lockIdleStream(ctx, in.Stream)
	if err != nil {
		return ChannelInfo{}, err
	}
	defer s.mu.Unlock()
	_, _, taken := s.channelStreamLocked(in.Name)
	err = CheckCreateChannel(s.opts.AccountID, in.Name, ChannelTarget{Stream: st.name, Status: st.meta.Status, Mode: st.meta.Mode,
		AnyMode: s.opts.ChannelAnyMode, NameTaken: taken == nil, Channels: len(st.meta.Channels)})
	if err != nil {
		return ChannelInfo{}, err
	}
	c := NewChannel(in, s.opts.Now(), s.opts.ChannelDelay)
	if s.opts.ChannelDelay <= 0 {
		c = s.activateLocked(st, c)
	}
	m := st.meta.Clone()
	m.Channels = append(m.Channels, c)
	if err := s.persistLocked(st, m); err != nil {
		return ChannelInfo{}, err
	}
	s.scheduleChannelLocked(st, c)
	s.channels.wake()
	return channelInfoOf(m, c), nil
}

// activateLocked makes c ACTIVE. The first time, its progress starts at the
// tip of every open shard: AWS delivers only records written after the
// channel is ACTIVE. Shards already closed count as read.
func (s *Store) activateLocked(st *stream, c channelMeta) channelMeta {
	c.Status, c.PendingUntilNs = ChannelActive, 0
	if c.Progress != nil {
		return c
	}
	p := &ChannelProgress{Shards: map[string]string{}}
	for _, sm := range st.meta.Shards {
		sh := st.shards[sm.Index]
		if sm.Closed || sh == nil {
			p.Done = append(p.Done, shardID(sm.Index))
			continue
		}
		tip := sh.Tip()
		p.Shards[shardID(sm.Index)] = seqBefore(sm.CreateSecs, sm.Index, tip.Next, tip.LastTs)
	}
	c.Progress = p
	return c
}

// DescribeChannel returns a channel, in any state.
func (s *Store) DescribeChannel(ctx context.Context, name string) (ChannelInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, i, err := s.channelStreamLocked(name)
	if err != nil {
		return ChannelInfo{}, err
	}
	return channelInfoOf(st.meta, st.meta.Channels[i]), nil
}

// Channels returns every channel of the account, by name.
func (s *Store) Channels(ctx context.Context) ([]ChannelInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, s.fail(ErrClosed, ReasonShutdown, Facts{})
	}
	out := []ChannelInfo{}
	for _, st := range s.streams {
		for _, c := range st.meta.Channels {
			out = append(out, channelInfoOf(st.meta, c))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ChannelsChanged returns a channel closed at the next change of any
// channel (created, a status or configuration change, removed) or Close.
// Call it before Channels, so that no change is missed.
func (s *Store) ChannelsChanged() <-chan struct{} { return s.channels.watch() }

// ChannelUpdate is what UpdateChannel changes; nil fields stay as they are.
type ChannelUpdate struct {
	FreshnessSecs *int
	Logging       *ChannelLogging
}

// UpdateChannel changes an ACTIVE channel's configuration, which delivery
// uses from then on; the channel is UPDATING for Options.ChannelDelay.
// Errors: ErrChannelNotFound, ErrResourceInUse (not ACTIVE).
func (s *Store) UpdateChannel(ctx context.Context, name string, u ChannelUpdate) (ChannelInfo, error) {
	st, i, err := s.lockChannel(ctx, name)
	if err != nil {
		return ChannelInfo{}, err
	}
	defer s.mu.Unlock()
	c, err := ChannelUpdated(s.opts.AccountID, st.meta.Channels[i], u, s.opts.Now(), s.opts.ChannelDelay)
	if err != nil {
		return ChannelInfo{}, err
	}
	return s.replaceChannelLocked(st, i, c)
}

func (s *Store) replaceChannelLocked(st *stream, i int, c channelMeta) (ChannelInfo, error) {
	m := st.meta.Clone()
	m.Channels[i] = c
	if err := s.persistLocked(st, m); err != nil {
		return ChannelInfo{}, err
	}
	s.scheduleChannelLocked(st, c)
	s.channels.wake()
	return channelInfoOf(m, c), nil
}

// DeleteChannel makes an ACTIVE channel DELETING: delivery stops at once,
// and it is removed after Options.ChannelDelay. Objects delivered stay.
// Errors: ErrChannelNotFound, ErrResourceInUse (not ACTIVE).
func (s *Store) DeleteChannel(ctx context.Context, name string) error {
	st, i, err := s.lockChannel(ctx, name)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, remove, err := ChannelDeleted(s.opts.AccountID, st.meta.Channels[i], s.opts.Now(), s.opts.ChannelDelay)
	if err != nil {
		return err
	}
	if !remove {
		_, err := s.replaceChannelLocked(st, i, c)
		return err
	}
	return s.removeChannelLocked(st, i)
}

func (s *Store) removeChannelLocked(st *stream, i int) error {
	m := st.meta.Clone()
	m.Channels = append(m.Channels[:i:i], m.Channels[i+1:]...)
	if err := s.persistLocked(st, m); err != nil {
		return err
	}
	s.channels.wake()
	return nil
}

// SaveChannelProgress stores how far the channel incarnation id has
// delivered. It fails with ErrChannelNotFound once that incarnation is gone
// or DELETING: its delivery must stop.
func (s *Store) SaveChannelProgress(ctx context.Context, name, id string, p *ChannelProgress) error {
	st, i, err := s.lockChannel(ctx, name)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, err := ChannelProgressSaved(s.opts.AccountID, st.meta.Channels[i], id, p)
	if err != nil {
		return err
	}
	m := st.meta.Clone()
	m.Channels[i] = c
	return s.persistLocked(st, m)
}

// scheduleChannelLocked arranges c's pending transition for when its
// PendingUntilNs has passed.
func (s *Store) scheduleChannelLocked(st *stream, c channelMeta) {
	if c.PendingUntilNs == 0 || c.Status == ChannelActive {
		return
	}
	wait := max(time.Unix(0, c.PendingUntilNs).Sub(s.opts.Now()), 0)
	time.AfterFunc(wait, func() { s.advanceChannel(st, c.Name, c.ID) })
}

// advanceChannel makes the pending transition of one channel incarnation
// once its time has come; it does nothing if the channel or its stream has
// changed meanwhile, and retries later if meta.db could not be written.
func (s *Store) advanceChannel(st *stream, name, id string) {
	cur, err := s.lockIdleStream(s.ctx, st.name)
	if err != nil {
		return
	}
	defer s.mu.Unlock()
	i := findChannel(cur.meta, name)
	if cur != st || i < 0 || cur.meta.Channels[i].ID != id {
		return
	}
	c := cur.meta.Channels[i]
	if time.Unix(0, c.PendingUntilNs).After(s.opts.Now()) {
		s.scheduleChannelLocked(st, c)
		return
	}
	switch c.Status {
	case ChannelCreating, ChannelUpdating:
		_, err = s.replaceChannelLocked(st, i, s.activateLocked(st, c))
	case ChannelDeleting:
		err = s.removeChannelLocked(st, i)
	default:
		return
	}
	if err != nil {
		s.log.Error("cannot advance channel; retrying", "stream", st.name, "channel", name, "error", err)
		time.AfterFunc(time.Second, func() { s.advanceChannel(st, name, id) })
	}
}

// resumeChannelsLocked schedules the pending transitions of st's channels
// (at Open).
func (s *Store) resumeChannelsLocked(st *stream) {
	for _, c := range st.meta.Channels {
		s.scheduleChannelLocked(st, c)
	}
}

// watcher hands out a channel that closes at the next wake.
type watcher struct {
	mu sync.Mutex
	ch chan struct{}
}

func (w *watcher) watch() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *watcher) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}
