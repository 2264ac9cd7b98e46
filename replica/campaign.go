package replica

// Small additions for cluster mode's front end (package cluster).

// Campaign makes this node's replica of group start an election now instead
// of after its election timeout: a new group's preferred leader (its
// placement's first node) calls it so that leaders spread as placement
// decided and a new shard takes writes sooner. With PreVote the campaign
// cannot disrupt a group that already has a leader. A lost campaign is
// harmless: raft's election timer starts another.
func (h *Host) Campaign(group uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, err := h.wakeLocked(group) // else its (pre)votes wait for the next tick
	if err != nil {
		return err
	}
	err = g.rn.Campaign()
	h.wake()
	return err
}

// HasGroup reports whether this node holds a running replica of group (a
// damaged one, Damaged, is not: it serves nothing).
func (h *Host) HasGroup(group uint64) bool {
	_, ok := h.index.Load(group) // no lock: the put path asks it (inbox.go)
	return ok
}
