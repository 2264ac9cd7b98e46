package replica

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Membership changes (docs/cluster.md §8). A replica moves from node A to
// node B in single-voter steps, each one raft ConfChangeV2 with one change
// (so no joint configuration is ever needed: two majorities of configurations
// one voter apart always intersect):
//
//  1. B's host creates the group (AddGroup, durable before it returns);
//  2. the leader adds B as a learner (ChangeLearner): B catches up from the
//     log, or from a snapshot if the log is compacted past it, without
//     counting in any quorum;
//  3. once B's match index has reached the leader's commit index, the leader
//     promotes B to voter (ChangeVoter);
//  4. if A leads, leadership moves to a caught-up voter (TransferLeader);
//  5. the leader removes A (ChangeRemove).
//
// Each step is re-decided from the group's applied configuration
// (Membership), so a driver that retries after a lost proposal, a leader
// change or a crash converges; nothing here waits for an answer.
//
// A group's configuration is persisted with its log: conf-change entries are
// in the WAL like any entry and raft re-applies the committed ones after a
// restart (from the compaction point on); a compaction frame and a snapshot
// frame carry the configuration as of their index, so it survives the
// truncation of the entries that made it.

// ChangeType is one membership change of a replica.
type ChangeType int

const (
	ChangeLearner ChangeType = iota + 1 // add a non-voting replica (or demote a voter)
	ChangeVoter                         // add a voter, or promote a learner
	ChangeRemove                        // remove a voter or learner
)

// ErrChangePending: raft refused the change because another one of the group
// is not applied yet, or a leadership transfer is under way; retry later.
var ErrChangePending = errors.New("replica: a membership change or leader transfer is pending")

// confAt is a group's configuration from index on.
type confAt struct {
	index uint64
	cs    *pb.ConfState
}

// conf is the group's configuration as of index: the last change applied at
// or before it, or the bootstrap voters (index 0).
func (g *group) conf(index uint64) *pb.ConfState {
	for i := len(g.confs) - 1; i >= 0; i-- {
		if g.confs[i].index <= index {
			return g.confs[i].cs
		}
	}
	return &pb.ConfState{Voters: slices.Clone(g.boot)}
}

// setBase makes cs the configuration at index and forgets older changes: the
// log before index is compacted away, and cs is what a restart starts from.
func (g *group) setBase(index uint64, cs *pb.ConfState) {
	rest := slices.DeleteFunc(slices.Clone(g.confs), func(c confAt) bool { return c.index <= index })
	g.confs = append([]confAt{{index, cs}}, rest...)
}

// applyConfChange hands a committed conf-change entry to raft. It runs for
// every committed one, even those the applied state already holds: after a
// restart raft's configuration starts from the compaction point's, and only
// re-applying the changes after it brings it up to date.
func (h *Host) applyConfChange(g *group, e *pb.Entry) error {
	var cc pb.ConfChangeV2
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return fmt.Errorf("group %d conf change at %d: %w", g.id, e.GetIndex(), err)
	}
	cs := g.rn.ApplyConfChange(&cc)
	if n := len(g.confs); n == 0 || g.confs[n-1].index < e.GetIndex() {
		g.confs = append(g.confs, confAt{e.GetIndex(), proto.CloneOf(cs)})
	}
	return nil
}

// AddGroup creates a replica of a group on this node, to be added to the
// group by its leader (ChangeLearner). boot is the group's bootstrap voters
// (its configuration at index 0, as every replica was created with): the new
// replica learns every later change from the log it receives, or gets the
// configuration whole in a snapshot. The replica is durable when AddGroup
// returns (a WAL frame, restated in every new WAL file); adding a group the
// host has is a no-op. A replica of the group removed from this node earlier
// left a tombstone: the new one starts from its term and vote and refuses
// the votes it would have refused (tomb.go), so moving a replica back to a
// node is safe.
func (h *Host) AddGroup(id uint64, boot []uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return ErrStopped
	}
	if h.groups[id] != nil {
		return nil
	}
	if _, ok := h.damaged[id]; ok {
		return fmt.Errorf("%w: group %d: remove it first (RemoveGroup)", ErrDamaged, id)
	}
	g := h.newGroup(GroupConfig{ID: id, Peers: boot})
	g.dynamic = true
	// Files of an earlier replica of the group are leftovers (RemoveGroup
	// cut short by a crash, or an AddGroup whose frame never became
	// durable): the new replica starts empty.
	if err := h.removeGroupFiles(id); err != nil {
		return err
	}
	if err := h.restoreState(g, compactPoint{}); err != nil { // its files were just removed
		return err
	}
	if err := g.ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(0)), Term: new(uint64(0)),
		ConfState: g.conf(0)}}); err != nil {
		return err
	}
	h.wal.add(encodeGroup(id, boot))
	// A replica of this group removed from here earlier made promises the
	// new one must keep (tomb.go): its term and vote, in the same fdatasync.
	if err := h.revive(g); err != nil {
		return err
	}
	if err := h.flushWAL(); err != nil {
		return err
	}
	if err := h.startGroup(g); err != nil {
		return err
	}
	h.addToOrder(g)
	return nil
}

// ChangeMembership proposes one change of node's role in the group. It must
// be made on the leader (ErrNotLeader otherwise). A nil error means only
// that the change was appended: it is in effect once Membership shows it.
func (h *Host) ChangeMembership(group uint64, typ ChangeType, node uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, err := h.leaderGroup(group)
	if err != nil {
		return err
	}
	var t pb.ConfChangeType
	switch typ {
	case ChangeLearner:
		t = pb.ConfChangeType_ConfChangeAddLearnerNode
	case ChangeVoter:
		t = pb.ConfChangeType_ConfChangeAddNode
	case ChangeRemove:
		t = pb.ConfChangeType_ConfChangeRemoveNode
	default:
		return fmt.Errorf("replica: membership change type %d", typ)
	}
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: t.Enum(), NodeId: new(node)}}}
	if err := g.rn.ProposeConfChange(cc); err != nil {
		return ErrChangePending
	}
	h.wake()
	return nil
}

// TransferLeader asks the group's leader (this node) to hand leadership to
// node, a voter; it happens once node has the leader's whole log.
func (h *Host) TransferLeader(group, node uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, err := h.leaderGroup(group)
	if err != nil {
		return err
	}
	g.rn.TransferLeader(node)
	h.wake()
	return nil
}

func (h *Host) leaderGroup(group uint64) (*group, error) {
	if h.stopped != nil {
		return nil, ErrStopped
	}
	g := h.groups[group]
	switch {
	case g == nil:
		return nil, errUnknownGroup(group)
	case g.rn.BasicStatus().RaftState != raft.StateLeader:
		return nil, ErrNotLeader
	}
	h.unquiesce(g, true)
	g.dirty = true
	return g, nil
}

// Membership is a group's applied configuration as this node sees it.
type Membership struct {
	Voters, Learners []uint64
	// Match is, on the leader only, each replica's highest index known to be
	// on its disk; Commit is the leader's commit index.
	Match  map[uint64]uint64
	Commit uint64
	// Diverged: raft's voters differ from the host's persisted record of
	// the applied configuration (a bug; the simulation fails on it).
	Diverged bool
}

// Has reports whether node is a voter or a learner.
func (m Membership) Has(node uint64) bool {
	return slices.Contains(m.Voters, node) || slices.Contains(m.Learners, node)
}

// Membership returns the group's configuration here; ok is false if this
// node has no replica of it.
func (h *Host) Membership(group uint64) (m Membership, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		return m, false
	}
	// raft's own configuration, not the host's record of it: the two must
	// agree, and the simulation checks that they do on every replica.
	cfg := g.rn.Status().Config
	m.Voters, m.Learners = slices.Sorted(maps.Keys(cfg.Voters.IDs())), slices.Sorted(maps.Keys(cfg.Learners))
	if cs := g.conf(g.applied); !slices.Equal(m.Voters, slices.Sorted(slices.Values(cs.GetVoters()))) {
		m.Diverged = true
	}
	if st := g.rn.BasicStatus(); st.RaftState == raft.StateLeader {
		m.Commit, m.Match = st.GetCommit(), map[uint64]uint64{}
		g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) { m.Match[id] = pr.Match })
	}
	return m, true
}

// encodeConfState appends a configuration: voters, learners, outgoing
// voters, next learners (each a count and IDs), then auto-leave.
func encodeConfState(b []byte, cs *pb.ConfState) []byte {
	for _, ids := range [][]uint64{cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing(), cs.GetLearnersNext()} {
		b = le.AppendUint32(b, uint32(len(ids)))
		for _, id := range ids {
			b = le.AppendUint64(b, id)
		}
	}
	if cs.GetAutoLeave() {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeConfState(r *reader) *pb.ConfState {
	var lists [4][]uint64
	for i := range lists {
		n := r.u32()
		for j := uint32(0); j < n && !r.bad; j++ {
			lists[i] = append(lists[i], r.u64())
		}
	}
	return &pb.ConfState{Voters: lists[0], Learners: lists[1], VotersOutgoing: lists[2], LearnersNext: lists[3],
		AutoLeave: new(r.u8() == 1)}
}

// encodeGroup is a kindGroup frame: a replica created by AddGroup and its
// bootstrap voters.
func encodeGroup(id uint64, boot []uint64) []byte {
	b := le.AppendUint64([]byte{kindGroup}, id)
	return encodeConfState(b, &pb.ConfState{Voters: boot})
}

func decodeGroup(p []byte) (GroupConfig, error) {
	r := reader{b: p}
	id := r.u64()
	cs := decodeConfState(&r)
	if !r.done() {
		return GroupConfig{}, errCorrupt
	}
	return GroupConfig{ID: id, Peers: cs.GetVoters()}, nil
}
