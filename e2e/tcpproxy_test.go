package e2e

import (
	"net"
	"sync"
	"testing"
)

// tcpProxy forwards one directed peer link (node A dialling node B) and can
// cut it: the cluster fault test's partitions. A node's links are cut both
// ways by cutting every proxy that leads to it or from it. A cut is one of
// two kinds:
//   - reset: open connections are closed and new ones refused until the
//     link heals (a peer that restarted, a firewall that rejects);
//   - black hole: connections stay open but nothing crosses; the bytes sent
//     meanwhile are held and delivered, late, when the link heals, as TCP
//     retransmission would deliver them, unless the sender gave up on the
//     connection first (its write timeout). New connections are accepted
//     and held the same way.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	healed *sync.Cond // broadcast when a cut ends
	cut    bool
	hole   bool // the cut is a black hole
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.healed = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refusing() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close() // the target node is down
			continue
		}
		p.mu.Lock()
		if p.cut && !p.hole { // cut while dialling
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(up, c) })
		p.wg.Go(func() { p.pipe(c, up) })
	}
}

// pipe copies src to dst, holding what it read while the link is a black
// hole.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (!p.holdWhileBlackHole() || !writeAll(dst, buf[:n])) {
			break
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func writeAll(c net.Conn, b []byte) bool {
	_, err := c.Write(b)
	return err == nil
}

// holdWhileBlackHole waits while the link is a black hole; false if it was
// reset meanwhile (the connection is closed).
func (p *tcpProxy) holdWhileBlackHole() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.cut && p.hole {
		p.healed.Wait()
	}
	return !p.cut
}

func (p *tcpProxy) refusing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut && !p.hole
}

// setCut cuts the link (a black hole if hole) or, with cut false, heals it.
func (p *tcpProxy) setCut(cut, hole bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hole = cut, cut && hole
	if cut && !hole {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
	p.healed.Broadcast()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.setCut(true, false)
	p.wg.Wait()
}
