package replica

// AddPeer makes node id reachable at addr: a node that joined the cluster
// after this transport started (docs/cluster.md §8). Adding a known node is
// a no-op, whatever the address: a node ID names one node and its address
// for ever (IDs are never reused), and a node that moved must restart its
// peers. It reports whether the node was new.
func (t *TCPTransport) AddPeer(id uint64, addr string) bool {
	if id == t.cfg.NodeID || addr == "" {
		return false
	}
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if t.peers[id] != nil || t.ctx.Err() != nil { // closed: Close cancels under peersMu
		return false
	}
	p := newPeer(id, addr, t.cfg.QueueLen)
	t.peers[id] = p
	t.wg.Go(func() { t.sendLoop(p) })
	return true
}

// HasPeer reports whether the transport knows node id.
func (t *TCPTransport) HasPeer(id uint64) bool {
	t.peersMu.RLock()
	defer t.peersMu.RUnlock()
	return t.peers[id] != nil
}
