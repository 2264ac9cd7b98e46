package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// A stored record (the bytes of one replica record) is [u64 arrival unix
// ms][u32 key length][key][data]. The arrival time is the leader's, taken
// when it proposes, so every replica stores (and serves) the same one.
func encodeRecord(arrivalMs int64, e entry) []byte {
	return appendRecord(make([]byte, 0, 12+len(e.key)+len(e.data)), arrivalMs, e)
}

func appendRecord(b []byte, arrivalMs int64, e entry) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(arrivalMs))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.key)))
	b = append(b, e.key...)
	return append(b, e.data...)
}

func decodeRecord(b []byte) (arrivalMs int64, key string, data []byte, err error) {
	if len(b) < 12 {
		return 0, "", nil, errMalformed
	}
	kl := int(binary.LittleEndian.Uint32(b[8:]))
	if kl > len(b)-12 {
		return 0, "", nil, errMalformed
	}
	return int64(binary.LittleEndian.Uint64(b)), string(b[12 : 12+kl]), b[12+kl:], nil
}

// shardRoute is an open shard as a put routes to it.
type shardRoute struct {
	index uint32
	group uint64
	epoch int64 // the shard's sequence-number epoch
	r     hashkey.Range
}

// routeTable is a stream record, decoded once per version of it, and its
// parsed routes. It is shared by every concurrent put and never changed:
// a new version of the record gets a new table.
type routeTable struct {
	version uint64
	rec     streamRec
	routes  []shardRoute
}

// putTable is writable for the put path, without decoding the stream's
// record at every request: the table cached for the record's current
// version answers. At 256 shards the JSON decode of the record was most of
// the CPU a one-record PutRecord cost the node receiving it (BENCHMARKS.md,
// "PutRecord at 256 shards"). The status is the cached record's, so a
// change of it (a new version) is seen as writable sees it.
func (n *Node) putTable(ctx context.Context, name string) (*routeTable, error) {
	if mv, ok := n.meta.Get(replica.StreamKey(name)); ok {
		if t, ok := n.routes.Load(name); ok {
			if t := t.(*routeTable); t.version == mv.Version && t.rec.Status == string(storage.StatusActive) {
				return t, nil
			}
		}
	}
	rec, version, err := n.writable(ctx, name)
	if err != nil {
		return nil, err
	}
	return n.tableOf(rec, version), nil
}

func (n *Node) routesOf(rec streamRec, version uint64) []shardRoute {
	return n.tableOf(rec, version).routes
}

func (n *Node) tableOf(rec streamRec, version uint64) *routeTable {
	if t, ok := n.routes.Load(rec.Name); ok && t.(*routeTable).version == version {
		return t.(*routeTable)
	}
	var rs []shardRoute
	for _, sh := range rec.Shards {
		if isClosed(sh) {
			continue
		}
		idx, _ := datadir.ParseShardID(sh.ID)
		start, err1 := hashkey.Parse(sh.StartingHash)
		end, err2 := hashkey.Parse(sh.EndingHash)
		if err1 == nil && err2 == nil {
			rs = append(rs, shardRoute{index: idx, group: sh.Group, epoch: shardEpoch(rec, sh), r: hashkey.Range{Start: start, End: end}})
		}
	}
	slices.SortFunc(rs, cmpStart) // hash order: AUTO distribution's turns (distribution.go)
	t := &routeTable{version: version, rec: rec, routes: rs}
	n.routes.Store(rec.Name, t)
	return t
}

// shardBatch is the entries of one request that go to one shard.
type shardBatch struct {
	route   shardRoute
	idx     []int
	entries []entry
}

// Put stores entries: one proposal per shard, on each shard's leader (here
// or forwarded), the shards in parallel. A shard that failed gives its
// entries an error (InternalFailure per record, as AWS's partial failures);
// when every entry failed for want of a leader, the whole request is
// refused with ServiceUnavailable.
func (n *Node) Put(ctx context.Context, stream string, entries []storage.PutEntry) ([]storage.PutResult, error) {
	t, err := n.putTable(ctx, stream)
	if err != nil {
		return nil, err
	}
	rec := t.rec
	// Single-node mode's order: the stream, its key (this node's keyring
	// must hold it too: encrypt.go), then the records.
	if _, err := n.writeKey(rec); err != nil {
		return nil, err
	}
	batches, err := n.batchByShard(rec, t.routes, entries)
	if err != nil {
		return nil, err
	}
	results := make([]storage.PutResult, len(entries))
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Go(func() { n.putBatch(ctx, rec, b, results) })
	}
	wg.Wait()
	n.rerouteSealed(ctx, stream, entries, results)
	return wholeFailure(results)
}

// wholeFailure answers a Put whose every entry failed for want of a leader
// (ServiceUnavailable) or for its key on a leader (the KMS error, as
// single-node mode refuses the whole call) with that error; otherwise the
// results, each failed entry with its own error.
func wholeFailure(results []storage.PutResult) ([]storage.PutResult, error) {
	var kms error
	for _, r := range results {
		switch {
		case isKMS(r.Err):
			kms = r.Err
		case !errors.Is(r.Err, storage.ErrUnavailable):
			return results, nil
		}
	}
	if kms != nil {
		return nil, kms
	}
	return nil, results[0].Err
}

// writable returns the record of a stream that takes writes. Kinesis
// answers a write to a stream that is not ACTIVE as if it did not exist.
// The local metadata state answers; only when it lacks the stream (this
// node may not have applied a create just acknowledged elsewhere) is it
// brought up to date first.
func (n *Node) writable(ctx context.Context, name string) (streamRec, uint64, error) {
	rec, v, ok := n.stream(name)
	if !ok || !takesWrites(rec.Status) {
		if err := n.linearize(ctx, metaGroup); err != nil {
			return streamRec{}, 0, n.unavailable("", "", err)
		}
		rec, v, ok = n.stream(name)
	}
	if !ok || !takesWrites(rec.Status) {
		return streamRec{}, 0, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
	}
	return rec, v, nil
}

func (n *Node) batchByShard(rec streamRec, routes []shardRoute, entries []storage.PutEntry) ([]*shardBatch, error) {
	turn, err := n.autoTurns(rec, routes, entries)
	if err != nil {
		return nil, err
	}
	byShard := map[uint32]*shardBatch{}
	var order []*shardBatch
	for i, e := range entries {
		if err := n.checkOrdering(rec.Name, e.SequenceNumberForOrdering); err != nil {
			return nil, err
		}
		r, err := n.placeRecord(rec, routes, turn+uint64(i), &e)
		if err != nil {
			return nil, err
		}
		b := byShard[r.index]
		if b == nil {
			b = &shardBatch{route: r}
			byShard[r.index] = b
			order = append(order, b)
		}
		b.idx = append(b.idx, i)
		b.entries = append(b.entries, entry{key: e.PartitionKey, data: e.Data})
	}
	return order, nil
}

func findRoute(rs []shardRoute, k hashkey.Key) (shardRoute, bool) {
	for _, r := range rs {
		if r.r.Contains(k) {
			return r, true
		}
	}
	return shardRoute{}, false
}

// checkOrdering validates SequenceNumberForOrdering as single-node mode
// does. Its value needs nothing more here: every number this cluster gave
// out for a shard is below every number the shard's leader assigns later
// (ordinals come from Raft indexes, which only grow), so the rule "the new
// number exceeds it" holds by construction; only a forged number from the
// future could break it, and AWS gives no answer for those either.
func (n *Node) checkOrdering(stream, seq string) error {
	if seq == "" {
		return nil
	}
	p, err := seqnum.Parse(seq)
	if err != nil {
		if l, ok := seqnum.ParseLegacy(seq); ok && l.Version == 1 {
			return nil
		}
	}
	if err != nil || p.Ordinal >= seqnum.MaxOrdinal-1<<32 {
		return n.fail(storage.ErrInvalidArgument, storage.ReasonOrderingSeq, storage.Facts{Stream: stream, Given: seq})
	}
	return nil
}

// putBatch stores one shard's entries and fills their results.
func (n *Node) putBatch(ctx context.Context, rec streamRec, b *shardBatch, results []storage.PutResult) {
	// Admitted where proposed (admit.go): here when this node leads, else
	// by the leader the put is forwarded to.
	var w admittedWrite
	err := n.onLeader(ctx, b.route.group,
		func(ctx context.Context) (err error) {
			w, err = n.proposeAdmitted(ctx, b.route.group, rec, b.entries)
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			w, err = n.forwardPut(ctx, addr, rec, b.route.group, b.entries)
			return err
		})
	id := datadir.ShardID(b.route.index)
	if err != nil {
		err = n.shardWriteError(rec.Name, id, err)
	}
	for j, i := range b.idx {
		switch {
		case err != nil:
			results[i] = storage.PutResult{ShardID: id, Err: err}
			continue
		case w.refused != nil && w.refused[j]:
			results[i] = storage.PutResult{ShardID: id, Err: n.throttled(rec.Name, id)}
			continue
		}
		seq := seqnum.Seq{ShardCreateSecs: b.route.epoch, ShardIndex: b.route.index, Ordinal: w.ords[j], ArrivalSecs: w.arrival / 1000}
		results[i] = storage.PutResult{ShardID: id, SequenceNumber: seq.String(), Encrypted: w.encrypted}
	}
}

// shardWriteError is what the client is told of a shard's failed write.
func (n *Node) shardWriteError(stream, id string, err error) error {
	switch {
	case errors.Is(err, replica.ErrOverloaded):
		// The shard's leader has as much uncommitted data as it takes: the
		// shard's capacity, for now. AWS's answer for a shard over its
		// capacity is ProvisionedThroughputExceeded, which the SDKs retry as
		// throttling (a longer backoff than for a 503, giving the leader
		// time to commit) and producers (KPL) retry per record; a 503
		// would be retried as fast as a lost leader.
		return n.throttled(stream, id)
	case errors.Is(err, errNoLeader), errors.Is(err, errMetaStale):
		return n.unavailable(stream, id, err)
	}
	return err
}

// proposeRecords proposes entries as one entry of the group, which this
// node must lead, and waits until it is committed on a quorum (each
// replica's copy fdatasync'd) and applied here. The ordinals are the
// records' positions in the group's log (replica.Ordinal). With a master
// key, every record is encrypted before it is proposed (encrypt.go). The
// seal check after the commit is proposeCharged's.
func (n *Node) proposeRecords(ctx context.Context, group uint64, key *segment.MasterKey, entries []entry) ([]uint64, int64, error) {
	arrival := n.cfg.Now().UnixMilli()
	var dk *dataKey
	if key != nil {
		var err error
		if dk, err = n.crypt.sealer(group, *key); err != nil {
			return nil, 0, err
		}
	}
	size := 0
	for _, e := range entries {
		if dk != nil {
			size += encryptedSize(e)
		} else {
			size += recordHeader + len(e.key) + len(e.data)
		}
	}
	// Each record is copied once, into the entry's bytes (replica.Records).
	recs := replica.NewRecords(len(entries), size)
	for _, e := range entries {
		if dk != nil {
			recs.Add(func(b []byte) []byte { return dk.appendEncrypted(b, arrival, e) })
		} else {
			recs.Add(func(b []byte) []byte { return appendRecord(b, arrival, e) })
		}
	}
	p, err := n.host.ProposeRecords(group, recs)
	if err != nil {
		return nil, 0, err
	}
	ords, err := n.await(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	return ords, arrival, nil
}

// fail builds a *storage.Error of the node's account.
func (n *Node) fail(kind error, r storage.Reason, f storage.Facts) error {
	f.Account = n.cfg.AccountID
	return &storage.Error{Kind: kind, Reason: r, Facts: f}
}

// unavailable is the 503 of a request that found no leader, met a group
// whose replica here was removed (a move), met a metadata leader that
// takes no more for now (replica.ErrOverloaded), or a shard leader cut off
// from the metadata group (errMetaStale); other errors (a cancelled
// request) pass through.
func (n *Node) unavailable(stream, shard string, err error) error {
	if !errors.Is(err, errNoLeader) && !errors.Is(err, replica.ErrUnknownGroup) && !errors.Is(err, replica.ErrOverloaded) && !errors.Is(err, errMetaStale) {
		return err
	}
	return n.fail(storage.ErrUnavailable, storage.ReasonNoLeader, storage.Facts{Stream: stream, Shard: shard, Detail: err.Error()})
}
