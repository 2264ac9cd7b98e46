package replica

import (
	"fmt"
	"iter"
	"math"
	"slices"
)

// Applier is told, from the host's apply loop, what a group applies: every
// applied entry's records in log order (Applied), and the whole state when it
// is replaced: at Open, read back from the group's segments, at AddGroup
// (empty), and when a snapshot is installed (Restored). It is called with the
// host's lock held and must not call the host. A state machine built on a
// group (the metadata group, meta.go) is an Applier: it sees the same records
// in the same order on every node.
//
// Restored's pages are the whole state, oldest first, read from the segments
// a page at a time as the Applier ranges over them (readPages): a page holds
// at most DefaultRestorePageBytes of data (one larger record alone), so a
// restore needs memory for a page, not for the history. The Applier may stop
// early (a break) or range again (each range reads afresh); it must not keep
// a page past its iteration if it wants that bound. Retention may trim the
// oldest segments between two pages (Trim runs without the host's lock): a
// restore then misses expired records, never a later one.
//
// review5: a read that fails ends the pages with a last pair (nil, err),
// so an Applier tells a failed restore from a complete one, and keeps the
// state it had rather than one built from part of the history (the
// metadata machine swaps its new state in only after a complete range).
// The host fails all the same (AddGroup or the snapshot's installation
// returns the error): the node stops, and until it exits an Applier that
// checked the error still answers from a whole state. At Open, a read
// failing with corruption makes the replica damaged instead (damage.go),
// and the Applier is then handed an empty state for the group.
type Applier interface {
	Applied(group uint64, recs []Record)
	Restored(group uint64, pages iter.Seq2[[]Record, error])
}

const (
	// DefaultRestorePageBytes bounds the data of one page of a restore.
	DefaultRestorePageBytes = 4 << 20
	// restorePageRecords bounds a page's records, whatever their size.
	restorePageRecords = 1 << 14
)

// readPages is the records read returns from ordinal 0 on, oldest first, in
// pages of at most pageBytes of data and restorePageRecords records. Each
// range starts a new read; a read error is yielded as the last pair and kept
// in *errp (the host fails even if the Applier ignored it).
func readPages(read func(from uint64, maxRecords, maxBytes int) ([]Record, error), pageBytes int, errp *error) iter.Seq2[[]Record, error] {
	return func(yield func([]Record, error) bool) {
		from := uint64(0)
		for {
			page, err := read(from, restorePageRecords, pageBytes)
			if err != nil {
				*errp = err
				yield(nil, err)
				return
			}
			if len(page) == 0 || !yield(page, nil) {
				return
			}
			from = page[len(page)-1].Seq + 1
		}
	}
}

// Read is a pending linearizable read (Host.ReadIndex): Done closes once this
// node has applied everything committed when the read was asked, so a read of
// the local state after it sees every write acknowledged before.
type Read struct {
	ctx   uint64
	index uint64 // 0 until the leader confirmed it
	done  chan struct{}
}

// Done is closed when the local state may be read.
func (r *Read) Done() <-chan struct{} { return r.done }

// ReadIndex asks the group's leader (through raft's ReadIndex: it confirms
// its leadership with a quorum) for the commit index. The read is lost, and
// never done, if the request or its answer is lost or leadership moves: the
// caller retries after a timeout, as with any request.
func (h *Host) ReadIndex(group uint64) (*Read, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return nil, ErrStopped
	}
	g := h.groups[group]
	if g == nil {
		return nil, errUnknownGroup(group)
	}
	h.unquiesce(g, true)
	g.dirty = true
	h.nextID++
	r := &Read{ctx: h.nextID, done: make(chan struct{})}
	g.reads = append(g.reads, r)
	g.rn.ReadIndex(le.AppendUint64(le.AppendUint64(nil, h.incarnation), r.ctx))
	h.wake()
	return r, nil
}

// settleReads records the read indexes a round confirmed and finishes the
// reads whose index is applied.
func (h *Host) settleReads(g *group, states []readState) {
	for _, rs := range states {
		r := reader{b: rs.ctx}
		inc, id := r.u64(), r.u64()
		if !r.done() || inc != h.incarnation {
			continue
		}
		for _, rd := range g.reads {
			if rd.ctx == id && rd.index == 0 {
				rd.index = rs.index
			}
		}
	}
	g.reads = slices.DeleteFunc(g.reads, func(rd *Read) bool {
		if rd.index != 0 && rd.index <= g.applied {
			close(rd.done)
			return true
		}
		return false
	})
}

type readState struct {
	index uint64
	ctx   []byte
}

// ReadApplied returns the group's applied records with ordinal >= fromOrdinal,
// oldest first, read from its segments: at most maxRecords, and at most
// maxBytes of data except that the first record is returned whatever its
// size. Everything applied is readable (each Ready round writes what it
// applied before it ends). The read runs without the host's lock, so it does
// not hold up the Ready loop.
func (h *Host) ReadApplied(group, fromOrdinal uint64, maxRecords, maxBytes int) ([]Record, error) {
	if maxRecords <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("replica: ReadApplied limits %d records, %d bytes", maxRecords, maxBytes)
	}
	h.mu.Lock()
	g := h.groups[group]
	h.mu.Unlock()
	if g == nil {
		return nil, errUnknownGroup(group)
	}
	return g.state.read(fromOrdinal, maxRecords, maxBytes)
}

// Records returns the group's applied records, in order (ReadApplied from
// the start, without limits: for tests and the simulation). It is nil for
// an unknown group or a failed read.
func (h *Host) Records(group uint64) []Record {
	recs, err := h.ReadApplied(group, 0, math.MaxInt, math.MaxInt)
	if err != nil {
		return nil
	}
	return recs
}
