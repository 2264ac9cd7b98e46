package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// subscriber drains a subscription in the background, as the api does.
type subscriber struct {
	mu   sync.Mutex
	recs []storage.Record
	cont string
	err  error
	done chan struct{}
	src  storage.EventSource // what Node.Subscribe returned
}

func subscribe(t *testing.T, n *Node, stream, consumer string, typ storage.IteratorType, seq string) *subscriber {
	t.Helper()
	ctx := context.Background()
	info, err := n.DescribeConsumer(ctx, stream, consumer)
	if err != nil {
		t.Fatal(err)
	}
	_, gone, err := n.ActiveConsumer(ctx, stream, consumer, info.Created)
	if err != nil {
		t.Fatal(err)
	}
	var sub storage.EventSource
	eventually(t, fmt.Sprintf("subscribe at node %d", n.cfg.NodeID), func() error {
		sub, err = n.Subscribe(ctx, storage.SubscribeInput{Stream: stream, ShardID: "shardId-000000000000", Type: typ, StartSeq: seq, Consumer: consumer}, gone)
		return err
	})
	s := &subscriber{done: make(chan struct{}), src: sub}
	go func() {
		defer close(s.done)
		defer sub.Close()
		for {
			ev, err := sub.Next(ctx, 1<<20, 100*time.Millisecond)
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.recs = append(s.recs, ev.Records...)
			s.cont = ev.ContinuationSequenceNumber
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// ended waits for the subscription to end and returns its error.
func (s *subscriber) ended(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(time.Minute): // only bounds a hung test
		t.Fatal("the subscription did not end")
	}
	return s.err
}

// putTracked puts count records through node id, recording the
// acknowledged ones and, in maybe, those whose outcome is unknown.
func (c *testCluster) putTracked(id uint64, round, count int, got, maybe acked) error {
	var entries []storage.PutEntry
	for i := range count {
		entries = append(entries, storage.PutEntry{PartitionKey: fmt.Sprintf("k-%d-%d", round, i), Data: []byte(fmt.Sprintf("r%d-%d", round, i))})
	}
	res, err := c.node(id).Put(context.Background(), "s", entries)
	for i, e := range entries {
		v := e.PartitionKey + "=" + string(e.Data)
		switch {
		case err != nil || res[i].Err != nil:
			maybe[v] = "?"
		default:
			got[res[i].SequenceNumber] = v
		}
	}
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				return r.Err
			}
		}
	}
	return err
}

// checkDelivered checks the concatenated deliveries: strictly increasing
// sequence numbers (so none twice), every acknowledged record, and nothing
// that was not written.
func checkDelivered(delivered []storage.Record, got, maybe acked) error {
	seen := 0
	var last uint64
	for i, r := range delivered {
		s, err := seqnum.Parse(r.SequenceNumber)
		if err != nil {
			return err
		}
		if i > 0 && s.Ordinal <= last {
			return fmt.Errorf("record %d (%s) is not after the one before", i, r.SequenceNumber)
		}
		last = s.Ordinal
		v := r.PartitionKey + "=" + string(r.Data)
		switch {
		case got[r.SequenceNumber] == v:
			seen++
		case maybe[v] == "":
			return fmt.Errorf("delivered %s (%s), never written", r.SequenceNumber, v)
		}
	}
	if seen != len(got) {
		return fmt.Errorf("delivered %d of the %d acknowledged records", seen, len(got))
	}
	return nil
}

// TestSubscribeAcrossLeaderChange: a subscription on a follower delivers
// every record written through another node, once, in order; when the
// shard's leader stops, it ends with the not-current error (the api's
// InternalFailureException event); resubscribing at another node after its
// last continuation number delivers exactly the rest, the records written
// after the failover included. Deregistering the consumer ends that one.
func TestSubscribeAcrossLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	var leader uint64
	eventually(t, "the shard has a leader", func() error {
		if leader = c.node(1).host.Status(group).Leader; leader == 0 {
			return errors.New("none")
		}
		return nil
	})
	follower := leader%3 + 1 // serves the first subscription
	third := follower%3 + 1  // takes the writes, and the second subscription
	first := subscribe(t, c.node(follower), "s", "efo", storage.TrimHorizon, "")

	got, maybe := acked{}, acked{}
	for round := range 5 {
		if err := c.putTracked(third, round, 20, got, maybe); err != nil {
			t.Fatalf("put round %d: %v", round, err)
		}
	}
	eventually(t, "the first subscription delivers every record", func() error {
		if n := first.count(); n < len(got) {
			return fmt.Errorf("%d of %d", n, len(got))
		}
		return nil
	})

	c.stop(leader)
	err := first.ended(t)
	if !errors.Is(err, errNotCurrent) {
		t.Fatalf("the first subscription ended with %v, want the not-current error", err)
	}
	t.Logf("the first subscription ended: %v", err)
	round := 100
	eventually(t, "writes resume after the leader stopped", func() error {
		round++
		return c.putTracked(third, round, 20, got, maybe)
	})
	for range 3 {
		round++
		if err := c.putTracked(follower, round, 20, got, maybe); err != nil {
			t.Fatalf("put after failover: %v", err)
		}
	}
	second := subscribe(t, c.node(third), "s", "efo", storage.AfterSequenceNumber, first.cont)
	eventually(t, "the second subscription delivers the rest", func() error {
		second.mu.Lock()
		defer second.mu.Unlock()
		return checkDelivered(append(append([]storage.Record(nil), first.recs...), second.recs...), got, maybe)
	})

	if err := c.node(follower).DeregisterConsumer(ctx, "s", "efo"); err != nil {
		t.Fatal(err)
	}
	if err := second.ended(t); !errors.Is(err, storage.ErrConsumerNotFound) {
		t.Fatalf("after deregistration the subscription ended with %v", err)
	}
}

// TestSubscribeStartingPositions: every starting position resolves on a
// cluster node as GetShardIterator does, and the continuation number of a
// subscription with nothing delivered yet is the same on every node.
func TestSubscribeStartingPositions(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(2).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(2).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	got, maybe := acked{}, acked{}
	for round := range 2 {
		if err := c.putTracked(1, round, 10, got, maybe); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.node(1).Put(ctx, "s", []storage.PutEntry{{PartitionKey: "mid", Data: []byte("x")}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	mid := res[0].SequenceNumber
	midSeq, _ := seqnum.Parse(mid)
	for _, tc := range []struct {
		typ   storage.IteratorType
		seq   string
		first string // the first record's partition key; "" none yet
	}{
		{storage.TrimHorizon, "", "k-0-0"},
		{storage.AtSequenceNumber, mid, "mid"},
		{storage.AfterSequenceNumber, mid, ""},
		{storage.Latest, "", ""},
	} {
		conts := map[string]bool{}
		for id := uint64(1); id <= 3; id++ {
			in := storage.SubscribeInput{Stream: "s", ShardID: "shardId-000000000000", Type: tc.typ, StartSeq: tc.seq, Consumer: "efo"}
			sub, err := c.node(id).Subscribe(ctx, in, nil)
			if err != nil {
				t.Fatalf("%s at node %d: %v", tc.typ, id, err)
			}
			ev, err := sub.Next(ctx, 1<<20, time.Millisecond)
			sub.Close()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.first == "" && len(ev.Records) > 0:
				t.Fatalf("%s at node %d delivered %s", tc.typ, id, ev.Records[0].PartitionKey)
			case tc.first != "" && (len(ev.Records) == 0 || ev.Records[0].PartitionKey != tc.first):
				t.Fatalf("%s at node %d delivered %d records, want %s first", tc.typ, id, len(ev.Records), tc.first)
			case tc.first == "":
				conts[ev.ContinuationSequenceNumber] = true
				if s, _ := seqnum.Parse(ev.ContinuationSequenceNumber); s.Ordinal < midSeq.Ordinal {
					t.Fatalf("%s at node %d continues at %s, before %s", tc.typ, id, ev.ContinuationSequenceNumber, mid)
				}
			}
		}
		if tc.first == "" && len(conts) != 1 {
			t.Fatalf("%s: continuation numbers differ between nodes: %v", tc.typ, conts)
		}
	}
	other := midSeq
	other.ShardCreateSecs -= 100
	other.ArrivalSecs -= 100
	_, err = c.node(3).Subscribe(ctx, storage.SubscribeInput{Stream: "s", ShardID: "shardId-000000000000",
		Type: storage.AtSequenceNumber, StartSeq: other.String(), Consumer: "efo"}, nil)
	wantReason(t, "a sequence number of another stream", err, storage.ErrInvalidArgument, storage.ReasonSeqStream)
	_, err = c.node(3).Subscribe(ctx, storage.SubscribeInput{Stream: "s", ShardID: "shardId-000000000004", Type: storage.TrimHorizon, Consumer: "efo"}, nil)
	wantReason(t, "a shard that does not exist", err, storage.ErrShardNotFound, storage.ReasonShardGone)
}

// TestSubscribeCutOff: a subscription served by the shard's leader ends
// with the not-current error when both other nodes stop, though the
// leader's idle group may be quiesced (its clocks stand still): the
// subscription's own ReadIndex rounds find no quorum.
func TestSubscribeCutOff(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	var leader uint64
	eventually(t, "the shard has a leader", func() error {
		if leader = c.node(1).host.Status(group).Leader; leader == 0 {
			return errors.New("none")
		}
		return nil
	})
	sub := subscribe(t, c.node(leader), "s", "efo", storage.Latest, "")
	c.stop(leader%3 + 1)
	c.stop((leader+1)%3 + 1)
	err := sub.ended(t)
	if !errors.Is(err, errNotCurrent) {
		t.Fatalf("the subscription ended with %v, want the not-current error", err)
	}
	t.Logf("the subscription ended: %v", err)
}
