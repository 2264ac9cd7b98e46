package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// The metadata group's keys (replica.MetaMachine state). Streams and
// placement use the replica package's keys; the rest are cluster mode's.
const (
	metaGroup    uint64 = 1 // the metadata group; shard groups are allocated from 2
	keySecret           = "cluster/secret"
	keyAlloc            = "cluster/alloc"
	keySeeds            = "cluster/seeds"
	keyAccount          = "cluster/account"  // datadir.AccountRecord (capacity.go)
	keyOnDemand         = "cluster/ondemand" // onDemandRec (capacity.go)
	nodePrefix          = "node/"
	streamPrefix        = "stream/"
)

func nodeKey(id uint64) string { return fmt.Sprintf("%s%d", nodePrefix, id) }

// streamRec is a stream's record: replica.MetaStream (name, status, shards
// with their hash ranges and groups) and what the API shows besides.
type streamRec struct {
	replica.MetaStream
	CreatedNs int64 `json:"createdNs"`
	// Epoch is the shards' creation second, the one their sequence numbers
	// carry; unique per stream, as single-node mode's (allocRec).
	Epoch            int64             `json:"epoch"`
	RetentionHours   int               `json:"retentionHours"`
	MaxRecordSizeKiB int               `json:"maxRecordSizeKiB"`
	Tags             map[string]string `json:"tags,omitempty"`
	// Resharding (reshard.go): the next new shard's index (0 in records
	// from before it was kept: one above the highest), the UpdateShardCount
	// calls of the last 24 hours, and the reshard pending while UPDATING.
	NextShardIndex uint32      `json:"nextShardIndex,omitempty"`
	ScalingNs      []int64     `json:"scalingNs,omitempty"`
	Reshard        *reshardRec `json:"reshard,omitempty"`
	// Settings (settings.go): the resource policy ("" when none), the
	// enabled enhanced monitoring metrics (storage.ShardLevelMetricNames'
	// order), and an update's UPDATING period: when it ends, and the
	// UpdateMaxRecordSize that takes effect then (0: none).
	Policy                  string   `json:"policy,omitempty"`
	ShardLevelMetrics       []string `json:"shardLevelMetrics,omitempty"`
	PendingUntilNs          int64    `json:"pendingUntilNs,omitempty"`
	PendingMaxRecordSizeKiB int      `json:"pendingMaxRecordSizeKiB,omitempty"`
	// Fence: the UPDATING is of a change shard leaders enforce, ended no
	// sooner than fenceTerm after the metadata leader applied it (lease.go).
	Fence bool `json:"fence,omitempty"`
	// Distribution is the record distribution strategy: "" for
	// USER_PARTITION_KEY, or AUTO (an ON_DEMAND stream only; distribution.go).
	Distribution storage.RecordDistribution `json:"distribution,omitempty"`
	// Encryption (encrypt.go): storage.EncryptionKMS or "", the KeyId as
	// StartStreamEncryption was given it, the master key's fingerprint
	// (hex), and the StartStreamEncryption calls of the last 24 hours.
	EncryptionType string  `json:"encryptionType,omitempty"`
	KeyID          string  `json:"keyId,omitempty"`
	KeyFingerprint string  `json:"keyFingerprint,omitempty"`
	KeyChangesNs   []int64 `json:"keyChangesNs,omitempty"`
	// Capacity (capacity.go, scaler.go): the mode ("": PROVISIONED), the
	// UpdateStreamMode calls of the last 24 hours, an ON_DEMAND stream's
	// warm throughput target (0: none) and its daily write peaks, which set
	// its capacity on every shard's leader alike.
	Mode         storage.StreamMode   `json:"mode,omitempty"`
	ModeSwitchNs []int64              `json:"modeSwitchNs,omitempty"`
	WarmMiBps    int                  `json:"warmMiBps,omitempty"`
	WritePeaks   []datadir.PeakRecord `json:"writePeaks,omitempty"`
	// Channels names the stream's channels, in any state, in creation order
	// (each is its own key: channels.go).
	Channels []string `json:"channels,omitempty"`
}

// mode is the stream's capacity mode.
func (r streamRec) mode() storage.StreamMode {
	if r.Mode == "" {
		return storage.ModeProvisioned
	}
	return r.Mode
}

// allocRec hands out shard group IDs and shard epochs, changed only by
// compare-and-set, so two concurrent CreateStreams never share either.
type allocRec struct {
	NextGroup uint64 `json:"nextGroup"`
	Epoch     int64  `json:"epoch"` // the highest epoch given out
}

// nodeRec is a node's registration: its client API address (forwarding),
// its Raft address (every node's transport dials it) and its membership
// state (members.go).
type nodeRec struct {
	API   string `json:"api"`
	Peer  string `json:"peer,omitempty"`
	State string `json:"state,omitempty"` // "" (a member), stateLeaving or stateRemoved
}

// Node states: a leaving node's replicas move away; once it holds none (and
// no seat in the metadata group) it is removed, and never comes back.
const (
	stateLeaving = "leaving"
	stateRemoved = "removed"
)

// seedsRec is the cluster's seed nodes and their Raft addresses: the
// metadata group's bootstrap voters, written once by its first leader.
type seedsRec struct {
	Peers map[uint64]string `json:"peers"`
}

type secretRec struct {
	Secret string `json:"secret"`
}

// getJSON decodes a key of the local metadata state into v.
func (n *Node) getJSON(key string, v any) (version uint64, ok bool) {
	mv, found := n.meta.Get(key)
	if !found || json.Unmarshal(mv.Value, v) != nil {
		return 0, false
	}
	return mv.Version, true
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return b
}

// stream reads a stream's record from the local state.
func (n *Node) stream(name string) (streamRec, uint64, bool) {
	var rec streamRec
	v, ok := n.getJSON(replica.StreamKey(name), &rec)
	return rec, v, ok
}

// streams reads every stream's record from the local state, sorted by name.
func (n *Node) streams() []streamRec {
	var out []streamRec
	snap := n.meta.Snapshot()
	for _, k := range sortedKeys(snap) {
		if !strings.HasPrefix(k, streamPrefix) {
			continue
		}
		var rec streamRec
		if json.Unmarshal(snap[k].Value, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// apiAddr is a node's client API address, "" if it has not registered.
func (n *Node) apiAddr(id uint64) string {
	if id == n.cfg.NodeID {
		return n.cfg.Advertise
	}
	var rec nodeRec
	n.getJSON(nodeKey(id), &rec)
	return rec.API
}

// linearize waits until this node has applied everything the group had
// committed when it was called (Raft ReadIndex), so a read of the local
// state after it sees every acknowledged write. A ReadIndex request is
// lost when the group has no leader or leadership moves; it is asked again
// every readRetry until the election timeout passes: errNoLeader then.
func (n *Node) linearize(ctx context.Context, group uint64) error {
	deadline := time.Now().Add(n.cfg.electionTimeout())
	for attempt := 0; ; attempt++ {
		if attempt == 1 && n.leaderOf(group) == 0 {
			n.wakeGroup(group)
		}
		r, err := n.host.ReadIndex(group)
		if err != nil {
			return err
		}
		wait := min(readRetry, time.Until(deadline))
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-r.Done():
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if time.Now().After(deadline) {
			return errNoLeader
		}
	}
}

// awaitApplied waits until this node has applied group's entry index, or
// until ctx ends, the host stops, or an election timeout passes: a node cut
// off from the group after the leader answered cannot apply it, and the
// change it waits for is made either way, so giving up only loses
// read-your-writes on this node for that change, never the answer.
func (n *Node) awaitApplied(ctx context.Context, group, index uint64) {
	if index == 0 {
		return
	}
	limit := time.NewTimer(n.cfg.electionTimeout())
	defer limit.Stop()
	for {
		changed, err := n.host.Changed(group) // taken before the check: no apply between them is missed
		if err != nil || n.host.Status(group).Applied >= index {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-limit.C:
			return
		}
	}
}

// readRetry is how long one ReadIndex request is waited for before it is
// asked again (its request or answer may have been lost).
const readRetry = 250 * time.Millisecond

// errNoLeader: no leader answered within an election timeout; nothing was
// written. Callers turn it into storage.ErrUnavailable (HTTP 503).
var errNoLeader = errors.New("cluster: no leader within an election timeout")

// txn commits a metadata transaction on the metadata group's leader (here,
// or forwarded) and reports whether its conditions held. It returns once
// this node has applied the transaction (proposeTxn: the leader's apply
// answers it; forwardTxn waits for it), so every control-plane change is
// read-your-writes on the node that took it, even by reads that skip the
// ReadIndex round (ResourcePolicy, Stats), and a policy set through a node
// is enforced by that node from its acknowledgement on.
func (n *Node) txn(ctx context.Context, conds []replica.MetaCond, ops []replica.MetaOp) (bool, error) {
	var committed bool
	err := n.onLeader(ctx, metaGroup,
		func(ctx context.Context) (err error) {
			committed, err = n.proposeTxn(ctx, conds, ops)
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			committed, err = n.forwardTxn(ctx, addr, conds, ops)
			return err
		})
	return committed, err
}

// proposeTxn proposes a transaction here (the metadata leader) and waits
// for its outcome.
func (n *Node) proposeTxn(ctx context.Context, conds []replica.MetaCond, ops []replica.MetaOp) (bool, error) {
	id := n.txnID.Add(1)
	t := replica.MetaTxn{Origin: n.cfg.NodeID, ID: id, If: conds, Then: ops}
	p, err := n.host.Propose(metaGroup, [][]byte{replica.EncodeTxn(t)})
	if err != nil {
		return false, err
	}
	if _, err := n.await(ctx, p); err != nil {
		return false, err
	}
	committed, found := n.meta.Outcome(id)
	if !found {
		return false, fmt.Errorf("cluster: metadata transaction %d applied without an outcome", id)
	}
	return committed, nil
}
