// Package cluster is shardlog's cluster mode (docs/cluster.md): a Node runs
// one replica.Host with the metadata Raft group and a Raft group per shard,
// and implements api.Backend, so the whole api layer (wire formats,
// validation, SigV4, errors) serves a cluster unchanged.
//
// What lives where:
//   - the metadata group (group 1, every configured node a voter) holds
//     streams with their shards, shard placement, each node's client API
//     address (node/<id>), the group-ID and shard-epoch allocator and the
//     cluster secret, as replica.MetaMachine keys (meta.go), and each
//     stream's enhanced fan-out consumers (consumers.go);
//   - each shard is a Raft group of 3 replicas (all nodes if fewer), placed
//     by replica.Place; every node's reconcile loop creates the replicas the
//     metadata places on it (node.go);
//   - a write is proposed on the shard's leader, as one entry per shard per
//     request; a node that does not lead forwards it over an internal HTTP
//     endpoint on the leader's client API listener (forward.go);
//   - reads are served by the local replica up to its applied index, after
//     a ReadIndex round when one answers (read.go), and so are
//     SubscribeToShard's subscriptions while the replica stays current
//     (subscribe.go).
//
// Layering: cmd → cluster → {replica, storage (types, errors, Reasons, and
// the pure reshard planners of storage/reshard_export.go),
// seqnum, hashkey, datadir (shard ID names)}; api does not import cluster.
package cluster
