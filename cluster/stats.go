package cluster

import (
	"github.com/shardlog/shardlog/storage"
)

// Stats is the engine's numbers as /metrics shows them (api.StatsSource),
// for this node: every stream the metadata holds, with the shards this
// node holds a replica of.
//   - Segments are the replica's segment files on this node's disk.
//   - Poisoned: the node's Raft host stopped on a failed write or
//     fdatasync (fail-stop, docs/cluster.md §4): every replica here refuses
//     writes until a restart. Corrupt is never set: damage a replica's
//     recovery finds stops the node from opening; a sealed segment's
//     checksums are fsck verify's to check.
//   - Recovery.Duration is how long opening the Raft host took (the WAL's
//     replay and every replica's segments).
//
// Left out (NoSegmentBytes, NoRecoveryScan): the replicas' segment bytes
// and what recovery scanned, which the replica package does not report.
// Enhanced monitoring is not built in cluster mode, so no stream has
// shard-level metrics enabled.
func (n *Node) Stats() storage.Stats {
	out := storage.Stats{Recovery: storage.RecoveryStats{Duration: n.recovery}, NoSegmentBytes: true, NoRecoveryScan: true}
	poisoned := n.stopped.Load()
	for _, rec := range n.streams() {
		s := storage.StreamStats{Name: rec.Name, Status: storage.StreamStatus(rec.Status)}
		for _, sh := range rec.Shards {
			if sh.Group != 0 && n.host.HasGroup(sh.Group) {
				s.Shards = append(s.Shards, storage.ShardStats{ID: sh.ID, Segments: n.host.Segments(sh.Group), Poisoned: poisoned})
			}
		}
		out.Streams = append(out.Streams, s)
	}
	return out
}
