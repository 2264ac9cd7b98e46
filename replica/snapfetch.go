package replica

import (
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"path"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// Snapshots as file lists (docs/cluster.md §2, §8). A snapshot's Data, in
// raft's MsgSnap, is a manifest: the sender's segment files that hold the
// group's state up to the snapshot's index, each with its written end
// (segState.snapshot). The receiver does not hand the MsgSnap to raft at
// once: it fetches the files' bytes from the sender in chunks of at most
// Config.snapChunkBytes (SnapChunk, in the batches of the peer transport),
// one request at a time, into the next generation's directory; each file is
// fdatasync'd and every frame of it checked as it completes
// (segState.checkFetched). Once every file is here (segState.prepared), it
// steps the MsgSnap into raft, whose Ready then carries the snapshot to
// installSnapshot, which renames a new CURRENT naming the fetched generation
// into place (segState.install) before the round's kindSnapshot WAL frame.
// No message, and no buffer on either side, holds more than a chunk.
//
// The sender keeps no state for a fetch: a request names the generation
// and the file, and the sender answers from its live generation, or
// ChunkGone if it no longer has the bytes (retention trimmed the file, a
// snapshot replaced the generation, a crash cut an unsynced tail). The
// receiver then drops its fetch, and the leader, which keeps probing the
// follower and finding it behind its log, sends a new snapshot, whose
// manifest lists the files as they are then.
//
// At most Config.maxFetches (DefaultMaxSnapFetches) fetches per host at
// once (review5): a node back from a long outage has a fetch to make for
// almost every group, and all at once they would fill the senders' queues
// with chunks (the transport keeps chunks apart from Raft's traffic, in a
// short queue of their own: transport.go) and time out, each restarting
// from its first file. A MsgSnap past the cap is dropped; its leader sends
// another at a later probe, by when a fetch has ended.
//
// One fetch per group at a time: MsgSnaps that arrive meanwhile (the
// leader sends one at every probe) are dropped, or a busy leader's ever
// newer snapshots would restart it for ever; only a newer term's (a new
// leader's) replaces it. A lost request or answer is asked again after
// snapFetchTimeout election timeouts without progress; after
// snapFetchRetries of those the fetch is dropped (the sender is gone or no
// longer leads: the next leader sends its own snapshot). A fetch whose
// snapshot raft does not take (stale by then) is dropped: at once if raft
// has nothing to say or its commit index did not reach it, else after the
// next Ready round, which installs it if raft took it (settleFetch).

// ChunkKind is what a SnapChunk is.
type ChunkKind uint8

const (
	ChunkAsk  ChunkKind = iota + 1 // the receiver asks for Len bytes at Off
	ChunkData                      // the sender's answer: Data, at Off
	ChunkGone                      // the sender no longer has the bytes
)

// SnapChunk is one message of a snapshot's fetch. Life, Gen, First and ID
// name the file in the sender's state, Index the snapshot.
type SnapChunk struct {
	Kind                               ChunkKind
	Group, Index, Gen, First, ID, Life uint64
	Off                                int64
	Len                                uint32 // ChunkAsk: the bytes wanted
	Data                               []byte // ChunkData
}

const (
	// DefaultSnapChunkBytes bounds a chunk of a snapshot's fetch.
	DefaultSnapChunkBytes = 1 << 20
	// DefaultMaxSnapFetches caps a host's fetches under way (see above).
	DefaultMaxSnapFetches = 3
	// snapFetchTimeout (in ticks, times the election timeout) and
	// snapFetchRetries: see the top of the file.
	snapFetchTimeout = 2
	snapFetchRetries = 5
	manifestMagic    = "slsnapm2"
)

var (
	// errSnapGone: the sender no longer has the bytes a request names.
	errSnapGone = errors.New("replica: snapshot file gone")
	// errBadManifest: a MsgSnap whose Data is not a manifest (dropped).
	errBadManifest = errors.New("replica: malformed snapshot manifest")
)

// snapManifest is a snapshot's Data: the sender's files, in chain order,
// in its generation gen, holding the state up to index.
//
// life names the sender's state as opened (segState.life; review5): a
// generation number and a file's name do not name its bytes for ever. A
// sender that restarts mid-fetch rewrites its unsynced tail in other
// frames, and a group removed and added again starts over at generation 0
// with the same names: a request of another life is answered gone, so no
// fetch joins bytes of two lives.
type snapManifest struct {
	index, gen, life uint64
	files            []snapFile
}

type snapFile struct {
	first, id, lastSeq uint64
	size               int64 // the written end: the bytes to fetch
}

func (m snapManifest) encode() []byte {
	out := append([]byte(manifestMagic), le.AppendUint64(le.AppendUint64(le.AppendUint64(nil, m.index), m.gen), m.life)...)
	out = le.AppendUint32(out, uint32(len(m.files)))
	for _, f := range m.files {
		out = le.AppendUint64(le.AppendUint64(le.AppendUint64(out, f.first), f.id), f.lastSeq)
		out = le.AppendUint64(out, uint64(f.size))
	}
	return out
}

func decodeManifest(data []byte) (snapManifest, error) {
	r := reader{b: data}
	if string(r.take(len(manifestMagic))) != manifestMagic {
		return snapManifest{}, errBadManifest
	}
	m := snapManifest{index: r.u64(), gen: r.u64(), life: r.u64()}
	n := r.u32()
	for i := uint32(0); i < n && !r.bad; i++ {
		f := snapFile{first: r.u64(), id: r.u64(), lastSeq: r.u64(), size: int64(r.u64())}
		// review5: the files are a chain, each starting at the ordinal
		// after the one before it ends; checkFetched holds each fetched
		// file to its listed first and last ordinals, so the fetched
		// files are contiguous too, known before a byte is fetched.
		if f.size <= 0 || f.lastSeq < f.first || (i > 0 && f.first != m.files[i-1].lastSeq+1) {
			r.bad = true
		}
		m.files = append(m.files, f)
	}
	if !r.done() {
		return snapManifest{}, errBadManifest
	}
	return m, nil
}

// snapFetch is a group's fetch under way.
type snapFetch struct {
	from  uint64      // the sender: it serves the files
	msg   *pb.Message // its MsgSnap, stepped into raft once the files are here
	man   snapManifest
	dir   string
	file  int   // the file being fetched (len(man.files): all are here)
	off   int64 // its bytes written
	f     vfs.File
	ready *segState // the fetched generation, checked: stepped into raft
	idle  int       // ticks without progress
	tries int       // requests asked again
}

// receiveSnap takes a MsgSnap out of raft's way until its files are here;
// it reports whether it did (false: step it now).
func (h *Host) receiveSnap(g *group, m *pb.Message) bool {
	if f := g.fetch; f != nil && f.ready == nil && m.GetTerm() > f.msg.GetTerm() {
		h.dropFetch(g, nil) // a newer leader's: the old one may be gone
	}
	if g.fetch != nil {
		return true // one at a time: the leader sends again after it
	}
	st := g.rn.BasicStatus()
	idx := m.GetSnapshot().GetMetadata().GetIndex()
	if m.GetTerm() < st.GetTerm() || idx <= st.GetCommit() {
		return false // raft refuses or answers it without a snapshot
	}
	if h.fetching >= h.cfg.maxFetches {
		return true // as lost: the leader sends again at a later probe
	}
	man, err := decodeManifest(m.GetSnapshot().GetData())
	if err != nil || man.index != idx {
		return true // as lost
	}
	dir, err := g.state.fetchDir()
	if err != nil {
		log.Printf("replica: group %d snapshot fetch: %v", g.id, err)
		return true
	}
	g.fetch = &snapFetch{from: m.GetFrom(), msg: m, man: man, dir: dir}
	h.fetching++
	h.mostFetching = max(h.mostFetching, h.fetching)
	h.nextFile(g)
	return true
}

// nextFile starts the fetch's next file, or ends the fetch once every file
// is here.
func (h *Host) nextFile(g *group) {
	f := g.fetch
	if f.file == len(f.man.files) {
		h.fetched(g)
		return
	}
	sf := f.man.files[f.file]
	file, err := h.cfg.FS.Create(path.Join(f.dir, segment.FileName(sf.first, sf.id)))
	if err != nil {
		h.dropFetch(g, err)
		return
	}
	f.f, f.off = file, 0
	h.askChunk(g)
}

func (h *Host) askChunk(g *group) {
	f := g.fetch
	sf := f.man.files[f.file]
	f.idle = 0
	h.cfg.Transport.Send(Batch{From: h.cfg.NodeID, To: f.from, Chunks: []SnapChunk{{Kind: ChunkAsk, Group: g.id,
		Index: f.man.index, Gen: f.man.gen, Life: f.man.life, First: sf.first, ID: sf.id, Off: f.off,
		Len: uint32(min(int64(h.cfg.snapChunkBytes), sf.size-f.off))}}})
}

// receiveChunk serves a request (from any node: a follower of a group this
// node led), or takes an answer to this node's fetch.
func (h *Host) receiveChunk(from uint64, c SnapChunk) {
	g := h.groups[c.Group]
	if c.Kind == ChunkAsk {
		h.serveChunk(g, from, c)
		return
	}
	if g == nil || g.fetch == nil {
		return
	}
	f := g.fetch
	if f.ready != nil || from != f.from || c.Index != f.man.index || c.Gen != f.man.gen || c.Life != f.man.life {
		return
	}
	sf := f.man.files[f.file]
	if c.First != sf.first || c.ID != sf.id || c.Off != f.off {
		return // a duplicate or a late answer to a request asked again
	}
	switch {
	case c.Kind == ChunkGone:
		h.dropFetch(g, nil)
	case c.Kind != ChunkData || len(c.Data) == 0 || c.Off+int64(len(c.Data)) > sf.size:
		h.dropFetch(g, fmt.Errorf("a malformed answer from node %d", from))
	default:
		h.writeChunk(g, c.Data)
	}
}

func (h *Host) writeChunk(g *group, data []byte) {
	f := g.fetch
	if _, err := f.f.WriteAt(data, f.off); err != nil {
		h.dropFetch(g, err)
		return
	}
	f.off += int64(len(data))
	f.tries = 0
	h.fetchChunks++
	h.fetchBytes += int64(len(data))
	if f.off < f.man.files[f.file].size {
		h.askChunk(g)
		return
	}
	err := f.f.Sync()
	if err == nil {
		err = g.state.checkFetched(f.f, f.man.files[f.file])
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	f.f = nil
	if err != nil {
		h.dropFetch(g, err)
		return
	}
	f.file++
	h.nextFile(g)
}

// serveChunk answers a request from this node's state.
func (h *Host) serveChunk(g *group, to uint64, c SnapChunk) {
	out := SnapChunk{Kind: ChunkGone, Group: c.Group, Index: c.Index, Gen: c.Gen, Life: c.Life, First: c.First, ID: c.ID, Off: c.Off}
	if g != nil && c.Len > 0 {
		data, err := g.state.chunk(c.Life, c.Gen, c.First, c.ID, c.Off, int(min(c.Len, uint32(h.cfg.snapChunkBytes))))
		if err == nil {
			out.Kind, out.Data = ChunkData, data
		} else if !errors.Is(err, errSnapGone) {
			log.Printf("replica: group %d snapshot chunk: %v", c.Group, err)
		}
	}
	h.cfg.Transport.Send(Batch{From: h.cfg.NodeID, To: to, Chunks: []SnapChunk{out}})
}

// fetched checks the fetched generation and steps the MsgSnap into raft.
func (h *Host) fetched(g *group) {
	f := g.fetch
	ns, err := g.state.prepared(f.man)
	if err != nil {
		h.dropFetch(g, err)
		return
	}
	f.ready = ns
	h.step(g, f.msg)
	if !g.rn.HasReady() || g.rn.BasicStatus().GetCommit() < f.man.index {
		h.dropFetch(g, nil) // raft did not take it (a newer term, or refused)
	}
}

// settleFetch, after the Ready round that followed the MsgSnap's step,
// drops its fetch if that Ready did not install it: raft answered the
// snapshot without taking it (its log caught up meanwhile, or already held
// the entries). Not g.applied: the segments may hold more than raft's log
// knows (a crash after an installation's rename, before its WAL frame).
func (h *Host) settleFetch(g *group) {
	if f := g.fetch; f != nil && f.ready != nil {
		h.dropFetch(g, nil)
	}
}

// tickFetch asks a fetch's request again after a silence, and drops the
// fetch after too many.
func (h *Host) tickFetch(g *group) {
	f := g.fetch
	if f == nil {
		return
	}
	if f.ready != nil {
		return // the next Ready round installs or settles it
	}
	if f.idle++; f.idle < snapFetchTimeout*h.cfg.ElectionTicks {
		return
	}
	if f.tries++; f.tries > snapFetchRetries {
		h.dropFetch(g, nil)
		return
	}
	h.askChunk(g)
}

// dropFetch abandons g's fetch; its directory goes now or at the next open.
func (h *Host) dropFetch(g *group, err error) {
	f := g.fetch
	if err != nil {
		log.Printf("replica: group %d snapshot fetch from node %d dropped: %v", g.id, f.from, err)
	}
	if f.f != nil {
		f.f.Close()
	}
	g.fetch = nil
	h.fetching--
	h.fetchesDropped++
	_ = h.cfg.FS.RemoveAll(f.dir) // a leftover is removed by fetchDir or at open
}

// takeFetch is the fetched generation of the snapshot at index, for its
// installation.
func (h *Host) takeFetch(g *group, index uint64) (*segState, error) {
	f := g.fetch
	if f == nil || f.ready == nil || f.man.index != index {
		return nil, fmt.Errorf("replica: group %d: snapshot at %d to install without its files", g.id, index)
	}
	g.fetch = nil
	h.fetching--
	return f.ready, nil
}

// newLife draws a state's life (snapManifest): from the simulation's Rand
// when set, so a seed replays exactly.
func (h *Host) newLife() uint64 {
	if h.cfg.Rand != nil {
		return h.cfg.Rand.Uint64()
	}
	return rand.Uint64()
}
