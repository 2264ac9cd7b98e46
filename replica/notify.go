package replica

import (
	"go.etcd.io/raft/v3"
)

// Change notification for readers that follow a group as it applies (cluster
// mode's SubscribeToShard): Host.Changed hands out a channel that the next
// Ready round of the group that changes what a follower of it sees closes:
// new committed entries applied (and written to its segments: the round
// writes them before it signals), a snapshot installed, a new HardState
// (term, vote or commit) or SoftState (leader or role). Stopping the host
// closes every such channel. Readers take a fresh channel before each read,
// so a change between their read and their wait is never missed.

// Changed returns a channel closed at the group's next change here (see
// above). It fails with ErrStopped once the host has stopped.
func (h *Host) Changed(group uint64) (<-chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return nil, ErrStopped
	}
	g := h.groups[group]
	if g == nil {
		return nil, errUnknownGroup(group)
	}
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.changed, nil
}

// signalChanged closes the group's change channel if the round changed
// what Changed promises to report. Callers hold h.mu.
func (h *Host) signalChanged(g *group, rd raft.Ready) {
	if g.changed == nil {
		return
	}
	if len(rd.CommittedEntries) == 0 && rd.SoftState == nil && raft.IsEmptyHardState(rd.HardState) && raft.IsEmptySnap(rd.Snapshot) {
		return
	}
	close(g.changed)
	g.changed = nil
}

// signalStopped closes every group's change channel. Callers hold h.mu.
func (h *Host) signalStopped() {
	for _, id := range h.order {
		if g := h.groups[id]; g.changed != nil {
			close(g.changed)
			g.changed = nil
		}
	}
}
