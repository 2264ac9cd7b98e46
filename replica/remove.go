package replica

import (
	"fmt"
	"path"
	"slices"
)

// kindRemoveGroup is a WAL frame: group u64, a replica removed by
// RemoveGroup. Replay drops the group's earlier kindGroup frame with it; a
// later kindGroup frame (the group placed here again) adds it anew.
const kindRemoveGroup byte = 7

// RemoveGroup deletes this node's replica of a group it was removed from
// (docs/cluster.md §8): the removal is made durable in the WAL first, then
// the group's segment files are deleted. The caller must know that the
// group's committed configuration no longer holds this node (its leader
// says so): a voter that lost its data would break the group's quorums.
// Only replicas made by AddGroup can be removed; removing an unknown group
// is a no-op. Pending proposals end ErrStopped (indeterminate), pending
// reads are never done (their callers time out, as for a lost read).
//
// A crash after the frame's fdatasync and before the files are gone leaves
// them behind; AddGroup deletes such leftovers before it creates a replica.
func (h *Host) RemoveGroup(id uint64) error {
	// A Trim under way finishes its unlinks first: they must not meet the
	// files of a replica of the group added again after this (segtrim.go).
	h.trimMu.Lock()
	defer h.trimMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return ErrStopped
	}
	g := h.groups[id]
	switch d, damaged := h.damaged[id]; {
	case damaged:
		return h.dropDamaged(d)
	case g == nil:
		return nil
	case !g.dynamic:
		return fmt.Errorf("replica: group %d is configured at Open, not added: it cannot be removed", id)
	}
	// The tombstone goes in the same fdatasync: a replica deleted without
	// one could come back and vote from an empty memory (tomb.go).
	if err := h.bury(g); err != nil {
		return err
	}
	h.wal.add(le.AppendUint64([]byte{kindRemoveGroup}, id))
	if err := h.flushWAL(); err != nil {
		return err
	}
	for _, p := range g.pending {
		p.finish(nil, ErrStopped)
	}
	if g.fetch != nil {
		h.dropFetch(g, nil)
	}
	g.state.close()
	delete(h.groups, id)
	h.index.Delete(id)
	h.order = slices.DeleteFunc(h.order, func(x uint64) bool { return x == id })
	return h.removeGroupFiles(id)
}

// removeGroupFiles deletes a group's segment files, durably.
func (h *Host) removeGroupFiles(id uint64) error {
	dir := groupDir(h.cfg.Dir, id)
	if _, err := h.cfg.FS.ReadDir(dir); err != nil {
		return nil // none
	}
	if err := h.cfg.FS.RemoveAll(dir); err != nil {
		return err
	}
	return h.cfg.FS.SyncDir(path.Dir(dir))
}

// Groups lists the groups this node holds a replica of, damaged ones
// (Damaged) included, sorted.
func (h *Host) Groups() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.order)
	for id := range h.damaged {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
