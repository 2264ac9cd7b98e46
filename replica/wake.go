package replica

// Wake wakes this node's replica of group if it is quiesced (quiesce.go), as
// a message for it would: a leader ticks and heartbeats again, a follower
// wakes its leader. A replica that knows no leader (a learner that
// restarted while its group was quiesced: learners never campaign, so
// nothing else would end the silence) is woken this way by its front end
// asking the group's other replicas to Wake. Waking an awake group is a
// no-op; a woken idle group quiesces again.
func (h *Host) Wake(group uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.wakeLocked(group)
	if err == nil {
		h.wake()
	}
	return err
}

// wakeLocked unquiesces a group and marks it for the next round, as every
// call that can give the group a Ready must: a round asks only dirty groups,
// so an unmarked group waited for the next tick. Callers hold h.mu.
func (h *Host) wakeLocked(group uint64) (*group, error) {
	if h.stopped != nil {
		return nil, ErrStopped
	}
	g := h.groups[group]
	if g == nil {
		return nil, errUnknownGroup(group)
	}
	h.unquiesce(g, true)
	g.dirty = true
	return g, nil
}

// NodeLive reports whether a batch from node arrived within the last
// election timeout (quiesce.go's liveness: a node with a quiesced group in
// common pulses every tick). A leader hands leadership, and a driver a
// voter's seat, only to a live node: a transfer to a dead one stalls the
// group's writes until raft aborts it.
func (h *Host) NodeLive(node uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if node == h.cfg.NodeID {
		return true
	}
	heard, ok := h.lv.heard[node]
	return ok && h.lv.ticks-heard < uint64(h.cfg.ElectionTicks)
}
