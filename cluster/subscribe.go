package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// SubscribeToShard in cluster mode (docs/cluster.md §9). A subscription is
// served by a replica of the shard (the receiving node's, or, when it
// serves no reads of the shard, one elsewhere: subforward.go), which must
// be current when it opens: a ReadIndex round with the group's leader
// answered and its node applied up to the leader's commit index. It then delivers what the
// replica applies (Host.ReadApplied from its position, woken by
// Host.Changed), all of it committed, so never a record that could be lost.
// Ordinals are the same on every replica, so its sequence numbers and
// continuation numbers are too: a client that resubscribes at any node
// AFTER_SEQUENCE_NUMBER its last continuation number gets exactly the rest.
//
// It is bound to the leadership it opened under (the leader and term this
// node saw). It ends with an error, which the api sends as an
// InternalFailureException event (AWS's event for a server-side fault),
// when its replica may no longer be current:
//   - the group's leader or term changes here: a leader change, or this
//     node lost its leader (a follower that heard nothing from it for an
//     election timeout forgets it; a leader without a quorum steps down);
//   - a ReadIndex round, asked once every election timeout (currencyProbe),
//     goes unanswered for an election timeout: this node is cut off, which a
//     quiesced group (whose clocks stand still) would not notice otherwise;
//   - the node stops.
//
// Ending at every leader change, even where this replica stays current, is
// the simple rule: a leader change is rare, and AWS clients resubscribe
// routinely (every subscription ends after 5 minutes anyway).
// A deregistered consumer or a deleted stream ends it as in single-node mode
// (ResourceNotFoundException). At a closed shard's end (its seal, once the
// metadata closed it) the last event has the ChildShards and no
// continuation (ending, seal.go).

// maxEventRecords caps the records of one event, as single-node's.
const maxEventRecords = 10000

// errNotCurrent is the cause of a subscription ended because its replica
// may have stopped being current; the client resubscribes, at any node.
var errNotCurrent = errors.New("this node's replica of the shard is no longer current; resubscribe after the last ContinuationSequenceNumber")

var errSubscriptionEnded = errors.New("cluster: subscription ended")

// subscription is one subscriber's position in a shard's group here.
type subscription struct {
	n        *Node
	stream   string
	created  int64 // the stream's CreatedNs: a re-created stream is another stream
	epoch    int64
	index    uint32
	group    uint64
	consumer string
	gone     <-chan struct{}
	done     chan struct{}
	once     sync.Once

	leader, term uint64 // the leadership the subscription is bound to
	probe        currencyProbe

	next uint64 // the next ordinal to deliver
	cont string // the continuation sequence number so far
	// sealed: encrypted records are handed on as stored (Data the stored
	// record, PartitionKey empty, Encrypted set): a forwarded subscription's
	// receiving node opens them (subforward.go).
	sealed bool
}

// Subscribe opens a subscription at the starting position (every iterator
// type, resolved as GetShardIterator resolves it) on this node's replica,
// or, when this node serves no reads of the shard (it holds no replica, or
// one moved away), on a replica elsewhere (subforward.go). A replica that
// is not current answers ServiceUnavailable: the client retries, here or
// elsewhere.
func (n *Node) Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (storage.EventSource, error) {
	return n.subscribe(ctx, in, gone, true)
}

// subscribe is Subscribe; admit counts the position's resolution against
// the shard's GetShardIterator rate (resolve).
func (n *Node) subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}, admit bool) (storage.EventSource, error) {
	pos, err := n.resolve(ctx, in.Stream, in.ShardID, in.Type, in.StartSeq, in.Timestamp, admit)
	if err != nil {
		return nil, err
	}
	rec, sh, err := n.shardOf(ctx, in.Stream, datadir.ShardID(pos.ShardIndex))
	if err != nil {
		return nil, err
	}
	if rec.CreatedNs != pos.StreamCreated { // deleted and created again meanwhile
		return nil, n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: in.Stream, Shard: sh.ID})
	}
	if sh.Group == 0 && isClosed(sh) {
		// An intermediate shard, created and closed within one reshard plan,
		// has no group and never held a record (pendingShards): it is read to
		// its end at once, as GetRecords answers it (read.go).
		return &endedSubscription{end: storage.SubscribeEvent{ChildShards: children(rec, sh.ID)}}, nil
	}
	at := subscribeAt{Stream: in.Stream, Created: rec.CreatedNs, Epoch: shardEpoch(rec, sh), Index: pos.ShardIndex, Group: sh.Group,
		Ordinal: pos.Ordinal, Consumer: in.Consumer}
	if sh.Group != 0 {
		// This node's replica first if it serves reads; one elsewhere if it
		// does not, or was removed meanwhile (subforward.go).
		return n.subscribeRemote(ctx, at, gone)
	}
	sub, err := n.subscribeLocal(ctx, at, gone)
	if err != nil {
		return nil, n.unavailable(at.Stream, datadir.ShardID(at.Index), err)
	}
	return sub, nil
}

// endedSubscription is a subscription at a closed shard's end: its first
// Next is the end event (no continuation, the ChildShards), as a local
// subscription's last one; every later Next ends it.
type endedSubscription struct {
	mu   sync.Mutex
	end  storage.SubscribeEvent
	sent bool
}

func (e *endedSubscription) Next(ctx context.Context, _ int, _ time.Duration) (storage.SubscribeEvent, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sent {
		return storage.SubscribeEvent{}, errSubscriptionEnded
	}
	if err := ctx.Err(); err != nil {
		return storage.SubscribeEvent{}, err
	}
	e.sent = true
	return e.end, nil
}

func (e *endedSubscription) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent = true
}

// subscribeAt is a resolved starting position: the stream incarnation, the
// shard and its group, the first ordinal to deliver. It is also the body of
// a forwarded subscription's request (subforward.go).
type subscribeAt struct {
	Stream   string `json:"stream"`
	Created  int64  `json:"created"`
	Epoch    int64  `json:"epoch"` // the shard's creation second (shardEpoch)
	Index    uint32 `json:"index"`
	Group    uint64 `json:"group"`
	Ordinal  uint64 `json:"ordinal"`
	Consumer string `json:"consumer"`
	// Sealed (a forwarded subscription's): send encrypted records as
	// stored; the receiving node opens them with its own keyring.
	Sealed bool `json:"sealed,omitempty"`
}

// subscribeLocal opens a subscription at a resolved position on this
// node's replica, once a ReadIndex round showed it current. Its errors are
// raw (replica.ErrUnknownGroup when the replica is gone, errNoLeader), so
// that onReplica can tell a replica moved away and try another; the
// outermost caller makes them ServiceUnavailable (Node.unavailable).
func (n *Node) subscribeLocal(ctx context.Context, at subscribeAt, gone <-chan struct{}) (*subscription, error) {
	rec, sh, err := n.shardOf(ctx, at.Stream, datadir.ShardID(at.Index))
	if err != nil {
		return nil, err
	}
	if rec.CreatedNs != at.Created {
		return nil, n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: at.Stream, Shard: sh.ID})
	}
	if err := n.linearize(ctx, sh.Group); err != nil {
		return nil, err
	}
	st := n.host.Status(sh.Group)
	if st.Leader == 0 {
		return nil, errNoLeader
	}
	sub := &subscription{n: n, stream: at.Stream, created: rec.CreatedNs, epoch: shardEpoch(rec, sh), index: at.Index,
		group: sh.Group, consumer: at.Consumer, gone: gone, done: make(chan struct{}),
		leader: st.Leader, term: st.Term, next: at.Ordinal, sealed: at.Sealed}
	sub.probe.confirmed = time.Now()
	sub.cont = contBefore(sub.epoch, at.Index, at.Ordinal) // a child's own epoch (reshard.go), not the stream's
	return sub, nil
}

// contBefore is the continuation number of a position with nothing
// delivered yet: the number of ordinal ord-1 (AFTER it is ord), or the
// shard's StartingSequenceNumber at ordinal 0. Its arrival second, which
// orders nothing, is the shard's creation second, so every node gives the
// same number.
func contBefore(epoch int64, index uint32, ord uint64) string {
	s := seqnum.Seq{ShardCreateSecs: epoch, ShardIndex: index, ArrivalSecs: epoch}
	if ord > 0 {
		s.Ordinal = ord - 1
	}
	return s.String()
}

// Close ends the subscription; a Next waiting returns.
func (s *subscription) Close() { s.once.Do(func() { close(s.done) }) }

// Next blocks until applied records past the position exist (and returns at
// most maxBytes of them, at least one), or idle elapses (an event without
// records, the continuation unchanged), or the subscription must end (see
// the top of the file).
func (s *subscription) Next(ctx context.Context, maxBytes int, idle time.Duration) (storage.SubscribeEvent, error) {
	idleT := time.NewTimer(idle)
	defer idleT.Stop()
	for {
		if err := s.check(ctx); err != nil {
			return storage.SubscribeEvent{}, err
		}
		// The change channels are taken before anything is read, so no
		// change between the read and the wait is missed.
		groupCh, err := s.n.host.Changed(s.group)
		if err != nil {
			return storage.SubscribeEvent{}, s.notCurrent(err.Error())
		}
		metaCh, err := s.n.host.Changed(metaGroup)
		if err != nil {
			return storage.SubscribeEvent{}, s.notCurrent(err.Error())
		}
		if err := s.current(); err != nil {
			return storage.SubscribeEvent{}, err
		}
		ev, ok, err := s.read(max(maxBytes, 1))
		if errors.Is(err, replica.ErrUnknownGroup) {
			err = s.notCurrent("its replica was removed from this node (moved away)")
		}
		if err != nil || ok {
			return ev, err
		}
		probeCh, probeT := s.probe.arm(s.n, s.group)
		select {
		case <-groupCh:
		case <-metaCh:
		case <-probeCh:
		case <-probeT.C:
		case <-s.gone:
		case <-s.done:
		case <-ctx.Done():
		case <-idleT.C:
			probeT.Stop()
			return storage.SubscribeEvent{ContinuationSequenceNumber: s.cont}, nil
		}
		probeT.Stop()
	}
}

// check reports why the subscription cannot go on for its own reasons.
func (s *subscription) check(ctx context.Context) error {
	return s.n.subscriptionEnded(ctx, s.done, s.gone, s.stream, s.consumer)
}

// subscriptionEnded is why a subscription, local or forwarded, cannot go on
// for its own reasons: closed (done), its consumer gone, or ctx ended.
func (n *Node) subscriptionEnded(ctx context.Context, done, gone <-chan struct{}, stream, consumer string) error {
	select {
	case <-done:
		return errSubscriptionEnded
	case <-gone:
		return n.consumerNotFound(stream, consumer)
	default:
	}
	return ctx.Err()
}

// current reports why the replica may no longer serve the subscription: the
// stream is gone (ResourceNotFound, as single-node mode), or the replica may
// not be current (see the top of the file).
func (s *subscription) current() error {
	if rec, _, ok := s.n.stream(s.stream); !ok || rec.CreatedNs != s.created {
		return s.n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: s.stream, Shard: datadir.ShardID(s.index)})
	}
	st := s.n.host.Status(s.group)
	switch {
	case st.Leader != s.leader || st.Term != s.term:
		return s.notCurrent(fmt.Sprintf("the shard's leader changed (node %d in term %d, now node %d in term %d)", s.leader, s.term, st.Leader, st.Term))
	case s.probe.failed(s.n.cfg.electionTimeout()):
		return s.notCurrent("no ReadIndex answer from the shard's leader within an election timeout")
	}
	return nil
}

func (s *subscription) notCurrent(why string) error {
	return fmt.Errorf("%w (%s/%s on node %d: %s)", errNotCurrent, s.stream, datadir.ShardID(s.index), s.n.cfg.NodeID, why)
}

// read reads what the replica has applied past the position. ok is false
// when there is nothing to send yet.
func (s *subscription) read(maxBytes int) (storage.SubscribeEvent, bool, error) {
	recs, err := s.liveFrom(maxBytes)
	recs, sealed := cutSeal(recs)
	if err == nil && len(recs) == 0 {
		if ev, ok := s.ending(sealed); ok {
			return ev, true, nil
		}
	}
	if err != nil || len(recs) == 0 {
		return storage.SubscribeEvent{}, false, err
	}
	ev := storage.SubscribeEvent{Records: make([]storage.Record, 0, len(recs))}
	var lastArrival int64
	for _, r := range recs {
		arrival, key, data, encrypted, err := s.open(r.Data)
		if err != nil {
			rec, _, _ := s.n.stream(s.stream)
			return storage.SubscribeEvent{}, false, s.n.readKeyError(rec, err)
		}
		seq := seqnum.Seq{ShardCreateSecs: s.epoch, ShardIndex: s.index, Ordinal: r.Seq, ArrivalSecs: arrival / 1000}
		ev.Records = append(ev.Records, storage.Record{SequenceNumber: seq.String(), Arrival: time.UnixMilli(arrival), PartitionKey: key, Data: data, Encrypted: encrypted})
		ev.Bytes += recordBytes(r.Data) // in clear, sealed or not
		lastArrival = arrival
	}
	s.next = recs[len(recs)-1].Seq + 1
	s.cont = ev.Records[len(ev.Records)-1].SequenceNumber
	ev.ContinuationSequenceNumber = s.cont
	// Behind when more is applied already (as GetRecords answers here).
	if more, err := s.n.reader.ReadApplied(s.group, s.next, 1, 1); err == nil && len(more) > 0 {
		ev.MillisBehindLatest = max(0, s.n.cfg.Now().UnixMilli()-lastArrival)
	}
	return ev, true, nil
}

// open decodes a stored record for the event; a sealed subscription's
// encrypted record stays as stored (data), with only its arrival read.
func (s *subscription) open(stored []byte) (arrivalMs int64, key string, data []byte, encrypted bool, err error) {
	if s.sealed && isEncrypted(stored) {
		arrivalMs, err = recordArrival(stored)
		return arrivalMs, "", stored, true, err
	}
	return s.n.openRecord(stored)
}

// liveFrom reads the applied records from the position on, skipping (and
// moving the position past) those retention expired (retention.go).
func (s *subscription) liveFrom(maxBytes int) ([]replica.Record, error) {
	cut := s.n.streamCut(s.stream)
	for {
		recs, err := s.n.reader.ReadApplied(s.group, s.next, maxEventRecords, maxBytes)
		if err != nil || len(recs) == 0 {
			return nil, err
		}
		if live := liveRecords(recs, cut); len(live) > 0 {
			return live, nil
		}
		s.next = recs[len(recs)-1].Seq + 1
	}
}

// currencyProbe confirms, once every election timeout, that the replica is
// still current: a ReadIndex round answered (the leader still holds a
// quorum, and this node applied up to its commit index). A request may be
// lost, so an unanswered one is asked again every readRetry; the probe
// fails when none was answered within an election timeout of the first.
type currencyProbe struct {
	confirmed time.Time     // when the last round was answered (or the subscription opened)
	asked     time.Time     // when the unanswered round was first asked; zero: none
	askedLast time.Time     // when it was last asked again
	read      *replica.Read // the latest request of the unanswered round
}

// arm settles the round under way and asks again if due; it returns the
// channel of the pending request (nil: none) and a timer for the next
// moment the probe has something to do.
func (p *currencyProbe) arm(n *Node, group uint64) (<-chan struct{}, *time.Timer) {
	now := time.Now()
	every := n.cfg.electionTimeout()
	if p.read != nil && closed(p.read.Done()) {
		p.confirmed, p.asked, p.read = now, time.Time{}, nil
	}
	due := p.asked.IsZero() && now.Sub(p.confirmed) >= every || !p.asked.IsZero() && now.Sub(p.askedLast) >= readRetry
	if due {
		if r, err := n.host.ReadIndex(group); err == nil {
			p.read = r
		}
		if p.asked.IsZero() {
			p.asked = now
		}
		p.askedLast = now
	}
	var wait time.Duration
	if p.asked.IsZero() {
		wait = p.confirmed.Add(every).Sub(now)
	} else {
		wait = min(p.askedLast.Add(readRetry).Sub(now), p.asked.Add(every).Sub(now))
	}
	var ch <-chan struct{}
	if p.read != nil {
		ch = p.read.Done()
	}
	return ch, time.NewTimer(max(wait, time.Millisecond))
}

// failed reports whether a round has gone unanswered for longer than limit.
func (p *currencyProbe) failed(limit time.Duration) bool {
	if p.read != nil && closed(p.read.Done()) {
		return false
	}
	return !p.asked.IsZero() && time.Since(p.asked) > limit
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
