package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// TestReplicaGoneOrOverloaded (issue 17, items a and b): a request that
// races its replica's removal (replica.ErrUnknownGroup, here from a group
// this node never held, the same error) goes to the group's replicas
// elsewhere or answers 503, never a 500; a leader that drops a proposal
// for its uncommitted size (replica.ErrOverloaded) is reported as
// back-pressure (503 between nodes, ProvisionedThroughputExceeded to the
// client), not as "not the leader".
func TestReplicaGoneOrOverloaded(t *testing.T) {
	c := newTestClusterSecret(t, 3, "review-17-secret")
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	var leader uint64
	eventually(t, "the shard has a leader", func() error {
		if leader = c.node(1).host.Leader(group); leader == 0 {
			return errors.New("none")
		}
		return nil
	})
	n := c.node(leader)
	_, gone := n.host.ReadIndex(1 << 40) // what a removed replica answers
	if !errors.Is(gone, replica.ErrUnknownGroup) {
		t.Fatalf("an unknown group's ReadIndex: %v", gone)
	}

	t.Run("a write whose local replica vanished goes elsewhere", func(t *testing.T) {
		calls := 0
		err := n.onLeader(ctx, group,
			func(context.Context) error {
				if calls++; calls == 1 {
					return gone
				}
				return nil
			},
			func(context.Context, string) error { return nil })
		if err != nil {
			t.Fatalf("onLeader after a vanished replica: %v", err)
		}
	})
	t.Run("a read whose local replica vanished goes elsewhere", func(t *testing.T) {
		var remote string
		err := n.onReplica(ctx, group,
			func(context.Context) error { return gone },
			func(_ context.Context, addr string) error { remote = addr; return nil })
		if err != nil || remote == "" {
			t.Fatalf("onReplica after a vanished replica: %v, remote %q", err, remote)
		}
	})
	t.Run("a vanished replica left over is a 503", func(t *testing.T) {
		for _, err := range []error{gone, replica.ErrOverloaded} {
			if got := n.unavailable("s", "shardId-000000000000", err); !errors.Is(got, storage.ErrUnavailable) {
				t.Errorf("%v: %v, want ErrUnavailable", err, got)
			}
		}
	})
	t.Run("a shard's overloaded leader throttles", func(t *testing.T) {
		err := n.shardWriteError("s", "shardId-000000000000", replica.ErrOverloaded)
		var se *storage.Error
		if !errors.As(err, &se) || !errors.Is(se.Kind, storage.ErrThrottled) || se.Reason != storage.ReasonThrottled || se.Shard != "shardId-000000000000" {
			t.Fatalf("overloaded: %#v", err)
		}
	})
	t.Run("between nodes", func(t *testing.T) {
		for _, tc := range []struct {
			err    error
			status int
		}{
			{gone, http.StatusConflict},
			{replica.ErrOverloaded, http.StatusServiceUnavailable},
			{replica.ErrNotLeader, http.StatusConflict},
			{errors.New("disk"), http.StatusInternalServerError},
		} {
			w := httptest.NewRecorder()
			n.writeFailure(w, group, tc.err)
			if w.Code != tc.status {
				t.Errorf("%v: %d, want %d", tc.err, w.Code, tc.status)
			}
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.writeFailure(w, group, replica.ErrOverloaded)
		}))
		defer srv.Close()
		err := n.post(ctx, strings.TrimPrefix(srv.URL, "http://"), "put?group=1", nil, &putReply{})
		if !errors.Is(err, replica.ErrOverloaded) {
			t.Fatalf("a forwarded put answered 503: %v", err)
		}
	})
}
