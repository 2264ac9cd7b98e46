package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/shardlog/shardlog/replica"
)

// Groups this node holds no replica of (docs/cluster.md §6). With more
// nodes than replicas a node holds only its share of the shards; for the
// others it finds the leader from the group's placement (the metadata) and
// what its peers answer, and forwards reads as it forwards writes:
//
//	POST /_cluster/v1/read      JSON readRequest → readReply
//	POST /_cluster/v1/position  JSON positionRequest → positionReply
//
// A node asked about a group it does not serve answers 409 with the leader
// it knows of (0: none), and the sender tries the next replica.

// readRequest asks for MaxRecords records from From. The serving node
// admits the read by the stream's limits (admit.go) and charges it the
// first Page records, those the caller returns (it reads one more to learn
// whether more follow); Page 0 charges them all.
type readRequest struct {
	Group      uint64 `json:"group"`
	From       uint64 `json:"from"`
	MaxRecords int    `json:"maxRecords"`
	MaxBytes   int    `json:"maxBytes"`
	Stream     string `json:"stream,omitempty"`
	Page       int    `json:"page,omitempty"`
}

type readReply struct {
	Records []replica.Record `json:"records"`
}

// positionRequest asks for the ordinal of LATEST (TimestampMs 0) or of the
// first record that arrived at or after TimestampMs.
type positionRequest struct {
	Group       uint64 `json:"group"`
	Latest      bool   `json:"latest"`
	TimestampMs int64  `json:"timestampMs"`
}

type positionReply struct {
	Ordinal uint64 `json:"ordinal"`
}

// servesReads reports whether this node's replica of g is a current one: it
// is placed here and in the group's configuration. A replica moved away
// stays on its node, idle, and would serve stale records.
func (n *Node) servesReads(g uint64) bool {
	if !n.host.HasGroup(g) {
		return false
	}
	var nodes []uint64
	if v, ok := n.meta.Get(replica.PlacementKey(g)); !ok || json.Unmarshal(v.Value, &nodes) != nil || !slices.Contains(nodes, n.cfg.NodeID) {
		return false
	}
	m, ok := n.host.Membership(g)
	return ok && m.Has(n.cfg.NodeID)
}

// candidates is where to try a group's leader, best first: the leader this
// node's replica knows, the last leader a peer named, then the placement
// (its preferred leader first) and the move's target.
func (n *Node) candidates(g uint64) []uint64 {
	var out []uint64
	add := func(id uint64) {
		if id != 0 && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if n.host.HasGroup(g) {
		add(n.host.Status(g).Leader)
	}
	if v, ok := n.leaders.Load(g); ok {
		add(v.(uint64))
	}
	if g == metaGroup {
		return out
	}
	var nodes []uint64
	if v, ok := n.meta.Get(replica.PlacementKey(g)); ok && json.Unmarshal(v.Value, &nodes) == nil {
		for _, id := range nodes {
			add(id)
		}
	}
	var mv moveRec
	if v, ok := n.meta.Get(moveKey(g)); ok && json.Unmarshal(v.Value, &mv) == nil {
		add(mv.To)
	}
	return out
}

// leaderGuess is the attempt'th candidate for g's leader (0: none), so
// that retries go round the replicas.
func (n *Node) leaderGuess(g uint64, attempt int) uint64 {
	if l := n.leaderOf(g); attempt == 0 && l != 0 {
		return l // the common case, and the put path's: no metadata decoded
	}
	c := n.candidates(g)
	if len(c) == 0 {
		return 0
	}
	return c[attempt%len(c)]
}

// noteLeader remembers a group's leader as a peer named it.
func (n *Node) noteLeader(g, node uint64) {
	if node != 0 {
		n.leaders.Store(g, node)
	}
}

// onReplica runs a read on a replica of g: here, if this node serves its
// reads, else on each candidate in turn until one answers. A replica that
// does not serve the group (any more) or cannot be dialled is skipped;
// after every candidate, errNoLeader.
func (n *Node) onReplica(ctx context.Context, g uint64, local func(context.Context) error, remote func(context.Context, string) error) error {
	if n.servesReads(g) {
		// A replica removed since (a move) is read elsewhere.
		if err := local(ctx); !errors.Is(err, replica.ErrUnknownGroup) {
			return err
		}
	}
	queue := n.candidates(g)
	tried := map[uint64]bool{n.cfg.NodeID: true}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		addr := n.apiAddr(id)
		if tried[id] || addr == "" {
			continue
		}
		tried[id] = true
		err := remote(ctx, addr)
		var nl *notLeaderError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &nl):
			n.noteLeader(g, nl.hint)
			queue = append([]uint64{nl.hint}, queue...)
		case errors.Is(err, errUnreachable):
		default:
			return err
		}
	}
	return errNoLeader
}

func (n *Node) serveRead(w http.ResponseWriter, r *http.Request) {
	var req readRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.MaxRecords <= 0 {
		http.Error(w, "malformed forwarded read", http.StatusBadRequest)
		return
	}
	if !n.servesReads(req.Group) {
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: n.knownLeader(req.Group)})
		return
	}
	page := req.Page
	if page <= 0 {
		page = req.MaxRecords
	}
	recs, err := n.readLocal(r.Context(), n.recordFor(req.Stream), req.Group, req.From, page, req.MaxRecords, req.MaxBytes)
	switch {
	case errors.Is(err, errThrottled):
		http.Error(w, err.Error(), http.StatusTooManyRequests)
	case err != nil:
		n.writeFailure(w, req.Group, err) // a replica removed since: 409
	default:
		writeJSON(w, http.StatusOK, readReply{Records: recs})
	}
}

// readLocal serves a read of g from this node's replica, admitted and
// charged by this node's controller for the shard: up to maxRecords
// records, of which the first page are charged, less what Read drops from
// it (returned).
func (n *Node) readLocal(ctx context.Context, rec streamRec, g, from uint64, page, maxRecords, maxBytes int) ([]replica.Record, error) {
	if err := n.admitRead(g, rec); err != nil {
		return nil, err
	}
	if err := n.catchUp(ctx, g); err != nil {
		return nil, err
	}
	recs, err := n.reader.ReadApplied(g, from, maxRecords, maxBytes)
	if err != nil {
		return nil, err
	}
	n.chargeRead(g, rec, n.returned(rec, g, from, recs[:min(len(recs), page)]))
	return recs, nil
}

// returned is the part of a page read from g at from that Read returns:
// cut at the shard's end or a seal (cutAtEnd), then without the expired
// records (liveRecords). A read is charged for these only, as single-node
// mode charges the records it returns. rec is this node's view of the
// stream: a node whose metadata lags may not know the shard's End yet, and
// charges up to the seal record, which every replica holds.
func (n *Node) returned(rec streamRec, g, from uint64, page []replica.Record) []replica.Record {
	var sh replica.MetaShard
	for _, s := range rec.Shards {
		if s.Group == g {
			sh = s
		}
	}
	page, _ = cutAtEnd(sh, from, page)
	return liveRecords(page, n.retentionCut(rec))
}

func (n *Node) servePosition(w http.ResponseWriter, r *http.Request) {
	var req positionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "malformed forwarded position", http.StatusBadRequest)
		return
	}
	if !n.servesReads(req.Group) {
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: n.knownLeader(req.Group)})
		return
	}
	var ord uint64
	var err error
	if req.Latest {
		ord, err = n.localTip(r.Context(), req.Group)
	} else {
		ord, err = n.localTimeOrdinal(r.Context(), req.Group, req.TimestampMs)
	}
	if err != nil {
		n.writeFailure(w, req.Group, err)
		return
	}
	writeJSON(w, http.StatusOK, positionReply{Ordinal: ord})
}

// knownLeader is the leader of g this node knows of, for a 409's hint.
func (n *Node) knownLeader(g uint64) uint64 {
	if l := n.leaderOf(g); l != n.cfg.NodeID {
		return l
	}
	return 0
}

// readRecords reads a page of g's applied records on a replica, and one
// record more if there is one (so the caller knows more follow). The
// replica's node admits the read (errThrottled: refused) and charges it
// the page.
func (n *Node) readRecords(ctx context.Context, rec streamRec, g, from uint64, page, maxBytes int) ([]replica.Record, error) {
	var recs []replica.Record
	err := n.onReplica(ctx, g,
		func(ctx context.Context) (err error) {
			recs, err = n.readLocal(ctx, rec, g, from, page, page+1, maxBytes)
			return err
		},
		func(ctx context.Context, addr string) error {
			var out readReply
			body := mustJSON(readRequest{Group: g, From: from, MaxRecords: page + 1, MaxBytes: maxBytes, Stream: rec.Name, Page: page})
			err := n.post(ctx, addr, "read", body, &out)
			recs = out.Records
			return err
		})
	return recs, err
}

// position resolves LATEST or AT_TIMESTAMP on a replica of g.
func (n *Node) position(ctx context.Context, g uint64, latest bool, tsMs int64) (uint64, error) {
	var ord uint64
	err := n.onReplica(ctx, g,
		func(ctx context.Context) (err error) {
			if latest {
				ord, err = n.localTip(ctx, g)
			} else {
				ord, err = n.localTimeOrdinal(ctx, g, tsMs)
			}
			return err
		},
		func(ctx context.Context, addr string) error {
			var out positionReply
			err := n.post(ctx, addr, "position", mustJSON(positionRequest{Group: g, Latest: latest, TimestampMs: tsMs}), &out)
			ord = out.Ordinal
			return err
		})
	return ord, err
}

// groupLeader is g's leader: as this node's replica knows it, else as a
// replica answers GET /_cluster/v1/status?group=g (0: none found).
func (n *Node) groupLeader(ctx context.Context, g uint64) uint64 {
	if n.servesReads(g) {
		return n.host.Status(g).Leader
	}
	for _, id := range n.candidates(g) {
		addr := n.apiAddr(id)
		if id == n.cfg.NodeID || addr == "" {
			continue
		}
		var st NodeStatus
		if err := n.post(ctx, addr, "status?group="+strconv.FormatUint(g, 10), nil, &st); err != nil {
			continue
		}
		if gs, ok := st.Groups[strconv.FormatUint(g, 10)]; ok && gs.Leader != 0 {
			n.noteLeader(g, gs.Leader)
			return gs.Leader
		}
	}
	return 0
}

// wakeGroup asks the group's other replicas, in the background, to wake it
// (replica.Host.Wake): this node's replica knows no leader, and if it is a
// learner of a quiesced group it would never learn one otherwise.
func (n *Node) wakeGroup(g uint64) {
	ids := n.candidates(g)
	if g == metaGroup {
		ids = n.liveNodes()
	}
	path := "wake?group=" + strconv.FormatUint(g, 10)
	for _, id := range ids {
		if addr := n.apiAddr(id); id != n.cfg.NodeID && addr != "" {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), readRetry)
				defer cancel()
				_ = n.post(ctx, addr, path, nil, &struct{}{})
			}()
		}
	}
}

func (n *Node) serveWake(w http.ResponseWriter, r *http.Request) {
	g, err := strconv.ParseUint(r.URL.Query().Get("group"), 10, 64)
	if err != nil {
		http.Error(w, "malformed wake", http.StatusBadRequest)
		return
	}
	_ = n.host.Wake(g) // a group not held here: nothing to wake
	writeJSON(w, http.StatusOK, struct{}{})
}
