package replica

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
)

// The metadata group (docs/cluster.md §1): a Raft group like any other whose
// records are transactions on a small versioned key-value state: streams
// ("stream/<name>": a MetaStream) and placement ("placement/<group>": the
// group's replica node IDs). Every node applies the group's log itself, so
// every node holds the same state; a transaction's outcome is decided by its
// conditions when it applies, the same on every node; a change callback runs
// from the apply loop; a linearizable read is a ReadIndex round followed by a
// read of the local state.

// MetaStream is a stream's record.
type MetaStream struct {
	Name   string      `json:"name"`
	Status string      `json:"status"`
	Shards []MetaShard `json:"shards"`
}

// MetaShard is one shard: its hash range (decimal strings, as AWS writes
// them), its lineage and its Raft group.
type MetaShard struct {
	ID             string `json:"id"`
	StartingHash   string `json:"start"`
	EndingHash     string `json:"end"`
	Parent         string `json:"parent,omitempty"`
	AdjacentParent string `json:"adjacentParent,omitempty"`
	Group          uint64 `json:"group"` // 0: a shard a reshard closed at once (never written)
	// Resharding (cluster/reshard.go): the shard's own epoch (0: the
	// stream's), and once it is closed its closing time and End, the
	// ordinal of the seal entry that ended it: its records are below End.
	Epoch    int64  `json:"epoch,omitempty"`
	ClosedMs int64  `json:"closedMs,omitempty"`
	End      uint64 `json:"sealedAt,omitempty"`
}

// StreamKey and PlacementKey name the state's keys.
func StreamKey(name string) string     { return "stream/" + name }
func PlacementKey(group uint64) string { return fmt.Sprintf("placement/%d", group) }

// MetaCond holds when Key's version is Version (0: the key is absent).
type MetaCond struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
}

// MetaOp sets Key to Value (JSON), or deletes it when Value is nil.
type MetaOp struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
}

// MetaTxn applies Ops if every condition holds, else nothing. Origin and ID
// name it: the proposing node keeps the outcomes of its own transactions.
type MetaTxn struct {
	Origin uint64     `json:"origin"`
	ID     uint64     `json:"id"`
	If     []MetaCond `json:"if"`
	Then   []MetaOp   `json:"then"`
}

// MetaValue is a key's value and version: the sequence ordinal of the record
// that last wrote it (unique, increasing), so a CAS never confuses two writes.
type MetaValue struct {
	Value   json.RawMessage
	Version uint64
}

// MetaChange is one key's change, as a callback sees it (New nil: deleted).
type MetaChange struct {
	Key      string
	Old, New *MetaValue
}

// MetaMachine is the metadata group's state machine on one node. It is the
// host's Applier (for its group only).
type MetaMachine struct {
	mu       sync.Mutex
	node     uint64
	group    uint64
	state    map[string]MetaValue
	outcomes map[uint64]bool // own transactions applied, by ID: committed?
	watch    func(MetaChange)
}

var _ Applier = (*MetaMachine)(nil)

// NewMetaMachine is node's machine for the metadata group. watch, if not nil,
// is called for every change from the apply loop (the host's lock is held:
// it must not call the host).
func NewMetaMachine(node, group uint64, watch func(MetaChange)) *MetaMachine {
	return &MetaMachine{node: node, group: group, state: map[string]MetaValue{}, outcomes: map[uint64]bool{}, watch: watch}
}

// EncodeTxn is the record to propose for t.
func EncodeTxn(t MetaTxn) []byte {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return b
}

// Applied applies the group's new records in order.
func (m *MetaMachine) Applied(group uint64, recs []Record) {
	if group != m.group {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		m.apply(r, true)
	}
}

// Restored rebuilds the state from the group's whole applied log, a page at
// a time: the state it builds is the current keys only, but the log behind it
// is every transaction ever, so it is read in pages like any group's.
// Outcomes are kept: a rebuilt state re-decides every transaction
// identically. No callbacks: the state may jump; a watcher re-reads it
// (Snapshot) after a restore.
//
// review5: the new state is built aside, without the lock (Get and Stream
// answer from the old one meanwhile), and swapped in only once every page
// was read: a failed read leaves the old state, never part of the new one.
func (m *MetaMachine) Restored(group uint64, pages iter.Seq2[[]Record, error]) {
	if group != m.group {
		return
	}
	state, outcomes := map[string]MetaValue{}, map[uint64]bool{}
	for page, err := range pages {
		if err != nil {
			return
		}
		for _, r := range page {
			applyTxn(state, r, m.node, outcomes, nil)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = state
	maps.Copy(m.outcomes, outcomes)
}

// apply decides one transaction on the live state.
func (m *MetaMachine) apply(r Record, notify bool) {
	var watch func(MetaChange)
	if notify {
		watch = m.watch
	}
	applyTxn(m.state, r, m.node, m.outcomes, watch)
}

// applyTxn decides one transaction on state, noting node's own outcomes and
// telling watch (if not nil) each change. A record that does not decode is
// skipped the same way on every node.
func applyTxn(state map[string]MetaValue, r Record, node uint64, outcomes map[uint64]bool, watch func(MetaChange)) {
	var t MetaTxn
	if json.Unmarshal(r.Data, &t) != nil {
		return
	}
	ok := true
	for _, c := range t.If {
		if state[c.Key].Version != c.Version {
			ok = false
		}
	}
	if t.Origin == node {
		outcomes[t.ID] = ok
	}
	if !ok {
		return
	}
	for _, op := range t.Then {
		old, had := state[op.Key]
		ch := MetaChange{Key: op.Key}
		if had {
			ch.Old = &old
		}
		if op.Value == nil {
			delete(state, op.Key)
		} else {
			v := MetaValue{Value: op.Value, Version: r.Seq}
			state[op.Key], ch.New = v, &v
		}
		if watch != nil {
			watch(ch)
		}
	}
}

// Outcome returns whether this node's transaction id committed (its
// conditions held), once its proposal is acknowledged; found is false before
// it applied here. The outcome is forgotten once read.
func (m *MetaMachine) Outcome(id uint64) (committed, found bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	committed, found = m.outcomes[id]
	delete(m.outcomes, id)
	return committed, found
}

// Get returns a key's value here (stale unless after a Host.ReadIndex read).
func (m *MetaMachine) Get(key string) (MetaValue, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.state[key]
	return v, ok
}

// Stream decodes a stream's record here.
func (m *MetaMachine) Stream(name string) (MetaStream, uint64, bool) {
	v, ok := m.Get(StreamKey(name))
	var s MetaStream
	if !ok || json.Unmarshal(v.Value, &s) != nil {
		return MetaStream{}, 0, false
	}
	return s, v.Version, true
}

// Snapshot returns a copy of the whole state here.
func (m *MetaMachine) Snapshot() map[string]MetaValue {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.state)
}

// Digest renders the state in key order (tests compare nodes with it).
func (m *MetaMachine) Digest() string {
	st := m.Snapshot()
	out := ""
	for _, k := range slices.Sorted(maps.Keys(st)) {
		out += fmt.Sprintf("%s@%d=%s\n", k, st[k].Version, st[k].Value)
	}
	return out
}
