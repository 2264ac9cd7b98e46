package replica

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The TCP transport between hosts (docs/cluster.md §7).
//
// Node A sends to node B over one persistent connection that A dials (B's
// replies travel on the connection B dials to A), so each node pair shares two
// connections, one per direction, whatever the number of groups. A Ready round
// hands the transport one Batch per destination node holding every group's
// messages (heartbeats included); a batch is one frame on the stream. Frames
// queued while a write is in progress go out in the next single write.
//
// The transport may lose anything, as raft allows: a full send queue drops the
// new frame, a broken connection loses what it was writing, and the connection
// is redialled with a jittered exponential backoff. raft retransmits what
// matters (MsgApp is retried from the follower's progress, heartbeats recur).
// It never reorders frames within a connection, and never delivers a corrupt
// one: every frame carries a CRC-32C, and a bad frame closes the connection.
//
// A connection may be secured (transport_auth.go): mutual TLS, an HMAC
// handshake on the cluster token, or both. Then no frame of a connection is
// read before it passed every check the transport is configured with.

// A frame on the stream is [u32 length][u32 CRC-32C of the payload][payload],
// the payload an EncodeBatch. A stream starts with streamMagic.
const (
	// 2: batches carry beats (quiesce.go); 3: snapshot chunks, and a
	// snapshot's Data is a manifest (snapfetch.go); 4: chunks and
	// manifests name the sender state's life (review5).
	streamMagic = "shardlog-raft/4\n"
	// MaxFrame bounds a frame: raft's MaxSizePerMsg (1 MiB) per group message
	// times the groups of one round can exceed it only with hundreds of
	// groups all sending full appends at once; such a frame is dropped (and
	// retransmitted smaller, as the follower's progress advances).
	MaxFrame = 64 << 20
)

// errFrame is a frame that fails its length or CRC check: the connection's
// byte stream cannot be trusted after it.
var errFrame = errors.New("replica: bad transport frame")

// appendFrame appends payload to b as one frame.
func appendFrame(b, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// readFrame reads one frame's payload. io.EOF means the stream ended cleanly
// between frames; errFrame that it is corrupt.
func readFrame(r io.Reader) ([]byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n == 0 || n > MaxFrame {
		return nil, fmt.Errorf("%w: length %d", errFrame, n)
	}
	// A buffer of its own, never reused: the large entries DecodeBatch
	// decodes from it alias it (unmarshalMessage, aliasShare) for as long
	// as raft holds them.
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("%w: %v", errFrame, err)
	}
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, fmt.Errorf("%w: checksum", errFrame)
	}
	return p, nil
}

// TCPConfig configures a TCPTransport.
type TCPConfig struct {
	NodeID uint64
	// Listen is the address to accept peers on ("127.0.0.1:0" picks a port).
	Listen string
	// Listener, if set, is used instead of listening on Listen: the caller
	// already holds the address (so no other socket can take it between a
	// reservation and the transport's start).
	Listener net.Listener
	// Peers maps every other node to the address to dial it at.
	Peers map[uint64]string
	// QueueLen bounds the frames waiting per peer (default 256); beyond it new
	// frames are dropped.
	QueueLen int
	// InboxLen is the capacity of the channel Inbox returns (default 1024).
	InboxLen int
	// MinBackoff and MaxBackoff bound the redial delay (defaults 10 ms, 1 s).
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout ends a connection whose writes stall, so a peer that
	// stopped reading is redialled (default 5 s).
	WriteTimeout time.Duration
	// TLS, if set, secures every connection with mutual TLS 1.3: it is
	// called for each new connection (so new certificate files apply to the
	// next one) and must give this node's certificate and the cluster CA
	// as both RootCAs and ClientCAs. The transport works on a clone.
	TLS func() *tls.Config
	// AuthKey, if set, is the key of the challenge-response handshake each
	// connection starts with (transport_auth.go); every node of the cluster
	// must have the same one.
	AuthKey []byte
	// HandshakeTimeout bounds a secured connection's handshakes, and the
	// wait for a stream's magic (default 10 s).
	HandshakeTimeout time.Duration
	// Logger hears of refused connections, once per remote host until a
	// connection with it succeeds (default: none).
	Logger hclog.Logger
	// maxHandshakes overrides the const of the same name (tests).
	maxHandshakes int
}

func (c *TCPConfig) defaults() {
	if c.QueueLen == 0 {
		c.QueueLen = 256
	}
	if c.InboxLen == 0 {
		c.InboxLen = 1024
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 10 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// TCPTransport is a Transport over TCP. Pass Inbox to Host.Run.
type TCPTransport struct {
	cfg     TCPConfig
	ln      net.Listener
	inbox   chan Batch
	peersMu sync.RWMutex // guards peers: AddPeer adds to it (transport_peers.go)
	peers   map[uint64]*peer
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{} // open connections, closed by Close
	dropped atomic.Uint64
	refused atomic.Uint64 // connections that failed a secured handshake
	// frames recycles encoded frames (*[]byte): a frame is garbage once
	// writeLoop has handed it to the connection. A fresh buffer per round
	// and peer, each the size of the round's appends, cost its zeroing and
	// fresh memory on every node (BENCHMARKS.md, "Cluster: CPU per record
	// (h42)"). Only sent frames are pooled: a received one is never reused
	// (readFrame).
	frames sync.Pool
	// handshakes holds a token per accepted connection in its handshakes
	// (maxHandshakes: transport_auth.go).
	handshakes chan struct{}
	// refusals logs each remote host's first refusal (transport_auth.go).
	refusals refusalLog
}

type peer struct {
	id    uint64
	addr  string
	queue chan []byte // encoded frames
	// chunks holds the frames carrying a snapshot's file bytes, apart
	// from queue (review5): they are up to a chunk each, and in the
	// shared queue a node's answers to many fetches filled it and crowded
	// out heartbeats and votes (dropped: leaders lost). chunkQueueLen of
	// them at most wait per peer; beyond, an answer is dropped and the
	// fetch asks again (snapfetch.go).
	chunks chan []byte
}

// chunkQueueLen bounds the chunk frames waiting per peer: with chunks of
// DefaultSnapChunkBytes, 4 MiB.
const chunkQueueLen = 4

func newPeer(id uint64, addr string, queueLen int) *peer {
	return &peer{id: id, addr: addr, queue: make(chan []byte, queueLen), chunks: make(chan []byte, chunkQueueLen)}
}

// carriesChunkData reports whether b holds a snapshot's file bytes.
func carriesChunkData(b Batch) bool {
	for _, c := range b.Chunks {
		if len(c.Data) > 0 {
			return true
		}
	}
	return false
}

// ListenTCP starts accepting peers and dialling them.
func ListenTCP(cfg TCPConfig) (*TCPTransport, error) {
	cfg.defaults()
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &TCPTransport{cfg: cfg, ln: ln, inbox: make(chan Batch, cfg.InboxLen), peers: map[uint64]*peer{},
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}, refusals: refusalLog{seen: map[string]bool{}},
		handshakes: make(chan struct{}, cmp.Or(cfg.maxHandshakes, maxHandshakes))}
	for id, addr := range cfg.Peers {
		if id == cfg.NodeID {
			continue
		}
		p := newPeer(id, addr, cfg.QueueLen)
		t.peers[id] = p
		t.wg.Go(func() { t.sendLoop(p) })
	}
	t.wg.Go(t.acceptLoop)
	return t, nil
}

// Addr is the address the transport accepts peers on.
func (t *TCPTransport) Addr() string { return t.ln.Addr().String() }

// Inbox delivers the batches received from peers.
func (t *TCPTransport) Inbox() <-chan Batch { return t.inbox }

// Dropped counts frames dropped on a full queue or a failed write.
func (t *TCPTransport) Dropped() uint64 { return t.dropped.Load() }

// Send queues b for its destination; it never blocks (Transport's contract).
func (t *TCPTransport) Send(b Batch) {
	t.peersMu.RLock()
	p := t.peers[b.To]
	t.peersMu.RUnlock()
	if p == nil {
		return
	}
	// The frame is encoded in place: its header, then the batch after it.
	frame, err := appendBatch(t.frameBuf(), b)
	if err != nil || len(frame)-frameHeader > MaxFrame {
		t.dropped.Add(1)
		t.recycle(frame)
		return
	}
	payload := frame[frameHeader:]
	binary.LittleEndian.PutUint32(frame, uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(payload, castagnoli))
	q := p.queue
	if carriesChunkData(b) {
		q = p.chunks
	}
	select {
	case q <- frame:
	default:
		t.dropped.Add(1)
		t.recycle(frame)
	}
}

// maxPooledFrame bounds the frames kept for reuse: a rare huge frame (a
// round of many groups' full appends, a snapshot chunk) is left to the GC
// rather than held by the pool.
const maxPooledFrame = 8 << 20

// frameBuf returns an empty frame: frameHeader bytes for the header, room
// after them from an earlier frame if the pool has one.
func (t *TCPTransport) frameBuf() []byte {
	if p, ok := t.frames.Get().(*[]byte); ok {
		return (*p)[:frameHeader]
	}
	return make([]byte, frameHeader)
}

// recycle gives a frame back once nothing reads it any more: after its
// write to the connection returned (bufio copied it or wrote it through),
// or when it was dropped.
func (t *TCPTransport) recycle(frame []byte) {
	if frame == nil || cap(frame) > maxPooledFrame {
		return
	}
	t.frames.Put(&frame)
}

// Close stops every connection and goroutine. Frames still queued are lost.
func (t *TCPTransport) Close() error {
	t.peersMu.Lock() // no AddPeer starts a goroutine after this
	t.cancel()
	t.peersMu.Unlock()
	err := t.ln.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}

// sendLoop keeps one connection to p and writes its queue to it.
func (t *TCPTransport) sendLoop(p *peer) {
	backoff := t.cfg.MinBackoff
	for {
		conn, raw, err := t.dial(p)
		if err != nil {
			if !t.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, t.cfg.MaxBackoff)
			continue
		}
		backoff = t.cfg.MinBackoff
		t.writeLoop(conn, p)
		t.untrack(raw)
		if t.ctx.Err() != nil {
			return
		}
	}
}

// dial opens a stream to p: conn carries the frames (a TLS connection over
// raw when TLS is on); raw is the tracked TCP connection.
func (t *TCPTransport) dial(p *peer) (conn, raw net.Conn, err error) {
	d := net.Dialer{Timeout: t.cfg.MaxBackoff}
	raw, err = d.DialContext(t.ctx, "tcp", p.addr)
	if err != nil {
		return nil, nil, err
	}
	if !t.track(raw) {
		return nil, nil, net.ErrClosed
	}
	if conn, err = t.openStream(raw, p); err != nil {
		t.untrack(raw)
		return nil, nil, err
	}
	return conn, raw, nil
}

// track registers conn for Close to end; false (and conn closed) if the
// transport is already closing.
func (t *TCPTransport) track(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		conn.Close()
		return false
	}
	t.conns[conn] = struct{}{}
	return true
}

func (t *TCPTransport) untrack(conn net.Conn) {
	t.mu.Lock()
	delete(t.conns, conn)
	t.mu.Unlock()
	conn.Close()
}

// sleep waits d, jittered by up to half of it; false if the transport closed.
func (t *TCPTransport) sleep(d time.Duration) bool {
	d = d/2 + rand.N(d/2+1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.ctx.Done():
		return false
	}
}

// writeLoop writes queued frames until the connection fails or the transport
// closes. Every frame already waiting joins the current write, so a burst of
// rounds costs one syscall.
func (t *TCPTransport) writeLoop(conn net.Conn, p *peer) {
	w := bufio.NewWriterSize(conn, 64<<10)
	// A Write reaches the connection, not only the buffer, when the frame
	// does not fit (a big frame goes straight through), so the deadline is
	// set before every Write, not only before Flush: the last Flush's may
	// be long past after an idle spell, and the frame would be dropped.
	write := func(frame []byte) {
		_ = conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		w.Write(frame) // an error sticks: Flush returns it
		t.recycle(frame)
	}
	for {
		var frame []byte
		select {
		case frame = <-p.queue:
		case frame = <-p.chunks:
		case <-t.ctx.Done():
			return
		}
		n := 1
		write(frame)
	more:
		for w.Buffered() < 1<<20 {
			select {
			case frame = <-p.queue:
			case frame = <-p.chunks:
			default:
				break more
			}
			write(frame)
			n++
		}
		_ = conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		if err := w.Flush(); err != nil {
			t.dropped.Add(uint64(n))
			return
		}
	}
}

func (t *TCPTransport) acceptLoop() {
	for t.handshakeSlot() { // released by acceptStream (transport_auth.go)
		conn, err := t.ln.Accept()
		if err != nil {
			return // closed
		}
		if !t.track(conn) {
			return
		}
		t.wg.Go(func() {
			t.readLoop(conn)
			t.untrack(conn)
		})
	}
}

// readLoop delivers a connection's batches to the inbox until it ends or a
// frame is bad (after which nothing on the stream can be trusted). Nothing
// is read from a connection that did not pass acceptStream.
func (t *TCPTransport) readLoop(raw net.Conn) {
	r, from, ok := t.acceptStream(raw)
	if !ok {
		return
	}
	for {
		p, err := readFrame(r)
		if err != nil {
			return
		}
		b, err := DecodeBatch(p)
		// An authenticated peer proved its node ID: it speaks for no other.
		if err != nil || b.To != t.cfg.NodeID || (from != 0 && b.From != from) {
			return
		}
		select {
		case t.inbox <- b:
		case <-t.ctx.Done():
			return
		}
	}
}
