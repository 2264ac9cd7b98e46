// Package channel delivers channels' records: for each ACTIVE (or UPDATING)
// channel, one goroutine reads the channel's source stream, every shard
// through storage's subscriptions (which cost the shards no read capacity),
// following lineage through reshards, and writes the records in batches to
// the channel's destination as objects. A batch is delivered when its oldest
// record has waited DataFreshnessInSeconds (or Options.FlushEvery, if
// shorter), or when it reaches Options.MaxObjectBytes.
//
// Delivery is exactly once as long as the destination keeps what it was
// given: before a batch's objects are written, storage records them as
// pending with the progress they complete; after, the progress is stored.
// A restart finds a pending batch either written whole (its progress then
// holds) or not (its objects that exist are removed and the batch is read
// again, under the same keys).
package channel

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/storage"
)

// Source is what delivery needs of the store; *storage.Store has it.
type Source interface {
	Channels(ctx context.Context) ([]storage.ChannelInfo, error)
	ChannelsChanged() <-chan struct{}
	DescribeStream(ctx context.Context, name string) (storage.StreamInfo, error)
	// Subscribe opens a subscription: storage's, or cluster mode's (which
	// may end with an error at a shard leader change: the deliverer is then
	// started again from its last delivered batch).
	Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (storage.EventSource, error)
	// SaveChannelProgress stores the progress of the channel incarnation
	// id; ErrChannelNotFound stops its delivery (the channel is gone, or,
	// in cluster mode, this node no longer delivers it).
	SaveChannelProgress(ctx context.Context, name, id string, p *storage.ChannelProgress) error
}

// StoreSource is a *storage.Store as a Source.
func StoreSource(s *storage.Store) Source { return storeSource{s} }

type storeSource struct{ *storage.Store }

// Subscribe returns the Store's subscription as an EventSource (a nil
// *Subscription must not become a non-nil interface).
func (s storeSource) Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (storage.EventSource, error) {
	sub, err := s.Store.Subscribe(ctx, in, gone)
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// Options configures delivery.
type Options struct {
	Dest Destination // required
	// FlushEvery, if set, delivers a batch once its oldest record has waited
	// this long, when that is sooner than the channel's
	// DataFreshnessInSeconds (AWS's minimum is 300 s: too long for tests).
	FlushEvery time.Duration
	// MaxObjectBytes delivers a batch once its records hold this many bytes
	// of data and partition keys; default 64 MiB.
	MaxObjectBytes int
	// Poll is how often a channel looks for new records; default 1 s.
	Poll   time.Duration
	Logger hclog.Logger
	Now    func() time.Time
}

func (o *Options) setDefaults() {
	if o.MaxObjectBytes <= 0 {
		o.MaxObjectBytes = 64 << 20
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Manager runs one deliverer per deliverable channel, starting and stopping
// them as channels come and go.
type Manager struct {
	src    Source
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts delivery; Close stops it.
func Start(src Source, o Options) *Manager {
	o.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{src: src, opts: o, cancel: cancel, done: make(chan struct{})}
	go m.run(ctx)
	return m
}

// Close stops every deliverer and waits for them. Undelivered records are
// delivered after the next start (their progress was not stored).
func (m *Manager) Close() error {
	m.cancel()
	<-m.done
	return nil
}

type running struct {
	cancel context.CancelFunc
	info   chan storage.ChannelInfo // the channel's newest description
	done   chan struct{}
}

func (m *Manager) run(ctx context.Context) {
	defer close(m.done)
	workers := map[string]*running{} // by channel ID
	var wg sync.WaitGroup
	defer func() {
		for _, r := range workers {
			r.cancel()
		}
		wg.Wait()
	}()
	for {
		changed := m.src.ChannelsChanged()
		list, err := m.src.Channels(ctx)
		if errors.Is(err, storage.ErrClosed) {
			return
		}
		if err == nil {
			m.reconcile(ctx, list, workers, &wg)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(m.opts.Poll): // a deliverer that stopped on an error is started again
		}
	}
}

// reconcile starts a deliverer for each deliverable channel without one,
// hands the others their newest description, and stops those of channels
// no longer deliverable.
func (m *Manager) reconcile(ctx context.Context, list []storage.ChannelInfo, workers map[string]*running, wg *sync.WaitGroup) {
	want := map[string]bool{}
	for _, c := range list {
		if c.Progress == nil || (c.Status != storage.ChannelActive && c.Status != storage.ChannelUpdating) {
			continue
		}
		want[c.ID] = true
		r := workers[c.ID]
		if r != nil {
			select {
			case <-r.done: // stopped on an error: start again
				delete(workers, c.ID)
				r = nil
			default:
				select {
				case <-r.info:
				default:
				}
				r.info <- c
			}
		}
		if r == nil {
			wctx, cancel := context.WithCancel(ctx)
			r = &running{cancel: cancel, info: make(chan storage.ChannelInfo, 1), done: make(chan struct{})}
			workers[c.ID] = r
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(r.done)
				d := &deliverer{src: m.src, opts: m.opts, info: c, updates: r.info, log: m.opts.Logger.With("channel", c.Name)}
				if err := d.run(wctx); err != nil && wctx.Err() == nil {
					d.log.Error("channel delivery stopped; it restarts from its last delivered batch", "error", err)
				}
			}()
		}
	}
	for id, r := range workers {
		if !want[id] {
			r.cancel()
			delete(workers, id)
		}
	}
}
