package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

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

// issue is a certificate of the PKI for the given IPs and usages, and the
// verified chains a TLS handshake would give for it.
func (p *testPKI) issue(usages []x509.ExtKeyUsage, ips ...string) *tls.ConnectionState {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "joiner"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	// As the listener verifies a client (RequireAndVerifyClientCert).
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: p.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		p.t.Fatal(err)
	}
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: chains}
}

// TestTokenlessJoinNeedsAFullPeerCertificate (review 8 #4): a join without
// the cluster token, which answers with the cluster secret, is refused
// (403, no secret) unless the joiner's certificate is for server and
// client auth and names the hosts of both addresses it registers.
func TestTokenlessJoinNeedsAFullPeerCertificate(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	req := `{"node":4,"api":"https://127.0.0.1:1","peer":"127.0.0.2:2"}`
	for _, tc := range []struct {
		name  string
		state *tls.ConnectionState
		want  string // in the refusal
	}{
		{"client auth only (an operator's certificate)", pki.issue([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "127.0.0.1", "127.0.0.2"), "server and client auth"},
		{"not naming the Raft host", pki.issue(both, "127.0.0.1"), "127.0.0.2"},
		{"not naming the internal listener's host", pki.issue(both, "127.0.0.2"), "127.0.0.1"},
		{"no certificate", &tls.ConnectionState{}, "peer CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{cfg: Config{PeerTLS: pki.peerTLS("node1")}}
			n.keys.Store(&secretKeys{forward: ForwardAuth("topsecret"), secret: "topsecret"})
			r := httptest.NewRequest(http.MethodPost, "/_cluster/v1/join", strings.NewReader(req))
			r.TLS = tc.state
			w := httptest.NewRecorder()
			n.serveJoinTLS(w, r)
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), tc.want) || strings.Contains(w.Body.String(), "topsecret") {
				t.Fatalf("answered %d %q; want 403 naming %q", w.Code, w.Body.String(), tc.want)
			}
		})
	}
	var jr joinRequest
	if err := json.Unmarshal([]byte(req), &jr); err != nil {
		t.Fatal(err)
	}
	if err := checkJoinCert(pki.issue(both, "127.0.0.1", "127.0.0.2"), jr); err != nil {
		t.Fatalf("a full peer certificate for both hosts: %v", err)
	}
}

// TestTokenlessJoinKeepsAddresses (review 8 #4): a tokenless join may
// register a new node ID and confirm a registration, but not change a
// registered node's addresses (a token holder's join still may).
func TestTokenlessJoinKeepsAddresses(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	first := joinRequest{Node: 9, API: "127.0.0.1:1", Peer: "127.0.0.1:2"}
	moved := joinRequest{Node: 9, API: "127.0.0.1:3", Peer: "127.0.0.1:4"}
	for _, tc := range []struct {
		name      string
		req       joinRequest
		keepAddrs bool
		refused   bool
	}{
		{"a new node, tokenless", first, true, false},
		{"the same addresses again, tokenless", first, true, false},
		{"other addresses, tokenless", moved, true, true},
		{"other addresses with the token", moved, false, false},
	} {
		var err error
		eventually(t, tc.name, func() error {
			_, err = c.node(1).admit(ctx, tc.req, tc.keepAddrs)
			var refused *refusedError
			if err != nil && !errors.As(err, &refused) {
				return err // no leader yet: retry
			}
			return nil
		})
		if (err != nil) != tc.refused {
			t.Fatalf("%s: %v, want refused %v", tc.name, err, tc.refused)
		}
	}
	var rec nodeRec
	if _, ok := c.node(1).getJSON(nodeKey(9), &rec); !ok || rec.API != moved.API || rec.Peer != moved.Peer {
		t.Fatalf("node 9 registered as %+v", rec)
	}
}

// TestInternalHandshakeSlots (review 8 #5): connections that never finish
// a TLS handshake (anyone can open them) hold at most the internal
// listener's handshake slots; past them a peer's connection waits, and is
// served once a slot frees.
func TestInternalHandshakeSlots(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	ln := listen(t, "127.0.0.1:0")
	n := &Node{cfg: Config{PeerTLS: pki.peerTLS("node1"), InternalListener: ln, Advertise: httpsScheme + ln.Addr().String(),
		Logger: hclog.NewNullLogger(), internalHandshakes: 2}}
	if err := n.startInternal(); err != nil {
		t.Fatal(err)
	}
	defer n.wg.Wait()
	defer n.internal.Close()
	var stalled []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stalled = append(stalled, c)
	}
	cfg := pki.peerTLS("node2")().Clone()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer client.CloseIdleConnections()
	served := make(chan error, 1)
	go func() {
		resp, err := client.Get(n.cfg.Advertise + pathPrefix + "status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden { // no forward key: any answer shows it was served
				err = fmt.Errorf("answered %s", resp.Status)
			}
		}
		served <- err
	}()
	select {
	case err := <-served:
		t.Fatalf("a connection was served while the stalled handshakes held every slot (%v)", err)
	case <-time.After(300 * time.Millisecond): // can only pass spuriously, never fail
	}
	stalled[0].Close()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // only bounds a hung test
		t.Fatal("not served after a slot freed")
	}
}

// TestHandshakeSlotFreedOnce: a connection's slot is freed when it starts
// a request (or closes), once, and not while it is new.
func TestHandshakeSlotFreedOnce(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	h := newHandshakeSlots(ln, 2)
	defer h.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := h.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	for _, step := range []struct {
		state http.ConnState
		held  int
	}{{http.StateNew, 1}, {http.StateActive, 0}, {http.StateIdle, 0}, {http.StateActive, 0}, {http.StateClosed, 0}} {
		h.connState(got, step.state)
		if len(h.slots) != step.held {
			t.Fatalf("after %v: %d slots held, want %d", step.state, len(h.slots), step.held)
		}
	}
}
