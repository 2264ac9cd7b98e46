package cluster

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Capacity modes in cluster mode (api.Capacity): UpdateStreamMode,
// UpdateStreamWarmThroughput, DescribeAccountSettings and
// UpdateAccountSettings, and the on-demand checks of CreateStream. The
// rules, their order and their errors are single-node mode's
// (storage.CheckModeSwitch, storage.CheckWarm, storage.PlanWarm and the
// rest); the state lives in the metadata group:
//   - a stream's mode, its mode switches, its warm target and its daily
//     write peaks in its record (streamRec), so every shard's leader
//     computes the same capacity (admit.go);
//   - the account's commitment (datadir.AccountRecord) under keyAccount;
//   - onDemandRec under keyOnDemand, written by every transaction that
//     makes a stream ON_DEMAND, and a condition of each: two concurrent
//     ones cannot both pass the account's ON_DEMAND stream limit.
//
// A change is one compare-and-set (changeCapacity). Without a reshard the
// stream is UPDATING for Config.UpdateDelay (beginUpdate; finishUpdates
// ends it); a warm throughput that pre-scales the shards is accepted as a
// reshard (pendingTxn) and the stream is ACTIVE once it took effect
// (finishReshards).

// onDemandRec counts the account's ON_DEMAND streams as the last
// transaction that added one saw them. Its value is informative; its
// version is what serializes those transactions.
type onDemandRec struct {
	Streams int `json:"streams"`
}

// OnDemandStreamLimit is the account's limit of ON_DEMAND streams.
func (n *Node) OnDemandStreamLimit() int { return n.cfg.OnDemandStreamLimit }

// onDemandCount counts the ON_DEMAND streams in the local state (a deleted
// stream's record is gone at once in cluster mode).
func (n *Node) onDemandCount() int { return countOnDemand(n.meta.Snapshot()) }

func countOnDemand(snap map[string]replica.MetaValue) int {
	k := 0
	for key, mv := range snap {
		var rec struct {
			Mode storage.StreamMode `json:"mode"`
		}
		if strings.HasPrefix(key, streamPrefix) && json.Unmarshal(mv.Value, &rec) == nil && rec.Mode == storage.ModeOnDemand {
			k++
		}
	}
	return k
}

// onDemandGuard is the condition and write that add one ON_DEMAND stream
// to the account, checked against its limit first.
func (n *Node) onDemandGuard() (replica.MetaCond, replica.MetaOp, error) {
	return n.onDemandGuardOf(n.meta.Snapshot())
}

// onDemandGuardOf takes the count and keyOnDemand's version from one
// snapshot. Every transaction that adds an ON_DEMAND stream writes
// keyOnDemand, so one applied after the snapshot fails the condition: the
// count checked is never short of one it missed (with the version read
// later than the count, it could be, and the limit passed by one).
func (n *Node) onDemandGuardOf(snap map[string]replica.MetaValue) (replica.MetaCond, replica.MetaOp, error) {
	count := countOnDemand(snap)
	if err := storage.CheckOnDemandLimit(n.cfg.AccountID, count, n.cfg.OnDemandStreamLimit); err != nil {
		return replica.MetaCond{}, replica.MetaOp{}, err
	}
	return replica.MetaCond{Key: keyOnDemand, Version: snap[keyOnDemand].Version},
		replica.MetaOp{Key: keyOnDemand, Value: mustJSON(onDemandRec{Streams: count + 1})}, nil
}

// account is the account's settings record in the local state and its
// version (0: never written, a DISABLED commitment).
func (n *Node) account() (datadir.AccountRecord, uint64) {
	var r datadir.AccountRecord
	v, _ := n.getJSON(keyAccount, &r)
	return r, v
}

// AccountSettings is DescribeAccountSettings, after a ReadIndex round: the
// same answer on every node.
func (n *Node) AccountSettings(ctx context.Context) (storage.Commitment, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return storage.Commitment{}, n.unavailable("", "", err)
	}
	r, _ := n.account()
	return storage.AccountCommitment(r, n.cfg.Now()), nil
}

// UpdateAccountSettings enables or disables the commitment by AWS's rules
// (storage/account.go), a compare-and-set on the account record.
func (n *Node) UpdateAccountSettings(ctx context.Context, enable bool) (storage.Commitment, error) {
	var out storage.Commitment
	err := n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		r, v := n.account()
		now := n.cfg.Now()
		next := storage.SwitchedCommitment(r, enable, now)
		out = storage.AccountCommitment(next, now)
		if next == r {
			return nil, nil, nil
		}
		return []replica.MetaCond{{Key: keyAccount, Version: v}}, []replica.MetaOp{{Key: keyAccount, Value: mustJSON(next)}}, nil
	})
	return out, err
}

// capacityChange is what a capacity change decides from the stream's
// record as the rules read it: the record's next state (its mode fields are
// kept) and the pre-scaling reshard planned on it, if any.
type capacityChange struct {
	next     *datadir.StreamRecord
	plan     storage.ReshardPlan
	reshards bool
	// onDemand: the change makes the stream ON_DEMAND (the account's limit
	// was checked; the transaction carries onDemandGuard's condition).
	onDemand bool
}

// capacityInput is what decide reads: the planners' input (the stream's
// record in it) and the account's commitment now.
type capacityInput struct {
	storage.ReshardInput
	commitment storage.Commitment
}

// changeCapacity is single-node mode's changeCapacity (storage/mode.go) as
// a compare-and-set on the stream's record, conditional on the account
// record read (the commitment a warm throughput needs) and, when the stream
// becomes ON_DEMAND, on keyOnDemand.
func (n *Node) changeCapacity(ctx context.Context, name string, decide func(in capacityInput) (capacityChange, error)) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		rec, v, ok := n.stream(name)
		if !ok {
			return nil, nil, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
		}
		var alloc allocRec
		allocVersion, _ := n.getJSON(keyAlloc, &alloc)
		alloc.NextGroup = max(alloc.NextGroup, metaGroup+1)
		acct, acctVersion := n.account()
		in := capacityInput{ReshardInput: n.reshardInput(rec, alloc), commitment: storage.AccountCommitment(acct, n.cfg.Now())}
		c, err := decide(in)
		if err != nil {
			return nil, nil, err
		}
		conds := []replica.MetaCond{{Key: keyAccount, Version: acctVersion}}
		var ops []replica.MetaOp
		if c.onDemand {
			cond, op, err := n.onDemandGuard()
			if err != nil {
				return nil, nil, err
			}
			conds, ops = append(conds, cond), append(ops, op)
		}
		rec.Mode, rec.ModeSwitchNs, rec.WarmMiBps = c.next.Mode, c.next.ModeSwitchNs, c.next.WarmMiBps
		if rec.mode() == storage.ModeProvisioned {
			rec.Distribution = "" // storage.SwitchMode's rule: AUTO is an ON_DEMAND stream's only
		}
		if c.reshards {
			pc, pops := n.pendingTxn(rec, v, c.plan, alloc, allocVersion)
			return append(conds, pc...), append(ops, pops...), nil
		}
		n.beginUpdate(&rec)
		key := replica.StreamKey(name)
		return append(conds, replica.MetaCond{Key: key, Version: v}), append(ops, replica.MetaOp{Key: key, Value: mustJSON(rec)}), nil
	})
}

// UpdateStreamMode switches a stream's capacity mode; warm, when not nil,
// is the warm throughput to pre-scale to. Single-node mode's checks in its
// order: the stream exists and is ACTIVE, the mode differs, fewer than
// storage.ModeSwitchesPerDay switches in 24 hours, the account's ON_DEMAND
// stream limit, then the warm throughput's.
func (n *Node) UpdateStreamMode(ctx context.Context, name string, mode storage.StreamMode, warm *int) error {
	return n.changeCapacity(ctx, name, func(in capacityInput) (capacityChange, error) {
		if err := storage.CheckModeSwitch(in.Account, in.Stream, mode, in.Now); err != nil {
			return capacityChange{}, err
		}
		c := capacityChange{onDemand: mode == storage.ModeOnDemand}
		if c.onDemand {
			// Checked here, before the warm throughput, for single-node
			// mode's order; the guard checks it again with its condition.
			if err := storage.CheckOnDemandLimit(in.Account, n.onDemandCount(), n.cfg.OnDemandStreamLimit); err != nil {
				return capacityChange{}, err
			}
		}
		c.next = storage.SwitchMode(in.Stream, mode, in.Now)
		if warm == nil {
			return c, nil
		}
		return n.warmChange(in, c, *warm)
	})
}

// UpdateStreamWarmThroughput sets an ON_DEMAND stream's warm throughput
// and pre-scales its shards to it, as single-node mode does: the stream
// must be ON_DEMAND, then ACTIVE, then the warm throughput's checks.
func (n *Node) UpdateStreamWarmThroughput(ctx context.Context, name string, mibps int) (storage.WarmThroughput, error) {
	var out storage.WarmThroughput
	err := n.changeCapacity(ctx, name, func(in capacityInput) (capacityChange, error) {
		m := in.Stream
		f := storage.Facts{Account: in.Account, Stream: m.Name}
		switch {
		case m.Mode != storage.ModeOnDemand:
			return capacityChange{}, &storage.Error{Kind: storage.ErrInvalidArgument, Reason: storage.ReasonWarmProvisioned, Facts: f}
		case m.Status != storage.StatusActive:
			f.State = m.Status
			return capacityChange{}, &storage.Error{Kind: storage.ErrResourceInUse, Reason: storage.ReasonNotActive, Facts: f}
		}
		out = storage.WarmThroughput{TargetMiBps: mibps, CurrentMiBps: openShardsOf(m)}
		return n.warmChange(in, capacityChange{next: m.Clone()}, mibps)
	})
	return out, err
}

// warmChange checks a warm throughput of mibps for c.next (the stream as
// the call leaves it) and plans its pre-scaling (storage.PlanWarm).
func (n *Node) warmChange(in capacityInput, c capacityChange, mibps int) (capacityChange, error) {
	if err := storage.CheckWarm(in.Account, c.next.Name, c.next.Mode, in.commitment, mibps); err != nil {
		return capacityChange{}, err
	}
	c.next.WarmMiBps = mibps
	in.Stream = c.next
	p, ok, err := storage.PlanWarm(in.ReshardInput, mibps)
	if err != nil {
		return capacityChange{}, err
	}
	c.plan, c.reshards = p, ok
	return c, nil
}

// openShardsOf counts a planning record's open shards.
func openShardsOf(m *datadir.StreamRecord) int {
	k := 0
	for _, sh := range m.Shards {
		if !sh.Closed {
			k++
		}
	}
	return k
}
