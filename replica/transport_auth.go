package replica

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Securing the transport's connections (issue 17, docs/cluster.md §7).
//
// A plain stream (no TLS, no AuthKey) is streamMagic then frames, as
// before. A secured stream is, inside TLS when TLS is on:
//
//	dialler  → listener: streamMagic
//	dialler  → listener: hello = "HMAC" | from u64 | to u64 | nonceD   (AuthKey only)
//	listener → dialler:  nonceL | mac("listener")                     (AuthKey only)
//	dialler  → listener: mac("dialler")                               (AuthKey only)
//	listener → dialler:  acceptByte
//	dialler  → listener: frames...
//
// where mac(role) = HMAC-SHA256(AuthKey, role | nonceD | nonceL | from | to).
// Each side's MAC covers a nonce the other side just drew, so bytes
// recorded from an earlier handshake do not pass a new one, and the role
// label keeps a listener's answer from serving as a dialler's. The listener
// reads no frame before it wrote acceptByte, and the dialler writes none
// before it read it: with TLS 1.3 a client's handshake ends before the
// server has judged its certificate, and the accept byte is how a dialler
// learns it was refused. Frames after the handshake carry no MAC: without
// TLS an on-path attacker who let the handshake through can alter them.

const (
	authMarker = "HMAC"
	nonceLen   = 32
	helloLen   = len(authMarker) + 8 + 8 + nonceLen
	acceptByte = 1
	// maxRefusalHosts bounds the hosts whose refusal was logged: a scan
	// from many addresses must not grow the set without bound.
	maxRefusalHosts = 4096
)

var (
	errNoHandshake = errors.New("the peer sent no authentication handshake: it runs without --cluster-token, or is not a shardlog node")
	errBadMAC      = errors.New("the peer's handshake does not prove this cluster's token: a different --cluster-token, or a replayed handshake")
)

// secured reports whether connections carry more than the plain stream.
func (t *TCPTransport) secured() bool { return t.cfg.TLS != nil || t.cfg.AuthKey != nil }

// tlsConfig is the TLS configuration of one new connection: the caller's,
// held to TLS 1.3 and, on the listener, to a verified client certificate.
//
// review5: the pool the connection's side verifies the other's certificate
// with must be set: Go verifies against the system's roots without it, and
// any certificate a public CA issued for the name would pass. The listener
// needs ClientCAs, the dialler RootCAs.
func (t *TCPTransport) tlsConfig(listener bool) (*tls.Config, error) {
	cfg := t.cfg.TLS().Clone()
	switch {
	case cfg == nil:
		return nil, errors.New("no TLS configuration")
	case listener && cfg.ClientCAs == nil:
		return nil, errors.New("the TLS configuration has no ClientCAs (the cluster CA): client certificates would be checked against the system's roots")
	case !listener && cfg.RootCAs == nil:
		return nil, errors.New("the TLS configuration has no RootCAs (the cluster CA): the peer's certificate would be checked against the system's roots")
	}
	cfg.MinVersion = tls.VersionTLS13
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	// A dialler reads nothing after the accept byte, and redials rarely:
	// tickets would only wait unread in its socket.
	cfg.SessionTicketsDisabled = true
	return cfg, nil
}

// openStream starts a stream on a dialled connection. The dialler verifies
// the listener's certificate for the host it dialled (p's address from
// --peers or the metadata), as any TLS client does: a certificate of the
// cluster's CA issued for another node does not pass for this one.
func (t *TCPTransport) openStream(raw net.Conn, p *peer) (net.Conn, error) {
	if !t.secured() {
		_ = raw.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		_, err := io.WriteString(raw, streamMagic)
		return raw, err
	}
	_ = raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	conn, err := t.dialHandshakes(raw, p)
	if err != nil && t.ctx.Err() != nil {
		return nil, err // closing: Close cut the handshake short
	}
	if err != nil {
		t.refuse(p.addr, "could not open a secured connection to a Raft peer", "peer", p.id, "address", p.addr, "error", err)
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	t.refusals.forget(p.addr)
	return conn, nil
}

func (t *TCPTransport) dialHandshakes(raw net.Conn, p *peer) (net.Conn, error) {
	var conn net.Conn = raw
	if t.cfg.TLS != nil {
		cfg, err := t.tlsConfig(false)
		if err != nil {
			return nil, err
		}
		cfg.ServerName, _, _ = net.SplitHostPort(p.addr)
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, streamMagic); err != nil {
		return nil, err
	}
	if t.cfg.AuthKey != nil {
		if err := dialAuth(conn, t.cfg.AuthKey, t.cfg.NodeID, p.id); err != nil {
			return nil, err
		}
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return nil, fmt.Errorf("the peer refused the connection (does every node have the same --cluster-token and --peer-tls-* settings?): %w", err)
	}
	if b[0] != acceptByte {
		return nil, fmt.Errorf("the peer answered %#x, not the accept byte: not a shardlog node of this version", b[0])
	}
	return conn, nil
}

// acceptStream checks an accepted connection's start. It gives the reader
// its frames follow on, and the node ID the peer proved (0 without
// AuthKey); false if the connection is to be closed unread.
func (t *TCPTransport) acceptStream(raw net.Conn) (*bufio.Reader, uint64, bool) {
	host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
	_ = raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	r, from, err := t.acceptHandshakes(raw)
	t.handshakeEnded()
	if err != nil && t.ctx.Err() != nil {
		return nil, 0, false // closing: Close cut the handshake short
	}
	if err != nil {
		t.refuse(host, "refused a Raft peer connection", "remote", raw.RemoteAddr().String(), "error", err)
		return nil, 0, false
	}
	_ = raw.SetDeadline(time.Time{})
	if !t.secured() {
		if err := plainStart(r); err != nil {
			t.refuse(host, "refused a Raft peer connection", "remote", raw.RemoteAddr().String(), "error", err)
			return nil, 0, false
		}
	}
	t.refusals.forget(host)
	return r, from, true
}

func (t *TCPTransport) acceptHandshakes(raw net.Conn) (*bufio.Reader, uint64, error) {
	var conn net.Conn = raw
	if t.cfg.TLS != nil {
		cfg, err := t.tlsConfig(true)
		if err != nil {
			return nil, 0, err
		}
		tc := tls.Server(raw, cfg)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			return nil, 0, fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	magic := make([]byte, len(streamMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, 0, fmt.Errorf("no stream start: %w", err)
	}
	if string(magic) != streamMagic {
		return nil, 0, errors.New("the connection does not start as a shardlog Raft stream (a TLS peer? every node needs the same --peer-tls-* settings)")
	}
	if !t.secured() {
		return r, 0, nil
	}
	var from uint64
	if t.cfg.AuthKey != nil {
		var err error
		if from, err = answerAuth(r, conn, t.cfg.AuthKey, t.cfg.NodeID); err != nil {
			return nil, 0, err
		}
	}
	if _, err := conn.Write([]byte{acceptByte}); err != nil {
		return nil, 0, err
	}
	return r, from, nil
}

// maxHandshakes bounds the accepted connections in their handshakes at
// once (review5): each holds a goroutine and a 64 KiB reader for up to
// HandshakeTimeout, and a flood of connections that never finish one must
// not hold them without bound. Past it, the accept loop waits: further
// connections wait in the listen backlog. A connection past its handshakes
// holds no slot (plainStart's wait for a first frame comes after).
const maxHandshakes = 64

// handshakeSlot waits for a free handshake slot; false if the transport
// closed meanwhile.
func (t *TCPTransport) handshakeSlot() bool {
	select {
	case t.handshakes <- struct{}{}:
		return true
	case <-t.ctx.Done():
		return false
	}
}

func (t *TCPTransport) handshakeEnded() { <-t.handshakes }

// plainStart refuses a dialler that starts a token handshake this node
// does not expect, to say why instead of failing on a bad frame (read as a
// frame length, authMarker is beyond MaxFrame, so no frame starts so). The peek
// waits for the first frame, which the frame loop would wait for anyway, so
// it runs with no deadline: a quiet peer may send none for a long time.
func plainStart(r *bufio.Reader) error {
	if b, err := r.Peek(len(authMarker)); err == nil && string(b) == authMarker {
		return errors.New("the peer starts a token handshake, but this node has no --cluster-token: set the same one on every node")
	}
	return nil
}

// dialAuth is the dialler's side of the token handshake.
func dialAuth(rw io.ReadWriter, key []byte, from, to uint64) error {
	hello := make([]byte, 0, helloLen)
	hello = append(hello, authMarker...)
	hello = binary.LittleEndian.AppendUint64(hello, from)
	hello = binary.LittleEndian.AppendUint64(hello, to)
	hello = append(hello, newNonce()...)
	nonceD := hello[helloLen-nonceLen:]
	if _, err := rw.Write(hello); err != nil {
		return err
	}
	var reply [nonceLen + sha256.Size]byte
	if _, err := io.ReadFull(rw, reply[:]); err != nil {
		return fmt.Errorf("the peer closed the connection during the token handshake (is --cluster-token set on it, and the same?): %w", err)
	}
	nonceL := reply[:nonceLen]
	if !hmac.Equal(reply[nonceLen:], authMAC(key, "listener", nonceD, nonceL, from, to)) {
		return errBadMAC
	}
	_, err := rw.Write(authMAC(key, "dialler", nonceD, nonceL, from, to))
	return err
}

// answerAuth is the listener's side of the token handshake; it gives the
// dialler's node ID.
func answerAuth(r io.Reader, w io.Writer, key []byte, self uint64) (uint64, error) {
	var hello [helloLen]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil {
		return 0, fmt.Errorf("no token handshake: %w", err)
	}
	if string(hello[:len(authMarker)]) != authMarker {
		return 0, errNoHandshake
	}
	from := binary.LittleEndian.Uint64(hello[4:])
	to := binary.LittleEndian.Uint64(hello[12:])
	if to != self {
		return 0, fmt.Errorf("the peer (node %d) meant to reach node %d, this is node %d: check --peers", from, to, self)
	}
	nonceD := hello[helloLen-nonceLen:]
	nonceL := newNonce()
	if _, err := w.Write(append(nonceL, authMAC(key, "listener", nonceD, nonceL, from, to)...)); err != nil {
		return 0, err
	}
	var mac [sha256.Size]byte
	if _, err := io.ReadFull(r, mac[:]); err != nil {
		return 0, fmt.Errorf("the peer (node %d) closed the connection during the token handshake: %w", from, err)
	}
	if !hmac.Equal(mac[:], authMAC(key, "dialler", nonceD, nonceL, from, to)) {
		return 0, errBadMAC
	}
	return from, nil
}

// authMAC is one side's proof: role keeps either side's proof from
// serving as the other's.
func authMAC(key []byte, role string, nonceD, nonceL []byte, from, to uint64) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("shardlog raft handshake " + role + "\x00"))
	m.Write(nonceD)
	m.Write(nonceL)
	var ids [16]byte
	binary.LittleEndian.PutUint64(ids[:], from)
	binary.LittleEndian.PutUint64(ids[8:], to)
	m.Write(ids[:])
	return m.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, nonceLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// Refused counts connections, accepted or dialled, that failed a secured
// handshake or did not start as a stream.
func (t *TCPTransport) Refused() uint64 { return t.refused.Load() }

// refuse counts a refused connection and logs it unless key (a remote host
// or a peer's address) was logged since its last good connection: a peer
// redials every second at most, and its log line would repeat as often.
func (t *TCPTransport) refuse(key, msg string, args ...any) {
	if t.refusals.first(key) {
		t.cfg.Logger.Warn(msg, append(args, "note", "logged once per remote host until a connection with it succeeds")...)
	}
	t.refused.Add(1) // after the log line: a test that saw the count finds it
}

// refusalLog is the set of keys whose refusal was logged.
type refusalLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

// first reports whether key's refusal is to be logged, and notes it. Once
// the set is full, refusals from new hosts are not logged.
func (l *refusalLog) first(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] || len(l.seen) >= maxRefusalHosts {
		return false
	}
	l.seen[key] = true
	return true
}

func (l *refusalLog) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, key)
}
