package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// Reads (docs/cluster.md §5) are served by a replica (this node's, or one
// elsewhere: remote.go) up to its
// applied index: its applied state holds only committed entries, so a read
// is never of a phantom record, and a lagging replica can only be behind.
// Before it reads, a node asks the group's leader for its commit index
// (ReadIndex) and waits to apply it, so a record acknowledged anywhere
// before the read is in it. When no leader answers within an election
// timeout (this node is on a partition's minority side) the read is served
// from the local state anyway: stale, never wrong.

// recordReader reads a group's applied records from an ordinal on:
// *replica.Host, from the group's segment files.
type recordReader interface {
	ReadApplied(group, fromOrdinal uint64, maxRecords, maxBytes int) ([]replica.Record, error)
}

// shardOf returns a readable stream's record and one of its shards. As in
// single-node mode, the id resolves first (an unresolvable id is reported
// as sent even when the stream is missing), then a stream that is missing
// or not ACTIVE is reported as the shard not existing.
func (n *Node) shardOf(ctx context.Context, name, id string) (streamRec, replica.MetaShard, error) {
	idx, ok := datadir.ParseShardID(id)
	if !ok {
		return streamRec{}, replica.MetaShard{}, n.fail(storage.ErrShardNotFound, storage.ReasonBadShardID, storage.Facts{Stream: name, Given: id})
	}
	rec, _, err := n.writable(ctx, name)
	if errors.Is(err, storage.ErrUnavailable) {
		return streamRec{}, replica.MetaShard{}, err
	}
	if err == nil {
		for _, sh := range rec.Shards {
			if i, _ := datadir.ParseShardID(sh.ID); i == idx {
				return rec, sh, nil
			}
		}
	}
	return streamRec{}, replica.MetaShard{}, n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: name, Shard: datadir.ShardID(idx)})
}

// catchUp brings the local replica up to the group's commit index when a
// leader answers in time (see the comment at the top).
func (n *Node) catchUp(ctx context.Context, group uint64) error {
	if err := n.linearize(ctx, group); err != nil && !errors.Is(err, errNoLeader) {
		return err
	}
	return nil
}

// Position resolves GetShardIterator.
func (n *Node) Position(ctx context.Context, stream, shardID string, typ storage.IteratorType, startSeq string, ts time.Time) (storage.Position, error) {
	return n.resolve(ctx, stream, shardID, typ, startSeq, ts, true)
}

// resolve is Position; admit counts it against the shard's
// GetShardIterator rate (channel delivery's subscriptions are not counted:
// they cost the shards none of their read capacity, as in single-node mode).
func (n *Node) resolve(ctx context.Context, stream, shardID string, typ storage.IteratorType, startSeq string, ts time.Time, admit bool) (storage.Position, error) {
	rec, sh, err := n.shardOf(ctx, stream, shardID)
	if err != nil {
		return storage.Position{}, err
	}
	// After the shard resolves and before the request's other checks, as
	// single-node mode admits.
	if admit {
		if err := n.admitIterator(sh, rec); err != nil {
			return storage.Position{}, err
		}
	}
	idx, _ := datadir.ParseShardID(sh.ID)
	pos := storage.Position{Stream: stream, StreamCreated: rec.CreatedNs, ShardIndex: idx}
	if sh.Group == 0 && (typ == storage.Latest || typ == storage.AtTimestamp || typ == storage.TrimHorizon) {
		return pos, nil // a shard a reshard closed at once: it never held a record
	}
	switch typ {
	case storage.TrimHorizon:
		pos.Ordinal = n.trimHorizon(ctx, rec, sh.Group)
	case storage.Latest:
		pos.Ordinal, err = n.position(ctx, sh.Group, true, 0)
		err = n.unavailable(stream, sh.ID, err)
	case storage.AtSequenceNumber, storage.AfterSequenceNumber:
		pos.Ordinal, err = n.seqPosition(rec, shardEpoch(rec, sh), idx, typ, startSeq)
	case storage.AtTimestamp:
		pos.Ordinal, err = n.timePosition(ctx, sh.Group, ts)
	default:
		err = n.fail(storage.ErrInvalidArgument, storage.ReasonIterType, storage.Facts{Stream: stream, Given: string(typ)})
	}
	return pos, err
}

// seqPosition is single-node mode's rule (storage/records.go), with the
// shard's epoch (the stream's, or a reshard's child's own) as its creation
// second.
func (n *Node) seqPosition(rec streamRec, epoch int64, idx uint32, typ storage.IteratorType, seq string) (uint64, error) {
	f := storage.Facts{Stream: rec.Name, Shard: datadir.ShardID(idx), Given: seq}
	p, err := seqnum.Parse(seq)
	switch {
	case err != nil:
		return 0, n.legacyPosition(idx, f)
	case p.ShardIndex != idx:
		f.Shard2 = datadir.EncodedShardID(p.ShardIndex)
		return 0, n.fail(storage.ErrInvalidArgument, storage.ReasonSeqShard, f)
	case p.ShardCreateSecs != epoch:
		return 0, n.fail(storage.ErrInvalidArgument, storage.ReasonSeqStream, f)
	case typ == storage.AfterSequenceNumber && p.Ordinal == seqnum.MaxOrdinal:
		return 0, n.fail(storage.ErrInvalidArgument, storage.ReasonSeqMax, f)
	case typ == storage.AfterSequenceNumber:
		return p.Ordinal + 1, nil
	}
	return p.Ordinal, nil
}

// legacyPosition answers a number in one of AWS's older layouts as
// single-node mode does.
func (n *Node) legacyPosition(idx uint32, f storage.Facts) error {
	l, ok := seqnum.ParseLegacy(f.Given)
	switch {
	case !ok || l.Version != 0:
		return n.fail(storage.ErrInvalidArgument, storage.ReasonStartSeq, f)
	case l.ShardIndex != idx:
		f.Shard2 = datadir.EncodedShardID(l.ShardIndex)
		return n.fail(storage.ErrInvalidArgument, storage.ReasonSeqShard, f)
	}
	return n.fail(storage.ErrServiceFault, storage.ReasonSeqLegacy, f)
}

// timePosition is the first record that arrived at or after ts, or the
// tip, on a replica of the group.
func (n *Node) timePosition(ctx context.Context, group uint64, ts time.Time) (uint64, error) {
	now := n.cfg.Now()
	if ts.After(now) {
		return 0, n.fail(storage.ErrInvalidArgument, storage.ReasonFutureTime, storage.Facts{N: ts.UnixMilli(), Limit: now.UnixMilli()})
	}
	ord, err := n.position(ctx, group, false, ts.UnixMilli())
	return ord, n.unavailable("", "", err)
}

// localTip is the ordinal after the last record of this node's replica,
// brought up to the group's commit index first.
func (n *Node) localTip(ctx context.Context, group uint64) (uint64, error) {
	if err := n.catchUp(ctx, group); err != nil {
		return 0, err
	}
	return replica.Ordinal(n.host.Status(group).Applied+1, 0), nil
}

// localTimeOrdinal scans this node's replica for the first record that
// arrived at or after tsMs (the segments have no time index yet).
func (n *Node) localTimeOrdinal(ctx context.Context, group uint64, tsMs int64) (uint64, error) {
	if err := n.catchUp(ctx, group); err != nil {
		return 0, err
	}
	tip := replica.Ordinal(n.host.Status(group).Applied+1, 0)
	from := uint64(0)
	for {
		recs, err := n.reader.ReadApplied(group, from, 1000, 1<<62)
		if err != nil || len(recs) == 0 {
			return tip, err
		}
		for _, r := range recs {
			if arrival, err := recordArrival(r.Data); err == nil && arrival >= tsMs {
				return r.Seq, nil
			}
		}
		from = recs[len(recs)-1].Seq + 1
	}
}

// Read returns one page of records from pos. MillisBehindLatest is the age
// of the last record returned when the page is full (more may follow), 0
// otherwise.
func (n *Node) Read(ctx context.Context, pos storage.Position, maxRecords, maxBytes int) (storage.ReadResult, error) {
	rec, sh, err := n.shardOf(ctx, pos.Stream, datadir.ShardID(pos.ShardIndex))
	if err != nil {
		return storage.ReadResult{}, err
	}
	if rec.CreatedNs != pos.StreamCreated { // deleted and created again
		return storage.ReadResult{}, n.fail(storage.ErrShardNotFound, storage.ReasonShardGone, storage.Facts{Stream: pos.Stream, Shard: sh.ID})
	}
	var recs []replica.Record
	if sh.Group != 0 { // a shard a reshard closed at once never held a record
		recs, err = n.readRecords(ctx, rec, sh.Group, pos.Ordinal, maxRecords, maxBytes)
		if errors.Is(err, errThrottled) {
			return storage.ReadResult{}, n.throttled(pos.Stream, sh.ID)
		}
		if err != nil {
			return storage.ReadResult{}, n.unavailable(pos.Stream, sh.ID, err)
		}
	}
	recs, atEnd := cutAtEnd(sh, pos.Ordinal, recs)
	atEnd = atEnd || sh.Group == 0
	more := len(recs) > maxRecords
	if more {
		recs = recs[:maxRecords]
	}
	next := pos
	var lastArrival int64
	if len(recs) > 0 {
		// Expired records are skipped, not returned (retention.go): a page
		// of only expired ones is empty, and the iterator moves past them.
		next.Ordinal = recs[len(recs)-1].Seq + 1
		lastArrival, _ = recordArrival(recs[len(recs)-1].Data)
	}
	recs = liveRecords(recs, n.retentionCut(rec))
	out := storage.ReadResult{Records: make([]storage.Record, 0, len(recs))}
	for _, r := range recs {
		arrival, key, data, encrypted, err := n.openRecord(r.Data)
		if err != nil {
			return storage.ReadResult{}, n.readKeyError(rec, err)
		}
		seq := seqnum.Seq{ShardCreateSecs: shardEpoch(rec, sh), ShardIndex: pos.ShardIndex, Ordinal: r.Seq, ArrivalSecs: arrival / 1000}
		out.Records = append(out.Records, storage.Record{SequenceNumber: seq.String(), Arrival: time.UnixMilli(arrival), PartitionKey: key, Data: data, Encrypted: encrypted})
		out.Bytes += len(key) + len(data)
		lastArrival = arrival
	}
	out.Next = &next
	if more {
		out.MillisBehindLatest = max(0, n.cfg.Now().UnixMilli()-lastArrival)
	}
	if atEnd && isClosed(sh) {
		return closedEnd(rec, sh, out), nil
	}
	// At a seal whose reshard has not taken effect yet, Next stays before
	// it: the shard ends there once the metadata closes it.
	return out, nil
}
