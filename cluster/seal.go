package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// A seal entry (reshard.go) is a one-record entry whose record is
// sealMarker. It is stored in the group's segments like any record, so it
// is replicated, snapshotted and recovered with the log, and every replica
// finds the first one at the same ordinal. No stored record can look like
// it: a record's key length is at most its length minus 12 (decodeRecord),
// the marker's is 2^32-1.
var sealMarker = binary.LittleEndian.AppendUint32(make([]byte, 8), 0xFFFFFFFF)

func isSeal(b []byte) bool { return len(b) == len(sealMarker) && bytes.Equal(b, sealMarker) }

// sealTracker knows each group's first seal entry's ordinal, as this
// node's replica applied it: a replica.Applier, told every applied entry in
// log order and the whole state at Open, AddGroup and a snapshot's
// installation.
//
// review5: a restore is not searched for a seal when it happens. Almost no
// group was ever sealed, and the search read and decompressed the group's
// whole history, at every Open and (under the host's lock, stalling every
// group's rounds) at every snapshot installation. Instead the restored
// group is unsure, and the first question about its seal (end) settles it
// outside the host's lock (find: Node.findSeal, from the linearized
// metadata, which names every group that can hold a seal; a search of the
// records only for those, or when the metadata cannot be read). The rule
// stays: a seal, once applied, is never forgotten by this node; a question
// about an unsure group waits for the answer rather than guess.
type sealTracker struct {
	mu sync.Mutex
	at map[uint64]uint64 // group → ordinal of its first seal, as known
	// unsure: groups restored since their seal was last settled, each
	// with the number of its restore (a restore during a search makes
	// that search's "no seal" stale).
	unsure   map[uint64]uint64
	restores uint64
	// settling: the groups a question is settling now, closed when it
	// ends; other questions wait for it rather than search again.
	settling map[uint64]chan struct{}
	// find settles a group's first seal in its current state.
	find func(ctx context.Context, g uint64) (end uint64, found bool, err error)
}

func newSealTracker() *sealTracker {
	return &sealTracker{at: map[uint64]uint64{}, unsure: map[uint64]uint64{}, settling: map[uint64]chan struct{}{}}
}

func (t *sealTracker) Applied(g uint64, recs []replica.Record) {
	for _, r := range recs {
		if isSeal(r.Data) {
			t.mu.Lock()
			if cur, ok := t.at[g]; !ok || r.Seq < cur {
				t.at[g] = r.Seq
			}
			t.mu.Unlock()
			return
		}
	}
}

// Restored makes g unsure unless its first seal is settled: the first seal
// is a fact of the log, the same on every replica, so no restored state
// (an empty AddGroup, a snapshot whose sender trimmed the seal: review3)
// can move or undo it. The metadata group has no seals (its machine reads
// its pages).
func (t *sealTracker) Restored(g uint64, _ iter.Seq2[[]replica.Record, error]) {
	if g == metaGroup {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.at[g]; known && t.unsure[g] == 0 {
		return
	}
	t.restores++
	t.unsure[g] = t.restores
}

// note records a seal the metadata knows of (a closed shard's End): the
// same ordinal the log gives, so a replica whose segments holding the seal
// are gone (retention) still refuses writes after it. An End is the first
// seal itself: it settles the group.
func (t *sealTracker) note(g, end uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.at[g]; !ok || end < cur {
		t.at[g] = end
	}
	delete(t.unsure, g)
}

// noteSeals notes the seals of every closed shard in the local metadata
// (once, at Open: the log's own seals are found as it is restored).
func (n *Node) noteSeals() {
	for _, rec := range n.streams() {
		for _, sh := range rec.Shards {
			if sh.Group != 0 && sh.End != 0 {
				n.seals.note(sh.Group, sh.End)
			}
		}
	}
}

// end is g's first seal, settling it first if g is unsure. It fails only
// if the settling's search fails (a read error of the group's segments) or
// ctx ends while another question settles it.
func (t *sealTracker) end(ctx context.Context, g uint64) (uint64, bool, error) {
	for {
		t.mu.Lock()
		restore, unsure := t.unsure[g]
		if !unsure {
			end, ok := t.at[g]
			t.mu.Unlock()
			return end, ok, nil
		}
		if wait := t.settling[g]; wait != nil {
			t.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, false, ctx.Err()
			}
		}
		done := make(chan struct{})
		t.settling[g] = done
		t.mu.Unlock()
		if err := t.settle(ctx, g, restore); err != nil {
			return 0, false, err
		}
	}
}

// settle asks find about g, unsure since its restore number restore, and
// notes the answer; a restore since makes a "no seal" stale (g stays unsure).
func (t *sealTracker) settle(ctx context.Context, g, restore uint64) error {
	found, ok, err := t.find(ctx, g)
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.settling[g])
	delete(t.settling, g)
	if err != nil {
		return fmt.Errorf("cluster: group %d: finding its seal: %w", g, err)
	}
	if cur, known := t.at[g]; ok && (!known || found < cur) {
		t.at[g] = found
	}
	if t.unsure[g] == restore {
		delete(t.unsure, g)
	}
	return nil
}

// findSeal settles g's first seal (sealTracker.find). A seal entry is
// proposed to a group only after the metadata committed a pending reshard
// closing it (reshard.go, step 2), and that record stays until step 3
// replaces it with the parent closed at End, the first seal's ordinal. So
// after a linearized metadata read: a group closed at End has its seal
// there; a group no stream closes, not even in a pending reshard, holds no
// seal (any seal in this node's state committed before the read); only a
// parent of a pending reshard is searched. Without the metadata (no
// quorum for it), the records are searched: slower, never unsound.
func (n *Node) findSeal(ctx context.Context, g uint64) (uint64, bool, error) {
	if err := n.linearize(ctx, metaGroup); err == nil {
		switch end, pending := sealFacts(n.streams(), g); {
		case end != 0:
			return end, true, nil
		case !pending:
			return 0, false, nil
		}
	}
	return firstSeal(func(from uint64) ([]replica.Record, error) {
		return n.host.ReadApplied(g, from, sealSearchRecords, replica.DefaultRestorePageBytes)
	})
}

// sealSearchRecords bounds a page of a seal search.
const sealSearchRecords = 1 << 14

// sealFacts is what the metadata says of group g's seal: the End of a
// shard it closed, or whether a pending reshard closes it (its End not
// known yet).
func sealFacts(streams []streamRec, g uint64) (end uint64, pending bool) {
	for _, rec := range streams {
		shards := rec.Shards
		if rec.Reshard != nil {
			shards = append(slices.Clip(shards), rec.Reshard.Shards...)
		}
		for _, sh := range shards {
			if sh.Group != g {
				continue
			}
			if sh.End != 0 {
				return sh.End, false
			}
			pending = pending || (rec.Reshard != nil && isClosed(sh))
		}
	}
	return 0, pending
}

// firstSeal reads a group's records a page at a time from the start up to
// its first seal entry.
func firstSeal(read func(from uint64) ([]replica.Record, error)) (uint64, bool, error) {
	from := uint64(0)
	for {
		page, err := read(from)
		if err != nil || len(page) == 0 {
			return 0, false, err
		}
		for _, r := range page {
			if isSeal(r.Data) {
				return r.Seq, true, nil
			}
		}
		from = page[len(page)-1].Seq + 1
	}
}

// appliers tells each of its Appliers what the host applies.
type appliers []replica.Applier

func (as appliers) Applied(g uint64, recs []replica.Record) {
	for _, a := range as {
		a.Applied(g, recs)
	}
}

// Restored hands each Applier the same pages; each ranges over them itself
// (a range reads the segments afresh), so memory stays one page.
func (as appliers) Restored(g uint64, pages iter.Seq2[[]replica.Record, error]) {
	for _, a := range as {
		a.Restored(g, pages)
	}
}

// sealedReader is the replica's reader minus what follows a group's first
// seal: the seal is the last record it returns, so a reader sees where a
// sealed shard ends, and no replica ever serves an entry whose proposer was
// answered errSealed (local reads, forwarded reads and subscriptions all
// read through it).
type sealedReader struct {
	r     recordReader
	seals *sealTracker
}

func (s sealedReader) ReadApplied(g, from uint64, maxRecords, maxBytes int) ([]replica.Record, error) {
	recs, err := s.r.ReadApplied(g, from, maxRecords, maxBytes)
	if err != nil {
		return nil, err
	}
	// The reader has no context: findSeal bounds its metadata read by the
	// election timeout, then searches.
	end, ok, err := s.seals.end(context.Background(), g)
	if err != nil || !ok {
		return recs, err
	}
	for i, r := range recs {
		if r.Seq > end {
			return recs[:i], nil
		}
	}
	return recs, nil
}

// cutAtEnd drops a page's records at or after a shard's end (its seal, as
// the metadata or the page shows it) and reports whether the end was met.
func cutAtEnd(sh replica.MetaShard, from uint64, recs []replica.Record) ([]replica.Record, bool) {
	if sh.End != 0 && from >= sh.End {
		return nil, true
	}
	for i, r := range recs {
		if isSeal(r.Data) || (sh.End != 0 && r.Seq >= sh.End) {
			return recs[:i], true
		}
	}
	return recs, false
}

// cutSeal drops a page's records from a seal on and reports whether it met one.
func cutSeal(recs []replica.Record) ([]replica.Record, bool) {
	for i, r := range recs {
		if isSeal(r.Data) {
			return recs[:i], true
		}
	}
	return recs, false
}

// ending is a subscription's last event when it stands at its shard's end
// (its records all delivered: sealed, a seal met next, or past End) and
// the metadata has closed the shard: the ChildShards, no continuation.
func (s *subscription) ending(sealed bool) (storage.SubscribeEvent, bool) {
	rec, _, ok := s.n.stream(s.stream)
	if !ok {
		return storage.SubscribeEvent{}, false
	}
	for _, sh := range rec.Shards {
		if shardIndex(sh.ID) == s.index && sh.End != 0 && (sealed || s.next >= sh.End) {
			s.Close() // a Next after the last event ends at once
			return storage.SubscribeEvent{ChildShards: children(rec, sh.ID)}, true
		}
	}
	return storage.SubscribeEvent{}, false
}

// children lists the shards whose parent (or adjacent parent) is id.
func children(rec streamRec, id string) []storage.ChildShard {
	var out []storage.ChildShard
	for _, sh := range rec.Shards {
		if sh.Parent == id || sh.AdjacentParent == id {
			parents := []string{sh.Parent}
			if sh.AdjacentParent != "" {
				parents = append(parents, sh.AdjacentParent)
			}
			out = append(out, storage.ChildShard{ShardID: sh.ID, ParentShards: parents, HashRange: shardInfo(rec, sh).HashRange})
		}
	}
	return out
}

// closedEnd is a read at a closed shard's end: no next position, its
// children.
func closedEnd(rec streamRec, sh replica.MetaShard, out storage.ReadResult) storage.ReadResult {
	out.Next, out.MillisBehindLatest = nil, 0
	out.ChildShards = children(rec, sh.ID)
	return out
}

type sealReply struct {
	End uint64 `json:"end"`
}

// serveSeal seals a group this node leads, for a peer (forwardSeal).
func (n *Node) serveSeal(w http.ResponseWriter, r *http.Request) {
	group, err := strconv.ParseUint(r.URL.Query().Get("group"), 10, 64)
	if err != nil {
		http.Error(w, "malformed forwarded seal", http.StatusBadRequest)
		return
	}
	if !n.host.HasGroup(group) {
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: n.knownLeader(group)})
		return
	}
	end, err := n.sealHere(r.Context(), group)
	if err != nil {
		n.writeFailure(w, group, err)
		return
	}
	writeJSON(w, http.StatusOK, sealReply{End: end})
}

func (n *Node) forwardSeal(ctx context.Context, addr string, group uint64) (uint64, error) {
	var out sealReply
	if err := n.post(ctx, addr, "seal?group="+strconv.FormatUint(group, 10), nil, &out); err != nil {
		return 0, err
	}
	return out.End, nil
}

// rerouteSealed puts again the entries a parent refused because a reshard
// sealed it (errSealed: definitely not stored), once the metadata shows
// the reshard taken effect, to the shards that now own their keys. It
// gives up after proposalTimeout: those entries fail as unavailable.
func (n *Node) rerouteSealed(ctx context.Context, stream string, entries []storage.PutEntry, results []storage.PutResult) {
	deadline := time.Now().Add(proposalTimeout)
	for {
		var idx []int
		for i, r := range results {
			if errors.Is(r.Err, errSealed) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for _, i := range idx {
				results[i].Err = n.unavailable(stream, results[i].ShardID, errNoLeader)
			}
			return
		}
		n.reputSealed(ctx, stream, idx, entries, results)
	}
}

// reputSealed waits for the sealed shards of results[idx] to show closed
// in the linearized metadata, then puts those entries through the routes.
func (n *Node) reputSealed(ctx context.Context, stream string, idx []int, entries []storage.PutEntry, results []storage.PutResult) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		sleepCtx(ctx, n.cfg.Tick)
		return
	}
	rec, v, ok := n.stream(stream)
	if !ok || !takesWrites(rec.Status) {
		for _, i := range idx {
			results[i].Err = n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: stream})
		}
		return
	}
	for _, i := range idx {
		if !closedIn(rec, results[i].ShardID) {
			sleepCtx(ctx, n.cfg.Tick) // the reshard has not taken effect yet
			return
		}
	}
	sub := make([]storage.PutEntry, len(idx))
	for j, i := range idx {
		sub[j] = entries[i]
	}
	subRes := make([]storage.PutResult, len(idx))
	batches, err := n.batchByShard(rec, n.routesOf(rec, v), sub)
	for _, b := range batches {
		if err == nil {
			n.putBatch(ctx, rec, b, subRes)
		}
	}
	for j, i := range idx {
		if err != nil {
			subRes[j] = storage.PutResult{ShardID: results[i].ShardID, Err: err}
		}
		results[i] = subRes[j]
	}
}

func closedIn(rec streamRec, id string) bool {
	for _, sh := range rec.Shards {
		if sh.ID == id {
			return isClosed(sh)
		}
	}
	return true // gone
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// shardIndex is a shard ID's index (IDs in the metadata always parse).
func shardIndex(id string) uint32 {
	idx, _ := datadir.ParseShardID(id)
	return idx
}
