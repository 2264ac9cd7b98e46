package replica

import (
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// MaxRecordsPerProposal bounds a proposal so that a record's position fits the
// low 16 bits of its ordinal.
const MaxRecordsPerProposal = 1 << 16

// Ordinal is the sequence ordinal of the record at position pos of the entry at
// index: unique per group for ever, increasing in log order.
func Ordinal(index uint64, pos int) uint64 { return index<<16 | uint64(pos) }

var (
	// ErrNotLeader: this node does not lead the group; the proposal was not
	// appended anywhere (a definite failure). The caller forwards to the leader.
	ErrNotLeader = errors.New("replica: not the group's leader")
	// ErrDropped: another entry was committed at the proposal's index, so the
	// proposal can never commit (a definite failure).
	ErrDropped = errors.New("replica: proposal replaced by another leader's entry")
	// ErrStopped: the host stopped (a failed write or fdatasync, or Close)
	// before the proposal was decided; it may or may not commit (indeterminate).
	ErrStopped = errors.New("replica: host stopped")
	// ErrUnknownGroup: this node holds no replica of the group (never did,
	// or it was removed: a move). Nothing was proposed or read; the caller
	// goes to the group's replicas elsewhere.
	ErrUnknownGroup = errors.New("replica: unknown group")
	// ErrOverloaded: this node leads the group, but raft dropped the
	// proposal because the group's uncommitted entries reached
	// Config.MaxUncommittedBytes (its followers lag, or its disk does).
	// Nothing was appended (a definite failure); another node would send
	// the request back here, so the caller backs off instead.
	ErrOverloaded = errors.New("replica: the group's leader has too much uncommitted data; retry later")
)

// Transport carries a round's batches to other nodes. Send is called with the
// host's lock held and must not block (queue, then deliver with Host.Receive).
type Transport interface {
	Send(b Batch)
}

// GroupConfig is one group and its bootstrap voters (node IDs): its
// configuration at index 0, the same on every replica ever created. Later
// configurations come from membership changes (membership.go).
type GroupConfig struct {
	ID    uint64
	Peers []uint64
}

// Config configures a Host.
type Config struct {
	NodeID    uint64 // never 0, never reused for another disk
	FS        vfs.FS
	Dir       string // holds the WAL, and each group's segments under groups/ (segstate.go)
	Groups    []GroupConfig
	Transport Transport
	// ElectionTicks and HeartbeatTicks are raft's ElectionTick and
	// HeartbeatTick (defaults 10 and 1).
	ElectionTicks, HeartbeatTicks int
	// Rand, when set, makes elections deterministic: raft's own election timer
	// (randomised with crypto/rand) is set out of reach and the host campaigns
	// after a timeout drawn from Rand in [ElectionTicks, 2*ElectionTicks), as
	// raft would. The simulation uses it so a seed replays exactly. Without
	// CheckQuorum (which needs raft's timer) a partitioned leader keeps its role
	// until it hears a higher term; its proposals stay pending meanwhile.
	Rand *rand.Rand
	// WALSegmentSize: the WAL rolls to a new file once its current one
	// reaches this size (default 64 MiB); files behind every group's
	// compaction point are deleted at a roll.
	WALSegmentSize int64
	// CompactMinEntries: a group's leader proposes a new compaction point
	// once every replica holds at least this many entries past the last one
	// (default 10000).
	CompactMinEntries uint64
	// SnapshotLagEntries: a replica more than this many entries behind the
	// commit index no longer holds compaction back; it catches up from a
	// snapshot (default 100000).
	SnapshotLagEntries uint64

	// Applier, if set, is told every group's applied records (read.go).
	Applier Applier

	// Now is the clock a leader stamps its proposals' arrival time with
	// (default time.Now); every replica stores the leader's time.
	Now func() time.Time
	// Compressor compresses the groups' segment frames; nil: the host makes
	// its own and closes it at Close.
	Compressor *segment.Compressor
	// StateSegmentSize: a group's segment file rolls once it would pass this
	// size (default DefaultStateSegmentSize).
	StateSegmentSize int64
	// MaxUncommittedBytes is raft's MaxUncommittedEntriesSize for every
	// group (default 64 MiB): a leader refuses proposals past it
	// (ErrOverloaded).
	MaxUncommittedBytes uint64
	// NoQuiesce keeps every group ticking and heartbeating while idle
	// (quiesce.go): an escape hatch, and the benchmark's baseline.
	NoQuiesce bool
	// Observer, if set, is told of every fdatasync the host runs: the WAL's
	// (one per Ready round that wrote anything), and the segments' (at a WAL
	// roll, or a segment roll). shard.Observer satisfies it, so the node's
	// /metrics counts them as single-node mode counts its syncs.
	Observer SyncObserver
	// Logger, if set, is where the host logs a damaged replica
	// (damage.go); default slog.Default(). Both *slog.Logger and the
	// cluster's hclog.Logger satisfy it.
	Logger Logger
	// MaxDamagedAtOpen caps the replicas one Open sets aside as damaged
	// (damage.go); past it Open fails and changes nothing (refuseDamage).
	// 0: 1; negative: no cap.
	MaxDamagedAtOpen int
	// CriticalGroups are groups whose damage fails Open instead of setting
	// the replica aside (the cluster's metadata group).
	CriticalGroups []uint64

	// restorePageBytes bounds a restore's pages (default
	// DefaultRestorePageBytes; tests make it small).
	restorePageBytes int
	// snapChunkBytes bounds a chunk of a snapshot's fetch (default
	// DefaultSnapChunkBytes; tests make it small).
	snapChunkBytes int
	// maxFetches caps the snapshot fetches under way at once (default
	// DefaultMaxSnapFetches; snapfetch.go).
	maxFetches int

	// crashAt, when it returns true at a named point of a WAL roll or
	// truncation, stops the host there as a power cut would (tests only).
	crashAt func(point string) bool
	// skipSync is a deliberately broken mode for the simulation's self-test:
	// the WAL is written but never fdatasync'd, so acknowledgements do not
	// survive a power cut. Never set outside tests.
	skipSync bool
	// settleUnsynced is another: a pipelined fdatasync's completion also
	// delivers the answers of the rounds written while it ran, which it
	// may not cover (pipeline.go).
	settleUnsynced bool
	// awaitingSync, if set, is called when awaitSync is about to wait for
	// the fdatasync in flight (tests: the errseq model's "no concurrent
	// fsync" signal).
	awaitingSync func()
	// ackOnAppend is another broken mode: a proposal is answered as soon as
	// the leader has its entry on disk, before a quorum does.
	ackOnAppend bool
	// skipReappliedConf is another: after a restart, the committed conf
	// changes the applied state already holds are not handed to raft again,
	// so its configuration stays the compaction point's.
	skipReappliedConf bool
	// skipStateSync is another: the segments are not fdatasync'd before the
	// WAL behind them is deleted.
	skipStateSync bool
	// skipLivenessWake is another: a quiesced follower never wakes when its
	// leader's node falls silent (quiesce.go).
	skipLivenessWake bool
	// noTombstone is another: RemoveGroup leaves no tombstone, so a
	// replica moved back starts from an empty memory (tomb.go).
	noTombstone bool
	// noCoalesce sends heartbeats as whole raft messages, not beats: the
	// idle benchmark's baseline (TestIdleCPU).
	noCoalesce bool
}

// SyncObserver is told of each fdatasync and how long it took.
type SyncObserver interface {
	Synced(d time.Duration, err error)
}

// Record is an applied record, its ordinal and its arrival time (Unix ms,
// the leader's clock, never below the previous record's).
type Record struct {
	Seq       uint64
	ArrivalMs int64
	Data      []byte
}

// Proposal is a pending Propose: Done closes when it is decided.
type Proposal struct {
	term uint64    // the leader's term when proposed: the term of its entry
	made time.Time // when Propose was called (RoundTimes)
	done chan struct{}
	seqs []uint64
	err  error
}

// Done is closed when Result is final.
func (p *Proposal) Done() <-chan struct{} { return p.done }

// Result returns the records' ordinals once committed and applied, or
// ErrDropped or ErrStopped. Call it after Done is closed.
func (p *Proposal) Result() ([]uint64, error) { return p.seqs, p.err }

func (p *Proposal) finish(seqs []uint64, err error) {
	p.seqs, p.err = seqs, err
	close(p.done)
}

// Host runs a node's Raft groups. Its methods are safe for concurrent use; the
// simulation calls them from one goroutine, so their order is the seed's.
type Host struct {
	mu          sync.Mutex
	trimMu      sync.Mutex // held by Trim across its unlinks, and by RemoveGroup (segtrim.go)
	cfg         Config
	wal         *wal
	incarnation uint64
	nextID      uint64
	groups      map[uint64]*group
	order       []uint64 // group IDs, sorted: every loop over groups is deterministic
	stopped     error
	kick        chan struct{}
	ownComp     bool // cfg.Compressor was made by Open: Close closes it
	// snapshotsSent and snapshotsInstalled count this host's (tests), and
	// so do fetchChunks and fetchBytes (the chunks and bytes its fetches
	// wrote) and fetchesDropped (snapfetch.go).
	snapshotsSent, snapshotsInstalled, fetchChunks, fetchesDropped int
	fetchBytes                                                     int64
	// fetching is the fetches under way (g.fetch set); mostFetching its
	// highest (tests).
	fetching, mostFetching int

	lv liveness // quiescence (quiesce.go)
	// tombs: what this node's removed replicas had promised, by group
	// (tomb.go); never forgotten.
	tombs map[uint64]tomb
	// damaged: this node's replicas set aside as damaged, by group
	// (damage.go); none of them is in groups.
	damaged map[uint64]Damage
	// rounds counts Ready rounds that wrote to the WAL, stateSyncs the
	// segments' fdatasyncs, proposals the proposals made here (Stats).
	rounds, stateSyncs, proposals atomic.Uint64
	queued                        atomic.Uint64 // proposals that went through the inbox
	// acks are the proposals the current round applied: answered at its
	// end, once their records are in the segments.
	acks []ack
	// pl is the rounds written and not yet covered by a finished
	// fdatasync (pipeline.go).
	pl pipeline
	// in holds proposals made while a round held mu; index is each
	// group's *groupIndex, for readers that take no lock (inbox.go).
	in    inbox
	index sync.Map
	tm    roundTimers
}

// ack is an applied proposal and its records' ordinals.
type ack struct {
	p    *Proposal
	seqs []uint64
}

type group struct {
	id      uint64
	boot    []uint64 // the bootstrap voters
	confs   []confAt // configurations from the compaction point on (membership.go)
	dynamic bool     // created by AddGroup: restated in every new WAL file
	rn      *raft.RawNode
	ms      *raft.MemoryStorage
	ix      *groupIndex // what lock-free readers see of it (inbox.go)
	applied uint64
	state   appliedState // the group's segments: its records live only there
	fetch   *snapFetch   // a snapshot's files being fetched (snapfetch.go)
	// Log compaction (docs/cluster.md §2): compactTo is the highest point
	// the group agreed on through a compaction entry (every replica had the
	// log up to it when its leader proposed it); durable is the applied
	// index as of the last fdatasync of state; the log here is compacted to
	// compacted = min(compactTo, durable) at a WAL roll.
	compactTo, durable, compacted, compactTerm uint64
	compactTicks                               int

	// unsynced counts the written units awaiting their fdatasync that hold
	// an append of this group (pipeline.go): its raft has entries or state
	// its MemoryStorage does not, so it must not quiesce (canQuiesce).
	unsynced int
	pending  map[uint64]*Proposal // by proposal ID, this incarnation's
	reads    []*Read              // ReadIndex requests not yet done
	// Deterministic elections (Config.Rand): ticks since the leader was heard
	// from or the last campaign, and the drawn timeout.
	quiet, timeout int
	transferTicks  int // ticks of the leadership transfer under way
	q              groupQuiescence
	// dirty: something may have given the group a Ready since the last
	// round looked (a tick, a message, a call), so the next round asks it;
	// the rest are not asked, and an idle node's rounds cost O(dirty groups).
	// Every awake group is ticked, and so marked, at every tick, and only
	// a wake-up changes a quiesced group's raft state: a missed mark could
	// delay a group by one tick, never stall it.
	dirty bool
	// changed is closed at the group's next change (notify.go); nil while
	// nobody waits.
	changed chan struct{}
}

// Open recovers the WAL in cfg.Dir and starts every group from it.
func Open(cfg Config) (*Host, error) {
	if cfg.NodeID == 0 {
		return nil, errors.New("replica: node ID 0")
	}
	if cfg.ElectionTicks == 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.HeartbeatTicks == 0 {
		cfg.HeartbeatTicks = 1
	}
	if cfg.WALSegmentSize == 0 {
		cfg.WALSegmentSize = 64 << 20
	}
	if cfg.CompactMinEntries == 0 {
		cfg.CompactMinEntries = 10000
	}
	if cfg.SnapshotLagEntries == 0 {
		cfg.SnapshotLagEntries = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.restorePageBytes == 0 {
		cfg.restorePageBytes = DefaultRestorePageBytes
	}
	if cfg.snapChunkBytes == 0 {
		cfg.snapChunkBytes = DefaultSnapChunkBytes
	}
	if cfg.maxFetches == 0 {
		cfg.maxFetches = DefaultMaxSnapFetches
	}
	if cfg.StateSegmentSize == 0 {
		cfg.StateSegmentSize = DefaultStateSegmentSize
	}
	if cfg.MaxUncommittedBytes == 0 {
		cfg.MaxUncommittedBytes = 64 << 20
	}
	ownComp := cfg.Compressor == nil
	if ownComp {
		c, err := segment.NewCompressor()
		if err != nil {
			return nil, err
		}
		cfg.Compressor = c
	}
	h, err := open(cfg)
	if err != nil && ownComp {
		cfg.Compressor.Close()
	}
	if h != nil {
		h.ownComp = ownComp
	}
	return h, err
}

func open(cfg Config) (*Host, error) {
	w, payloads, err := openWAL(cfg.FS, cfg.Dir)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, wal: w, groups: map[uint64]*group{}, tombs: map[uint64]tomb{}, kick: make(chan struct{}, 1),
		lv: liveness{heard: map[uint64]uint64{}, out: map[uint64][]Beat{}, pulse: map[uint64]bool{}}}
	if cfg.Observer != nil {
		w.synced = cfg.Observer.Synced
	}
	added, err := addedGroups(payloads)
	if err != nil {
		return nil, err
	}
	if h.damaged, err = damagedGroups(cfg.Dir, payloads); err != nil {
		return nil, err
	}
	points, err := compactionPoints(payloads)
	if err != nil {
		return nil, err
	}
	found := map[uint64]error{} // damaged at this Open (damage.go)
	for _, gc := range append(slices.Clone(cfg.Groups), added...) {
		if _, bad := h.damaged[gc.ID]; bad || h.groups[gc.ID] != nil {
			continue
		}
		g := h.newGroup(gc)
		g.dynamic = !slices.ContainsFunc(cfg.Groups, func(c GroupConfig) bool { return c.ID == gc.ID })
		if err := h.restoreState(g, points[gc.ID]); isDamage(err) {
			found[gc.ID] = err
		} else if err != nil {
			return nil, err
		}
		h.addToOrder(g)
	}
	if err := h.refuseDamage(found); err != nil {
		return nil, err
	}
	if err := h.replay(payloads, points); err != nil {
		return nil, err
	}
	if err := h.quarantine(found); err != nil {
		return nil, err
	}
	// A new incarnation, durable before any proposal of it can exist, so that
	// no proposal key is ever issued twice.
	h.incarnation++
	h.wal.add(le.AppendUint64([]byte{kindStart}, h.incarnation))
	if err := h.wal.flush(true); err != nil {
		return nil, err
	}
	if err := h.finishDamage(len(found) > 0); err != nil {
		return nil, err
	}
	for _, id := range h.order {
		if err := h.startGroup(h.groups[id]); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *Host) newGroup(gc GroupConfig) *group {
	return &group{id: gc.ID, boot: slices.Clone(gc.Peers), ms: raft.NewMemoryStorage(), pending: map[uint64]*Proposal{}}
}

// addToOrder registers g, keeping h.order sorted.
func (h *Host) addToOrder(g *group) {
	h.groups[g.id] = g
	g.ix = &groupIndex{}
	h.index.Store(g.id, g.ix)
	i, _ := slices.BinarySearch(h.order, g.id)
	h.order = slices.Insert(h.order, i, g.id)
}

// addedGroups is the replicas AddGroup created, from the WAL's group
// frames, less those RemoveGroup removed after.
func addedGroups(payloads []walPayload) ([]GroupConfig, error) {
	var out []GroupConfig
	for _, p := range payloads {
		switch p.p[0] {
		case kindGroup:
			gc, err := decodeGroup(p.p[1:])
			if err != nil {
				return nil, err
			}
			out = append(out, gc)
		case kindRemoveGroup:
			r := reader{b: p.p[1:]}
			id := r.u64()
			if !r.done() {
				return nil, errCorrupt
			}
			out = slices.DeleteFunc(out, func(gc GroupConfig) bool { return gc.ID == id })
		}
	}
	return out, nil
}

func errUnknownGroup(id uint64) error { return fmt.Errorf("%w %d", ErrUnknownGroup, id) }

// restoreState opens a group's segments: the group has applied everything
// they hold (recovery replays the rest from the WAL). pt is the group's
// compaction point in the WAL (segState.floor and floorNext).
func (h *Host) restoreState(g *group, pt compactPoint) error {
	floor := pt.index
	st, err := openSegState(&segState{fs: h.cfg.FS, comp: h.cfg.Compressor, dir: groupDir(h.cfg.Dir, g.id), group: g.id,
		size: h.cfg.StateSegmentSize, now: func() int64 { return h.cfg.Now().UnixNano() }, synced: h.stateSynced, crash: h.crash,
		life: h.newLife(), floor: floor, floorNext: pt.synced, floorNextKnown: pt.syncedKnown})
	if err != nil {
		return err
	}
	if st.cutCorrupt != nil {
		h.logger().Error("replica: cut a corrupt tail of the newest applied-state segment; the WAL applies its entries again",
			"group", g.id, "wal_floor", floor, "error", st.cutCorrupt)
	}
	g.state = st
	g.applied = st.held()
	return h.restored(g)
}

// restored hands the Applier the group's whole state, read back from its
// segments a page at a time as the Applier ranges over it (read.go).
func (h *Host) restored(g *group) error {
	if h.cfg.Applier == nil {
		return nil
	}
	var err error
	h.cfg.Applier.Restored(g.id, readPages(g.state.read, h.cfg.restorePageBytes, &err))
	if err != nil {
		return fmt.Errorf("replica: group %d restore: %w", g.id, err)
	}
	return nil
}

// replay loads the recovered WAL frames into the groups' storages. A group's
// log starts after its highest compaction point (every file still present
// restates it in its header, and files whose entries are all below it may be
// gone). An entries frame replaces the log from its first index on, as raft's
// log does when a new leader overwrites an uncommitted tail, and so one that
// ends at or below the compaction point cuts everything after it.
func (h *Host) replay(payloads []walPayload, points map[uint64]compactPoint) error {
	for id, pt := range points {
		if g := h.groups[id]; g != nil {
			g.compacted, g.compactTerm = pt.index, pt.term
			g.setBase(pt.index, pt.cs)
		}
	}
	logs := map[uint64][]*pb.Entry{}
	hss := map[uint64]*pb.HardState{}
	for _, p := range payloads {
		if err := h.replayOne(p, logs, hss); err != nil {
			return err
		}
	}
	for _, id := range h.order {
		g := h.groups[id]
		snap := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(g.compacted), Term: new(g.compactTerm),
			ConfState: g.conf(g.compacted)}}
		if err := g.ms.ApplySnapshot(snap); err != nil {
			return err
		}
		if err := g.ms.Append(logs[id]); err != nil {
			return err
		}
		if hs := hss[id]; hs != nil {
			// A compaction or snapshot point is committed, whatever the
			// last HardState frame says: a power cut during a round's
			// write can keep a torn prefix that holds the round's
			// snapshot frame but not the HardState frame after it (the
			// pipelined simulation's crashes between a write and its
			// fdatasync found it; raft refuses a commit below its log's
			// start).
			if hs.GetCommit() < g.compacted {
				hs.Commit = new(g.compacted)
			}
			if err := g.ms.SetHardState(hs); err != nil {
				return err
			}
		}
		if g.applied < g.compacted {
			// Entries up to the compaction point were applied and synced
			// before it was taken; those missing from the state held no
			// records.
			g.applied = g.compacted
		}
		g.compactTo, g.durable = g.compacted, g.compacted
	}
	return nil
}

// compactPoint is a group's highest compaction point in the WAL.
type compactPoint struct {
	index, term uint64
	cs          *pb.ConfState
	// synced is the ordinal after the newest record the applied state had
	// fdatasync'd before index was taken (kindStateSynced, after the
	// kindCompact frame in the same WAL header); 0: unknown (an older WAL,
	// a header torn between the two frames, a snapshot installed since).
	// syncedKnown tells a known 0 (no record synced yet: a group whose
	// entries so far held none) from unknown.
	synced      uint64
	syncedKnown bool
}

// kindStateSynced is a WAL frame: group u64, next u64. Written in a new
// WAL file's header after the group's kindCompact frame: when the WAL
// rolled, the group's applied state was fdatasync'd holding every record
// below ordinal next, and none at or above it (segState.durableNext).
const kindStateSynced byte = 10

func encodeStateSynced(group, next uint64) []byte {
	return le.AppendUint64(le.AppendUint64([]byte{kindStateSynced}, group), next)
}

// compactionPoints is each group's log start in the WAL (replay): its
// highest compaction or snapshot point since its replica was last removed.
// Open needs it before the applied state is recovered, as the floor above
// which the WAL holds every entry (segState.floor).
func compactionPoints(payloads []walPayload) (map[uint64]compactPoint, error) {
	out := map[uint64]compactPoint{}
	for _, p := range payloads {
		switch p.p[0] {
		case kindRemoveGroup:
			// A replica removed, and maybe added again later: nothing of its
			// earlier life (compaction point, configuration) is the new one's.
			delete(out, le.Uint64(p.p[1:]))
		case kindCompact, kindSnapshot:
			id, idx, term, cs, err := decodeCompact(p.p[1:])
			if err != nil {
				return nil, err
			}
			// A new point's synced ordinal is the frame after it: an older
			// one may predate entries without records up to the new point,
			// and a snapshot starts a new generation of segments.
			if pt := out[id]; idx > pt.index {
				out[id] = compactPoint{index: idx, term: term, cs: cs}
			} else if p.p[0] == kindSnapshot {
				pt.synced, pt.syncedKnown = 0, false
				out[id] = pt
			}
		case kindStateSynced:
			r := reader{b: p.p[1:]}
			id, next := r.u64(), r.u64()
			if !r.done() {
				return nil, errCorrupt
			}
			if pt, ok := out[id]; ok {
				pt.synced, pt.syncedKnown = next, true
				out[id] = pt
			}
		}
	}
	return out, nil
}

func (h *Host) replayOne(p walPayload, logs map[uint64][]*pb.Entry, hss map[uint64]*pb.HardState) error {
	kind, b := p.p[0], p.p[1:]
	switch kind {
	case kindStart:
		r := reader{b: b}
		h.incarnation = r.u64()
		if !r.done() {
			return errCorrupt
		}
	case kindHardState:
		id, hs, err := decodeHardState(b)
		if err != nil {
			return err
		}
		hss[id] = hs
	case kindEntries:
		id, ents, err := decodeEntries(b)
		if err != nil {
			return err
		}
		g := h.groups[id]
		if g == nil || len(ents) == 0 {
			return nil
		}
		mi := h.wal.files[p.file].maxIndex
		mi[id] = max(mi[id], ents[len(ents)-1].GetIndex())
		if logs[id], err = spliceLog(logs[id], g.compacted, ents); err != nil {
			return fmt.Errorf("group %d: %w", id, err)
		}
	case kindRemoveGroup:
		id := le.Uint64(b)
		delete(logs, id)
		delete(hss, id)
	case kindTombstone:
		id, t, err := decodeTomb(b)
		if err != nil {
			return err
		}
		h.tombs[id] = h.tombs[id].merge(t)
	case kindCompact, kindGroup, kindDamaged, kindStateSynced:
	case kindSnapshot:
		// The log before a snapshot, uncommitted tail included, is gone: raft
		// discarded it when it took the snapshot.
		id, _, _, _, err := decodeCompact(b)
		if err != nil {
			return err
		}
		logs[id] = logs[id][:0]
	default:
		// The frame's checksum held, so the kind is not rot but a newer
		// version's record: refuse to start with that said, not as
		// corruption (which the README's advice answers by wiping the node).
		return fmt.Errorf("%w: kind %d (the WAL was written by a newer version of shardlog; a node cannot go back to an older one after it ran the newer)", errUnknownKind, kind)
	}
	return nil
}

// errUnknownKind is a checksummed WAL frame of a kind this version does not
// know. Not errCorrupt: it is no damage, and no replica is set aside for it.
var errUnknownKind = errors.New("replica: WAL record kind unknown to this version")

// spliceLog applies an entries frame to a recovered log that holds the
// entries from base+1 on: the log becomes its part before the frame's first
// index, then the frame's entries.
func spliceLog(log []*pb.Entry, base uint64, ents []*pb.Entry) ([]*pb.Entry, error) {
	first := ents[0].GetIndex()
	last := first + uint64(len(ents)) - 1
	if last <= base {
		return log[:0], nil
	}
	if first <= base {
		ents, first = ents[base+1-first:], base+1
	}
	off := first - (base + 1)
	if off > uint64(len(log)) {
		return nil, fmt.Errorf("%w: entries from %d after %d", errCorrupt, first, base+uint64(len(log)))
	}
	// In place: replay holds the only reference to the log's array, and
	// what lies past off is being replaced. Capping the slice (log[:off:off])
	// copied the whole log at every frame, quadratic in the frames since
	// the last roll: a node restarted over a 64 MiB WAL of small frames
	// spent tens of seconds in replay (found by make cluster-crash-test).
	return append(log[:off], ents...), nil
}

var discard = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

func (h *Host) startGroup(g *group) error {
	rc := &raft.Config{
		ID:                        h.cfg.NodeID,
		ElectionTick:              h.cfg.ElectionTicks,
		HeartbeatTick:             h.cfg.HeartbeatTicks,
		Storage:                   groupStorage{g.ms, g},
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: h.cfg.MaxUncommittedBytes,
		CheckQuorum:               h.cfg.Rand == nil,
		PreVote:                   true,
		// A leader removed from its group steps down at once; a removal is
		// normally preceded by a leadership transfer anyway (membership.go).
		StepDownOnRemoval: true,
		// Proposals are made on the leader only; forwarding a request to the
		// leader is the front end's job (docs/cluster.md §6), so a proposal is
		// never in flight somewhere the proposer cannot see.
		DisableProposalForwarding: true,
		Logger:                    discard,
		// The Ready loop is pipelined (pipeline.go): raft hands the WAL's
		// work and the applies out as messages, and holds back in them
		// every answer that must wait for the write's fdatasync.
		AsyncStorageWrites: true,
	}
	if h.cfg.Rand != nil {
		rc.ElectionTick = 1 << 30
		g.timeout = h.drawTimeout()
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return err
	}
	g.rn, g.dirty = rn, true
	return nil
}

// abortStaleTransfer ends a leadership transfer that has not happened within
// an election timeout (its MsgTimeoutNow lost, say), as raft's own election
// timer would; with Config.Rand that timer is out of reach, and a leader in
// transfer refuses every proposal. A transfer to itself is raft's abort.
func (h *Host) abortStaleTransfer(g *group, transferee uint64) {
	if transferee == 0 {
		g.transferTicks = 0
		return
	}
	if g.transferTicks++; g.transferTicks >= h.cfg.ElectionTicks {
		g.rn.TransferLeader(h.cfg.NodeID)
		g.transferTicks = 0
	}
}

func (h *Host) drawTimeout() int {
	return h.cfg.ElectionTicks + h.cfg.Rand.IntN(h.cfg.ElectionTicks)
}

// Tick advances every awake group's logical clock by one tick; a quiesced
// group's clock stands still (quiesce.go).
func (h *Host) Tick() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lv.ticks++
	h.pl.tick = true
	for _, id := range h.order {
		g := h.groups[id]
		h.tickFetch(g)
		if h.tickQuiesced(g) {
			continue
		}
		g.dirty = true
		g.rn.Tick()
		h.proposeCompaction(g)
		if h.cfg.Rand == nil {
			continue
		}
		if st := g.rn.BasicStatus(); st.RaftState == raft.StateLeader {
			g.quiet = 0
			h.abortStaleTransfer(g, st.LeadTransferee)
			continue
		}
		if g.quiet++; g.quiet >= g.timeout {
			_ = g.rn.Campaign()
			g.quiet, g.timeout = 0, h.drawTimeout()
		}
	}
	h.wake()
}

// Receive steps a batch from another node into its groups. Messages for
// unknown groups, and those raft refuses, are dropped: the network may lose
// any message anyway.
func (h *Host) Receive(b Batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return
	}
	h.receiveBatch(b)
	h.wake()
}

// step steps one message into its group, which it wakes.
func (h *Host) step(g *group, m *pb.Message) {
	h.unquiesce(g, true)
	g.dirty = true
	if h.refusesVote(g, m) {
		return // as lost: the candidate's timer asks again, or another wins
	}
	if err := g.rn.Step(m); err != nil {
		return
	}
	if h.cfg.Rand != nil && fromLeader(m) && g.rn.BasicStatus().Lead == m.GetFrom() {
		g.quiet = 0
	}
}

// fromLeader reports whether m is one only a leader sends, so hearing it
// restarts a follower's election timeout.
func fromLeader(m *pb.Message) bool {
	switch m.GetType() {
	case pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap:
		return true
	}
	return false
}

// Propose appends records to group as one entry. It fails at once with
// ErrNotLeader unless this node leads the group; otherwise the Proposal is
// decided when the entry (or another at its index) is applied here.
func (h *Host) Propose(group uint64, records [][]byte) (*Proposal, error) {
	size := 0
	for _, r := range records {
		size += len(r)
	}
	rs := NewRecords(len(records), size)
	for _, r := range records {
		rs.Add(func(b []byte) []byte { return append(b, r...) })
	}
	return h.ProposeRecords(group, rs)
}

// ProposeRecords is Propose of records built in place. The host keeps
// rs's bytes as the entry's: the caller must not use rs again.
//
// While a round holds the host's lock (for its CPU work; HandleReady's
// inline rounds across their fdatasync too), the proposal
// is not waited for: it is queued, and the next round hands it to raft
// first (inbox.go); its ErrNotLeader or unknown group then comes through
// the Proposal, as definite as when returned here. Uncontended (always, in
// the single-goroutine simulation) it is proposed at once, as before.
func (h *Host) ProposeRecords(group uint64, rs *Records) (*Proposal, error) {
	if rs.n == 0 || rs.n > MaxRecordsPerProposal {
		return nil, fmt.Errorf("replica: %d records in a proposal", rs.n)
	}
	if !h.mu.TryLock() {
		return h.enqueue(group, rs)
	}
	defer h.mu.Unlock()
	if h.stopped != nil {
		return nil, ErrStopped
	}
	p := &Proposal{done: make(chan struct{}), made: time.Now()}
	if err := h.proposeLocked(group, rs, p); err != nil {
		return nil, err
	}
	return p, nil
}

// proposeLocked hands a proposal to the group's raft, which must be led
// here; h.mu is held.
func (h *Host) proposeLocked(group uint64, rs *Records, p *Proposal) error {
	g := h.groups[group]
	switch {
	case g == nil:
		return errUnknownGroup(group)
	case g.rn.BasicStatus().RaftState != raft.StateLeader:
		return ErrNotLeader
	}
	h.unquiesce(g, true)
	g.dirty = true
	term := g.rn.BasicStatus().GetTerm()
	h.nextID++
	key := proposalKey{node: h.cfg.NodeID, incarnation: h.incarnation, id: h.nextID}
	if err := g.rn.Propose(rs.entryData(key, h.cfg.Now().UnixMilli())); err != nil {
		return dropped(g.rn.BasicStatus()) // nothing appended
	}
	h.proposals.Add(1)
	p.term = term
	g.pending[key.id] = p
	h.wake()
	return nil
}

// dropped says why raft dropped a proposal on a leader. A leadership
// transfer under way is ErrNotLeader: the group is about to have another
// leader, which the caller finds. Otherwise (a leader removed from its
// group steps down first: StepDownOnRemoval) the uncommitted entries
// reached MaxUncommittedEntriesSize: ErrOverloaded, since this node is
// still the leader and any retry elsewhere would come back here.
func dropped(st raft.BasicStatus) error {
	if st.LeadTransferee != raft.None {
		return ErrNotLeader
	}
	return ErrOverloaded
}

func (h *Host) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// readyRound is one group's part of a Ready round. Every group runs with
// raft's asynchronous storage writes (pipeline.go): after split, rd.Messages
// holds only the messages to peers, which may leave at once; the local
// storage work comes as two messages raft addresses to itself.
type readyRound struct {
	g  *group
	rd raft.Ready
	// app is the MsgStorageAppend: rd's Entries, HardState and Snapshot
	// (raft builds it from exactly those), to write, and in its Responses
	// what may be delivered only once that write is fdatasync'd.
	app *pb.Message
	// apply is the MsgStorageApply: committed entries this node holds on
	// disk (raft hands out no others in this mode), to apply now.
	apply *pb.Message
}

// split takes the storage messages out of the Ready's messages.
func (r *readyRound) split() {
	peers := r.rd.Messages[:0:0]
	for _, m := range r.rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			r.app = m
		case raft.LocalApplyThread:
			r.apply = m
		default:
			peers = append(peers, m)
		}
	}
	r.rd.Messages = peers
}

// HandleReady runs Ready rounds inline until no group has one: each round
// (pipeline.go) is followed by its own fdatasync and that fdatasync's
// completion, so when it returns everything it wrote is durable and
// delivered. It is the deterministic form the tests and the simulation
// drive from one goroutine; Run pipelines the same steps. An error stops
// the host for good: every pending proposal ends ErrStopped and the node
// must be restarted (Open again). It must not be called while Run runs.
func (h *Host) HandleReady() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return h.stopped
	}
	for range maxInlineRounds {
		start := time.Now()
		n, err := h.round()
		if err == nil {
			err = h.syncInline(false)
		}
		if n > 0 {
			h.tm.round.Add(int64(time.Since(start)))
		}
		if err != nil {
			return h.stop(err)
		}
		if n == 0 {
			break
		}
	}
	// Rounds that moved only commit indexes synced nothing: done now, so
	// that what HandleReady wrote is durable when it returns. Its time is
	// the rounds' too, so that the stages never add up to more than the
	// rounds (RoundTimes; TestRoundTimes flaked when this fdatasync was
	// the slow one).
	start := time.Now()
	err := h.syncInline(true)
	h.tm.round.Add(int64(time.Since(start)))
	if err != nil {
		return h.stop(err)
	}
	return nil
}

// maxInlineRounds bounds one HandleReady: a completion hands raft its local
// answers, which give it a next Ready (the applies of what the answers
// committed), and that one's own completion usually nothing more. A call
// that stops at the bound leaves the rest to the next call.
const maxInlineRounds = 16

// collect takes the Ready of every group that may have one, installs its
// snapshot, and queues its entries and HardState for the round's WAL write.
func (h *Host) collect() ([]readyRound, error) {
	var rounds []readyRound
	for _, id := range h.order {
		g := h.groups[id]
		if !g.dirty {
			continue
		}
		// Kept dirty for the next round too: raft may have more for it
		// once this round's local answers are stepped.
		if g.dirty = g.rn.HasReady(); !g.dirty {
			continue
		}
		r := readyRound{g: g, rd: g.rn.Ready()}
		r.split()
		h.publishLead(g, r.rd)
		if !raft.IsEmptySnap(r.rd.Snapshot) {
			if err := h.installSnapshot(g, r.rd.Snapshot); err != nil {
				return nil, err
			}
		}
		h.settleFetch(g)
		h.persist(g, r.rd)
		rounds = append(rounds, r)
		if h.cfg.ackOnAppend {
			h.brokenAckOnAppend(g, r.rd.Entries)
		}
	}
	return rounds, nil
}

// stored records in the group's storage what an fdatasync made durable: the
// MemoryStorage holds only durable entries, which raft reads once the
// MsgStorageAppendResp that follows has moved them out of its unstable log.
func (h *Host) stored(g *group, rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := g.ms.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := g.ms.Append(rd.Entries); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		return g.ms.SetHardState(rd.HardState)
	}
	return nil
}

// writeState writes what the round's groups applied to their segments.
func (h *Host) writeState(rounds []readyRound) error {
	for _, r := range rounds {
		if err := r.g.state.write(); err != nil {
			return err
		}
	}
	return nil
}

// answer decides the proposals whose records the round applied and wrote.
func (h *Host) answer() {
	now := time.Now()
	for _, a := range h.acks {
		h.tm.answered.Add(1)
		h.tm.latency.Add(int64(now.Sub(a.p.made)))
		a.p.finish(a.seqs, nil)
	}
	clear(h.acks)
	h.acks = h.acks[:0]
}

// persist queues a group's entries and HardState for the round's WAL write.
func (h *Host) persist(g *group, rd raft.Ready) {
	if len(rd.Entries) > 0 {
		h.wal.addEntries(g.id, rd.Entries)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		h.wal.add(encodeHardState(g.id, rd.HardState))
	}
}

// ownKey returns the key of a proposal made by this incarnation.
func (h *Host) ownKey(e *pb.Entry) (proposalKey, bool) {
	if e.GetType() != pb.EntryNormal || len(e.GetData()) < 24 {
		return proposalKey{}, false
	}
	d := e.GetData()
	k := proposalKey{node: le.Uint64(d), incarnation: le.Uint64(d[8:]), id: le.Uint64(d[16:])}
	return k, k.node == h.cfg.NodeID && k.incarnation == h.incarnation
}

// send delivers the round's messages, one batch per destination node, in node
// order (quiesce.go adds beats and pulses).
func (h *Host) send(rounds []readyRound) {
	byNode := h.outgoing(rounds)
	for _, to := range slices.Sorted(maps.Keys(byNode)) {
		h.cfg.Transport.Send(*byNode[to])
	}
}

// apply adds a committed entry's records to the group and decides the
// proposals it settles. Its own proposal succeeds. And every proposal made in
// an earlier term than the entry's can never commit: a leader of a later term
// commits older entries only together with its own first entry, which comes
// after all of them in every later leader's log, so once an entry of term T'
// is committed no entry of a term below T' is ever committed after it.
func (h *Host) apply(g *group, e *pb.Entry) error {
	idx := e.GetIndex()
	if e.GetType() == pb.EntryConfChangeV2 && (idx > g.applied || !h.cfg.skipReappliedConf) {
		if err := h.applyConfChange(g, e); err != nil {
			return err
		}
	}
	if idx <= g.applied {
		return nil
	}
	g.applied = idx
	if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
		key, arrival, recs, err := decodeProposal(e.GetData())
		if err != nil {
			return fmt.Errorf("group %d index %d: %w", g.id, idx, err)
		}
		if key.node == 0 {
			h.applyCommand(g, key)
		} else {
			h.applyRecords(g, e, key, arrival, recs)
		}
	}
	for id, p := range g.pending {
		if p.term < e.GetTerm() {
			delete(g.pending, id)
			p.finish(nil, ErrDropped)
		}
	}
	return nil
}

// applyRecords adds an entry's records to the group's state and answers its
// proposal if this incarnation made it.
func (h *Host) applyRecords(g *group, e *pb.Entry, key proposalKey, arrival int64, recs [][]byte) {
	stored := g.state.add(e.GetIndex(), arrival, recs)
	seqs := make([]uint64, len(stored))
	for i, r := range stored {
		seqs[i] = r.Seq
	}
	if h.cfg.Applier != nil {
		h.cfg.Applier.Applied(g.id, stored)
	}
	if _, own := h.ownKey(e); own {
		if p := g.pending[key.id]; p != nil {
			delete(g.pending, key.id)
			h.acks = append(h.acks, ack{p, seqs}) // answered once written (answer)
		}
	}
}

// Host commands are entries whose proposal key has node 0 (never a node ID):
// the key's incarnation field names the command, its id is the argument.
const cmdCompact = 1 // id: the compaction point

func encodeCommand(cmd, arg uint64) []byte {
	return encodeProposal(proposalKey{incarnation: cmd, id: arg}, 0, nil)
}

func (h *Host) applyCommand(g *group, key proposalKey) {
	if key.incarnation == cmdCompact && key.id > g.compactTo {
		g.compactTo = key.id
	}
}

// proposeCompaction: every ElectionTicks ticks, a leader proposes the
// highest committed index every replica holds (compactionPoint) as the
// group's compaction point, when it has moved CompactMinEntries past the last
// one. A replica lagging more than SnapshotLagEntries is not waited for: it
// catches up from a snapshot (snapshot.go), so a replica that is down holds
// WAL truncation back only for a bounded number of entries.
func (h *Host) proposeCompaction(g *group) {
	if g.compactTicks++; g.compactTicks < h.cfg.ElectionTicks {
		return
	}
	g.compactTicks = 0
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return
	}
	var matches []uint64
	g.rn.WithProgress(func(_ uint64, _ raft.ProgressType, pr tracker.Progress) {
		matches = append(matches, pr.Match)
	})
	point := compactionPoint(st.GetCommit(), h.cfg.SnapshotLagEntries, matches)
	if point >= g.compactTo+h.cfg.CompactMinEntries {
		_ = g.rn.Propose(encodeCommand(cmdCompact, point)) // lost if leadership moves: proposed again later
	}
}

// maybeRoll rolls the WAL once its current file is full, and truncates it
// (docs/cluster.md §2): every group's applied state is fdatasync'd (its
// durable-applied index becomes its applied index), each group's log is
// compacted to min(agreed point, durable-applied), the new file's header
// restates what recovery needs, and the oldest files whose entries are all
// compacted are deleted.
func (h *Host) maybeRoll() error {
	if h.wal.current().size < h.cfg.WALSegmentSize {
		return nil
	}
	for _, id := range h.order {
		g := h.groups[id]
		if !h.cfg.skipStateSync {
			if err := g.state.sync(); err != nil {
				return err
			}
		}
		g.durable = g.applied
	}
	if err := h.crash(crashRollStateSynced); err != nil {
		return err
	}
	for _, id := range h.order {
		if err := h.compact(h.groups[id]); err != nil {
			return err
		}
	}
	if err := h.wal.roll(h.walHeader(), h.crash); err != nil {
		return err
	}
	return h.wal.deleteCovered(h.covered, h.crash)
}

func (h *Host) compact(g *group) error {
	to := min(g.compactTo, g.durable)
	if to <= g.compacted {
		return nil
	}
	term, err := g.ms.Term(to)
	if err != nil {
		return fmt.Errorf("replica: group %d compaction at %d: %w", g.id, to, err)
	}
	if err := g.ms.Compact(to); err != nil {
		return fmt.Errorf("replica: group %d compaction at %d: %w", g.id, to, err)
	}
	g.compacted, g.compactTerm = to, term
	g.setBase(to, g.conf(to))
	return nil
}

// walHeader is the first frames of a new WAL file: the incarnation, the
// removed replicas' tombstones (tomb.go), and each group's HardState and
// compaction point, so the files before it are needed
// only for the entries they hold.
func (h *Host) walHeader() []byte {
	b := appendFrame(nil, le.AppendUint64([]byte{kindStart}, h.incarnation))
	for _, id := range slices.Sorted(maps.Keys(h.tombs)) {
		b = appendFrame(b, encodeTomb(id, h.tombs[id]))
	}
	b = h.damageFrames(b)
	for _, id := range h.order {
		g := h.groups[id]
		if g.dynamic {
			b = appendFrame(b, encodeGroup(id, g.boot))
		}
		if hs, _, _ := g.ms.InitialState(); !raft.IsEmptyHardState(hs) {
			b = appendFrame(b, encodeHardState(id, hs))
		}
		if g.compacted > 0 {
			b = appendFrame(b, encodeCompact(id, g.compacted, g.compactTerm, g.conf(g.compacted)))
			// maybeRoll synced the state just before this header, and
			// compacted no further than what that made durable.
			b = appendFrame(b, encodeStateSynced(id, g.state.durableNext()))
		}
	}
	return b
}

// covered reports whether a WAL file's entries are all compacted away.
func (h *Host) covered(maxIndex map[uint64]uint64) bool {
	for id, i := range maxIndex {
		if g := h.groups[id]; g != nil && i > g.compacted {
			return false
		}
	}
	return true
}

func (h *Host) crash(point string) error {
	if h.cfg.crashAt != nil && h.cfg.crashAt(point) {
		return fmt.Errorf("%w: %s", errCrashPoint, point)
	}
	return nil
}

// stop makes err final and ends every pending proposal as indeterminate.
func (h *Host) stop(err error) error {
	if h.stopped == nil {
		h.stopped = err
	}
	// An applied proposal not answered yet is committed, but its round
	// failed: indeterminate, as ErrStopped says.
	for _, a := range h.acks {
		a.p.finish(nil, ErrStopped)
	}
	h.acks = nil
	h.closeInbox(ErrStopped)
	h.signalStopped()
	for _, id := range h.order {
		g := h.groups[id]
		for _, pid := range slices.Sorted(maps.Keys(g.pending)) {
			g.pending[pid].finish(nil, ErrStopped)
		}
		clear(g.pending)
	}
	return h.stopped
}

// Close stops the host; pending proposals end ErrStopped. Nothing
// acknowledged is lost by closing: what a round wrote but no fdatasync
// covered yet was vouched for to no one (pipeline.go), and Run waits for its
// fdatasync in flight before it returns.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stop(ErrStopped)
	for _, id := range h.order {
		if g := h.groups[id]; g.fetch != nil && g.fetch.f != nil {
			g.fetch.f.Close()
		}
		h.groups[id].state.close()
	}
	if h.ownComp {
		h.cfg.Compressor.Close()
		h.ownComp = false
	}
	return h.wal.f.Close()
}

// Status is a group's state as this node sees it.
type Status struct {
	Leader, Term, Commit, Applied, LastIndex uint64
	Compacted                                uint64 // the log here starts after it
}

// Status returns group's state here.
func (h *Host) Status(group uint64) Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		return Status{}
	}
	st := g.rn.BasicStatus()
	last, _ := g.ms.LastIndex()
	return Status{Leader: st.Lead, Term: st.GetTerm(), Commit: st.GetCommit(), Applied: g.applied, LastIndex: last, Compacted: g.compacted}
}

// Stats are a host's counters since Open.
type Stats struct {
	// Rounds is the Ready rounds that wrote to the WAL; WALSyncs their
	// fdatasyncs (one per round, and one per Open and AddGroup); Entries the
	// entries they appended, of every group.
	Rounds, WALSyncs, Entries uint64
	// StateSyncs is the fdatasyncs of the groups' segments (at WAL and
	// segment rolls; snapshot installations and segment creations aside).
	StateSyncs uint64
	// Proposals is the proposals made on this host (Propose); Queued, of
	// the Propose calls, those made while a round held the lock, and so
	// queued for the next one (inbox.go).
	Proposals, Queued uint64
	// Times is where the rounds' and proposals' time went (roundtime.go).
	Times RoundTimes
}

// Stats returns the host's counters; it takes no lock, so a status or
// metrics endpoint can read it while a round runs.
func (h *Host) Stats() Stats {
	return Stats{Rounds: h.rounds.Load(), WALSyncs: h.wal.syncs.Load(), Entries: h.wal.entries.Load(),
		StateSyncs: h.stateSyncs.Load(), Proposals: h.proposals.Load(), Queued: h.queued.Load(), Times: h.tm.times()}
}

func (h *Host) stateSynced(d time.Duration, err error) {
	h.stateSyncs.Add(1)
	if h.cfg.Observer != nil {
		h.cfg.Observer.Synced(d, err)
	}
}

// brokenAckOnAppend answers proposals at append (Config.ackOnAppend): wrong on
// purpose, for the simulation's self-test.
func (h *Host) brokenAckOnAppend(g *group, ents []*pb.Entry) {
	for _, e := range ents {
		k, own := h.ownKey(e)
		if p := g.pending[k.id]; own && p != nil {
			_, _, recs, _ := decodeProposal(e.GetData())
			seqs := make([]uint64, len(recs))
			for i := range recs {
				seqs[i] = Ordinal(e.GetIndex(), i)
			}
			delete(g.pending, k.id)
			p.finish(seqs, nil)
		}
	}
}
