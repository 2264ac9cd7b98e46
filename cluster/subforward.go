package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/storage"
)

// Forwarded subscriptions (docs/cluster.md §9). A node that serves no reads
// of a shard (a cluster of more than three nodes holds each shard on three)
// serves SubscribeToShard from a replica that does, tried as reads are
// (onReplica: the leader first, then the placement's replicas):
//
//	POST /_cluster/v1/subscribe   JSON subscribeAt → a stream of JSON frames, one a line
//
// The serving node opens a subscription of its own replica at the resolved
// position (subscribeLocal: a ReadIndex round first, then bound to the
// leadership it opened under, as any local one) and sends each of its
// events as a frame, flushed at once; the first frame says whether it
// opened. An event is at most forwardEventBytes of records; an idle one is
// sent every forwardBeat, so a silent link is a broken one. Its last frame
// is the end event of a closed shard, or the error that ended it: the
// replica no longer current, the stream deleted (carried as the storage
// error it is, so the client sees the same exception as at a local
// subscription), or any other failure.
//
// The receiving node reads the frames into a bounded queue (forwardQueue
// events): when the client reads slowly the queue fills, its reader stops
// reading the connection, and TCP's window stops the serving node's writes
// and with them its reads of the replica, so at most the queue and the
// connection's buffers are held. Its Next hands the api what it asks for
// (an event longer than the api's byte budget is cut, the rest kept for the
// next call), returns an empty event when nothing arrived within the api's
// idle time, and ends it as a local subscription ends:
//   - the consumer deregistered (this node's gone channel):
//     ResourceNotFoundException, as locally;
//   - the serving node's error frame: the same error (InternalFailure for
//     errNotCurrent);
//   - the connection broken, or no frame within linkTimeout while it waited
//     for one: errLinkBroken, an InternalFailureException event. The client
//     resubscribes after its last continuation number, which every replica
//     resolves the same way.
//
// The api's rules (the 5-minute life, one subscription per consumer and
// shard within 5 s) are this node's, as for a local subscription: the
// serving node's api is never involved. Close, or this node's Close, ends
// the request, and the serving node's handler ends with its context.

const (
	// forwardEventBytes caps the records of one forwarded event; the api's
	// own events are at most 2 MiB and usually far less (its pacing).
	forwardEventBytes = 1 << 20
	// forwardQueue is how many events the receiving node holds read ahead.
	forwardQueue = 4
	// forwardWriteGrace bounds one frame's write on the serving node: a
	// receiver that reads nothing for this long (its client stalled, or the
	// link dead without a reset) ends the forwarded subscription.
	forwardWriteGrace = time.Minute
)

// errLinkBroken ends a forwarded subscription whose connection to the
// serving node broke or fell silent.
var errLinkBroken = errors.New("cluster: the link to the node serving the subscription broke; resubscribe after the last ContinuationSequenceNumber")

// errRemoteFault is a serving node's failure that is not a storage error.
var errRemoteFault = errors.New("cluster: the node serving the subscription failed")

// subFrame is one line of a forwarded subscription's stream.
type subFrame struct {
	Open bool `json:"open,omitempty"`
	// Sealed (in the open frame): encrypted records come as stored
	// (subscription.sealed); a serving node from before it leaves it unset
	// and sends them opened.
	Sealed bool                    `json:"sealed,omitempty"`
	Event  *storage.SubscribeEvent `json:"event,omitempty"`
	Err    *frameError             `json:"error,omitempty"`
}

// frameError is an error that ended a forwarded subscription. Kind is the
// text of one of carriedKinds ("" for any other error).
type frameError struct {
	Kind       string         `json:"kind,omitempty"`
	Reason     storage.Reason `json:"reason,omitempty"`
	Facts      storage.Facts  `json:"facts"`
	Msg        string         `json:"msg"`
	NotCurrent bool           `json:"notCurrent,omitempty"`
}

// carriedKinds are the storage errors a serving node's frame carries as
// themselves. ErrClosed is not one: the serving node's store closing is a
// fault for this node's client, not a quiet end.
var carriedKinds = []error{storage.ErrShardNotFound, storage.ErrConsumerNotFound, storage.ErrStreamNotFound,
	storage.ErrUnavailable, storage.ErrInvalidArgument, storage.ErrResourceInUse, storage.ErrExpired,
	storage.ErrKMSNotFound, storage.ErrKMSDisabled, storage.ErrKMSInvalidState} // the KMS kinds: readKeyError's

func toFrameError(err error) *frameError {
	fe := &frameError{Msg: err.Error(), NotCurrent: errors.Is(err, errNotCurrent)}
	var se *storage.Error
	if errors.As(err, &se) {
		for _, k := range carriedKinds {
			if errors.Is(se.Kind, k) {
				fe.Kind, fe.Reason, fe.Facts = k.Error(), se.Reason, se.Facts
			}
		}
	}
	return fe
}

// fromFrameError is the error a frame carries, as this node reports it.
func (n *Node) fromFrameError(from uint64, fe *frameError) error {
	for _, k := range carriedKinds {
		if fe.Kind != "" && k.Error() == fe.Kind {
			return n.fail(k, fe.Reason, fe.Facts)
		}
	}
	if fe.NotCurrent {
		return fmt.Errorf("%w (served by node %d: %s)", errNotCurrent, from, fe.Msg)
	}
	return fmt.Errorf("%w (node %d: %s)", errRemoteFault, from, fe.Msg)
}

// EndStreams ends the forwarded subscriptions this node serves, each with
// the not-current error (the receiving node's client resubscribes, served
// by another replica). Give it to http.Server.RegisterOnShutdown: Shutdown
// waits for handlers but cancels none of their contexts.
func (n *Node) EndStreams() { n.endServed() }

// forwardBeat is how often a serving node sends an idle event.
func (n *Node) forwardBeat() time.Duration { return n.cfg.electionTimeout() }

// linkTimeout is how long a receiving node waits for a frame before it
// takes the link for broken: a few beats, since the serving node's own
// currency probe may hold an idle event back for up to an election timeout.
func (n *Node) linkTimeout() time.Duration { return 3*n.forwardBeat() + readRetry }

// serveSubscribe serves a forwarded subscription from this node's replica.
func (n *Node) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	var at subscribeAt
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&at); err != nil {
		http.Error(w, "malformed forwarded subscription", http.StatusBadRequest)
		return
	}
	if !n.servesReads(at.Group) || n.served.Err() != nil { // shutting down: another replica serves it
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: n.knownLeader(at.Group)})
		return
	}
	ctl := http.NewResponseController(w)
	// The server's ReadTimeout would end the stream (as the api's, api/subscribe.go).
	_ = ctl.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	// The write deadlines set below must not outlive the stream on a
	// connection the sender's pool would use again.
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(f subFrame) bool {
		_ = ctl.SetWriteDeadline(time.Now().Add(forwardWriteGrace))
		return enc.Encode(f) == nil && ctl.Flush() == nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(n.served, cancel)()
	sub, err := n.subscribeLocal(ctx, at, nil)
	if err != nil {
		// ServiceUnavailable (the replica gone or not current): the
		// receiving node tries another replica (openRemote).
		send(subFrame{Err: toFrameError(n.unavailable(at.Stream, datadir.ShardID(at.Index), err))})
		return
	}
	defer sub.Close()
	if !send(subFrame{Open: true, Sealed: at.Sealed}) {
		return
	}
	for {
		ev, err := sub.Next(ctx, forwardEventBytes, n.forwardBeat())
		if err != nil {
			if n.served.Err() != nil {
				err = sub.notCurrent("the node is shutting down")
			}
			if r.Context().Err() == nil { // the receiving node is still there
				send(subFrame{Err: toFrameError(err)})
			}
			return
		}
		if !send(subFrame{Event: &ev}) || ev.End() {
			return
		}
	}
}

// subscribeRemote opens a subscription on a replica of at's group: this
// node's if it serves the group's reads, else (or once it is found removed)
// a forwarded one on each other replica in turn until one opens.
func (n *Node) subscribeRemote(ctx context.Context, at subscribeAt, gone <-chan struct{}) (storage.EventSource, error) {
	var out storage.EventSource
	err := n.onReplica(ctx, at.Group,
		func(ctx context.Context) (err error) {
			out, err = n.subscribeLocal(ctx, at, gone) // this node took a replica of the group meanwhile
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			out, err = n.openRemote(ctx, addr, at, gone)
			return err
		})
	if err != nil {
		return nil, n.unavailable(at.Stream, datadir.ShardID(at.Index), err)
	}
	return out, nil
}

// openRemote asks the node at addr to serve the subscription and waits for
// its first frame. Errors: errUnreachable when no stream could be opened,
// or the first frame says its replica is unavailable or not current
// (opening one changes nothing anywhere, so unlike a write it may always
// go to the next replica), a *notLeaderError (it serves no reads of the
// group), or the error its first frame carries.
func (n *Node) openRemote(ctx context.Context, addr string, at subscribeAt, gone <-chan struct{}) (*remoteSubscription, error) {
	keys := n.keys.Load()
	if keys == nil {
		return nil, errUnreachable
	}
	url, err := n.internalURL(addr, "subscribe")
	if err != nil {
		return nil, err
	}
	// Records travel sealed and are opened here, with this node's keyring:
	// a node lacking the stream's key answers KMSNotFoundException, as its
	// GetRecords does, and no record crosses the network in clear.
	at.Sealed = true
	life, cancel := context.WithCancel(n.life) // the subscription's, not the opening request's
	req, err := http.NewRequestWithContext(life, http.MethodPost, url, bytes.NewReader(mustJSON(at)))
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set(AuthHeader, keys.forward)
	// Opening is bounded as any forwarded request, and by the caller's ctx.
	stopOpen := context.AfterFunc(ctx, cancel)
	openT := time.AfterFunc(proposalTimeout+5*time.Second, cancel)
	defer openT.Stop()
	defer stopOpen()
	resp, err := n.client.Do(req)
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w (forwarded subscription to %s: %v)", errUnreachable, addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusConflict {
			var nl notLeaderReply
			_ = json.NewDecoder(resp.Body).Decode(&nl)
			return nil, &notLeaderError{hint: nl.Leader}
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return nil, fmt.Errorf("cluster: forwarded subscription to %s: %s: %s", addr, resp.Status, msg)
	}
	from := n.nodeAt(addr)
	dec := json.NewDecoder(resp.Body)
	var first subFrame
	if err := dec.Decode(&first); err != nil || !first.Open {
		resp.Body.Close()
		cancel()
		if err == nil && first.Err != nil {
			if fe := first.Err; fe.NotCurrent || fe.Kind == storage.ErrUnavailable.Error() {
				return nil, fmt.Errorf("%w (forwarded subscription to node %d: %s)", errUnreachable, from, fe.Msg)
			}
			return nil, n.fromFrameError(from, first.Err)
		}
		return nil, fmt.Errorf("%w (forwarded subscription to node %d: no open frame: %v)", errUnreachable, from, err)
	}
	s := &remoteSubscription{n: n, from: from, stream: at.Stream, consumer: at.Consumer, gone: gone,
		frames: make(chan subFrame, forwardQueue), cancel: cancel, done: make(chan struct{}), openCont: contBefore(at.Epoch, at.Index, at.Ordinal),
		sealed: first.Sealed}
	go s.pump(resp.Body, dec)
	return s, nil
}

// nodeAt is the ID of the node whose client API is at addr (0: unknown),
// for messages.
func (n *Node) nodeAt(addr string) uint64 {
	for id, rec := range n.nodeRecs() {
		if rec.API == addr {
			return id
		}
	}
	return 0
}

// remoteSubscription is a subscription served by another node. Next and
// Close may be called from different goroutines; Next from one at a time.
type remoteSubscription struct {
	n                *Node
	from             uint64 // the serving node
	stream, consumer string
	gone             <-chan struct{}
	frames           chan subFrame      // filled by pump; bounded (back-pressure)
	cancel           context.CancelFunc // ends the request, and pump
	done             chan struct{}
	once             sync.Once

	sealed   bool                    // encrypted records come as stored: opened here (open)
	pending  *storage.SubscribeEvent // an event not yet handed on whole
	cont     string                  // the continuation number so far ("": openCont)
	openCont string                  // the number before the position, as subscribeLocal gives it
}

// pump reads frames into s.frames until the stream ends; the last frame it
// queues is the one that ended it (the end event, or an error: a broken
// link's is kindLink). It blocks while the queue is full (back-pressure)
// and returns when the subscription is closed.
func (s *remoteSubscription) pump(body io.ReadCloser, dec *json.Decoder) {
	defer body.Close()
	for {
		f, err := s.read(dec)
		if err != nil {
			f = subFrame{Err: &frameError{Kind: kindLink, Msg: err.Error()}}
		}
		select {
		case s.frames <- f:
		case <-s.done:
			return
		}
		if f.Err != nil || f.Event.End() {
			return
		}
	}
}

// read reads one frame, or fails when none comes within linkTimeout (the
// time pump waits on a full queue does not count).
func (s *remoteSubscription) read(dec *json.Decoder) (subFrame, error) {
	var f subFrame
	var silent atomic.Bool
	watch := time.AfterFunc(s.n.linkTimeout(), func() { silent.Store(true); s.cancel() })
	err := dec.Decode(&f)
	watch.Stop()
	switch {
	case err != nil && silent.Load():
		return f, fmt.Errorf("no word from it within %s", s.n.linkTimeout())
	case err != nil:
		return f, err
	case f.Event == nil && f.Err == nil:
		return f, errors.New("a frame with neither an event nor an error")
	case f.Event != nil && f.Event.End() && len(f.Event.ChildShards) == 0:
		// End() is an empty continuation number; only a closed shard's last
		// event has none, and it names the shard's children (a split's two,
		// a merge's one). Taken for the end, a buggy or skewed peer's frame
		// would make the consumer stop reading a shard that goes on.
		return f, errors.New("an event with no continuation number and no child shards")
	}
	return f, nil
}

// kindLink is the Kind of the frame pump makes of a broken link.
const kindLink = "link"

// Close ends the subscription and its request; a Next waiting returns.
func (s *remoteSubscription) Close() {
	s.once.Do(func() {
		close(s.done)
		s.cancel()
	})
}

// Next returns the next event (at most maxBytes of records, at least one
// record when it has any), an empty event after idle without one, or the
// error that ended the subscription (see the top of the file).
func (s *remoteSubscription) Next(ctx context.Context, maxBytes int, idle time.Duration) (storage.SubscribeEvent, error) {
	if err := s.check(ctx); err != nil {
		return storage.SubscribeEvent{}, err
	}
	if s.pending != nil {
		return s.take(max(maxBytes, 1)), nil
	}
	idleT := time.NewTimer(idle)
	defer idleT.Stop()
	for {
		select {
		case <-s.done:
		case <-s.gone:
		case <-ctx.Done():
		case <-idleT.C:
			return storage.SubscribeEvent{ContinuationSequenceNumber: s.continuation()}, nil
		case f := <-s.frames:
			if f.Err != nil {
				s.Close()
				return storage.SubscribeEvent{}, s.frameErr(f.Err)
			}
			ev := f.Event
			if len(ev.Records) == 0 && !ev.End() {
				s.cont = ev.ContinuationSequenceNumber // the serving node's idle event
				continue
			}
			if err := s.open(ev); err != nil {
				s.Close()
				return storage.SubscribeEvent{}, err
			}
			s.pending = ev
			return s.take(max(maxBytes, 1)), nil
		}
		if err := s.check(ctx); err != nil {
			return storage.SubscribeEvent{}, err
		}
	}
}

// open opens a sealed event's encrypted records with this node's keyring:
// a record whose master key it lacks ends the subscription with
// single-node mode's KMSNotFoundException (readKeyError).
func (s *remoteSubscription) open(ev *storage.SubscribeEvent) error {
	if !s.sealed {
		return nil
	}
	for i, r := range ev.Records {
		if !r.Encrypted {
			continue
		}
		_, key, data, _, err := s.n.openRecord(r.Data)
		if err != nil {
			rec, _, _ := s.n.stream(s.stream)
			return s.n.readKeyError(rec, err)
		}
		ev.Records[i].PartitionKey, ev.Records[i].Data = key, data
	}
	return nil
}

func (s *remoteSubscription) frameErr(fe *frameError) error {
	if fe.Kind == kindLink {
		return fmt.Errorf("%w (node %d: %s)", errLinkBroken, s.from, fe.Msg)
	}
	return s.n.fromFrameError(s.from, fe)
}

// check reports why the subscription cannot go on for this node's reasons.
func (s *remoteSubscription) check(ctx context.Context) error {
	return s.n.subscriptionEnded(ctx, s.done, s.gone, s.stream, s.consumer)
}

func (s *remoteSubscription) continuation() string {
	if s.cont == "" {
		return s.openCont
	}
	return s.cont
}

// take hands on the pending event, or its first records up to maxBytes
// (at least one) with the continuation number of the last of them; the
// rest stays pending. The end event (ChildShards) ends the subscription.
func (s *remoteSubscription) take(maxBytes int) storage.SubscribeEvent {
	ev := s.pending
	cut, size := 0, 0
	for cut < len(ev.Records) {
		r := ev.Records[cut]
		if cut > 0 && size+len(r.PartitionKey)+len(r.Data) > maxBytes {
			break
		}
		size += len(r.PartitionKey) + len(r.Data)
		cut++
	}
	if cut == len(ev.Records) {
		s.pending = nil
		if ev.End() {
			s.Close() // a Next after the last event ends at once
		} else {
			s.cont = ev.ContinuationSequenceNumber
		}
		return *ev
	}
	part := storage.SubscribeEvent{Records: ev.Records[:cut:cut], Bytes: size}
	part.ContinuationSequenceNumber = part.Records[cut-1].SequenceNumber
	// More follows, so the part is behind by its last record's age.
	part.MillisBehindLatest = max(0, s.n.cfg.Now().UnixMilli()-part.Records[cut-1].Arrival.UnixMilli())
	ev.Records, ev.Bytes = ev.Records[cut:], ev.Bytes-size
	s.cont = part.ContinuationSequenceNumber
	return part
}
