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
	"testing"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// TestNotStoredRefunds (review 6 #3): the proposal errors that give a
// write's charge back are exactly those that say it was not stored,
// wrapped or not: a leader's back-pressure and a replica gone included.
func TestNotStoredRefunds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{replica.ErrNotLeader, true},
		{replica.ErrDropped, true},
		{replica.ErrOverloaded, true},
		{fmt.Errorf("replica: %w 9", replica.ErrUnknownGroup), true},
		{errIndeterminate, false},
		{replica.ErrStopped, false},
		{errSealed, false},
		{nil, false},
	} {
		if got := notStored(tc.err); got != tc.want {
			t.Errorf("notStored(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestAdminUnavailableIsNotOverload (review 6 #3): a 503 from an admin
// request (join, remove-node: the metadata leader cannot be reached) is
// not taken for a leader's back-pressure but for a refusal before anything
// was done (errUnreachable); a 503 from writeFailure is back-pressure.
func TestAdminUnavailableIsNotOverload(t *testing.T) {
	n := &Node{client: http.DefaultClient}
	n.keys.Store(&secretKeys{})
	for _, tc := range []struct {
		name     string
		answer   func(http.ResponseWriter)
		overload bool
	}{
		{"admin", func(w http.ResponseWriter) { writeAdmin(w, nil, errNoLeader) }, false},
		{"overloaded leader", func(w http.ResponseWriter) { n.writeFailure(w, 1, replica.ErrOverloaded) }, true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tc.answer(w) }))
		err := n.post(context.Background(), strings.TrimPrefix(srv.URL, "http://"), "join", nil, &struct{}{})
		srv.Close()
		if err == nil || errors.Is(err, replica.ErrOverloaded) != tc.overload || errors.Is(err, errUnreachable) == tc.overload {
			t.Errorf("%s: %v, want overload %v", tc.name, err, tc.overload)
		}
	}
}

// TestForwardedSubscriptionFrames (review 6 #4, #5), against a serving node
// played by the test: a first frame saying the replica is unavailable or
// not current makes the opening try the next replica (errUnreachable),
// while a stream gone is the client's answer; an event frame without a
// continuation number is the end only if it names child shards, else a
// broken link.
func TestForwardedSubscriptionFrames(t *testing.T) {
	c := newTestClusterSecret(t, 1, "review-6-frames-secret")
	n := c.node(1)
	ctx := context.Background()
	at := subscribeAt{Stream: "s", Index: 0, Group: 7, Consumer: "efo"}
	unavailable := toFrameError(n.unavailable("s", "shardId-000000000000", fmt.Errorf("replica: %w 7", replica.ErrUnknownGroup)))
	notCurrent := toFrameError(fmt.Errorf("%w (test)", errNotCurrent))
	shardGone := toFrameError(n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: "s", Shard: "shardId-000000000000"}))
	end := storage.SubscribeEvent{ChildShards: []storage.ChildShard{{ShardID: "shardId-000000000001"}}}
	bare := storage.SubscribeEvent{Records: []storage.Record{{SequenceNumber: "1", PartitionKey: "k", Data: []byte("d")}}}
	for _, tc := range []struct {
		name   string
		frames []subFrame
		open   func(error) bool // the opening's error
		ended  func(storage.SubscribeEvent, error) bool
	}{
		{"first frame unavailable", []subFrame{{Err: unavailable}}, func(err error) bool { return errors.Is(err, errUnreachable) }, nil},
		{"first frame not current", []subFrame{{Err: notCurrent}}, func(err error) bool { return errors.Is(err, errUnreachable) }, nil},
		{"first frame stream gone", []subFrame{{Err: shardGone}}, func(err error) bool {
			return !errors.Is(err, errUnreachable) && errors.Is(err, storage.ErrShardNotFound)
		}, nil},
		{"end event", []subFrame{{Open: true}, {Event: &end}}, nil, func(ev storage.SubscribeEvent, err error) bool {
			return err == nil && ev.End() && len(ev.ChildShards) == 1
		}},
		{"no continuation, no children", []subFrame{{Open: true}, {Event: &bare}}, nil, func(_ storage.SubscribeEvent, err error) bool {
			return errors.Is(err, errLinkBroken)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				enc := json.NewEncoder(w)
				for _, f := range tc.frames {
					_ = enc.Encode(f)
					w.(http.Flusher).Flush()
				}
			}))
			defer srv.Close()
			sub, err := n.openRemote(ctx, strings.TrimPrefix(srv.URL, "http://"), at, nil)
			if tc.open != nil {
				if err == nil {
					sub.Close()
				}
				if !tc.open(err) {
					t.Fatalf("opening: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if ev, err := sub.Next(ctx, 1<<20, time.Hour); !tc.ended(ev, err) {
				t.Fatalf("Next: %+v, %v", ev, err)
			}
		})
	}
}

// TestSubscribeLocalRawError (review 6 #4): a node without a replica of
// the shard's group answers its local opening with replica.ErrUnknownGroup
// itself (which onReplica takes as "try another replica"), and Subscribe
// there still opens, on a replica elsewhere.
func TestSubscribeLocalRawError(t *testing.T) {
	c := fourNodes(t, "s")
	outside, _ := c.outsideOf(t, "s")
	n := c.node(outside)
	ctx := context.Background()
	rec, _, _ := n.stream("s")
	group := n.Status().Shards["s/shardId-000000000000"]
	at := subscribeAt{Stream: "s", Created: rec.CreatedNs, Epoch: shardEpoch(rec, rec.Shards[0]), Group: group}
	if _, err := n.subscribeLocal(ctx, at, nil); !errors.Is(err, replica.ErrUnknownGroup) {
		t.Fatalf("subscribeLocal without a replica: %v, want replica.ErrUnknownGroup", err)
	}
	var src storage.EventSource
	err := n.onReplica(ctx, group,
		func(ctx context.Context) (err error) { src, err = n.subscribeLocal(ctx, at, nil); return err },
		func(ctx context.Context, addr string) (err error) {
			src, err = n.openRemote(ctx, addr, at, nil)
			return err
		})
	if err != nil {
		t.Fatalf("onReplica after a replica gone: %v", err)
	}
	src.Close()
}

// TestRepairNeedsHealthyQuorum (review 6 #2): a damaged replica's repair
// is started only when a quorum of its group's replicas is live and
// undamaged; repairs that cannot go on (started before the group lost its
// quorum) hold none of the maxMoves slots, so four such groups do not
// freeze placement work; `cluster nodes` shows why they wait.
func TestRepairNeedsHealthyQuorum(t *testing.T) {
	snap := map[string]replica.MetaValue{}
	cur := replica.Placement{}
	for g := uint64(10); g <= 16; g++ {
		snap[replica.PlacementKey(g)] = replica.MetaValue{Value: mustJSON([]uint64{1, 2, 3})}
		cur[g] = []uint64{1, 2, 3}
	}
	for _, k := range []string{damagedKey(10, 2), damagedKey(10, 3), damagedKey(11, 2), damagedKey(11, 3),
		damagedKey(12, 2), damagedKey(12, 3), damagedKey(13, 2), damagedKey(13, 3), // no quorum
		damagedKey(14, 2), // two of three healthy
		damagedKey(15, 1), // placed on 1, 2 and 5, which is not live
	} {
		snap[k] = replica.MetaValue{Value: mustJSON(damageRec{Reason: "corrupt"})}
	}
	snap[replica.PlacementKey(15)] = replica.MetaValue{Value: mustJSON([]uint64{1, 2, 5})}
	cur[15] = []uint64{1, 2, 5}
	live := []uint64{1, 2, 3, 4}

	moves := map[uint64]moveRec{}
	inflight := 0
	got := plannedRepairs(snap, cur, moves, live, &inflight)
	if !slices.Equal(got, []uint64{14}) || inflight != 1 || moves[14] != (moveRec{From: 2, To: 4}) {
		t.Fatalf("planned %v (inflight %d, moves %v), want only group 14's, to node 4", got, inflight, moves)
	}

	// Repairs started while their groups were healthy, which then lost
	// their quorum, count toward no budget; a plain move does.
	moves = map[uint64]moveRec{10: {From: 2, To: 2}, 11: {From: 2, To: 2}, 12: {From: 3, To: 3}, 13: {From: 2, To: 2},
		16: {From: 1, To: 4}}
	if n := movesInFlight(snap, cur, moves, live); n != 1 {
		t.Fatalf("moves in flight %d, want 1 (the plain move)", n)
	}

	d := damagedOn(snap, 2, live)
	stuck := map[uint64]string{}
	for _, x := range d {
		stuck[x.Group] = x.Stuck
	}
	if stuck[10] == "" || stuck[14] != "" {
		t.Fatalf("damagedOn(node 2): %+v, want group 10 stuck and 14 not", d)
	}
}
