package cluster

import (
	"slices"

	"github.com/shardlog/shardlog/storage"
)

// Stats is the engine's numbers as /metrics shows them (api.StatsSource),
// for this node: every stream the metadata holds, with its enabled
// shard-level metrics and every one of its shards, whether or not this node
// holds a replica: any node takes puts and reads for any shard and counts
// their shard-level series, and a scrape drops the series of every shard
// Stats leaves out (api's syncShardLevel).
//   - Segments are the replica's segment files on this node's disk (0 for
//     a shard this node holds no replica of).
//   - Poisoned: the node's Raft host stopped on a failed write or
//     fdatasync (fail-stop, docs/cluster.md §4): every replica here refuses
//     writes until a restart.
//   - Corrupt: the node's replica of the shard failed recovery with
//     corruption and is set aside until the cluster replaces it
//     (damage.go); it holds no segments here. Damage a sealed segment's
//     unread payload hides is fsck verify's to find.
//   - Recovery.Duration is how long opening the Raft host took (the WAL's
//     replay and every replica's segments).
//
// Left out (NoSegmentBytes, NoRecoveryScan): the replicas' segment bytes
// and what recovery scanned, which the replica package does not report.
// ShardLevelMetrics come from this node's applied metadata: a change made
// through this node is applied here before it is acknowledged (txn), one
// made elsewhere shows at the first scrape after this node applies it.
func (n *Node) Stats() storage.Stats {
	out := storage.Stats{Recovery: storage.RecoveryStats{Duration: n.recovery}, NoSegmentBytes: true, NoRecoveryScan: true}
	poisoned := n.stopped.Load()
	for _, rec := range n.streams() {
		s := storage.StreamStats{Name: rec.Name, Status: storage.StreamStatus(rec.Status),
			ShardLevelMetrics: slices.Clone(rec.ShardLevelMetrics)}
		for _, sh := range rec.Shards {
			st := storage.ShardStats{ID: sh.ID}
			switch {
			case sh.Group == 0:
			case n.host.HasGroup(sh.Group):
				st.Segments, st.Poisoned = n.host.Segments(sh.Group), poisoned
			case n.host.IsDamaged(sh.Group):
				st.Poisoned, st.Corrupt = poisoned, true
			}
			s.Shards = append(s.Shards, st)
		}
		out.Streams = append(out.Streams, s)
	}
	return out
}
