package cluster

import (
	"context"
	"time"

	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Retention in cluster mode (README "Cluster"). A stream's retention period
// is part of its record in the metadata group (CreateStream sets 24 hours;
// Increase/DecreaseStreamRetentionPeriod change it by compare-and-set), so
// every node knows the same period. Records carry the leader's arrival time,
// identical on every replica, so:
//   - every read (GetRecords, SubscribeToShard; TRIM_HORIZON, AT_TIMESTAMP
//     and sequence-number iterators alike) skips the records that arrived
//     before now minus the period, on every node, as single-node mode does;
//   - each node trims its own replicas on a timer (Config.RetentionEvery):
//     the whole sealed segments whose newest record is past the period
//     (replica.Host.Trim, which says why that is safe for the WAL's replay
//     and for snapshots). A replica that trims later, or a node that was
//     down, only holds expired records a little longer; no read shows them.
//     The host stamps an entry with the same clock just after the leader
//     stamped its records (proposeRecords), and only ever raises it, so a
//     segment's newest entry time is at or after its records' times: a
//     trimmed segment never held a record the read filter would show.
// A snapshot sent to a catching-up replica carries the segments its sender
// still holds: whole expired segments are gone from it, and the expired
// records left in its oldest segment are hidden by the same read filter.

// DefaultRetentionEvery is Config.RetentionEvery's default.
const DefaultRetentionEvery = time.Minute

// SetRetention is Increase/DecreaseStreamRetentionPeriod, with single-node
// mode's checks in its order (storage.Store.SetRetention): the stream, its
// status, then the bounds and the direction against the current period.
func (n *Node) SetRetention(ctx context.Context, name string, hours int, increase bool) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		rec, v, ok := n.stream(name)
		if !ok {
			return nil, nil, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
		}
		if rec.Status != string(storage.StatusActive) {
			return nil, nil, n.fail(storage.ErrResourceInUse, storage.ReasonNotActive, storage.Facts{Stream: name, State: storage.StreamStatus(rec.Status)})
		}
		if err := n.checkRetention(name, hours, increase, rec.RetentionHours); err != nil {
			return nil, nil, err
		}
		rec.RetentionHours = hours
		key := replica.StreamKey(name)
		return []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}, nil
	})
}

func (n *Node) checkRetention(name string, hours int, increase bool, cur int) error {
	switch {
	case hours < storage.MinRetentionHours:
		return n.fail(storage.ErrInvalidArgument, storage.ReasonRetentionMin, storage.Facts{Stream: name, N: int64(hours), Limit: storage.MinRetentionHours})
	case hours > storage.MaxRetentionHours:
		return n.fail(storage.ErrInvalidArgument, storage.ReasonRetentionMax, storage.Facts{Stream: name, N: int64(hours), Limit: storage.MaxRetentionHours})
	case increase && hours < cur:
		return n.fail(storage.ErrInvalidArgument, storage.ReasonRetentionLower, storage.Facts{Stream: name, N: int64(hours), Current: int64(cur)})
	case !increase && hours > cur:
		return n.fail(storage.ErrInvalidArgument, storage.ReasonRetentionRaise, storage.Facts{Stream: name, N: int64(hours), Current: int64(cur)})
	}
	return nil
}

// retentionCut is the arrival time (Unix ms) before which the stream's
// records have expired, by this node's clock.
func (n *Node) retentionCut(rec streamRec) int64 {
	hours := rec.RetentionHours
	if hours <= 0 {
		hours = storage.DefaultRetentionHours // a record written before the field existed
	}
	return n.cfg.Now().Add(-time.Duration(hours) * time.Hour).UnixMilli()
}

// streamCut is retentionCut of a stream by name; 0 (nothing expired) when
// this node does not know it.
func (n *Node) streamCut(name string) int64 {
	rec, _, ok := n.stream(name)
	if !ok {
		return 0
	}
	return n.retentionCut(rec)
}

// trimHorizon is the first unexpired record's ordinal (or the tip), so a
// TRIM_HORIZON iterator starts at the oldest record a read returns, not at
// a run of empty pages over the expired records a replica still holds. When
// no replica answers, 0 is as right (reads skip expired records), only
// slower.
func (n *Node) trimHorizon(ctx context.Context, rec streamRec, group uint64) uint64 {
	ord, err := n.position(ctx, group, false, n.retentionCut(rec))
	if err != nil {
		return 0
	}
	return ord
}

// liveRecords drops the records that arrived before cut. A record that does
// not decode is kept: the caller's decoding reports it.
func liveRecords(recs []replica.Record, cut int64) []replica.Record {
	out := recs[:0:0]
	for _, r := range recs {
		if arrival, err := recordArrival(r.Data); err != nil || arrival >= cut {
			out = append(out, r)
		}
	}
	return out
}

func (n *Node) retentionLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.RetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.EnforceRetention()
			n.sweepLimiters()
		}
	}
}

// EnforceRetention trims this node's replicas of every stream's shards
// (each node trims its own; see the top of the file) and returns what it
// deleted. It runs on a timer; tests call it directly.
func (n *Node) EnforceRetention() replica.TrimResult {
	var total replica.TrimResult
	// review3: trim only by a period read after a linearizable metadata
	// read: a node whose metadata lags an acknowledged retention increase
	// would delete live records for good.
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.electionTimeout())
	defer cancel()
	if err := n.linearize(ctx, metaGroup); err != nil {
		return total
	}
	for _, rec := range n.streams() {
		cut := n.retentionCut(rec)
		for _, sh := range rec.Shards {
			if !n.host.HasGroup(sh.Group) {
				continue
			}
			res, err := n.host.Trim(sh.Group, cut)
			total.Segments += res.Segments
			total.Bytes += res.Bytes
			if err != nil {
				n.cfg.Logger.Error("retention failed", "stream", rec.Name, "shard", sh.ID, "group", sh.Group, "error", err)
			} else if res.Segments > 0 {
				n.cfg.Logger.Debug("retention removed segments", "stream", rec.Name, "shard", sh.ID, "segments", res.Segments)
			}
		}
	}
	if o := n.cfg.RetentionObserver; o != nil && total.Segments > 0 {
		o.Trimmed(total.Segments, total.Bytes)
	}
	return total
}
