// Package replica is the replication core of cluster mode (docs/cluster.md):
// a multi-raft host that runs many Raft groups (one per shard) on one node on
// go.etcd.io/raft/v3's RawNode, with one write-ahead log shared by all of them.
//
// Every group's RawNode runs with raft's asynchronous storage writes, and the
// Ready loop is pipelined (pipeline.go). A round, for every ready group at
// once:
//
//  1. sends the groups' messages to peers at once, one Batch per destination
//     node (raft holds back, inside its storage messages, every answer that
//     vouches for state not yet durable);
//  2. writes every group's new entries, HardState and snapshot frame to the
//     WAL in one write, and holds the answers that wait for them;
//  3. applies the committed entries (raft hands out only entries this node
//     holds on disk), writes them to the segments, and answers the proposals
//     they carry.
//
// ONE fdatasync covers every round written before it started (cross-group
// batching), at most one in flight; Run runs it on its own goroutine while
// the loop steps batches and runs the next rounds. Its completion gives the
// groups' MemoryStorage what it made durable, then delivers the held answers:
// to this node's raft (its own acknowledgement, a candidate's own vote) or to
// peers (MsgAppResp, vote grants). HandleReady runs the same steps inline,
// each round followed by its fdatasync and completion (the tests' and the
// simulation's deterministic form; the simulation also runs nodes pipelined,
// completing their fdatasyncs at seeded later steps).
//
// So a follower acknowledges an entry only once it is on its disk, the leader
// counts itself only after its own fdatasync, and an entry is committed only
// once a quorum has it on disk. Propose is answered only when its own entry is
// applied: an acknowledgement means fdatasync'd on a quorum.
//
// Each committed entry holds one proposal: a batch of records. The record at
// position p of the entry at index i gets the sequence ordinal i<<16 | p
// (Ordinal). A committed entry's index is never taken by another entry, so an
// ordinal is never reused across leader changes.
//
// The WAL is a sequence of files that roll at Config.WALSegmentSize. Applied
// entries go to the group's own segment files (segstate.go: the segment
// package's format, under Dir/groups/<id>/, one frame per group per round)
// without an fdatasync; at a roll the segments are synced, each group's log
// is compacted to the point its leader last proposed (below every replica's
// match index, so no replica ever needs a snapshot) or to its durable-applied
// index if lower, and the oldest WAL files holding only compacted entries are
// deleted (host.go maybeRoll, wal.go). The segments are the only place a
// group's records are kept: Host.ReadApplied reads them, and a restart
// re-applies from the WAL only what a power cut took from their tail. Each
// record's ordinal is Ordinal(index, position) and its arrival time the
// leader's, carried in the entry.
//
// TCPTransport (transport.go) carries the batches between processes.
//
// A replica lagging more than Config.SnapshotLagEntries catches up from a
// snapshot of the group's applied state (snapshot.go). The metadata group's
// state machine is MetaMachine (meta.go), with linearizable reads through
// Host.ReadIndex (read.go).
//
// Membership changes (membership.go): a replica moves by ConfChangeV2 steps
// (learner, catch-up, promotion, leader transfer, removal); a group's
// configuration is persisted in its log and in compaction and snapshot
// frames. Placement (placement.go) decides which node holds which replica.
//
// Idle groups quiesce (quiesce.go): they stop ticking and heartbeating until a
// proposal or message wakes them, and a quiesced follower wakes when its
// leader's node falls silent. Heartbeats travel coalesced, as Beats.
//
// Snapshots are segment file lists (snapfetch.go): MsgSnap carries a
// manifest of the sender's files; the receiver fetches their bytes in
// chunks before raft sees the MsgSnap, then installs them as a new
// generation by renaming a new CURRENT into place.
package replica
