package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
// not taken for a leader's back-pressure; a 503 from writeFailure is.
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
		if err == nil || errors.Is(err, replica.ErrOverloaded) != tc.overload {
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
