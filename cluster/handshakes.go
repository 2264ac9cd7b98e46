package cluster

import (
	"net"
	"net/http"
	"sync"
)

// maxInternalHandshakes bounds the internal listener's connections that
// have not yet started a request (review 8 #5): each is in its TLS
// handshake, or past it and not yet sending, and holds a goroutine and
// buffers for up to the server's ReadHeaderTimeout; a flood of connections
// that never finish one (no certificate is needed to open them) must not
// hold these without bound. Past it, Accept waits and further connections
// wait in the listen backlog, as at the Raft port's handshake slots
// (replica/transport_auth.go). A connection that started a request holds
// no slot, so long-lived forwarded subscriptions and pooled peer
// connections, which are authenticated, are not limited.
const maxInternalHandshakes = 64

// handshakeSlots is a listener (of TLS connections) whose Accept first
// takes a slot, and the http.Server ConnState hook that frees it when the
// connection starts its first request or closes.
type handshakeSlots struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	held map[net.Conn]bool // accepted connections holding a slot
}

func newHandshakeSlots(ln net.Listener, n int) *handshakeSlots {
	return &handshakeSlots{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{}), held: map[net.Conn]bool{}}
}

func (h *handshakeSlots) Accept() (net.Conn, error) {
	select {
	case h.slots <- struct{}{}:
	case <-h.done:
		return nil, net.ErrClosed
	}
	c, err := h.Listener.Accept()
	if err != nil {
		<-h.slots
		return nil, err
	}
	h.mu.Lock()
	h.held[c] = true
	h.mu.Unlock()
	return c, nil
}

func (h *handshakeSlots) Close() error {
	h.once.Do(func() { close(h.done) })
	return h.Listener.Close()
}

// connState is the server's ConnState: a connection that started a
// request (so finished its handshake), or closed, frees its slot.
func (h *handshakeSlots) connState(c net.Conn, s http.ConnState) {
	if s == http.StateNew || s == http.StateIdle {
		return
	}
	h.mu.Lock()
	held := h.held[c]
	delete(h.held, c)
	h.mu.Unlock()
	if held {
		<-h.slots
	}
}
