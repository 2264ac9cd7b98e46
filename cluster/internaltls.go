package cluster

import (
	"cmp"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Node-to-node HTTP over mutual TLS (docs/cluster.md §6, issue 17).
//
// With Config.PeerTLS set, the internal paths (forward.go) are served on a
// listener of their own, the internal listener, with the peer certificate
// and only to clients presenting a certificate of the peer CA (TLS 1.3,
// RequireAndVerifyClientCert: the Raft port's rules), and every node sends
// its internal requests there over TLS with its peer certificate. The
// forward key is still required on top (but for a join to a cluster
// without a token: serveJoinTLS). The client API listeners then refuse
// the internal paths, so an SDK client is never asked for a certificate
// and record data never crosses the network in clear between nodes.
//
// A node's registered address (Config.Advertise, node/<id>'s API) says
// which: "https://host:port" is an internal listener, a bare "host:port" a
// client API taking plain HTTP. A node sends to an address of the other
// kind nothing at all: a TLS node never sends record data in clear, and a
// node without TLS could not be admitted by a TLS one.

const httpsScheme = "https://"

// isTLSAddr reports whether a registered address is an internal TLS
// listener's.
func isTLSAddr(addr string) bool { return strings.HasPrefix(addr, httpsScheme) }

// errMixedTLS: a node's registered address is not of this node's kind;
// nothing was sent.
var errMixedTLS = errors.New("cluster: every node needs the same --peer-tls-* settings")

// checkTLS refuses a configuration whose addresses do not say what its
// peer TLS setting does.
func (c Config) checkTLS() error {
	tlsOn := c.PeerTLS != nil
	switch {
	case tlsOn && !isTLSAddr(c.Advertise):
		return fmt.Errorf("cluster: with peer TLS, node-to-node requests use TLS: the advertised address must be https://host:port (the internal listener), got %q", c.Advertise)
	case !tlsOn && isTLSAddr(c.Advertise):
		return fmt.Errorf("cluster: advertised address %q is https, but this node has no peer TLS to serve it with", c.Advertise)
	case c.Join != "" && tlsOn != isTLSAddr(c.Join):
		return fmt.Errorf("cluster: join address %q: with peer TLS it must be another node's https://host:port internal address, without it a plain host:port client API", c.Join)
	case c.Join != "" && c.Secret == "" && !tlsOn:
		// Internal requests are authenticated with a key derived from the
		// secret, and a node outside the cluster cannot read it; only the
		// peer CA can vouch for a joiner that lacks it.
		return errors.New("cluster: joining a cluster needs its secret (--cluster-token), or peer TLS (the CA vouches for the joiner)")
	}
	return nil
}

// internalListen is where the internal listener listens: InternalListen,
// or the advertised host:port.
func (c Config) internalListen() string {
	if c.InternalListen != "" {
		return c.InternalListen
	}
	return strings.TrimPrefix(c.Advertise, httpsScheme)
}

// internalURL is the URL of an internal path at a registered address, or
// errMixedTLS (wrapped in errUnreachable: nothing was sent).
func (n *Node) internalURL(addr, path string) (string, error) {
	tlsOn := n.cfg.PeerTLS != nil
	var err error
	switch {
	case tlsOn && !isTLSAddr(addr):
		err = fmt.Errorf("%w: %w: the node at %s takes node-to-node requests in clear, and this node sends them over TLS only", errUnreachable, errMixedTLS, addr)
	case !tlsOn && isTLSAddr(addr):
		err = fmt.Errorf("%w: %w: the node at %s takes node-to-node requests over TLS only, and this node has no peer TLS", errUnreachable, errMixedTLS, addr)
	case tlsOn:
		return addr + pathPrefix + path, nil
	default:
		return "http://" + addr + pathPrefix + path, nil
	}
	// The callers take errUnreachable as "try another node" and may end in
	// errNoLeader: the reason is logged, once per address.
	if _, seen := n.mixedLogged.LoadOrStore(addr, true); !seen {
		n.cfg.Logger.Warn("not sending node-to-node requests to a node of the other kind", "error", err)
	}
	return "", err
}

// newPeerClient is the pooled client of internal requests. With peer TLS
// each new connection takes the current PeerTLS configuration (its files
// may have been replaced) and verifies the server's certificate for the
// host it dials; a dial or handshake failure is a *net.OpError "dial" (post:
// errUnreachable), since nothing was sent.
func newPeerClient(peerTLS func() *tls.Config) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	if peerTLS != nil {
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialPeerTLS(ctx, peerTLS, network, addr)
		}
	}
	return &http.Client{Transport: tr}
}

func dialPeerTLS(ctx context.Context, peerTLS func() *tls.Config, network, addr string) (net.Conn, error) {
	raw, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := peerTLS().Clone()
	cfg.MinVersion = tls.VersionTLS13
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raw.RemoteAddr(), Err: fmt.Errorf("TLS with the peer (does every node have certificates of the same --peer-tls-ca?): %w", err)}
	}
	return tc, nil
}

// startInternal serves the internal paths on the internal listener (with
// peer TLS only). It is started before the node waits for the secret: a
// joiner's first peers reach it as soon as it is admitted.
func (n *Node) startInternal() error {
	if n.cfg.PeerTLS == nil {
		return nil
	}
	ln := n.cfg.InternalListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.internalListen()); err != nil {
			return fmt.Errorf("cluster: internal listener: %w", err)
		}
	}
	peerTLS := n.cfg.PeerTLS
	tcfg := &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := peerTLS().Clone()
		cfg.MinVersion = tls.VersionTLS13
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.NextProtos = []string{"http/1.1"}
		return cfg, nil
	}}
	// ReadHeaderTimeout also bounds the TLS handshake; peers close their
	// idle connections after a minute (newPeerClient), IdleTimeout
	// bounds those of anything else.
	// The handshake slots (handshakes.go) bound the connections not yet
	// proven to be a peer's.
	slots := newHandshakeSlots(tls.NewListener(ln, tcfg), cmp.Or(n.cfg.internalHandshakes, maxInternalHandshakes))
	n.internal = &http.Server{Handler: n.InternalHandler(), ReadHeaderTimeout: proposalTimeout, IdleTimeout: 2 * time.Minute,
		ErrorLog: n.cfg.Logger.Named("internal").StandardLogger(nil), ConnState: slots.connState}
	n.internal.RegisterOnShutdown(n.EndStreams)
	n.internalAddr = ln.Addr()
	srv := n.internal
	n.wg.Go(func() {
		if err := srv.Serve(slots); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error("internal listener stopped", "error", err)
		}
	})
	n.cfg.Logger.Info("node-to-node requests: mutual TLS on the internal listener", "listen", ln.Addr().String(), "advertise", n.cfg.Advertise)
	return nil
}

// stopInternal ends the internal listener: the requests in flight get a
// moment to finish (a forwarded put's sender otherwise learns nothing of
// its outcome), the forwarded subscriptions end at once (EndStreams).
func (n *Node) stopInternal() {
	if n.internal == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.electionTimeout())
	defer cancel()
	if n.internal.Shutdown(ctx) != nil {
		n.internal.Close()
	}
}

// InternalAddr is the internal listener's address (nil without peer TLS).
func (n *Node) InternalAddr() net.Addr { return n.internalAddr }

// InternalHandler serves the internal paths to peers that proved a
// certificate of the peer CA on this TLS connection.
func (n *Node) InternalHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, pathPrefix) {
			http.NotFound(w, r)
			return
		}
		// The listener's TLS configuration already refuses a client without
		// such a certificate; this holds if that ever changes.
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "node-to-node requests need a client certificate of the cluster's peer CA", http.StatusForbidden)
			return
		}
		if r.URL.Path == pathPrefix+"join" && r.Header.Get(AuthHeader) == "" {
			n.serveJoinTLS(w, r)
			return
		}
		if !n.forwardKeyOK(r) {
			http.Error(w, "not a node of this cluster", http.StatusForbidden)
			return
		}
		n.serveInternal(w, r)
	})
}

func (n *Node) forwardKeyOK(r *http.Request) bool {
	keys := n.keys.Load()
	return keys != nil && subtle.ConstantTimeCompare([]byte(r.Header.Get(AuthHeader)), []byte(keys.forward)) == 1
}

// serveJoinTLS admits a joiner that has no cluster token, vouched for by
// its peer certificate alone. A cluster whose nodes were given a token
// refuses: its Raft port wants the token's handshake, which such a joiner
// cannot make. The answer carries the generated secret (the channel is
// mutual TLS), which the joiner needs before its copy of the metadata has
// caught up.
func (n *Node) serveJoinTLS(w http.ResponseWriter, r *http.Request) {
	if n.cfg.Secret != "" {
		http.Error(w, "this cluster runs with a --cluster-token: start the joining node with the same one", http.StatusBadRequest)
		return
	}
	keys := n.keys.Load()
	if keys == nil {
		http.Error(w, "this node does not know the cluster secret yet", http.StatusServiceUnavailable)
		return
	}
	n.serveJoin(w, r, keys.secret)
}

// checkJoinCert holds a tokenless joiner (serveJoinTLS) to what a node's
// own peer certificate must be (serve's loadPeerTLS): valid for server and
// client auth, and naming the hosts it registers (its internal listener's
// and its Raft port's), as the other nodes will check when they dial it.
// Any other certificate of the peer CA (an operator's client-only one, or
// a node's for other hosts) gets neither the cluster secret nor a node ID.
func checkJoinCert(cs *tls.ConnectionState, req joinRequest) error {
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return errors.New("a join without the cluster token needs a certificate of the cluster's peer CA")
	}
	chain := cs.VerifiedChains[0]
	leaf := chain[0]
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(chain[len(chain)-1])
	for _, c := range chain[min(1, len(chain)-1) : len(chain)-1] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return fmt.Errorf("a join without the cluster token needs a peer certificate for server and client auth: %q is not one (%v)", leaf.Subject.CommonName, err)
		}
	}
	for _, addr := range []string{strings.TrimPrefix(req.API, httpsScheme), req.Peer} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("join address %q: %v", addr, err)
		}
		if err := leaf.VerifyHostname(host); err != nil {
			return fmt.Errorf("a join without the cluster token needs a certificate naming the hosts it registers: %q does not name %s (%v)", leaf.Subject.CommonName, host, err)
		}
	}
	return nil
}
