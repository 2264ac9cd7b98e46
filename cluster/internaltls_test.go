package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/storage"
)

// testPKI is a CA and its certificates for 127.0.0.1, made here.
type testPKI struct {
	t    *testing.T
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{t: t, ca: ca, key: key, pool: pool}
}

// cert issues a certificate for 127.0.0.1, for server and client auth.
func (p *testPKI) cert(name string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// peerTLS is a node's Config.PeerTLS, as serve builds it (loadPeerTLS).
func (p *testPKI) peerTLS(name string) func() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.cert(name)}, RootCAs: p.pool, ClientCAs: p.pool,
		ClientAuth: tls.RequireAndVerifyClientCert}
	return func() *tls.Config { return cfg }
}

// reserveInternal reserves a node's internal listener when the cluster
// runs with peer TLS.
func (c *testCluster) reserveInternal(tn *testNode) {
	if c.pki != nil {
		tn.intLn = listen(c.t, "127.0.0.1:0")
		tn.intAddr = tn.intLn.Addr().String()
	}
}

// withPeerTLS sets a node's peer TLS and internal listener.
func (c *testCluster) withPeerTLS(tn *testNode, cfg *Config) {
	if c.pki == nil {
		return
	}
	if tn.intLn == nil {
		tn.intLn = listen(c.t, tn.intAddr)
	}
	cfg.PeerTLS, cfg.InternalListener, cfg.Advertise = c.pki.peerTLS(fmt.Sprintf("node%d", tn.id)), tn.intLn, httpsScheme+tn.intAddr
}

// TestInternalTLS: three seeds started with peer TLS and no token, and a
// fourth node that joins with no token, vouched for by its certificate.
// A stream's one shard is placed on three nodes; through the fourth, a put
// is forwarded to the leader, reads and a subscription to a replica, all
// on the internal listeners (the client API refuses the internal paths
// when peer TLS is on, so nothing else could have carried them). The
// joiner holds the cluster's secret (same iterator key) and, restarted,
// finds it again in its copy of the metadata. Then the internal listener
// refuses what is not a node of the cluster.
func TestInternalTLS(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	c := newTestClusterWith(t, 3, func(c *testCluster) { c.pki = pki })
	c.addNode(4, 2)
	eventually(t, "node 4 is live everywhere", func() error {
		for id := uint64(1); id <= 4; id++ {
			if got := c.node(id).liveNodes(); len(got) != 4 {
				return fmt.Errorf("node %d sees %v", id, got)
			}
		}
		return nil
	})
	if !bytes.Equal(c.node(4).IteratorKey(), c.node(1).IteratorKey()) {
		t.Fatal("the joiner's iterator key is not the cluster's: it did not learn the generated secret")
	}
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3, 4)
	outside, _ := c.outsideOf(t, "s")
	group := c.node(1).Status().Shards["s/shardId-000000000000"]
	if c.node(outside).servesReads(group) {
		t.Fatalf("node %d serves reads of the shard: nothing would be forwarded", outside)
	}
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	got := acked{}
	for round := range 3 {
		if failed, err := c.put(outside, "s", round, 20, got); err != nil || failed > 0 {
			t.Fatalf("put through node %d, round %d: %d failed, %v", outside, round, failed, err)
		}
	}
	read, err := c.readAll(outside, "s")
	if err == nil {
		err = sameRecords(got, read)
	}
	if err != nil {
		t.Fatalf("read through node %d: %v", outside, err)
	}
	c.waitConsumerActive(outside)
	if err := c.subscribedRecords(outside, got); err != nil {
		t.Fatalf("subscription through node %d: %v", outside, err)
	}

	c.stop(4)
	c.start(4)
	if c.node(4) == nil || !bytes.Equal(c.node(4).IteratorKey(), c.node(1).IteratorKey()) {
		t.Fatal("the restarted joiner does not hold the cluster's secret")
	}

	t.Run("refusals", func(t *testing.T) { c.checkRefusals(t, pki) })
}

func (c *testCluster) waitConsumerActive(id uint64) {
	eventually(c.t, "the consumer ACTIVE", func() error {
		info, err := c.node(id).DescribeConsumer(context.Background(), "s", "efo")
		if err == nil && info.Status != storage.ConsumerActive {
			err = fmt.Errorf("status %s", info.Status)
		}
		return err
	})
}

// checkRefusals sends GET status to node 1's internal listener and client
// API as clients of every kind.
func (c *testCluster) checkRefusals(t *testing.T, pki *testPKI) {
	key := ForwardAuth(c.node(1).keys.Load().secret)
	internal := "https://" + c.nodes[1].intAddr + pathPrefix + "status"
	outsider := newTestPKI(t, "another CA")
	tlsClient := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: certs}}}
	}
	plain := &http.Client{}
	for _, tc := range []struct {
		name     string
		client   *http.Client
		url, key string
		status   int    // 0: the connection is refused
		body     string // a part of the answer
	}{
		{"no client certificate", tlsClient(), internal, key, 0, ""},
		{"certificate of another CA", tlsClient(outsider.cert("intruder")), internal, key, 0, ""},
		{"peer certificate, no key", tlsClient(pki.cert("tool")), internal, "", http.StatusForbidden, "not a node of this cluster"},
		{"peer certificate, wrong key", tlsClient(pki.cert("tool")), internal, ForwardAuth("other"), http.StatusForbidden, "not a node of this cluster"},
		{"peer certificate and key", tlsClient(pki.cert("tool")), internal, key, http.StatusOK, `"groups"`},
		{"plain HTTP to the internal listener", plain, "http://" + c.nodes[1].intAddr + pathPrefix + "status", key, http.StatusBadRequest, "HTTP request to an HTTPS server"},
		{"the client API, with the key", plain, "http://" + c.nodes[1].apiAddr + pathPrefix + "status", key, http.StatusForbidden, "only over mutual TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			if tc.key != "" {
				req.Header.Set(AuthHeader, tc.key)
			}
			resp, err := tc.client.Do(req)
			if tc.status == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %s, want the TLS handshake refused", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
				t.Fatalf("answered %s %q, want %d with %q", resp.Status, b, tc.status, tc.body)
			}
		})
	}
}

// TestMixedTLSRefused: a configuration whose addresses do not match its
// peer TLS setting is refused at Open, and a node never sends a request to
// a peer address of the other kind (nothing is sent: errUnreachable).
func TestMixedTLSRefused(t *testing.T) {
	peerTLS := newTestPKI(t, "ca").peerTLS("n")
	base := Config{NodeID: 1, Peers: map[uint64]string{1: "127.0.0.1:1"}}
	for _, tc := range []struct {
		name    string
		tls     bool
		adv     string
		join    string
		secret  string
		wantErr string // "" : accepted
	}{
		{"plain", false, "127.0.0.1:2", "", "", ""},
		{"TLS", true, "https://127.0.0.1:2", "", "", ""},
		{"TLS, plain address", true, "127.0.0.1:2", "", "", "must be https://"},
		{"no TLS, https address", false, "https://127.0.0.1:2", "", "", "no peer TLS"},
		{"TLS, join a plain address", true, "https://127.0.0.1:2", "127.0.0.1:3", "t", "join address"},
		{"no TLS, join an https address", false, "127.0.0.1:2", "https://127.0.0.1:3", "t", "join address"},
		{"no TLS, join without the token", false, "127.0.0.1:2", "127.0.0.1:3", "", "--cluster-token"},
		{"TLS, join without the token", true, "https://127.0.0.1:2", "https://127.0.0.1:3", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.Advertise, cfg.Join, cfg.Secret = tc.adv, tc.join, tc.secret
			if tc.tls {
				cfg.PeerTLS = peerTLS
			}
			err := cfg.checkTLS()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("checkTLS: %v, want %q", err, tc.wantErr)
			}
		})
	}
	for _, tc := range []struct {
		name string
		tls  bool
		addr string
	}{{"plain node to a TLS node", false, "https://127.0.0.1:9"}, {"TLS node to a plain node", true, "127.0.0.1:9"}} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{client: &http.Client{}, cfg: Config{Logger: hclog.NewNullLogger()}}
			n.keys.Store(&secretKeys{forward: ForwardAuth("s")})
			if tc.tls {
				n.cfg.PeerTLS = peerTLS
			}
			err := n.post(context.Background(), tc.addr, "status", nil, &struct{}{})
			if !errors.Is(err, errUnreachable) || !errors.Is(err, errMixedTLS) {
				t.Fatalf("post to %s: %v, want errUnreachable and errMixedTLS", tc.addr, err)
			}
		})
	}
}

// TestTokenlessJoinOfATokenCluster: a node of a cluster given a token
// refuses a join vouched for by a certificate alone (the joiner could not
// make the Raft port's token handshake), saying what to add.
func TestTokenlessJoinOfATokenCluster(t *testing.T) {
	n := &Node{cfg: Config{Secret: "t"}}
	w := httptest.NewRecorder()
	n.serveJoinTLS(w, httptest.NewRequest(http.MethodPost, "/_cluster/v1/join", strings.NewReader(`{"node":4,"api":"https://127.0.0.1:1","peer":"127.0.0.1:2"}`)))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "--cluster-token") {
		t.Fatalf("answered %d %q", w.Code, w.Body.String())
	}
}
