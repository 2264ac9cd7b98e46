package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// TestSubscribeForwarded: in a cluster of four nodes, a subscription that
// reaches the node holding no replica of the shard is served by a replica
// elsewhere: it delivers every record once, in order. When the shard's
// leader stops, it ends with an InternalFailure error (the serving replica
// no longer current, or its link broken); resubscribing at the same node
// after its last continuation number delivers exactly the rest. A leader
// change with every node up ends the next one with the not-current error
// the serving node sends, and so does the serving node's shutdown
// (EndStreams), after which another replica serves. Deregistering the
// consumer ends that one with ResourceNotFound.
func TestSubscribeForwarded(t *testing.T) {
	c := fourNodes(t, "s")
	ctx := context.Background()
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	outside, leader := c.outsideOf(t, "s")
	if c.node(outside).servesReads(group) {
		t.Fatalf("node %d serves reads of group %d though it is not placed there", outside, group)
	}
	writer := leader%4 + 1
	if writer == outside {
		writer = writer%4 + 1
	}
	first := subscribe(t, c.node(outside), "s", "efo", storage.TrimHorizon, "")
	if _, ok := first.src.(*remoteSubscription); !ok {
		t.Fatalf("node %d subscribed with a %T, want a forwarded subscription", outside, first.src)
	}

	got, maybe := acked{}, acked{}
	for round := range 5 {
		if err := c.putTracked(writer, round, 20, got, maybe); err != nil {
			t.Fatalf("put round %d: %v", round, err)
		}
	}
	eventually(t, "the forwarded subscription delivers every record", func() error {
		first.mu.Lock()
		defer first.mu.Unlock()
		return checkDelivered(first.recs, got, maybe)
	})

	c.stop(leader)
	err := first.ended(t)
	if !errors.Is(err, errNotCurrent) && !errors.Is(err, errLinkBroken) {
		t.Fatalf("the forwarded subscription ended with %v, want the not-current or broken-link error", err)
	}
	var se *storage.Error
	if errors.As(err, &se) {
		t.Fatalf("the end is a storage error (%v): the client would not see InternalFailure", err)
	}
	t.Logf("the forwarded subscription ended: %v", err)
	round := 100
	eventually(t, "writes resume after the leader stopped", func() error {
		round++
		return c.putTracked(writer, round, 20, got, maybe)
	})
	for range 3 {
		round++
		if err := c.putTracked(outside, round, 20, got, maybe); err != nil {
			t.Fatalf("put after failover: %v", err)
		}
	}
	second := subscribe(t, c.node(outside), "s", "efo", storage.AfterSequenceNumber, first.cont)
	eventually(t, "the second subscription delivers the rest", func() error {
		second.mu.Lock()
		defer second.mu.Unlock()
		return checkDelivered(append(append([]storage.Record(nil), first.recs...), second.recs...), got, maybe)
	})

	// A leader change with every replica up: the serving replica is no
	// longer current, and its error frame says so.
	cur, _ := c.node(writer).placements()
	var live []uint64
	for _, id := range cur[group] {
		if id != leader {
			live = append(live, id)
		}
	}
	from := c.node(live[0]).host.Leader(group)
	to := live[0]
	if from == to {
		to = live[1]
	}
	eventually(t, fmt.Sprintf("leadership moves from node %d to node %d", from, to), func() error {
		if l := c.node(to).host.Leader(group); l != to {
			_ = c.node(from).host.TransferLeader(group, to)
			return fmt.Errorf("leader %d", l)
		}
		return nil
	})
	if err := second.ended(t); !errors.Is(err, errNotCurrent) {
		t.Fatalf("after a leader change the subscription ended with %v, want the not-current error", err)
	}
	for range 2 {
		round++
		if err := c.putTracked(writer, round, 20, got, maybe); err != nil {
			t.Fatalf("put after the transfer: %v", err)
		}
	}
	third := subscribe(t, c.node(outside), "s", "efo", storage.AfterSequenceNumber, second.cont)
	eventually(t, "the third subscription delivers the rest", func() error {
		third.mu.Lock()
		defer third.mu.Unlock()
		return checkDelivered(slices.Concat(first.recs, second.recs, third.recs), got, maybe)
	})

	// The serving node shuts down (its HTTP server's Shutdown calls
	// EndStreams): the subscription ends with the not-current error, and
	// the next one is served by another replica.
	serving := third.src.(*remoteSubscription).from
	c.node(serving).EndStreams()
	if err := third.ended(t); !errors.Is(err, errNotCurrent) {
		t.Fatalf("after EndStreams on node %d the subscription ended with %v, want the not-current error", serving, err)
	}
	round++
	if err := c.putTracked(writer, round, 20, got, maybe); err != nil {
		t.Fatalf("put after EndStreams: %v", err)
	}
	fourth := subscribe(t, c.node(outside), "s", "efo", storage.AfterSequenceNumber, third.cont)
	if from := fourth.src.(*remoteSubscription).from; from == serving || from == 0 {
		t.Fatalf("the next subscription is served by node %d; node %d ended its streams", from, serving)
	}
	eventually(t, "the fourth subscription delivers the rest", func() error {
		fourth.mu.Lock()
		defer fourth.mu.Unlock()
		return checkDelivered(slices.Concat(first.recs, second.recs, third.recs, fourth.recs), got, maybe)
	})

	if err := c.node(writer).DeregisterConsumer(ctx, "s", "efo"); err != nil {
		t.Fatal(err)
	}
	if err := fourth.ended(t); !errors.Is(err, storage.ErrConsumerNotFound) {
		t.Fatalf("after deregistration the subscription ended with %v", err)
	}
}

// fourNodes starts three nodes, adds a fourth, then creates stream with
// one shard: placed on three of the four.
func fourNodes(t *testing.T, stream string) *testCluster {
	c := newTestClusterSecret(t, 3, "four-nodes-secret")
	c.addNode(4, 2)
	eventually(t, "node 4 is live everywhere", func() error {
		for id := uint64(1); id <= 4; id++ {
			if got := c.node(id).liveNodes(); len(got) != 4 {
				return fmt.Errorf("node %d sees %v", id, got)
			}
		}
		return nil
	})
	if err := c.node(1).CreateStream(context.Background(), storage.CreateStreamInput{Name: stream, ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive(stream, 1, 2, 3, 4)
	return c
}

// outsideOf waits until the stream's shard 0 is placed on three nodes and
// has a leader, and returns the fourth node and the leader.
func (c *testCluster) outsideOf(t *testing.T, stream string) (outside, leader uint64) {
	group := c.node(1).Status().Shards[stream+"/shardId-000000000000"]
	eventually(t, "the shard placed on three nodes, with a leader", func() error {
		cur, moves := c.node(1).placements()
		if len(moves) > 0 || len(cur[group]) != 3 {
			return fmt.Errorf("placement %v, moves %v", cur[group], moves)
		}
		for id := uint64(1); id <= 4; id++ {
			if !slices.Contains(cur[group], id) {
				outside = id
			}
		}
		if leader = c.node(cur[group][0]).host.Leader(group); leader == 0 {
			return errors.New("no leader")
		}
		return nil
	})
	return outside, leader
}

// TestRemoteSubscriptionTake: an event longer than the api's byte budget
// is handed on in parts, each with its last record's continuation number,
// the last part with the event's own; the end event ends the subscription.
func TestRemoteSubscriptionTake(t *testing.T) {
	rec := func(seq string, size int) storage.Record {
		return storage.Record{SequenceNumber: seq, PartitionKey: "k", Data: make([]byte, size-1), Arrival: time.UnixMilli(1000)}
	}
	n := &Node{cfg: Config{Now: func() time.Time { return time.UnixMilli(5000) }}}
	for _, tc := range []struct {
		name     string
		ev       storage.SubscribeEvent
		maxBytes int
		want     [][]string // the records of each part
		conts    []string
	}{
		{"fits", storage.SubscribeEvent{Records: []storage.Record{rec("1", 10), rec("2", 10)}, ContinuationSequenceNumber: "2", Bytes: 20}, 20,
			[][]string{{"1", "2"}}, []string{"2"}},
		{"cut in two", storage.SubscribeEvent{Records: []storage.Record{rec("1", 10), rec("2", 10), rec("3", 10)}, ContinuationSequenceNumber: "3", Bytes: 30}, 25,
			[][]string{{"1", "2"}, {"3"}}, []string{"2", "3"}},
		{"one record over the budget", storage.SubscribeEvent{Records: []storage.Record{rec("1", 50), rec("2", 50)}, ContinuationSequenceNumber: "2", Bytes: 100}, 10,
			[][]string{{"1"}, {"2"}}, []string{"1", "2"}},
		{"end with records", storage.SubscribeEvent{Records: []storage.Record{rec("1", 10), rec("2", 10)}, ChildShards: []storage.ChildShard{{ShardID: "c"}}, Bytes: 20}, 10,
			[][]string{{"1"}, {"2"}}, []string{"1", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &remoteSubscription{n: n, done: make(chan struct{}), cancel: func() {}}
			ev := tc.ev
			s.pending = &ev
			for i, want := range tc.want {
				if s.pending == nil {
					t.Fatalf("part %d: nothing pending", i)
				}
				part := s.take(tc.maxBytes)
				var seqs []string
				bytes := 0
				for _, r := range part.Records {
					seqs = append(seqs, r.SequenceNumber)
					bytes += len(r.PartitionKey) + len(r.Data)
				}
				if !slices.Equal(seqs, want) || part.ContinuationSequenceNumber != tc.conts[i] || part.Bytes != bytes {
					t.Fatalf("part %d: %v cont %q bytes %d, want %v cont %q bytes %d", i, seqs, part.ContinuationSequenceNumber, part.Bytes, want, tc.conts[i], bytes)
				}
				if i < len(tc.want)-1 && part.MillisBehindLatest != 4000 {
					t.Fatalf("part %d of several: MillisBehindLatest %d", i, part.MillisBehindLatest)
				}
			}
			if s.pending != nil {
				t.Fatalf("left pending: %+v", s.pending)
			}
			if ended := closed(s.done); ended != tc.ev.End() {
				t.Fatalf("closed %v after the event's last part, end %v", ended, tc.ev.End())
			}
		})
	}
}

// TestRemoteSubscriptionEnds: how a forwarded subscription ends, against a
// serving node played by the test: an error frame is the error it carries
// (a storage error as itself, the not-current error as InternalFailure's
// cause); a closed or silent link is errLinkBroken; a 409 is "not here".
// Idle events move the continuation number without being handed on.
func TestRemoteSubscriptionEnds(t *testing.T) {
	c := newTestClusterSecret(t, 1, "remote-subscription-secret")
	n := c.node(1)
	ctx := context.Background()
	at := subscribeAt{Stream: "s", Index: 0, Group: 7, Consumer: "efo"}
	shardGone := toFrameError(n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: "s", Shard: "shardId-000000000000"}))
	notCurrent := toFrameError(fmt.Errorf("%w (test)", errNotCurrent))
	keyGone := toFrameError(n.fail(storage.ErrKMSNotFound, storage.ReasonKMSNotFound, storage.Facts{Stream: "s", Given: "alias/k"}))
	idle := storage.SubscribeEvent{ContinuationSequenceNumber: "42"}
	for _, tc := range []struct {
		name   string
		frames []subFrame // after the open frame
		hang   bool       // then send nothing more, keeping the link open
		status int        // instead of a stream
		check  func(error) bool
	}{
		{"stream deleted", []subFrame{{Event: &idle}, {Err: shardGone}}, false, 0, func(err error) bool {
			var se *storage.Error
			return errors.As(err, &se) && errors.Is(se.Kind, storage.ErrShardNotFound) && se.Reason == storage.ReasonShardGone && se.Account == n.cfg.AccountID
		}},
		{"not current", []subFrame{{Err: notCurrent}}, false, 0, func(err error) bool { return errors.Is(err, errNotCurrent) }},
		{"stream's key gone", []subFrame{{Err: keyGone}}, false, 0, func(err error) bool {
			var se *storage.Error
			return errors.As(err, &se) && errors.Is(se.Kind, storage.ErrKMSNotFound) && se.Reason == storage.ReasonKMSNotFound && se.Given == "alias/k"
		}},
		{"link closed", []subFrame{{Event: &idle}}, false, 0, func(err error) bool { return errors.Is(err, errLinkBroken) }},
		{"link silent", nil, true, 0, func(err error) bool { return errors.Is(err, errLinkBroken) }},
		{"not here", nil, false, http.StatusConflict, func(err error) bool { var nl *notLeaderError; return errors.As(err, &nl) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status != 0 {
					writeJSON(w, tc.status, notLeaderReply{})
					return
				}
				enc := json.NewEncoder(w)
				for _, f := range append([]subFrame{{Open: true}}, tc.frames...) {
					_ = enc.Encode(f)
					w.(http.Flusher).Flush()
				}
				if tc.hang {
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
			}))
			defer srv.Close()
			defer close(release)
			sub, err := n.openRemote(ctx, strings.TrimPrefix(srv.URL, "http://"), at, nil)
			if tc.status != 0 {
				if !tc.check(err) {
					t.Fatalf("opening: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			for {
				ev, err := sub.Next(ctx, 1<<20, time.Hour)
				if err != nil {
					if !tc.check(err) {
						t.Fatalf("ended with %v", err)
					}
					break
				}
				t.Fatalf("an event handed on: %+v", ev)
			}
			if len(tc.frames) > 0 && tc.frames[0].Event != nil && sub.continuation() != "42" {
				t.Fatalf("continuation %q after an idle event", sub.continuation())
			}
			if _, err := sub.Next(ctx, 1<<20, time.Hour); !errors.Is(err, errSubscriptionEnded) {
				t.Fatalf("Next after the end: %v", err)
			}
		})
	}
}

// TestRemoteSubscriptionBackPressure: a receiving node whose client reads
// nothing holds only its bounded queue (and the connection's buffers) of a
// fast serving node's events: the serving node's writes stop. Read later,
// every event arrives once, in order.
func TestRemoteSubscriptionBackPressure(t *testing.T) {
	c := newTestClusterSecret(t, 1, "back-pressure-secret")
	n := c.node(1)
	const frames = 100
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		_ = enc.Encode(subFrame{Open: true})
		data := make([]byte, 256<<10)
		for i := range frames {
			seq := fmt.Sprint(i)
			ev := storage.SubscribeEvent{Records: []storage.Record{{SequenceNumber: seq, PartitionKey: "k", Data: data}}, ContinuationSequenceNumber: seq, Bytes: len(data) + 1}
			if enc.Encode(subFrame{Event: &ev}) != nil {
				return
			}
			w.(http.Flusher).Flush()
			written.Add(1)
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	sub, err := n.openRemote(context.Background(), strings.TrimPrefix(srv.URL, "http://"), subscribeAt{Stream: "s", Group: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Until the serving side stops making progress (a slow machine may only
	// stop this early, which cannot fail the check below).
	last := int64(-1)
	for w := written.Load(); w != last; w = written.Load() {
		last = w
		time.Sleep(300 * time.Millisecond)
	}
	if last >= 70 { // 17 MiB: more than a loopback connection buffers
		t.Fatalf("the serving side wrote %d events of 256 KiB to a receiver that read none", last)
	}
	t.Logf("the serving side stopped after %d events", last)
	for i := range frames {
		ev, err := sub.Next(context.Background(), 2<<20, time.Minute)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if len(ev.Records) != 1 || ev.Records[0].SequenceNumber != fmt.Sprint(i) {
			t.Fatalf("event %d: %d records, first %v", i, len(ev.Records), ev.Records)
		}
	}
}
