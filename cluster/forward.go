package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Forwarding (docs/cluster.md §6): a node that does not lead a group sends
// the decoded write to the leader's client API listener, on internal paths
// the api never sees (Handler), or with peer TLS to its internal
// mutual-TLS listener (internaltls.go), through one pooled keep-alive client. The
// receiving node has already verified the request's signature and
// authorization; the leader only checks that the request comes from a
// node of the cluster: it must carry forwardAuth, derived from the cluster
// secret.
//
//	POST /_cluster/v1/put?group=G&stream=S&key=F   binary entries (encodeEntries) → putReply
//	                                (admitted by S's limits: admit.go; F is the master key
//	                                fingerprint the sender saw, "" for plaintext: encrypt.go;
//	                                a KMS refusal is 422 with a kmsRefusal)
//	POST /_cluster/v1/meta          JSON metaRequest → metaReply
//	GET  /_cluster/v1/status        this node's view of every group (tests, operators);
//	                                ?group=G: of that group only
//	POST /_cluster/v1/read, position   reads of a group held elsewhere (remote.go)
//	POST /_cluster/v1/wake?group=G  wake a quiesced group (remote.go)
//	POST /_cluster/v1/subscribe     a forwarded SubscribeToShard (subforward.go)
//	POST /_cluster/v1/join, remove-node; GET nodes   membership (members.go)
//	POST /_cluster/v1/rates  JSON []groupRate: a node's led shards' write rates, to the metadata leader (scaler.go)
//
// A leader that does not lead the group (any more) answers 409 with the
// leader it knows of; nothing was proposed, so the sender retries there.
const (
	pathPrefix = "/_cluster/v1/"
	// AuthHeader carries ForwardAuth(secret) on internal requests.
	AuthHeader = "X-Shardlog-Cluster-Auth"
	// maxForwardBody bounds a forwarded body: a PutRecords carries at most
	// 10 MiB of data and keys plus 8 bytes of framing per record.
	maxForwardBody = 16 << 20
)

// errUnreachable: the peer could not be dialled, so it received nothing (a
// definite failure: the request may go elsewhere).
var errUnreachable = errors.New("cluster: peer unreachable")

// putReply is a leader's answer to a forwarded put: the ordinals of the
// entries it admitted and stored, in order, and the indexes of those its
// admission refused (admit.go), which it did not propose.
type putReply struct {
	Ordinals  []uint64 `json:"ordinals"`
	ArrivalMs int64    `json:"arrivalMs"`
	Throttled []int    `json:"throttled,omitempty"`
	Encrypted bool     `json:"encrypted,omitempty"`
}

// kmsRefusal is a leader's refusal of a forwarded put for the stream's
// master key (its keyring lacks it, or marks it Disabled or
// PendingDeletion): the sender answers single-node mode's KMS error.
type kmsRefusal struct {
	Reason storage.Reason `json:"reason"`
	KeyID  string         `json:"keyId"`
	Detail string         `json:"detail"`
}

func (r *kmsRefusal) Error() string {
	return "cluster: the leader refused the stream's key: " + r.Detail
}

type metaRequest struct {
	If   []replica.MetaCond `json:"if"`
	Then []replica.MetaOp   `json:"then"`
}

type metaReply struct {
	Committed bool `json:"committed"`
	// Applied is the leader's applied index once the transaction applied
	// there (at or past the transaction's entry): the sender waits to apply
	// it too (txn). 0 from a node that does not send it: no wait.
	Applied uint64 `json:"applied,omitempty"`
}

type notLeaderReply struct {
	Leader uint64 `json:"leader"`
}

// Handler serves the internal endpoints and passes every other request to
// next (the api).
func (n *Node) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.Path) < len(pathPrefix) || r.URL.Path[:len(pathPrefix)] != pathPrefix {
			next.ServeHTTP(w, r)
			return
		}
		if n.cfg.PeerTLS != nil {
			// internaltls.go: the internal paths need a peer certificate.
			http.Error(w, "this node takes node-to-node requests only over mutual TLS with a certificate of the cluster's peer CA, on its internal listener "+n.cfg.Advertise, http.StatusForbidden)
			return
		}
		if !n.forwardKeyOK(r) {
			http.Error(w, "not a node of this cluster", http.StatusForbidden)
			return
		}
		n.serveInternal(w, r)
	})
}

func (n *Node) serveInternal(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path[len(pathPrefix):] {
	case "put":
		n.servePut(w, r)
	case "seal":
		n.serveSeal(w, r)
	case "meta":
		n.serveMeta(w, r)
	case "status":
		writeJSON(w, http.StatusOK, n.statusOf(r.URL.Query().Get("group")))
	case "read":
		n.serveRead(w, r)
	case "position":
		n.servePosition(w, r)
	case "join":
		n.serveJoin(w, r, "")
	case "remove-node":
		n.serveRemoveNode(w, r)
	case "wake":
		n.serveWake(w, r)
	case "subscribe":
		n.serveSubscribe(w, r)
	case "nodes":
		writeJSON(w, http.StatusOK, n.Nodes())
	case "rates":
		n.serveRates(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (n *Node) servePut(w http.ResponseWriter, r *http.Request) {
	group, err := strconv.ParseUint(r.URL.Query().Get("group"), 10, 64)
	body, rerr := readBody(r)
	entries, derr := decodeEntries(body)
	if err != nil || rerr != nil || derr != nil {
		http.Error(w, "malformed forwarded put", http.StatusBadRequest)
		return
	}
	if !n.host.HasGroup(group) { // placed here but not created yet, or never: nothing proposed
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: n.knownLeader(group)})
		return
	}
	// The stream's limits and key are as this leader's metadata knows them.
	rec, err := n.leaderRecord(r.Context(), r.URL.Query().Get("stream"), r.URL.Query().Get("key"))
	if err != nil {
		n.writeFailure(w, group, err)
		return
	}
	res, err := n.proposeAdmitted(r.Context(), group, rec, entries)
	var se *storage.Error
	if isKMS(err) && errors.As(err, &se) {
		writeJSON(w, http.StatusUnprocessableEntity, kmsRefusal{Reason: se.Reason, KeyID: se.Facts.Given, Detail: se.Facts.Detail})
		return
	}
	if err != nil {
		n.writeFailure(w, group, err)
		return
	}
	writeJSON(w, http.StatusOK, replyOf(res))
}

// leaderRecord is the stream's record as this leader knows it, for a put
// forwarded by a node that saw the master key fingerprint key. A leader
// whose metadata says otherwise catches up with the metadata group first,
// so a put routed after a Start/StopStreamEncryption the sender applied is
// never stored in the mode from before it.
func (n *Node) leaderRecord(ctx context.Context, stream, key string) (streamRec, error) {
	rec := n.recordFor(stream)
	if rec.KeyFingerprint == key {
		return rec, nil
	}
	if err := n.linearize(ctx, metaGroup); err != nil {
		if errors.Is(err, errNoLeader) { // cut off from the metadata group: a 503, nothing proposed
			err = fmt.Errorf("%w: %w", errMetaStale, err)
		}
		return streamRec{}, err
	}
	return n.recordFor(stream), nil
}

func replyOf(res admittedWrite) putReply {
	out := putReply{ArrivalMs: res.arrival, Ordinals: res.ords, Encrypted: res.encrypted}
	if res.refused == nil {
		return out
	}
	out.Ordinals = nil
	for j, refused := range res.refused {
		if refused {
			out.Throttled = append(out.Throttled, j)
		} else {
			out.Ordinals = append(out.Ordinals, res.ords[j])
		}
	}
	return out
}

// admittedOf is replyOf's inverse, checked against the entries sent.
func admittedOf(out putReply, entries int) (admittedWrite, error) {
	if len(out.Ordinals)+len(out.Throttled) != entries {
		return admittedWrite{}, fmt.Errorf("cluster: leader answered %d sequence numbers and %d throttled for %d records", len(out.Ordinals), len(out.Throttled), entries)
	}
	res := admittedWrite{ords: out.Ordinals, arrival: out.ArrivalMs, encrypted: out.Encrypted}
	if len(out.Throttled) == 0 {
		return res, nil
	}
	res.refused, res.ords = make([]bool, entries), make([]uint64, entries)
	for _, j := range out.Throttled {
		if j < 0 || j >= entries || res.refused[j] {
			return admittedWrite{}, fmt.Errorf("cluster: leader answered a malformed throttled index %d", j)
		}
		res.refused[j] = true
	}
	k := 0
	for j := range res.ords {
		if !res.refused[j] {
			res.ords[j] = out.Ordinals[k]
			k++
		}
	}
	return res, nil
}

// readBody reads a forwarded body into one buffer of its announced size (a
// forwarded PutRecords is up to 10 MiB; io.ReadAll would grow and copy it
// several times).
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength < 0 || r.ContentLength > maxForwardBody {
		return io.ReadAll(io.LimitReader(r.Body, maxForwardBody))
	}
	body := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, body)
	return body, err
}

func (n *Node) serveMeta(w http.ResponseWriter, r *http.Request) {
	var req metaRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxForwardBody)).Decode(&req); err != nil {
		http.Error(w, "malformed forwarded transaction", http.StatusBadRequest)
		return
	}
	committed, err := n.proposeTxn(r.Context(), req.If, req.Then)
	if err != nil {
		n.writeFailure(w, metaGroup, err)
		return
	}
	writeJSON(w, http.StatusOK, metaReply{Committed: committed, Applied: n.host.Status(metaGroup).Applied})
}

// overloadHeader marks a 503 that is a leader's back-pressure
// (replica.ErrOverloaded: nothing proposed), which post tells apart from
// other 503s (writeAdmin's "the metadata leader cannot be reached").
const overloadHeader = "Shardlog-Overloaded"

// writeFailure answers a definite "not here" (409, with the leader this
// node knows), a leader's back-pressure (503 with overloadHeader:
// replica.ErrOverloaded), a leader with no fresh metadata view (503 marked
// staleRefusal: the sender answers ServiceUnavailable, not back-pressure's
// throttling), or any other failure (500: indeterminate for the sender).
func (n *Node) writeFailure(w http.ResponseWriter, group uint64, err error) {
	if errors.Is(err, errMetaStale) {
		w.Header().Set(refusalHeader, staleRefusal)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if errors.Is(err, replica.ErrOverloaded) {
		w.Header().Set(overloadHeader, "1")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if notHere(err) {
		lead := n.leaderOf(group)
		if lead == n.cfg.NodeID {
			lead = 0 // it was, and is no more: its view is stale
		}
		writeJSON(w, http.StatusConflict, notLeaderReply{Leader: lead})
		return
	}
	if errors.Is(err, errSealed) {
		http.Error(w, err.Error(), http.StatusGone)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// refusalHeader marks a 503 as staleRefusal (overloadHeader marks
// back-pressure; a 503 with neither was refused before anything was done).
const (
	refusalHeader = "Shardlog-Refusal"
	staleRefusal  = "metadata-stale"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// forwardPut sends one shard's entries of rec to the group's leader at
// addr; the stream names the limits and the key the leader admits and
// encrypts them by.
func (n *Node) forwardPut(ctx context.Context, addr string, rec streamRec, group uint64, entries []entry) (admittedWrite, error) {
	var out putReply
	path := "put?group=" + strconv.FormatUint(group, 10) + "&stream=" + url.QueryEscape(rec.Name) + "&key=" + rec.KeyFingerprint
	var refusal *kmsRefusal
	err := n.post(ctx, addr, path, encodeEntries(entries), &out)
	if errors.As(err, &refusal) {
		kind := map[storage.Reason]error{storage.ReasonKMSNotFound: storage.ErrKMSNotFound,
			storage.ReasonKMSDisabled: storage.ErrKMSDisabled, storage.ReasonKMSInvalidState: storage.ErrKMSInvalidState}[refusal.Reason]
		if kind == nil {
			return admittedWrite{}, fmt.Errorf("cluster: leader %s refused the key with reason %q", addr, refusal.Reason)
		}
		return admittedWrite{}, n.fail(kind, refusal.Reason, storage.Facts{Stream: rec.Name, Given: refusal.KeyID, Detail: refusal.Detail})
	}
	if err != nil {
		return admittedWrite{}, err
	}
	res, err := admittedOf(out, len(entries))
	if err != nil {
		return admittedWrite{}, fmt.Errorf("%w (from %s)", err, addr)
	}
	return res, nil
}

// forwardTxn sends a metadata transaction to the metadata leader at addr.
// Once the leader has answered, the transaction is decided: the answer is
// returned after this node has applied it too, or after awaitApplied gives
// up waiting.
func (n *Node) forwardTxn(ctx context.Context, addr string, conds []replica.MetaCond, ops []replica.MetaOp) (bool, error) {
	body, err := json.Marshal(metaRequest{If: conds, Then: ops})
	if err != nil {
		return false, err
	}
	var out metaReply
	if err := n.post(ctx, addr, "meta", body, &out); err != nil {
		return false, err
	}
	n.awaitApplied(ctx, metaGroup, out.Applied)
	return out.Committed, nil
}

// post sends one internal request and decodes its answer. A dial failure
// is errUnreachable (nothing sent); a 409 is a *notLeaderError; a 429 is
// errThrottled (admit.go); a 422 a *kmsRefusal; a 503 with overloadHeader
// is replica.ErrOverloaded (nothing proposed), any other 503 errUnreachable
// (refused before anything was done); anything else that fails leaves the
// request indeterminate.
func (n *Node) post(ctx context.Context, addr, path string, body []byte, out any) error {
	keys := n.keys.Load()
	if keys == nil && !(path == "join" && n.cfg.PeerTLS != nil) {
		return errUnreachable // this node cannot authenticate to peers before it knows the secret
	}
	url, err := n.internalURL(addr, path)
	if err != nil {
		return err
	}
	// The leader answers within proposalTimeout; a peer that stops
	// answering altogether (a partition on an open connection) must not
	// hold the request for ever.
	ctx, cancel := context.WithTimeout(ctx, proposalTimeout+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if keys != nil { // else a join vouched for by the peer certificate
		req.Header.Set(AuthHeader, keys.forward)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return errUnreachable
		}
		return fmt.Errorf("cluster: forward to %s: %w (the write may or may not be stored)", addr, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return json.NewDecoder(resp.Body).Decode(out)
	case http.StatusConflict:
		var nl notLeaderReply
		_ = json.NewDecoder(resp.Body).Decode(&nl)
		return &notLeaderError{hint: nl.Leader}
	case http.StatusGone:
		return errSealed
	case http.StatusTooManyRequests:
		return errThrottled
	case http.StatusUnprocessableEntity:
		var refusal kmsRefusal
		if err := json.NewDecoder(resp.Body).Decode(&refusal); err != nil {
			return fmt.Errorf("cluster: forward to %s: malformed refusal: %w", addr, err)
		}
		return &refusal
	case http.StatusServiceUnavailable:
		if resp.Header.Get(refusalHeader) == staleRefusal {
			return fmt.Errorf("cluster: leader at %s: %w", addr, errMetaStale)
		}
		if resp.Header.Get(overloadHeader) != "" {
			return fmt.Errorf("cluster: leader at %s: %w", addr, replica.ErrOverloaded)
		}
		// Refused before anything was done (writeAdmin: the metadata
		// leader out of reach; a node that does not know the secret yet):
		// as good as unreachable, so the caller may go on elsewhere.
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%w (%s answered %s: %s)", errUnreachable, addr, resp.Status, bytes.TrimSpace(msg))
	case http.StatusBadRequest:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return &refusedError{msg: string(bytes.TrimSpace(msg))}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return fmt.Errorf("cluster: forward to %s: %s: %s", addr, resp.Status, bytes.TrimSpace(msg))
}

// An entry is one record to propose: partition key and data. On the wire
// (forwarded puts) entries are [u32 count] then per entry [u32 key
// length][key][u32 data length][data].
type entry struct {
	key  string
	data []byte
}

func encodeEntries(es []entry) []byte {
	size := 4
	for _, e := range es {
		size += 8 + len(e.key) + len(e.data)
	}
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, size), uint32(len(es)))
	for _, e := range es {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.key)))
		b = append(b, e.key...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.data)))
		b = append(b, e.data...)
	}
	return b
}

var errMalformed = errors.New("cluster: malformed entries")

func decodeEntries(b []byte) ([]entry, error) {
	take := func(n int) ([]byte, bool) {
		if n < 0 || n > len(b) {
			return nil, false
		}
		p := b[:n:n]
		b = b[n:]
		return p, true
	}
	u32 := func() (int, bool) {
		p, ok := take(4)
		if !ok {
			return 0, false
		}
		return int(binary.LittleEndian.Uint32(p)), true
	}
	count, ok := u32()
	if !ok || count == 0 || count > replica.MaxRecordsPerProposal {
		return nil, errMalformed
	}
	es := make([]entry, 0, min(count, 1024))
	for range count {
		kl, ok1 := u32()
		k, ok2 := take(kl)
		dl, ok3 := u32()
		d, ok4 := take(dl)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return nil, errMalformed
		}
		es = append(es, entry{key: string(k), data: d})
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return es, nil
}
