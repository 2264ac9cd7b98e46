package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
)

// readLineage reads a stream through node id as a KCL would: every shard
// without a parent from TRIM_HORIZON, then each child once all its parents
// are read, following the ChildShards a closed shard's end returns. It
// checks that numbers increase within a shard, that a child's numbers are
// above all of its parents', that a closed shard ends (no next position)
// with the children DescribeStream lists, and that no record is read twice.
func (c *testCluster) readLineage(id uint64, stream string) (acked, error) {
	n := c.node(id)
	info, err := n.DescribeStream(context.Background(), stream)
	if err != nil {
		return nil, err
	}
	byID := map[string]storage.ShardInfo{}
	var queue []string
	for _, sh := range info.Shards {
		byID[sh.ID] = sh
		if sh.Parent == "" {
			queue = append(queue, sh.ID)
		}
	}
	out := acked{}
	top := map[string]*big.Int{} // each shard read: its largest number
	for waits := 0; len(queue) > 0; {
		sid := queue[0]
		queue = queue[1:]
		if top[sid] != nil {
			continue
		}
		sh := byID[sid]
		floor, ready := new(big.Int), true
		for _, p := range []string{sh.Parent, sh.AdjacentParent} {
			if _, known := byID[p]; p == "" || !known {
				continue
			}
			if top[p] == nil {
				ready = false
			} else if top[p].Cmp(floor) > 0 {
				floor = top[p]
			}
		}
		if !ready {
			if waits++; waits > 1000 {
				return nil, fmt.Errorf("node %d: %s's parents are never reached", id, sid)
			}
			queue = append(queue, sid)
			continue
		}
		kids, last, err := readShard(n, stream, sh, floor, out)
		if err != nil {
			return nil, fmt.Errorf("node %d: %s: %w", id, sid, err)
		}
		if want := childrenIn(info, sid); !slices.Equal(kids, want) {
			return nil, fmt.Errorf("node %d: %s ends with children %v, DescribeStream lists %v", id, sid, kids, want)
		}
		top[sid] = last
		queue = append(queue, kids...)
	}
	if len(top) != len(info.Shards) {
		return nil, fmt.Errorf("node %d: read %d shards of %d", id, len(top), len(info.Shards))
	}
	return out, nil
}

func childrenIn(info storage.StreamInfo, id string) []string {
	var out []string
	for _, sh := range info.Shards {
		if sh.Parent == id || sh.AdjacentParent == id {
			out = append(out, sh.ID)
		}
	}
	return out
}

// readShard reads one shard from TRIM_HORIZON: to its closed end (its
// ChildShards are returned) or, for an open shard, to an empty page.
func readShard(n *Node, stream string, sh storage.ShardInfo, floor *big.Int, out acked) ([]string, *big.Int, error) {
	ctx := context.Background()
	pos, err := n.Position(ctx, stream, sh.ID, storage.TrimHorizon, "", time.Time{})
	if err != nil {
		return nil, nil, err
	}
	last := new(big.Int).Set(floor)
	for empty := 0; ; {
		res, err := n.Read(ctx, pos, 7, 1<<20) // small pages: many calls
		if err != nil {
			return nil, nil, err
		}
		for _, r := range res.Records {
			v, ok := new(big.Int).SetString(r.SequenceNumber, 10)
			if !ok || v.Cmp(last) <= 0 {
				return nil, nil, fmt.Errorf("record %s is not above %s (the previous one, or its parents')", r.SequenceNumber, last)
			}
			if _, dup := out[r.SequenceNumber]; dup {
				return nil, nil, fmt.Errorf("record %s read twice", r.SequenceNumber)
			}
			out[r.SequenceNumber] = r.PartitionKey + "=" + string(r.Data)
			last = v
		}
		switch {
		case res.Next == nil && sh.EndingSeq == "":
			return nil, nil, errors.New("an open shard ended")
		case res.Next == nil:
			var kids []string
			for _, k := range res.ChildShards {
				kids = append(kids, k.ShardID)
			}
			return kids, last, nil
		case len(res.Records) == 0 && sh.EndingSeq == "":
			return nil, last, nil
		case len(res.Records) == 0:
			if empty++; empty > 500 {
				return nil, nil, errors.New("a closed shard's end is never reached")
			}
			time.Sleep(10 * time.Millisecond)
		}
		pos = *res.Next
	}
}

// sameEverywhere checks that every node describes the stream as node 1
// does (lineage, hash ranges, sequence-number ranges).
func (c *testCluster) sameEverywhere(stream string, ids ...uint64) (storage.StreamInfo, error) {
	want, err := c.node(ids[0]).DescribeStream(context.Background(), stream)
	if err != nil {
		return want, err
	}
	for _, id := range ids[1:] {
		got, err := c.node(id).DescribeStream(context.Background(), stream)
		if err != nil {
			return want, err
		}
		if !reflect.DeepEqual(got, want) {
			return want, fmt.Errorf("node %d describes\n%+v\nnode %d\n%+v", id, got, ids[0], want)
		}
	}
	return want, nil
}

// openRanges lists the open shards' hash ranges in order.
func openRanges(info storage.StreamInfo) []hashkey.Range {
	var out []hashkey.Range
	for _, sh := range info.Shards {
		if sh.Open() {
			out = append(out, sh.HashRange)
		}
	}
	return out
}

// TestReshardUnderWrites: three nodes, a writer putting through all of
// them the whole time. SplitShard, then MergeShards of the two children,
// then UpdateShardCount 2 → 4, each through a different node; each turns
// the stream UPDATING and then ACTIVE. Afterwards every node describes the
// same lineage, and reading it from TRIM_HORIZON through ChildShards on
// every node gives every acknowledged record exactly once, in order per
// shard, children's numbers above their parents'.
func TestReshardUnderWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "r", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("r", 1, 2, 3)
	checkReshardErrors(t, c.node(2))

	w := c.startWriter("r", 0, 1, 2, 3)
	w.waitRounds(t, 6)
	half := hashkey.Split(2)[0]
	mid := half.Start.Add(1 << 40).String() // inside shard 0
	steps := []struct {
		via  uint64
		what string
		do   func(n *Node) error
		open int
	}{
		{2, "split shard 0", func(n *Node) error { return n.SplitShard(ctx, "r", "shardId-000000000000", mid) }, 3},
		{3, "merge its children", func(n *Node) error {
			return n.MergeShards(ctx, "r", "shardId-000000000002", "shardId-000000000003")
		}, 2},
		{1, "UpdateShardCount 2 → 4", func(n *Node) error {
			res, err := n.UpdateShardCount(ctx, "r", 4)
			if err == nil && (res.Current != 2 || res.Target != 4) {
				err = fmt.Errorf("answered %+v", res)
			}
			return err
		}, 4},
	}
	for _, s := range steps {
		if err := s.do(c.node(s.via)); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		c.waitActive("r", 1, 2, 3)
		w.waitRounds(t, 6)
		var info storage.StreamInfo
		eventually(t, s.what+": the same lineage on every node", func() (err error) {
			info, err = c.sameEverywhere("r", 1, 2, 3)
			return err
		})
		if got := len(openRanges(info)); got != s.open {
			t.Fatalf("%s: %d open shards, want %d: %+v", s.what, got, s.open, info.Shards)
		}
	}
	got, failed := w.halt()
	info, err := c.sameEverywhere("r", 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := hashkey.Split(4); !reflect.DeepEqual(openRanges(info), want) {
		t.Fatalf("open ranges after UpdateShardCount %v, want %v", openRanges(info), want)
	}
	t.Logf("%d records acknowledged, %d failed, %d shards", len(got), len(failed), len(info.Shards))
	for _, id := range []uint64{1, 2, 3} {
		read, err := c.readLineage(id, "r")
		if err == nil {
			err = checkRead(got, failed, read)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkRead: every acknowledged record read with its number, and nothing
// else but records whose put failed (indeterminate: stored or not).
func checkRead(want acked, failed map[string]bool, read acked) error {
	for seq, v := range want {
		if read[seq] != v {
			return fmt.Errorf("acknowledged %s (%s) read as %q", seq, v, read[seq])
		}
	}
	for seq, v := range read {
		if want[seq] == "" && !failed[v] {
			return fmt.Errorf("phantom record %s (%s)", seq, v)
		}
	}
	return nil
}

// checkReshardErrors: the planners' refusals come back as single-node
// mode's errors, in its order.
func checkReshardErrors(t *testing.T, n *Node) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		err    error
		reason storage.Reason
	}{
		{"bad id", n.SplitShard(ctx, "r", "shard-x", "5"), storage.ReasonBadShardID},
		{"missing stream", n.SplitShard(ctx, "nope", "shardId-000000000000", "5"), storage.ReasonStreamNotFound},
		{"missing shard", n.SplitShard(ctx, "r", "shardId-000000000009", "5"), storage.ReasonNoSuchShard},
		{"key outside", n.SplitShard(ctx, "r", "shardId-000000000000", "1"), storage.ReasonBadSplitKey},
		{"not adjacent", n.MergeShards(ctx, "r", "shardId-000000000001", "shardId-000000000000"), storage.ReasonNotAdjacent},
		{"scale up too far", errOf(n.UpdateShardCount(ctx, "r", 5)), storage.ReasonScaleUp},
	} {
		var se *storage.Error
		if !errors.As(tc.err, &se) || se.Reason != tc.reason {
			t.Errorf("%s: %v, want reason %v", tc.name, tc.err, tc.reason)
		}
	}
}

func errOf(_ storage.UpdateShardCountResult, err error) error { return err }

// TestReshardRestartConverges: a split accepted through one node, whose
// metadata leader stops at once (mid-way: sealing and finishing fall to
// the next leader); writes go on through the survivors. The stream turns
// ACTIVE, and the stopped node, restarted, converges: the same lineage,
// every acknowledged record read exactly once from every node.
func TestReshardRestartConverges(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "m", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("m", 1, 2, 3)
	lead := c.node(1).host.Status(metaGroup).Leader
	others := []uint64{lead%3 + 1, (lead+1)%3 + 1}
	w := c.startWriter("m", 0, others...)
	w.waitRounds(t, 4)
	if err := c.node(lead).SplitShard(ctx, "m", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := c.node(lead).stream("m")
	c.stop(lead)
	t.Logf("node %d (metadata leader) stopped with the stream %s", lead, rec.Status)
	c.waitActive("m", others...)
	w.waitRounds(t, 6)
	c.start(lead)
	w.waitRounds(t, 4)
	got, failed := w.halt()
	t.Logf("%d records acknowledged, %d failed", len(got), len(failed))
	eventually(t, "the restarted node converges", func() error {
		info, err := c.sameEverywhere("m", 1, 2, 3)
		if err == nil && len(info.Shards) != 3 {
			err = fmt.Errorf("%d shards", len(info.Shards))
		}
		if err != nil {
			return err
		}
		read, err := c.readLineage(lead, "m")
		if err == nil {
			err = checkRead(got, failed, read)
		}
		return err
	})
	for _, id := range others {
		read, err := c.readLineage(id, "m")
		if err == nil {
			err = checkRead(got, failed, read)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeleteWhileResharding: a stream deleted while UPDATING goes with its
// pending children's placement, and a new stream of the name starts afresh.
func TestDeleteWhileResharding(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "d", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("d", 1, 2, 3)
	if err := c.node(2).SplitShard(ctx, "d", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Fatal(err)
	}
	if err := c.node(2).linearize(ctx, metaGroup); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := c.node(2).stream("d")
	groups := map[uint64]bool{}
	for _, sh := range allShards(rec) {
		groups[sh.Group] = true
	}
	if len(groups) != 3 {
		t.Fatalf("groups after the split was accepted: %v (%+v)", groups, rec)
	}
	if err := c.node(3).DeleteStreamWith(ctx, "d", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no placement of the deleted stream's groups", func() error {
		pl, _ := c.node(1).placements()
		for g := range groups {
			if _, ok := pl[g]; ok {
				return fmt.Errorf("group %d still placed", g)
			}
		}
		return nil
	})
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "d", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("d", 1, 2, 3)
	info, err := c.sameEverywhere("d", 1, 2, 3)
	if err != nil || len(info.Shards) != 1 || !info.Shards[0].Open() {
		t.Fatalf("the new stream: %+v, %v", info, err)
	}
}

// TestSubscribeToSplitParent: a subscription to a shard that is then split
// delivers the shard's records, then a last event with the ChildShards and
// no continuation, and ends.
func TestSubscribeToSplitParent(t *testing.T) {
	c := newTestCluster(t, 3)
	if err := c.node(1).CreateStream(context.Background(), storage.CreateStreamInput{Name: "e", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("e", 1, 2, 3)
	subscribeToSplitParent(t, c, 3, false)
}

// TestSubscribeForwardedToSplitParent: the same through the node of four
// that holds no replica of the shard (a forwarded subscription).
func TestSubscribeForwardedToSplitParent(t *testing.T) {
	c := fourNodes(t, "e")
	outside, _ := c.outsideOf(t, "e")
	subscribeToSplitParent(t, c, outside, true)
}

func subscribeToSplitParent(t *testing.T, c *testCluster, at uint64, forwarded bool) {
	ctx := context.Background()
	info, err := c.node(1).RegisterConsumer(ctx, "e", "efo", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, gone, err := c.node(at).ActiveConsumer(ctx, "e", "efo", info.Created)
	if err != nil {
		t.Fatal(err)
	}
	open := func(typ storage.IteratorType, seq string) storage.EventSource {
		var sub storage.EventSource
		eventually(t, fmt.Sprintf("subscribe at node %d", at), func() (err error) {
			sub, err = c.node(at).Subscribe(ctx, storage.SubscribeInput{Stream: "e", ShardID: "shardId-000000000000",
				Type: typ, StartSeq: seq, Consumer: "efo"}, gone)
			return err
		})
		if _, ok := sub.(*remoteSubscription); ok != forwarded {
			t.Fatalf("node %d subscribed with a %T (forwarded: want %v)", at, sub, forwarded)
		}
		return sub
	}
	sub := open(storage.TrimHorizon, "")
	defer func() { sub.Close() }()
	got := acked{}
	for round := range 3 {
		if failed, err := c.put(1, "e", round, 10, got); err != nil || failed > 0 {
			t.Fatalf("put: %d failed, %v", failed, err)
		}
	}
	if err := c.node(2).SplitShard(ctx, "e", "shardId-000000000000", hashkey.Split(2)[1].Start.String()); err != nil {
		t.Fatal(err)
	}
	read := acked{}
	cont := ""
	for resubscribed := 0; ; {
		ev, err := sub.Next(ctx, 1<<20, 100*time.Millisecond)
		if (errors.Is(err, errNotCurrent) || errors.Is(err, errLinkBroken)) && resubscribed < 20 {
			// a leader change ends a subscription (subscribe.go); the
			// client resubscribes after the last continuation
			resubscribed++
			sub.Close()
			if cont == "" {
				sub = open(storage.TrimHorizon, "")
			} else {
				sub = open(storage.AfterSequenceNumber, cont)
			}
			continue
		}
		if err != nil {
			t.Fatalf("after %d records: %v", len(read), err)
		}
		cont = ev.ContinuationSequenceNumber
		for _, r := range ev.Records {
			read[r.SequenceNumber] = r.PartitionKey + "=" + string(r.Data)
		}
		if ev.End() {
			var kids []string
			for _, k := range ev.ChildShards {
				kids = append(kids, k.ShardID)
			}
			if !slices.Equal(kids, []string{"shardId-000000000001", "shardId-000000000002"}) {
				t.Fatalf("last event's children %v", kids)
			}
			break
		}
	}
	if err := sameRecords(got, read); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx, 1<<20, 100*time.Millisecond); err == nil {
		t.Fatal("Next after the last event did not end")
	}
	// A child's continuation number with nothing delivered yet carries the
	// child's creation second: resubscribing after it is accepted.
	child := storage.SubscribeInput{Stream: "e", ShardID: "shardId-000000000001", Type: storage.Latest, Consumer: "efo"}
	var csub storage.EventSource
	eventually(t, "subscribe to a child", func() (err error) {
		csub, err = c.node(at).Subscribe(ctx, child, gone)
		return err
	})
	ev, err := csub.Next(ctx, 1<<20, time.Millisecond)
	csub.Close()
	if err != nil {
		t.Fatal(err)
	}
	child.Type, child.StartSeq = storage.AfterSequenceNumber, ev.ContinuationSequenceNumber
	eventually(t, "resubscribe to the child after its continuation number", func() (err error) {
		csub, err = c.node(at).Subscribe(ctx, child, gone)
		if err == nil {
			csub.Close()
		}
		var se *storage.Error
		if errors.As(err, &se) && errors.Is(se.Kind, storage.ErrInvalidArgument) {
			t.Fatalf("the child's continuation number %s is refused: %v", child.StartSeq, err)
		}
		return err
	})
}
