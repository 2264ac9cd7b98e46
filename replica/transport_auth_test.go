package replica

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testCA is a certificate authority made in the test: nothing is checked in.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test peer CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a node certificate for ip, usable as server and as client.
func (ca *testCA) issue(t *testing.T, ip string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.ParseIP(ip)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// peerTLS is a node's configuration: its certificate, trusting ca.
func peerTLS(ca *testCA, cert tls.Certificate) func() *tls.Config {
	return func() *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, ClientCAs: ca.pool}
	}
}

// startPair starts node 2 listening with b, then node 1 dialling it with a.
func startPair(t *testing.T, a, b TCPConfig) (dialler, listener *TCPTransport) {
	t.Helper()
	b.NodeID, b.Listen = 2, "127.0.0.1:0"
	listener, err := ListenTCP(b)
	if err != nil {
		t.Fatal(err)
	}
	a.NodeID, a.Listen, a.Peers = 1, "127.0.0.1:0", map[uint64]string{2: listener.Addr()}
	dialler, err = ListenTCP(a)
	if err != nil {
		listener.Close()
		t.Fatal(err)
	}
	return dialler, listener
}

// until polls cond; the deadline is a hang guard, not a timing assertion.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// TestTransportSecured: pairs of transports with TLS, a token, or both.
// A matching pair carries batches; in every other case the side named
// refuses, and no frame of the dialler ever reaches the listener's inbox
// (checked after both closed, so none can arrive later).
func TestTransportSecured(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	key, wrong := []byte("the cluster's key"), []byte("another cluster's key")
	good := func() func() *tls.Config { return peerTLS(ca, ca.issue(t, "127.0.0.1")) }
	for _, tc := range []struct {
		name      string
		dialler   TCPConfig
		listener  TCPConfig
		refusedBy string // "", "dialler" or "listener"
	}{
		{"TLS, same CA", TCPConfig{TLS: good()}, TCPConfig{TLS: good()}, ""},
		{"TLS, dialler's certificate from another CA", TCPConfig{TLS: peerTLS(ca, other.issue(t, "127.0.0.1"))}, TCPConfig{TLS: good()}, "listener"},
		{"TLS, listener's certificate from another CA", TCPConfig{TLS: good()}, TCPConfig{TLS: peerTLS(ca, other.issue(t, "127.0.0.1"))}, "dialler"},
		{"TLS, listener's certificate for another host", TCPConfig{TLS: good()}, TCPConfig{TLS: peerTLS(ca, ca.issue(t, "127.0.0.2"))}, "dialler"},
		{"TLS, dialler without a certificate", TCPConfig{TLS: func() *tls.Config { return &tls.Config{RootCAs: ca.pool} }}, TCPConfig{TLS: good()}, "listener"},
		{"plaintext dialler, TLS listener", TCPConfig{}, TCPConfig{TLS: good()}, "listener"},
		{"TLS dialler, plaintext listener", TCPConfig{TLS: good()}, TCPConfig{}, "listener"},
		{"TLS and the same token", TCPConfig{TLS: good(), AuthKey: key}, TCPConfig{TLS: good(), AuthKey: key}, ""},
		{"TLS and another token", TCPConfig{TLS: good(), AuthKey: wrong}, TCPConfig{TLS: good(), AuthKey: key}, "dialler"},
		{"same token", TCPConfig{AuthKey: key}, TCPConfig{AuthKey: key}, ""},
		{"another token", TCPConfig{AuthKey: wrong}, TCPConfig{AuthKey: key}, "dialler"},
		{"dialler without a token", TCPConfig{}, TCPConfig{AuthKey: key}, "listener"},
		{"listener without a token", TCPConfig{AuthKey: key}, TCPConfig{}, "listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := startPair(t, tc.dialler, tc.listener)
			a.Send(sampleBatch())
			var side *TCPTransport
			switch tc.refusedBy {
			case "":
				until(t, "a batch arrives", func() bool { return len(b.Inbox()) > 0 })
			case "dialler":
				side = a
			case "listener":
				side = b
			}
			if side != nil {
				until(t, "the "+tc.refusedBy+" refuses", func() bool { return side.Refused() > 0 })
			}
			a.Close()
			b.Close()
			switch got := len(b.Inbox()); {
			case tc.refusedBy == "" && got == 0:
				t.Fatal("no batch arrived")
			case tc.refusedBy != "" && got != 0:
				t.Fatalf("%d batches of a refused dialler reached the listener", got)
			case tc.refusedBy == "" && (a.Refused() != 0 || b.Refused() != 0):
				t.Fatalf("refusals %d, %d on a good pair", a.Refused(), b.Refused())
			}
			if tc.refusedBy == "" {
				if got := <-b.Inbox(); got.From != 1 || len(got.Msgs) != 2 || len(got.Beats) != 2 {
					t.Fatalf("received %+v", got)
				}
			}
		})
	}
}

// teeConn records what is written to a connection.
type teeConn struct {
	net.Conn
	sent bytes.Buffer
}

func (c *teeConn) Write(p []byte) (int, error) {
	c.sent.Write(p)
	return c.Conn.Write(p)
}

// TestTransportTokenAttacks: raw connections to a listener with a token.
// A real handshake (the dialler's own code) followed by a frame delivers
// it; then each attack, followed by frames, is refused, and after the
// listener closed its inbox holds the one honest batch only.
func TestTransportTokenAttacks(t *testing.T) {
	key := []byte("the cluster's key")
	b, err := ListenTCP(TCPConfig{NodeID: 2, Listen: "127.0.0.1:0", AuthKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	payload, err := EncodeBatch(sampleBatch())
	if err != nil {
		t.Fatal(err)
	}
	frame := appendFrame(nil, payload)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// The honest dialler, recorded.
	honest := &teeConn{Conn: dial(t)}
	honest.Write([]byte(streamMagic))
	if err := dialAuth(honest, key, 1, 2); err != nil {
		t.Fatal(err)
	}
	var accept [1]byte
	if _, err := io.ReadFull(honest, accept[:]); err != nil || accept[0] != acceptByte {
		t.Fatalf("the honest dialler was not accepted: %v", err)
	}
	honest.Write(frame)
	until(t, "the honest batch arrives", func() bool { return len(b.Inbox()) == 1 })
	recorded := bytes.Clone(honest.sent.Bytes())

	hello := func(to uint64) []byte {
		h := append([]byte(streamMagic), authMarker...)
		h = append(h, 1, 0, 0, 0, 0, 0, 0, 0)
		h = append(h, byte(to), 0, 0, 0, 0, 0, 0, 0)
		return append(h, make([]byte, nonceLen)...)
	}
	for _, tc := range []struct {
		name   string
		attack func(c net.Conn)
	}{
		{"replayed handshake and frame", func(c net.Conn) { c.Write(recorded) }},
		{"no handshake", func(c net.Conn) { c.Write(append([]byte(streamMagic), frame...)) }},
		{"another token, answering regardless", func(c net.Conn) {
			c.Write(hello(2))
			var reply [nonceLen + 32]byte
			io.ReadFull(c, reply[:])
			c.Write(authMAC([]byte("guess"), "dialler", make([]byte, nonceLen), reply[:nonceLen], 1, 2))
			c.Write(frame)
		}},
		{"the listener's own proof sent back", func(c net.Conn) {
			c.Write(hello(2))
			var reply [nonceLen + 32]byte
			io.ReadFull(c, reply[:])
			c.Write(reply[nonceLen:])
			c.Write(frame)
		}},
		{"meant for another node", func(c net.Conn) { c.Write(append(hello(3), frame...)) }},
		{"wrong magic", func(c net.Conn) { c.Write(append([]byte("shardlog-raft/1\n"), frame...)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.Refused()
			c := dial(t)
			tc.attack(c)
			until(t, "the listener refuses", func() bool { return b.Refused() > before })
			// The refused connection is closed unread.
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("the listener did not close the connection: %v", err)
			}
		})
	}
	b.Close()
	if n := len(b.Inbox()); n != 1 {
		t.Fatalf("the inbox holds %d batches; only the honest one may be there", n)
	}
}

// TestTransportTLSRefusesOldVersions: a TLS 1.2 client with a good
// certificate is refused: the peer port speaks TLS 1.3 only.
func TestTransportTLSRefusesOldVersions(t *testing.T) {
	ca := newTestCA(t)
	b, err := ListenTCP(TCPConfig{NodeID: 2, Listen: "127.0.0.1:0", TLS: peerTLS(ca, ca.issue(t, "127.0.0.1"))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := peerTLS(ca, ca.issue(t, "127.0.0.1"))()
	cfg.MaxVersion, cfg.ServerName = tls.VersionTLS12, "127.0.0.1"
	c, err := tls.Dial("tcp", b.Addr(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	until(t, "the listener refuses", func() bool { return b.Refused() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// And TLS 1.3 with the same certificate is accepted.
	cfg.MaxVersion = 0
	c13, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c13.Close()
	c13.Write([]byte(streamMagic))
	var accept [1]byte
	if _, err := io.ReadFull(c13, accept[:]); err != nil || accept[0] != acceptByte {
		t.Fatalf("TLS 1.3 was not accepted: %v", err)
	}
}

// syncBuffer is a log output a test reads while the transport writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// TestTransportRefusalLoggedOnce: refusals from one host are logged once,
// and again after a good connection from it.
func TestTransportRefusalLoggedOnce(t *testing.T) {
	key := []byte("the cluster's key")
	out := &syncBuffer{}
	b, err := ListenTCP(TCPConfig{NodeID: 2, Listen: "127.0.0.1:0", AuthKey: key,
		Logger: hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Warn})})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const line = "refused a Raft peer connection"
	attack := func() {
		before := b.Refused()
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(append([]byte(streamMagic), bytes.Repeat([]byte("not a handshake "), 8)...))
		until(t, "the listener refuses", func() bool { return b.Refused() > before })
	}
	for range 3 {
		attack()
	}
	if n := out.count(line); n != 1 {
		t.Fatalf("three refusals from one host logged %d times, want once:\n%s", n, out.b.String())
	}
	if !strings.Contains(out.b.String(), errNoHandshake.Error()) {
		t.Fatalf("the log does not say why:\n%s", out.b.String())
	}
	honest, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	honest.Write([]byte(streamMagic))
	if err := dialAuth(honest, key, 1, 2); err != nil {
		t.Fatal(err)
	}
	var accept [1]byte
	if _, err := io.ReadFull(honest, accept[:]); err != nil {
		t.Fatal(err)
	}
	attack()
	if n := out.count(line); n != 2 {
		t.Fatalf("a refusal after a good connection: logged %d times in all, want 2", n)
	}
}

// TestTransportSilentConnectionClosed: a connection that never completes
// its start is closed after HandshakeTimeout, secured or not, and counted.
func TestTransportSilentConnectionClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  TCPConfig
	}{
		{"plain", TCPConfig{}},
		{"token", TCPConfig{AuthKey: []byte("k")}},
		{"TLS", TCPConfig{TLS: func() func() *tls.Config { ca := newTestCA(t); return peerTLS(ca, ca.issue(t, "127.0.0.1")) }()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.NodeID, cfg.Listen, cfg.HandshakeTimeout = 2, "127.0.0.1:0", 20*time.Millisecond
			b, err := ListenTCP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			c, err := net.Dial("tcp", b.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(streamMagic[:3]))
			c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("the listener did not close the connection: %v", err)
			}
			until(t, "the refusal is counted", func() bool { return b.Refused() == 1 })
		})
	}
}

// TestTLSConfigNeedsCAs (review5): a side without the pool it verifies the
// other's certificate with is refused, rather than verifying against the
// system's roots: the listener needs ClientCAs, the dialler RootCAs.
func TestTLSConfigNeedsCAs(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "127.0.0.1")
	for _, tc := range []struct {
		name     string
		cfg      *tls.Config
		listener bool
		ok       bool
	}{
		{"listener with ClientCAs", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool}, true, true},
		{"listener without ClientCAs", &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}, true, false},
		{"dialler with RootCAs", &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}, false, true},
		{"dialler without RootCAs", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool}, false, false},
	} {
		tr := &TCPTransport{cfg: TCPConfig{TLS: func() *tls.Config { return tc.cfg }}}
		if _, err := tr.tlsConfig(tc.listener); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// pipeListener hands out the server ends of the pipes the test sends it.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestHandshakeSlots (review5): connections that never finish their
// handshake hold at most maxHandshakes slots: the accept loop takes no
// more until one ends, then takes the next. The wait for the third accept
// to be refused is a bound on a negative, not a timing assertion: a
// broken cap can only pass by luck, a working one never fails.
func TestHandshakeSlots(t *testing.T) {
	ln := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	tr, err := ListenTCP(TCPConfig{NodeID: 2, Listener: ln, AuthKey: []byte("k"), HandshakeTimeout: time.Hour, maxHandshakes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var silent []net.Conn
	offer := func(wait time.Duration) bool {
		client, server := net.Pipe()
		select {
		case ln.conns <- server:
			silent = append(silent, client)
			return true
		case <-time.After(wait):
			client.Close()
			server.Close()
			return false
		}
	}
	for i := range 2 {
		if !offer(30 * time.Second) {
			t.Fatalf("connection %d not accepted", i+1)
		}
	}
	if offer(200 * time.Millisecond) {
		t.Fatal("a third connection was accepted while two handshakes were in progress")
	}
	silent[0].Close() // its handshake fails: the slot is free again
	if !offer(30 * time.Second) {
		t.Fatal("no connection accepted after a handshake ended")
	}
	for _, c := range silent {
		c.Close()
	}
}
