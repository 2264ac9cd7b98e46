package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/storage"
)

// intermediates lists the shards of stream, as node id's metadata holds
// them, that a reshard created and closed within its plan (no group).
func intermediates(t *testing.T, c *testCluster, id uint64, stream string) []string {
	t.Helper()
	rec, _, ok := c.node(id).stream(stream)
	if !ok {
		t.Fatalf("no stream %s on node %d", stream, id)
	}
	var out []string
	for _, sh := range rec.Shards {
		if sh.Group == 0 && isClosed(sh) {
			out = append(out, sh.ID)
		}
	}
	return out
}

// channelAcrossReshard puts records into a stream a channel reads, reshards
// it with reshard (which must leave intermediate shards), puts more, and
// checks every acknowledged record is delivered exactly once (review 8 #1:
// the deliverer's subscription to an intermediate shard failed for ever,
// and with it every Poll).
func channelAcrossReshard(t *testing.T, mode storage.StreamMode, shards int, reshard func(n *Node) error) {
	ctx := context.Background()
	dir := t.TempDir()
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.tune = func(cfg *Config) {
			cfg.ChannelAnyMode = true
			cfg.Channels = channel.Options{Dest: channel.Dir(dir), FlushEvery: 30 * time.Millisecond, Poll: 10 * time.Millisecond}
		}
	})
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: shards, Mode: mode}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	in := channelInput("ch", "s")
	in.Config.RecordFormat = "BYTE_ARRAY"
	info, err := c.node(1).CreateChannel(ctx, in)
	if err != nil || info.Status != storage.ChannelActive {
		t.Fatalf("create: %+v, %v", info, err)
	}
	acked := map[string]string{}
	putRound(t, c, 1, "s", 0, acked)
	putRound(t, c, 2, "s", 1, acked)
	if err := reshard(c.node(2)); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if len(intermediates(t, c, 1, "s")) == 0 {
		t.Fatal("the reshard left no intermediate shard: the test tests nothing")
	}
	for round := 2; round < 4; round++ {
		putRound(t, c, uint64(round%3+1), "s", round, acked)
	}
	eventually(t, "every record delivered", func() error {
		return checkChannelLines(deliveredLines(t, []string{dir}, "b", info), acked, false)
	})
	if err := checkChannelLines(deliveredLines(t, []string{dir}, "b", info), acked, true); err != nil {
		t.Fatal(err)
	}
}

// TestChannelAcrossUniformReshard: the reviewer's scenario, a PROVISIONED
// stream (--channel-any-mode) of 2 shards, UpdateShardCount 2 → 3.
func TestChannelAcrossUniformReshard(t *testing.T) {
	channelAcrossReshard(t, storage.ModeProvisioned, 2, func(n *Node) error {
		_, err := n.UpdateShardCount(context.Background(), "s", 3)
		return err
	})
}

// TestChannelAcrossWarmThroughput: an ON_DEMAND stream pre-scaled by
// UpdateStreamWarmThroughput, whose plan is the same uniform one.
func TestChannelAcrossWarmThroughput(t *testing.T) {
	channelAcrossReshard(t, storage.ModeOnDemand, storage.OnDemandShards, func(n *Node) error {
		if _, err := n.UpdateAccountSettings(context.Background(), true); err != nil {
			return err
		}
		_, err := n.UpdateStreamWarmThroughput(context.Background(), "s", storage.OnDemandShards+2)
		return err
	})
}

// TestSubscribeToIntermediateShard: SubscribeToShard on a shard a reshard
// created and closed at once, at every node, from each starting position
// that needs no sequence number: the first event is its end (no continuation, its ChildShards, as
// DescribeStream lists them) and the next Next ends the subscription.
func TestSubscribeToIntermediateShard(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 3)
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).UpdateShardCount(ctx, "s", 3); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	mids := intermediates(t, c, 1, "s")
	if len(mids) == 0 {
		t.Fatal("UpdateShardCount 2 → 3 left no intermediate shard")
	}
	desc, err := c.node(1).DescribeStream(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range mids {
		want := childrenIn(desc, id)
		if len(want) == 0 {
			t.Fatalf("intermediate shard %s has no children in %+v", id, desc.Shards)
		}
		for _, typ := range []storage.IteratorType{storage.TrimHorizon, storage.Latest, storage.AtTimestamp} {
			for node := uint64(1); node <= 3; node++ {
				t.Run(fmt.Sprintf("%s/%s/node%d", id, typ, node), func(t *testing.T) {
					_, gone, err := c.node(node).ActiveConsumer(ctx, "s", "efo", consumer.Created)
					if err != nil {
						t.Fatal(err)
					}
					sub, err := c.node(node).Subscribe(ctx, storage.SubscribeInput{Stream: "s", ShardID: id, Type: typ,
						Timestamp: time.Now(), Consumer: "efo"}, gone)
					if err != nil {
						t.Fatal(err)
					}
					defer sub.Close()
					ev, err := sub.Next(ctx, 1<<20, time.Second)
					if err != nil {
						t.Fatal(err)
					}
					var kids []string
					for _, k := range ev.ChildShards {
						kids = append(kids, k.ShardID)
					}
					if !ev.End() || len(ev.Records) > 0 || !slices.Equal(kids, want) {
						t.Fatalf("first event %+v; want the end, children %v", ev, want)
					}
					if _, err := sub.Next(ctx, 1<<20, time.Second); !errors.Is(err, errSubscriptionEnded) {
						t.Fatalf("Next after the end: %v", err)
					}
				})
			}
		}
	}
}

// TestAdminRefusesClearWithPeerTLS (review 8 #3): with peer TLS, the admin
// client sends nothing to an endpoint that is not https://: the forward
// key would cross the network in clear.
func TestAdminRefusesClearWithPeerTLS(t *testing.T) {
	var hits atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write([]byte("[]"))
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	secure := httptest.NewTLSServer(handler)
	defer secure.Close()
	for _, tc := range []struct {
		name string
		a    Admin
		sent bool
	}{
		{"http:// URL", Admin{Endpoint: plain.URL, Token: "t", PeerTLS: true}, false},
		{"host:port", Admin{Endpoint: strings.TrimPrefix(plain.URL, "http://"), Token: "t", PeerTLS: true}, false},
		{"https:// URL", Admin{Endpoint: secure.URL, Token: "t", PeerTLS: true, Client: secure.Client()}, true},
		{"no peer TLS", Admin{Endpoint: plain.URL, Token: "t"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			_, err := tc.a.Nodes(context.Background())
			if sent := hits.Load() > before; sent != tc.sent {
				t.Fatalf("sent = %v, want %v (error %v)", sent, tc.sent, err)
			}
			if !tc.sent && (err == nil || !strings.Contains(err.Error(), "https://host:port")) {
				t.Fatalf("error %v does not name the https internal endpoint to use", err)
			}
			if tc.sent && err != nil {
				t.Fatal(err)
			}
		})
	}
}
