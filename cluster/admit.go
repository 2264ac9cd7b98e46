package cluster

import (
	"context"
	"errors"
	"sync"

	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/storage"
)

// Per-shard admission in cluster mode (README "Limits", docs/cluster.md
// §12). The buckets and their rules are single-node mode's (package
// ratelimit, storage.ProvisionedLimits); what differs is where they live:
//   - writes are admitted by the node that proposes them, the shard's Raft
//     leader, whether the client called it or a node forwarded the put to
//     it. So a shard's write budget is cluster-wide, whichever node the
//     client talks to. A new leader starts with the bucket it holds for the
//     shard: a full one, or the one it left when it last led, refilled
//     since (so, after any pause of half a second, full as well).
//   - reads (GetRecords) are admitted by the node that serves them from its
//     replica, and charged there; GetShardIterator by the node that answers
//     it. A shard's read budget is therefore per serving node: making it
//     cluster-wide would need a round to one node per read.
// A controller is per shard group and node; it is replaced, full, when the
// stream's limits change (its multiplier tag or maximum record size, or an
// ON_DEMAND stream's capacity: its mode, warm target, peaks or open shards),
// as single-node mode replaces a shard's on a change of its metadata.

// errThrottled: the serving node refused a forwarded read for the shard's
// read budget (HTTP 429 on the internal API).
var errThrottled = errors.New("cluster: the shard's read budget is spent")

// groupLimiter is one shard group's controller and the limits it enforces.
type groupLimiter struct {
	limits ratelimit.Limits
	sh     *ratelimit.Shard
}

// admission is the controller of a shard group of rec on this node, nil
// when throttling is off (Config.Throttle) or for a shard that never holds
// a record (group 0).
func (n *Node) admission(group uint64, rec streamRec) *ratelimit.Shard {
	if !n.cfg.Throttle || group == 0 {
		return nil
	}
	l := n.shardLimits(rec)
	for {
		v, ok := n.limiters.Load(group)
		if ok && v.(*groupLimiter).limits == l {
			return v.(*groupLimiter).sh
		}
		g := &groupLimiter{limits: l, sh: ratelimit.NewShard(l)}
		// Of concurrent first requests (or requests that see the limits
		// change) one controller wins, so all of them admit against the
		// same buckets.
		if ok && n.limiters.CompareAndSwap(group, v, g) {
			return g.sh
		}
		if !ok {
			if _, loaded := n.limiters.LoadOrStore(group, g); !loaded {
				return g.sh
			}
		}
	}
}

// shardLimits are each shard's limits of rec: single-node mode's rule
// (storage.ProvisionedLimits; for an ON_DEMAND stream its capacity spread
// over the open shards, storage.OnDemandLimits). Every input is in the
// replicated record, so every shard's leader computes the same.
func (n *Node) shardLimits(rec streamRec) ratelimit.Limits {
	l := n.unitLimits(rec)
	if rec.mode() == storage.ModeOnDemand {
		open := 0
		for _, sh := range rec.Shards {
			if !isClosed(sh) {
				open++
			}
		}
		l = storage.OnDemandLimits(l, open, rec.WarmMiBps, rec.WritePeaks, n.cfg.Now())
	}
	return l
}

// unitLimits are one PROVISIONED shard's rates for rec.
func (n *Node) unitLimits(rec streamRec) ratelimit.Limits {
	return storage.ProvisionedLimits(n.cfg.ThrottleMultiplier, rec.Tags, rec.MaxRecordSizeKiB)
}

// admitWrites decides, in order, which of a shard's entries its leader
// takes now: refused[j] is true for those over the budget, which are never
// proposed. nil when all are taken.
func (n *Node) admitWrites(group uint64, rec streamRec, entries []entry) (refused []bool) {
	adm := n.admission(group, rec)
	if adm == nil {
		return nil
	}
	sizes := make([]int, len(entries))
	for i, e := range entries {
		sizes[i] = len(e.key) + len(e.data)
	}
	ok := adm.AdmitWrites(n.cfg.Now(), sizes)
	for i, in := range ok {
		if !in {
			if refused == nil {
				refused = make([]bool, len(entries))
			}
			refused[i] = true
		}
	}
	return refused
}

// admittedWrite is the outcome of proposing a shard's entries on its
// leader: ords[j] is entry j's ordinal unless refused[j] (throttled).
type admittedWrite struct {
	ords      []uint64
	refused   []bool
	arrival   int64
	encrypted bool // the records were stored encrypted (encrypt.go)
}

// proposeAdmitted admits a shard's entries on this node, its leader, and
// proposes those admitted, encrypted if the stream's record says so. As in single-node
// mode, the stream's key is checked before admission; a request whose
// every entry is refused proposes nothing.
func (n *Node) proposeAdmitted(ctx context.Context, group uint64, rec streamRec, entries []entry) (admittedWrite, error) {
	// The stream's settings are those of a fresh metadata view (lease.go),
	// read after it: rec may predate it, and the local state only moves on.
	if n.leaderOf(group) != n.cfg.NodeID {
		return admittedWrite{}, replica.ErrNotLeader // not here: the sender asks the group's leader, whatever this node's view
	}
	if err := n.freshMeta(ctx); err != nil {
		return admittedWrite{}, err
	}
	if cur := n.recordFor(rec.Name); cur.Name != "" {
		rec = cur
	}
	key, err := n.writeKey(rec)
	if err != nil {
		return admittedWrite{}, err
	}
	refused := n.admitWrites(group, rec, entries)
	if refused == nil {
		ords, arrival, err := n.proposeCharged(ctx, group, rec, key, entries)
		if err == nil {
			n.meter.count(group, entries, nil)
		}
		return admittedWrite{ords: ords, arrival: arrival, encrypted: key != nil}, err
	}
	kept := make([]entry, 0, len(entries))
	for j, e := range entries {
		if !refused[j] {
			kept = append(kept, e)
		}
	}
	out := admittedWrite{ords: make([]uint64, len(entries)), refused: refused, encrypted: key != nil}
	if len(kept) == 0 {
		return out, nil
	}
	ords, arrival, err := n.proposeCharged(ctx, group, rec, key, kept)
	if err != nil {
		return admittedWrite{}, err
	}
	n.meter.count(group, entries, refused)
	out.arrival = arrival
	k := 0
	for j := range entries {
		if !refused[j] {
			out.ords[j] = ords[k]
			k++
		}
	}
	return out, nil
}

// proposeCharged proposes entries admitWrites has charged. A proposal
// definitely not stored (notStored) gives the charge back, so the retry,
// here or on another node, is charged once. Only the proposal's own
// errors count: once it committed, the entries are stored, whatever the
// seal check after it answers.
func (n *Node) proposeCharged(ctx context.Context, group uint64, rec streamRec, key *segment.MasterKey, entries []entry) ([]uint64, int64, error) {
	ords, arrival, err := n.proposeRecords(ctx, group, key, entries)
	if notStored(err) {
		n.refundWrites(group, rec, entries)
	}
	if err != nil {
		return nil, 0, err
	}
	switch sealed, err := n.sealedAfter(ctx, group, ords[0]); {
	case err != nil:
		return nil, 0, err
	case sealed: // a reshard closed the shard first
		return nil, 0, errSealed
	}
	return ords, arrival, nil
}

// notStored reports whether a proposal's error says its entry was
// definitely not stored: this node does not lead the group, or no longer
// holds it, or raft dropped the entry (leadership moved, or the leader's
// uncommitted data was over its cap). Anything else (a timeout, a stopped
// host) may have stored it.
func notStored(err error) bool {
	return errors.Is(err, replica.ErrNotLeader) || errors.Is(err, replica.ErrDropped) ||
		errors.Is(err, replica.ErrOverloaded) || errors.Is(err, replica.ErrUnknownGroup)
}

// refundWrites gives back the charge of entries admitWrites took that were
// then definitely not stored.
func (n *Node) refundWrites(group uint64, rec streamRec, entries []entry) {
	adm := n.admission(group, rec)
	if adm == nil {
		return
	}
	sizes := make([]int, len(entries))
	for i, e := range entries {
		sizes[i] = len(e.key) + len(e.data)
	}
	adm.RefundWrites(n.cfg.Now(), sizes)
}

// throttled is the error of a call or record over its shard's budget:
// single-node mode's, so the api answers it alike.
func (n *Node) throttled(stream, shardID string) error {
	return n.fail(storage.ErrThrottled, storage.ReasonThrottled, storage.Facts{Stream: stream, Shard: shardID})
}

// admitRead decides whether a GetRecords call on group may be served by
// this node now.
func (n *Node) admitRead(group uint64, rec streamRec) error {
	if adm := n.admission(group, rec); adm != nil && !adm.AdmitRead(n.cfg.Now()) {
		return errThrottled
	}
	return nil
}

// chargeRead charges the shard's read-byte bucket with the records a
// GetRecords call returns (their partition keys and data, as single-node
// mode counts them).
func (n *Node) chargeRead(group uint64, rec streamRec, recs []replica.Record) {
	adm := n.admission(group, rec)
	if adm == nil {
		return
	}
	bytes := 0
	for _, r := range recs {
		bytes += recordBytes(r.Data)
	}
	adm.ChargeRead(n.cfg.Now(), bytes)
}

// recordHeader is the bytes of a stored record that are neither its key
// nor its data (encodeRecord: arrival time and key length).
const recordHeader = 12

// admitIterator decides whether a GetShardIterator call on a shard may be
// answered by this node now.
func (n *Node) admitIterator(sh replica.MetaShard, rec streamRec) error {
	if adm := n.admission(sh.Group, rec); adm != nil && !adm.AdmitIterator(n.cfg.Now()) {
		return n.throttled(rec.Name, sh.ID)
	}
	return nil
}

// recordFor is the stream's record as this node knows it, for its limits
// on a forwarded request: the cached route table's while it is current.
// A stream this node's metadata does not hold yet has no tags and the
// default record size.
func (n *Node) recordFor(name string) streamRec {
	mv, ok := n.meta.Get(replica.StreamKey(name))
	if !ok {
		return streamRec{}
	}
	if t, ok := n.routes.Load(name); ok && t.(*routeTable).version == mv.Version {
		return t.(*routeTable).rec
	}
	rec, v, ok := n.stream(name)
	if !ok {
		return streamRec{}
	}
	return n.tableOf(rec, v).rec
}

// sweepLimiters forgets the controllers, write counters and data keys of
// groups no stream has any more (deleted streams; group IDs are never reused).
func (n *Node) sweepLimiters() {
	live := map[uint64]bool{}
	for _, rec := range n.streams() {
		for _, sh := range rec.Shards {
			live[sh.Group] = true
		}
	}
	// the scaler's counters and the data keys (encrypt.go) too
	for _, m := range []*sync.Map{&n.limiters, &n.meter.counts, &n.crypt.sealing} {
		m.Range(func(g, _ any) bool {
			if !live[g.(uint64)] {
				m.Delete(g)
			}
			return true
		})
	}
}
