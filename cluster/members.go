package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shardlog/shardlog/replica"
)

// Cluster membership (docs/cluster.md §8).
//
//   - The seeds are the nodes of the bootstrap --peers list. They are the
//     metadata group's bootstrap voters, and its voters as long as they
//     stay: every seed knows the others' Raft addresses from its flags, so
//     the group forms with no other protocol. A metadata write costs a
//     quorum of the voters' fdatasyncs, so 3 seeds (or 5) is the size;
//     more nodes join.
//   - A node started with Join asks any node's API (POST /_cluster/v1/join)
//     to register it: node/<id> with its API and Raft addresses, by CAS.
//     The answer names the seeds and every node's Raft address; the joiner
//     creates its replica of the metadata group with the seeds as its
//     bootstrap voters, and the metadata leader adds it as a learner
//     (driveMeta), so it holds the whole metadata too.
//   - Every node's transport learns new nodes' addresses from node/<id>
//     (syncPeers).
//   - remove-node (POST /_cluster/v1/remove-node) marks a node leaving. The
//     placement driver (driver.go) moves its replicas away; driveMeta gives
//     its metadata vote to a caught-up learner if it was a voter; once it
//     holds no replica it is marked removed, and once it has that mark its
//     metadata replica leaves the group. A removed node refuses to start
//     again, and its ID is never admitted again.
//
// The cluster keeps at least Replicas nodes: removing one more is refused.

// joinRequest is a joining node's registration.
type joinRequest struct {
	Node uint64 `json:"node"`
	API  string `json:"api"`
	Peer string `json:"peer"`
}

// joinReply tells a joiner the metadata group's bootstrap voters and every
// node's Raft address; Secret is the cluster secret, to a joiner without
// the token only (serveJoinTLS).
type joinReply struct {
	Seeds  map[uint64]string `json:"seeds"`
	Peers  map[uint64]string `json:"peers"`
	Secret string            `json:"secret,omitempty"`
}

// removeRequest asks for a node's removal.
type removeRequest struct {
	Node uint64 `json:"node"`
}

// NodeInfo is one node as GET /_cluster/v1/nodes reports it.
type NodeInfo struct {
	ID    uint64 `json:"id"`
	API   string `json:"api"`
	Peer  string `json:"peer"`
	State string `json:"state"` // "member", "leaving" or "removed"
	Seed  bool   `json:"seed"`
	// Replicas counts the shard replicas placed on the node; Moving the
	// moves in progress from or to it.
	Replicas int `json:"replicas"`
	Moving   int `json:"moving"`
	// Damaged is the node's replicas set aside as damaged, being replaced
	// (damage.go).
	Damaged []DamagedReplica `json:"damaged,omitempty"`
}

// nodeRecs is every registered node's record, from the local state.
func (n *Node) nodeRecs() map[uint64]nodeRec {
	out := map[uint64]nodeRec{}
	snap := n.meta.Snapshot()
	for k, v := range snap {
		rest, ok := strings.CutPrefix(k, nodePrefix)
		id, err := strconv.ParseUint(rest, 10, 64)
		var rec nodeRec
		if ok && err == nil && json.Unmarshal(v.Value, &rec) == nil {
			out[id] = rec
		}
	}
	return out
}

// seeds is the seed nodes and their Raft addresses: the metadata's record,
// or, before it is written, this seed's own --peers.
func (n *Node) seeds() map[uint64]string {
	var rec seedsRec
	if _, ok := n.getJSON(keySeeds, &rec); ok && len(rec.Peers) > 0 {
		return rec.Peers
	}
	if n.cfg.Join == "" {
		return n.cfg.Peers
	}
	return nil
}

// liveNodes is the nodes that hold replicas: the seeds and the registered
// nodes, but for those leaving or removed. Sorted.
func (n *Node) liveNodes() []uint64 {
	recs := n.nodeRecs()
	var out []uint64
	for id := range n.seeds() {
		if _, ok := recs[id]; !ok {
			out = append(out, id)
		}
	}
	for id, rec := range recs {
		if rec.State == "" {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// syncPeers makes every known node reachable by this node's transport.
func (n *Node) syncPeers() {
	for id, addr := range n.seeds() {
		n.tr.AddPeer(id, addr)
	}
	for id, rec := range n.nodeRecs() {
		if rec.State != stateRemoved {
			n.tr.AddPeer(id, rec.Peer)
		}
	}
}

// ensureSeeds records the seeds, once, from the first metadata leader's
// --peers (absent-only: they never change).
func (n *Node) ensureSeeds(ctx context.Context, snap map[string]replica.MetaValue) {
	if _, ok := snap[keySeeds]; ok || n.cfg.Join != "" || n.host.Status(metaGroup).Leader != n.cfg.NodeID {
		return
	}
	rec := seedsRec{Peers: n.cfg.Peers}
	if _, err := n.txn(ctx, []replica.MetaCond{{Key: keySeeds}}, []replica.MetaOp{{Key: keySeeds, Value: mustJSON(rec)}}); err != nil {
		n.cfg.Logger.Debug("recording the seeds", "error", err)
	}
}

// join registers this node with the cluster through cfg.Join and creates
// its replica of the metadata group, retrying until ctx ends. A node that
// already has the replica (a restart) joined before: it knows the rest
// from its own copy of the metadata.
func (n *Node) join(ctx context.Context) error {
	if n.cfg.Join == "" {
		return nil // a seed
	}
	req := joinRequest{Node: n.cfg.NodeID, API: n.cfg.Advertise, Peer: n.cfg.Peers[n.cfg.NodeID]}
	body := mustJSON(req)
	for {
		if n.host.HasGroup(metaGroup) {
			return nil
		}
		var reply joinReply
		err := n.post(ctx, n.cfg.Join, "join", body, &reply)
		if err == nil {
			return n.joined(reply)
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return err
		}
		n.cfg.Logger.Info("joining the cluster: retrying", "via", n.cfg.Join, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: joining through %s: %w (last error: %v)", n.cfg.Join, ctx.Err(), err)
		case <-time.After(n.cfg.electionTimeout()):
		}
	}
}

func (n *Node) joined(reply joinReply) error {
	if len(reply.Seeds) == 0 {
		return errors.New("cluster: the join answer names no seed nodes")
	}
	if reply.Secret != "" && n.cfg.Secret == "" {
		n.setSecret(reply.Secret)
	}
	for id, addr := range reply.Seeds {
		n.tr.AddPeer(id, addr)
	}
	for id, addr := range reply.Peers {
		n.tr.AddPeer(id, addr)
	}
	return n.host.AddGroup(metaGroup, slices.Sorted(maps.Keys(reply.Seeds)))
}

// refusedError is a definite refusal (HTTP 400) of an internal request:
// retrying cannot help.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return "cluster: refused: " + e.msg }

// serveJoin admits a joiner; secret is given to one that proved no token
// (serveJoinTLS), "" otherwise.
func (n *Node) serveJoin(w http.ResponseWriter, r *http.Request, secret string) {
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Node == 0 || req.API == "" || req.Peer == "" {
		http.Error(w, "malformed join request", http.StatusBadRequest)
		return
	}
	if isTLSAddr(req.API) != (n.cfg.PeerTLS != nil) {
		msg := fmt.Sprintf("node %d advertises %q, this node %q: %v", req.Node, req.API, n.cfg.Advertise, errMixedTLS)
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	tokenless := secret != ""
	if tokenless {
		// Only the peer CA vouches for this joiner, and the answer hands it
		// the cluster secret: the certificate must be a full peer one for
		// the addresses it registers (checkJoinCert).
		if err := checkJoinCert(r.TLS, req); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	reply, err := n.admit(r.Context(), req, tokenless)
	if err != nil {
		writeAdmin(w, reply, err)
		return
	}
	reply.Secret = secret
	writeAdmin(w, reply, err)
}

// admit registers a joining node (or confirms its registration: a joiner
// retries) and answers what it needs to start. keepAddrs (a tokenless
// join) refuses to change a registered node's addresses: a certificate of
// the peer CA must not let its holder take over another node's ID.
func (n *Node) admit(ctx context.Context, req joinRequest, keepAddrs bool) (joinReply, error) {
	for range maxTxnAttempts {
		if err := n.linearize(ctx, metaGroup); err != nil {
			return joinReply{}, err
		}
		seeds := n.seeds()
		if _, seed := seeds[req.Node]; seed {
			return joinReply{}, &refusedError{fmt.Sprintf("node %d is a seed of this cluster: start it with --peers, not --join", req.Node)}
		}
		var rec nodeRec
		key := nodeKey(req.Node)
		v, ok := n.getJSON(key, &rec)
		if ok && rec.State == stateRemoved {
			return joinReply{}, &refusedError{fmt.Sprintf("node %d was removed from this cluster; node IDs are never reused", req.Node)}
		}
		moved := rec.API != req.API || rec.Peer != req.Peer
		if ok && moved && keepAddrs && (rec.API != "" || rec.Peer != "") {
			return joinReply{}, &refusedError{fmt.Sprintf("node %d is registered at %s (Raft %s); a join without the cluster token cannot change a node's addresses", req.Node, rec.API, rec.Peer)}
		}
		if !ok || moved {
			rec.API, rec.Peer = req.API, req.Peer
			committed, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}})
			if err != nil {
				return joinReply{}, err
			}
			if !committed {
				continue
			}
			n.tr.AddPeer(req.Node, req.Peer)
		}
		reply := joinReply{Seeds: seeds, Peers: map[uint64]string{}}
		for id, r := range n.nodeRecs() {
			if r.Peer != "" && r.State != stateRemoved {
				reply.Peers[id] = r.Peer
			}
		}
		reply.Peers[req.Node] = req.Peer
		return reply, nil
	}
	return joinReply{}, errNoLeader
}

func (n *Node) serveRemoveNode(w http.ResponseWriter, r *http.Request) {
	var req removeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Node == 0 {
		http.Error(w, "malformed remove-node request", http.StatusBadRequest)
		return
	}
	info, err := n.RemoveNode(r.Context(), req.Node)
	writeAdmin(w, info, err)
}

// writeAdmin answers an admin request: 400 with the reason for a refusal,
// 503 for a failure to reach the metadata leader (retry), else v.
func writeAdmin(w http.ResponseWriter, v any, err error) {
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		http.Error(w, refused.msg, http.StatusBadRequest)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// RemoveNode marks a node leaving (idempotent) and reports it. Its replicas
// then move away; it is reported "removed" once it holds none.
func (n *Node) RemoveNode(ctx context.Context, id uint64) (NodeInfo, error) {
	for range maxTxnAttempts {
		if err := n.linearize(ctx, metaGroup); err != nil {
			return NodeInfo{}, err
		}
		recs := n.nodeRecs()
		rec, ok := recs[id]
		_, seed := n.seeds()[id]
		switch {
		case !ok && !seed:
			return NodeInfo{}, &refusedError{fmt.Sprintf("node %d is not a node of this cluster", id)}
		case rec.State != "":
			return n.nodeInfo(id), nil
		case len(n.liveNodes())-1 < n.cfg.Replicas:
			return NodeInfo{}, &refusedError{fmt.Sprintf("removing node %d would leave fewer than %d nodes: add a node first", id, n.cfg.Replicas)}
		}
		key := nodeKey(id)
		v, _ := n.getJSON(key, &rec)
		rec.State = stateLeaving
		committed, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}})
		if err != nil {
			return NodeInfo{}, err
		}
		if committed {
			if err := n.linearize(ctx, metaGroup); err != nil {
				return NodeInfo{}, err
			}
			return n.nodeInfo(id), nil
		}
	}
	return NodeInfo{}, errNoLeader
}

// Nodes reports every node of the cluster, from the local state.
func (n *Node) Nodes() []NodeInfo {
	ids := map[uint64]bool{}
	for id := range n.seeds() {
		ids[id] = true
	}
	for id := range n.nodeRecs() {
		ids[id] = true
	}
	var out []NodeInfo
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		out = append(out, n.nodeInfo(id))
	}
	return out
}

func (n *Node) nodeInfo(id uint64) NodeInfo {
	rec := n.nodeRecs()[id]
	seeds := n.seeds()
	info := NodeInfo{ID: id, API: rec.API, Peer: rec.Peer, State: rec.State}
	if _, info.Seed = seeds[id]; info.Seed && info.Peer == "" {
		info.Peer = seeds[id]
	}
	if info.State == "" {
		info.State = "member"
	}
	snap := n.meta.Snapshot()
	cur, moves := placementsOf(snap)
	info.Damaged = damagedOn(snap, id, n.liveNodes())
	for _, nodes := range cur {
		if slices.Contains(nodes, id) {
			info.Replicas++
		}
	}
	for _, mv := range moves {
		if mv.From == id || mv.To == id {
			info.Moving++
		}
	}
	return info
}

// driveMeta, on the metadata leader, keeps the metadata group's membership
// following the nodes: every live node a member (a learner unless it holds
// a voter's seat), as many voters as seeds among the live nodes, leaving
// nodes out. One change per round, each re-decided from the applied
// configuration, so a lost change or a new leader just decides again.
func (n *Node) driveMeta() {
	m, ok := n.host.Membership(metaGroup)
	if !ok || m.Match == nil {
		return // not the leader
	}
	live := n.liveNodes()
	for _, id := range live {
		if !m.Has(id) {
			n.change(metaGroup, replica.ChangeLearner, id)
			return
		}
	}
	want := min(len(n.seeds()), len(live))
	voters := 0
	for _, v := range m.Voters {
		if slices.Contains(live, v) {
			voters++
		}
	}
	if voters < want {
		for _, l := range m.Learners {
			if slices.Contains(live, l) && n.caughtUp(m, l) {
				n.change(metaGroup, replica.ChangeVoter, l)
				return
			}
		}
		return // no learner caught up yet: leaving voters keep their seats meanwhile
	}
	recs := n.nodeRecs()
	for _, id := range append(slices.Clone(m.Voters), m.Learners...) {
		// A leaving node keeps its seat until it is marked removed and has
		// that mark (its match index reached the commit index), so that it
		// knows, should it restart, that it was removed; a dead one cannot
		// learn it and goes at once.
		gone := recs[id].State == stateRemoved && (m.Match[id] >= m.Commit || !n.host.NodeLive(id))
		if !slices.Contains(live, id) && gone {
			n.removeMember(metaGroup, m, id, live)
			return
		}
	}
}

// removeMember takes node out of the group, which this node leads: first
// leadership, if it is this node, to the most caught-up other voter that
// stays (preferring those in keep).
func (n *Node) removeMember(group uint64, m replica.Membership, node uint64, keep []uint64) {
	if node != n.cfg.NodeID {
		n.change(group, replica.ChangeRemove, node)
		return
	}
	var best uint64
	for _, v := range m.Voters {
		if v != node && slices.Contains(keep, v) && n.host.NodeLive(v) && (best == 0 || m.Match[v] > m.Match[best]) {
			best = v
		}
	}
	if best != 0 && n.caughtUp(m, best) {
		_ = n.host.TransferLeader(group, best)
	}
}

func (n *Node) change(group uint64, typ replica.ChangeType, node uint64) {
	if err := n.host.ChangeMembership(group, typ, node); err != nil && !errors.Is(err, replica.ErrChangePending) {
		n.cfg.Logger.Debug("membership change", "group", group, "type", typ, "node", node, "error", err)
	}
}

// promoteSlack: a learner (or the target of a leadership transfer) within
// this many entries of the leader's commit index counts as caught up. Under
// a steady write load a replica's match index trails the commit index by
// the entries in flight, so an exact match may never be seen; raft's
// safety does not depend on it (any voter is safe), only how soon the
// promoted voter can count towards a quorum.
const promoteSlack = 64

// caughtUp: node is live (replica.Host.NodeLive) and its log within
// promoteSlack of the commit index. A match index alone is not enough: a
// dead replica of an idle group keeps one equal to the commit index.
func (n *Node) caughtUp(m replica.Membership, node uint64) bool {
	return m.Match[node]+promoteSlack >= m.Commit && n.host.NodeLive(node)
}

// finishRemovals, on the metadata leader, marks removed each leaving node
// that no placement or move still names (driveMeta then takes its
// metadata seat).
func (n *Node) finishRemovals(ctx context.Context) {
	m, ok := n.host.Membership(metaGroup)
	if !ok || m.Match == nil {
		return
	}
	for id, rec := range n.nodeRecs() {
		if rec.State != stateLeaving {
			continue
		}
		if info := n.nodeInfo(id); info.Replicas > 0 || info.Moving > 0 {
			continue
		}
		key := nodeKey(id)
		v, _ := n.getJSON(key, &rec)
		rec.State = stateRemoved
		if _, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}); err != nil {
			n.cfg.Logger.Debug("marking a node removed", "node", id, "error", err)
		}
	}
}
