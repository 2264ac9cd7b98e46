package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Channel delivery in cluster mode. Exactly one node delivers at a time:
// the metadata group's leader runs single-node mode's channel.Manager over
// a channelSource (this file), started when it becomes leader and stopped
// when it stops being leader in that term (deliveryLoop).
//
// Fencing. Before its Manager starts, a leader claims delivery: it writes
// the deliverer key (keyDeliverer: its node and term) by compare-and-set,
// and its source remembers the key's version. Every progress save is a
// transaction conditional on that version (and on the channel key's), so
// once a newer leader has claimed, a deposed deliverer's saves fail: its
// transactions commit only through the group's log, after the claim, and
// its condition no longer holds. Its objects are written only after a
// successful save of the batch as pending, and its destination refuses to
// write once this node no longer leads in that term (fencedDest), so a
// deposed deliverer writes at most the object it was writing when it lost
// leadership. A claim taken over from another node waits an election
// timeout first (awaitDeposed), by which time a former leader cut off from
// the group has stepped down and its destination writes no more. The new
// deliverer reads the channel records after its claim committed, so it
// starts from the last committed progress and settles a pending batch as
// single-node mode does after a restart.
//
// Objects go to the delivering node's Config.Channels.Dest. With one
// directory shared by every node (a network mount), a pending batch a new
// deliverer finds is settled where it was written: exactly once across
// leader changes. With a directory per node, the new deliverer does not
// find the old one's objects, removes nothing there and delivers the batch
// again in its own directory under the same keys: at least once across
// nodes, exactly once within each directory's view of the batches it
// completed (docs/cluster.md §12).

// keyDeliverer names the node delivering channels, and its term.
const keyDeliverer = "cluster/channel-deliverer"

type delivererRec struct {
	Node uint64 `json:"node"`
	Term uint64 `json:"term"`
}

// errDeposed: this node no longer delivers channels (another leader
// claimed delivery, or it lost the metadata group's leadership).
var errDeposed = errors.New("cluster: this node no longer delivers channels (the metadata group's leader changed)")

// deliveryLoop runs channel delivery while this node leads the metadata
// group, one Manager per term.
func (n *Node) deliveryLoop(ctx context.Context) {
	if n.cfg.Channels.Dest == nil {
		return
	}
	t := time.NewTicker(4 * n.cfg.Tick)
	defer t.Stop()
	var cur *delivery
	defer func() {
		if cur != nil {
			cur.m.Close()
		}
	}()
	for {
		st := n.host.Status(metaGroup)
		if cur != nil && !n.leads(cur.term) {
			cur.m.Close()
			cur = nil
		}
		if cur == nil && st.Leader == n.cfg.NodeID {
			cur = n.startDelivery(ctx, st.Term)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// leads reports whether this node leads the metadata group in term.
func (n *Node) leads(term uint64) bool {
	st := n.host.Status(metaGroup)
	return st.Leader == n.cfg.NodeID && st.Term == term
}

type delivery struct {
	term uint64
	m    *channel.Manager
}

// startDelivery claims delivery for this node in term and starts its
// Manager; nil if the claim did not commit (retried at the next round).
func (n *Node) startDelivery(ctx context.Context, term uint64) *delivery {
	fence, prev, err := n.claimDelivery(ctx, term)
	if err != nil {
		n.cfg.Logger.Debug("claiming channel delivery", "error", err)
		return nil
	}
	if prev.Node != 0 && prev.Node != n.cfg.NodeID && !n.awaitDeposed(ctx, term) {
		return nil
	}
	src := &channelSource{n: n, term: term, fence: fence}
	o := n.cfg.Channels
	o.Dest = fencedDest{Destination: o.Dest, n: n, term: term}
	if o.Logger == nil {
		o.Logger = n.cfg.Logger.Named("channel")
	}
	if o.Now == nil {
		o.Now = n.cfg.Now
	}
	n.cfg.Logger.Info("delivering channels: this node leads the metadata group", "term", term)
	return &delivery{term: term, m: channel.Start(src, o)}
}

// awaitDeposed waits an election timeout after a claim taken over from
// another node, while this node leads in term: a former leader cut off
// from the group (not stopped) steps down within an election timeout of
// losing its quorum (CheckQuorum), and its fencedDest writes nothing after
// that, so no write of its can land on a batch this deliverer settles
// (only one it had started before stepping down and that is still running
// then, as on a stalled disk). It reports whether this node still leads.
func (n *Node) awaitDeposed(ctx context.Context, term uint64) bool {
	t := time.NewTimer(n.cfg.electionTimeout())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	return n.leads(term)
}

// claimDelivery writes the deliverer key for this node and term and
// returns its version, the fence of every progress save, and the claim it
// replaced.
func (n *Node) claimDelivery(ctx context.Context, term uint64) (uint64, delivererRec, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.electionTimeout())
	defer cancel()
	var prev, cur delivererRec
	v, _ := n.getJSON(keyDeliverer, &prev)
	mine := delivererRec{Node: n.cfg.NodeID, Term: term}
	committed, err := n.txn(ctx, []replica.MetaCond{{Key: keyDeliverer, Version: v}}, []replica.MetaOp{{Key: keyDeliverer, Value: mustJSON(mine)}})
	if err != nil {
		return 0, prev, err
	}
	if !committed {
		return 0, prev, fmt.Errorf("cluster: the deliverer key changed meanwhile")
	}
	// txn returns once this node applied the claim: the version read now
	// is the claim's unless a newer claim came since.
	v, _ = n.getJSON(keyDeliverer, &cur)
	if cur != mine || !n.leads(term) {
		return 0, prev, errDeposed
	}
	return v, prev, nil
}

// channelSource is channel.Source for the deliverer of one term.
type channelSource struct {
	n     *Node
	term  uint64
	fence uint64 // the deliverer key's version at the claim
}

// Channels lists the channels from this node's applied state: the claim
// was applied here before the Manager started, so every channel change
// committed before it is seen.
func (s *channelSource) Channels(ctx context.Context) ([]storage.ChannelInfo, error) {
	return s.n.localChannels(), nil
}

func (s *channelSource) ChannelsChanged() <-chan struct{} { return s.n.chanWatch.watch() }

func (s *channelSource) DescribeStream(ctx context.Context, name string) (storage.StreamInfo, error) {
	return s.n.DescribeStream(ctx, name)
}

// Subscribe opens a cluster subscription (on a current replica here or
// elsewhere), not counted against the shard's GetShardIterator rate. It
// ends with an error at a leader change of the shard's group: the
// deliverer is then started again from its last delivered batch.
func (s *channelSource) Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (storage.EventSource, error) {
	return s.n.subscribe(ctx, in, gone, false)
}

// SaveChannelProgress stores the progress of the channel incarnation id, a
// transaction conditional on the fence and on the channel key's version;
// it is redone when only the channel changed meanwhile (an UpdateChannel).
// A lost fence, or a channel gone, DELETING or another incarnation, is
// ErrChannelNotFound: the deliverer stops.
func (s *channelSource) SaveChannelProgress(ctx context.Context, name, id string, p *storage.ChannelProgress) error {
	n := s.n
	for range maxTxnAttempts {
		if !n.leads(s.term) || n.fenceVersion() != s.fence {
			return n.deposed(name)
		}
		c, v, ok := n.channel(name)
		if !ok {
			return n.channelNotFound(name)
		}
		next, err := storage.ChannelProgressSaved(n.cfg.AccountID, c.ChannelRecord, id, p)
		if err != nil {
			return err
		}
		c.ChannelRecord = next
		key := channelKey(name)
		committed, err := n.txn(ctx, []replica.MetaCond{{Key: keyDeliverer, Version: s.fence}, {Key: key, Version: v}},
			[]replica.MetaOp{{Key: key, Value: mustJSON(c)}})
		if err != nil {
			return err
		}
		if committed {
			return nil
		}
	}
	return n.unavailable("", "", errNoLeader)
}

func (n *Node) fenceVersion() uint64 {
	mv, _ := n.meta.Get(keyDeliverer)
	return mv.Version
}

// deposed is ErrChannelNotFound, which stops a deliverer quietly, with the
// reason: this node no longer delivers.
func (n *Node) deposed(name string) error {
	return fmt.Errorf("%w: %w", errDeposed, n.channelNotFound(name))
}

// fencedDest refuses to write or remove objects once its node no longer
// leads the metadata group in the term its delivery started in.
type fencedDest struct {
	channel.Destination
	n    *Node
	term uint64
}

func (d fencedDest) Put(ctx context.Context, bucket, key string, body []byte) error {
	if !d.n.leads(d.term) {
		return errDeposed
	}
	return d.Destination.Put(ctx, bucket, key, body)
}

func (d fencedDest) Remove(ctx context.Context, bucket, key string) error {
	if !d.n.leads(d.term) {
		return errDeposed
	}
	return d.Destination.Remove(ctx, bucket, key)
}

// chanWatcher hands out a channel closed at the next change of a channel
// key this node applies.
type chanWatcher struct {
	mu sync.Mutex
	ch chan struct{}
}

func (w *chanWatcher) watch() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *chanWatcher) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}
