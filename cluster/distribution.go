package cluster

import (
	"context"
	"sync/atomic"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
)

// AUTO record distribution (UpdateStreamRecordDistributionStrategy, an
// ON_DEMAND stream's only; storage/distribution.go has single-node mode's
// rule): partition keys and ExplicitHashKeys are ignored, and a stream's
// records take turns over its open shards in hash order. The turns are
// counted per receiving node (Node.turns), not cluster-wide: a cluster-wide
// counter would put a metadata round in front of every Put. Each node's
// records still spread evenly, so the stream's do too, give or take one
// record per node and shard. A forwarded put carries its shard already, so
// only the receiving node takes turns.

// storedDistribution is what a stream's record keeps: "" for the default.
func storedDistribution(d storage.RecordDistribution) storage.RecordDistribution {
	if d == storage.DistributionUserKey {
		return ""
	}
	return d
}

// distribution is the stream's strategy, never "".
func (r streamRec) distribution() storage.RecordDistribution {
	if r.Distribution == "" {
		return storage.DistributionUserKey
	}
	return r.Distribution
}

// autoTurns takes a Put's turns when the stream distributes by AUTO (0
// otherwise). Such a stream refuses SequenceNumberForOrdering, as AWS
// documents and single-node mode does.
func (n *Node) autoTurns(rec streamRec, routes []shardRoute, entries []storage.PutEntry) (uint64, error) {
	if rec.Distribution != storage.DistributionAuto || len(routes) == 0 {
		return 0, nil
	}
	for i := range entries {
		if entries[i].SequenceNumberForOrdering != "" {
			return 0, n.fail(storage.ErrInvalidArgument, storage.ReasonOrderingAuto, storage.Facts{Stream: rec.Name})
		}
	}
	c, _ := n.turns.LoadOrStore(rec.Name, new(atomic.Uint64))
	k := uint64(len(entries))
	return c.(*atomic.Uint64).Add(k) - k, nil
}

// placeRecord finds an entry's open shard: by turn with AUTO distribution (routes
// are in hash order: tableOf), else by its hash key.
func (n *Node) placeRecord(rec streamRec, routes []shardRoute, turn uint64, e *storage.PutEntry) (shardRoute, error) {
	if rec.Distribution == storage.DistributionAuto && len(routes) > 0 {
		return routes[turn%uint64(len(routes))], nil
	}
	k := hashkey.FromPartitionKey(e.PartitionKey)
	if e.ExplicitHashKey != nil {
		k = *e.ExplicitHashKey
	}
	r, ok := findRoute(routes, k)
	if !ok {
		return shardRoute{}, n.fail(storage.ErrResourceInUse, storage.ReasonNoOpenShard, storage.Facts{Stream: rec.Name, Given: k.String()})
	}
	return r, nil
}

// cmpStart orders routes by hash key (routeTable keeps them so).
func cmpStart(a, b shardRoute) int { return a.r.Start.Cmp(b.r.Start) }

// RecordDistribution is the stream's strategy as this node's applied
// metadata holds it (api.DistributionSource): the api asks it for a put
// without partition keys, and a Raft round there would cost every AUTO put
// one. A change applied elsewhere a moment ago may not be seen yet; the put
// is then judged by the strategy before it, as a put that raced the change.
func (n *Node) RecordDistribution(_ context.Context, stream string) (storage.RecordDistribution, error) {
	rec, ok := n.localStream(stream)
	if !ok {
		return "", n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: stream})
	}
	return rec.distribution(), nil
}
