package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// A stream's and its consumers' settings in cluster mode: tags
// (AddTagsToStream, RemoveTagsFromStream, TagResource and its kin), resource
// policies, enhanced monitoring, the maximum record size and the record
// distribution strategy. They live where single-node mode keeps them in
// meta.db: a stream's in its record (streamRec), a consumer's in its
// consumer record (consumersRec), so they go with the stream or consumer,
// and one created again under the name starts without them. Every change is
// a compare-and-set of the metadata group, with single-node mode's checks in
// its order and its rules (storage.TagsAdded and the other shared rule
// functions, storage/rules.go), so both modes answer alike.
//
// UPDATING: UpdateMaxRecordSize and Enable/DisableEnhancedMonitoring leave
// the stream UPDATING for Config.UpdateDelay, as single-node mode does; the
// metadata leader's reconcile ends it by its clock (finishUpdates), so an
// end due while the leader changes is made by the next one. A change shard
// leaders enforce (UpdateMaxRecordSize, Start/StopStreamEncryption) is
// UPDATING at least the metadata fence too, even with no delay (lease.go).

// updateStream is single-node mode's updateMetaWith (storage/control.go) as
// a compare-and-set on the stream's record: the stream is looked up, pre
// (may be nil) sees its record, the stream must be ACTIVE, then change
// edits a copy of the record and reports whether there is anything to
// write.
func (n *Node) updateStream(ctx context.Context, name string, pre func(streamRec) error, change func(*streamRec) (bool, error)) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		rec, v, ok := n.stream(name)
		if !ok {
			return nil, nil, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: name})
		}
		if pre != nil {
			if err := pre(rec); err != nil {
				return nil, nil, err
			}
		}
		if rec.Status != string(storage.StatusActive) {
			return nil, nil, n.notActive(rec)
		}
		write, err := change(&rec)
		if err != nil || !write {
			return nil, nil, err
		}
		key := replica.StreamKey(name)
		return []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}, nil
	})
}

func (n *Node) notActive(rec streamRec) error {
	return n.fail(storage.ErrResourceInUse, storage.ReasonNotActive, storage.Facts{Stream: rec.Name, State: storage.StreamStatus(rec.Status)})
}

// tagCheck runs a storage.TagCheck (nil: none) as updateStream's pre.
func tagCheck(check storage.TagCheck) func(streamRec) error {
	if check == nil {
		return nil
	}
	return func(streamRec) error { return check() }
}

// AddTags adds or overwrites a stream's tags. check (may be nil) runs after
// the stream lookup and before the 50-tag limit, as in single-node mode.
func (n *Node) AddTags(ctx context.Context, name string, tags map[string]string, check storage.TagCheck) error {
	return n.updateStream(ctx, name, tagCheck(check), func(rec *streamRec) (bool, error) {
		merged, err := storage.TagsAdded(n.cfg.AccountID, name, rec.Tags, tags)
		rec.Tags = merged
		return err == nil, err
	})
}

// RemoveTags removes a stream's tags; absent keys are ignored.
func (n *Node) RemoveTags(ctx context.Context, name string, keys []string, check storage.TagCheck) error {
	return n.updateStream(ctx, name, tagCheck(check), func(rec *streamRec) (bool, error) {
		rec.Tags = storage.TagsRemoved(rec.Tags, keys)
		return true, nil
	})
}

// changeConsumer changes the consumer t names, as single-node mode does
// (storage/tags.go, storage/policies.go): after the stream lookup, pre (may
// be nil) sees the stream's consumers, then the stream must be ACTIVE, then
// the consumer is looked up and change edits a copy of it.
func (n *Node) changeConsumer(ctx context.Context, t storage.PolicyTarget, pre func(consumersRec) error, change func(*datadir.ConsumerRecord) error) error {
	return n.changeConsumers(ctx, t.Stream, func(rec streamRec, cs consumersRec) (consumersRec, error) {
		if pre != nil {
			if err := pre(cs); err != nil {
				return cs, err
			}
		}
		if rec.Status != string(storage.StatusActive) {
			return cs, n.notActive(rec)
		}
		i, err := storage.TargetConsumer(n.cfg.AccountID, cs.Consumers, t)
		if err != nil {
			return cs, err
		}
		return cs, change(&cs.Consumers[i])
	})
}

// consumerTagCheck is a consumer's tag change's pre: the consumer is looked
// up before check runs, as single-node mode's consumerCheck.
func (n *Node) consumerTagCheck(t storage.PolicyTarget, check storage.TagCheck) func(consumersRec) error {
	return func(cs consumersRec) error {
		if _, err := storage.TargetConsumer(n.cfg.AccountID, cs.Consumers, t); err != nil {
			return err
		}
		if check == nil {
			return nil
		}
		return check()
	}
}

// ResourceTags returns a stream's or a consumer's tags, after a ReadIndex
// round (a control-plane read, the same on every node).
func (n *Node) ResourceTags(ctx context.Context, t storage.PolicyTarget) (map[string]string, error) {
	rec, _, err := n.readStream(ctx, t.Stream)
	if err != nil {
		return nil, err
	}
	if t.Consumer == "" {
		return copyTags(rec.Tags), nil
	}
	cs, _ := n.consumersOf(rec)
	i, err := storage.TargetConsumer(n.cfg.AccountID, cs.Consumers, t)
	if err != nil {
		return nil, err
	}
	return copyTags(cs.Consumers[i].Tags), nil
}

// TagResource adds or overwrites a stream's tags (AddTags) or a consumer's.
func (n *Node) TagResource(ctx context.Context, t storage.PolicyTarget, tags map[string]string, check storage.TagCheck) error {
	if t.Consumer == "" {
		return n.AddTags(ctx, t.Stream, tags, check)
	}
	return n.changeConsumer(ctx, t, n.consumerTagCheck(t, check), func(c *datadir.ConsumerRecord) error {
		merged, err := storage.ConsumerTagsAdded(n.cfg.AccountID, t.Stream, t.Consumer, c.Tags, tags)
		if err == nil {
			c.Tags = merged
		}
		return err
	})
}

// UntagResource removes a stream's tags (RemoveTags) or a consumer's.
func (n *Node) UntagResource(ctx context.Context, t storage.PolicyTarget, keys []string, check storage.TagCheck) error {
	if t.Consumer == "" {
		return n.RemoveTags(ctx, t.Stream, keys, check)
	}
	return n.changeConsumer(ctx, t, n.consumerTagCheck(t, check), func(c *datadir.ConsumerRecord) error {
		c.Tags = storage.TagsRemoved(c.Tags, keys)
		return nil
	})
}

// ResourcePolicy returns a stream's or a consumer's policy, "" when it has
// none. Authorization asks it at every request of a caller with an
// identity, so it answers from this node's applied metadata without a
// ReadIndex round (which would put a round trip to the metadata leader in
// front of every authorized PutRecord). The node that took a policy change
// has applied it before acknowledging it (txn), so it enforces it, and
// GetResourcePolicy through it reads it, at once; another node does once it
// has applied it, normally within milliseconds; AWS documents policy
// changes as eventually consistent too. A node cut off from the metadata
// group enforces the policies it applied last.
func (n *Node) ResourcePolicy(ctx context.Context, t storage.PolicyTarget) (string, error) {
	rec, ok := n.localStream(t.Stream)
	if !ok {
		return "", n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: t.Stream})
	}
	if t.Consumer == "" {
		return rec.Policy, nil
	}
	cs, _ := n.consumersOf(rec)
	i, err := storage.TargetConsumer(n.cfg.AccountID, cs.Consumers, t)
	if err != nil {
		return "", err
	}
	return cs.Consumers[i].Policy, nil
}

// localStream is a stream's record in this node's applied metadata,
// decoded once per version (the put path's table cache).
func (n *Node) localStream(name string) (streamRec, bool) {
	mv, ok := n.meta.Get(replica.StreamKey(name))
	if !ok {
		return streamRec{}, false
	}
	if t, ok := n.routes.Load(name); ok && t.(*routeTable).version == mv.Version {
		return t.(*routeTable).rec, true
	}
	var rec streamRec
	if json.Unmarshal(mv.Value, &rec) != nil {
		return streamRec{}, false
	}
	return n.tableOf(rec, mv.Version).rec, true
}

// SetResourcePolicy stores a stream's or a consumer's policy; "" deletes
// it. Single-node mode's order: the stream, its status, then the consumer.
func (n *Node) SetResourcePolicy(ctx context.Context, t storage.PolicyTarget, policy string) error {
	if t.Consumer == "" {
		return n.updateStream(ctx, t.Stream, nil, func(rec *streamRec) (bool, error) {
			rec.Policy = policy
			return true, nil
		})
	}
	return n.changeConsumer(ctx, t, nil, func(c *datadir.ConsumerRecord) error {
		c.Policy = policy
		return nil
	})
}

// SetShardLevelMetrics enables or disables enhanced monitoring metrics on
// an ACTIVE stream, which goes UPDATING (even when nothing changes, as in
// single-node mode); the new set takes effect at once.
func (n *Node) SetShardLevelMetrics(ctx context.Context, name string, metrics []string, enable bool) (storage.MonitoringChange, error) {
	var out storage.MonitoringChange
	err := n.updateStream(ctx, name, nil, func(rec *streamRec) (bool, error) {
		out = storage.ShardLevelMetricsChange(rec.ShardLevelMetrics, metrics, enable)
		rec.ShardLevelMetrics = out.Desired
		n.beginUpdate(rec)
		return true, nil
	})
	return out, err
}

// UpdateMaxRecordSize sets an ACTIVE stream's maximum record size, kib in
// [storage.MinMaxRecordSizeKiB, storage.MaxMaxRecordSizeKiB] (the api has
// validated it). As in single-node mode the stream is UPDATING for
// Config.UpdateDelay and the size takes effect when it is ACTIVE again;
// unlike single-node mode, with no delay too, after the metadata fence
// (lease.go). The size it already has changes nothing.
func (n *Node) UpdateMaxRecordSize(ctx context.Context, name string, kib int) error {
	if kib < storage.MinMaxRecordSizeKiB || kib > storage.MaxMaxRecordSizeKiB {
		return fmt.Errorf("cluster: max record size %d KiB outside [%d, %d]", kib, storage.MinMaxRecordSizeKiB, storage.MaxMaxRecordSizeKiB)
	}
	return n.updateStream(ctx, name, nil, func(rec *streamRec) (bool, error) {
		if rec.MaxRecordSizeKiB == kib {
			return false, nil
		}
		// Shard leaders enforce the size: fenced (lease.go), so it takes
		// effect when the stream is ACTIVE again, never at once.
		n.beginFencedUpdate(rec)
		rec.PendingMaxRecordSizeKiB = kib
		return true, nil
	})
}

// SetRecordDistribution changes an ACTIVE stream's record distribution
// strategy, at once (no UPDATING), as single-node mode does: AUTO on a
// stream that is not ON_DEMAND is its InvalidArgument.
func (n *Node) SetRecordDistribution(ctx context.Context, name string, d storage.RecordDistribution) error {
	return n.updateStream(ctx, name, nil, func(rec *streamRec) (bool, error) {
		if err := storage.CheckDistribution(n.cfg.AccountID, name, rec.mode(), d); err != nil {
			return false, err
		}
		next := storedDistribution(d)
		if rec.Distribution == next {
			return false, nil
		}
		rec.Distribution = next
		return true, nil
	})
}

// beginUpdate makes the stream UPDATING for Config.UpdateDelay; with no
// delay it stays ACTIVE (single-node mode ends such an UPDATING before it
// answers). It reports whether the stream is UPDATING.
func (n *Node) beginUpdate(rec *streamRec) bool {
	if n.cfg.UpdateDelay <= 0 {
		return false
	}
	rec.Status = string(storage.StatusUpdating)
	rec.PendingUntilNs = n.cfg.Now().Add(n.cfg.UpdateDelay).UnixNano()
	return true
}

// beginFencedUpdate makes the stream UPDATING for Config.UpdateDelay, and
// at least fenceTerm after the metadata leader applies the change, even
// with no delay: the change is one shard leaders enforce, and ACTIVE again
// promises every put from then on is held to it (lease.go).
func (n *Node) beginFencedUpdate(rec *streamRec) {
	rec.Status, rec.Fence = string(storage.StatusUpdating), true
	rec.PendingUntilNs = n.cfg.Now().Add(max(n.cfg.UpdateDelay, 0)).UnixNano()
}

// finishUpdates (the metadata leader's reconcile) ends the settings
// updates whose UPDATING period has passed: the pending record size takes
// effect and the stream is ACTIVE again; a fenced one (beginFencedUpdate)
// not before fenceTerm after this node saw it. A reshard's UPDATING (Reshard set)
// is finishReshards'. Each is a compare-and-set on the version read; a lost
// race is redone at the next round.
func (n *Node) finishUpdates(ctx context.Context) {
	now := n.cfg.Now().UnixNano()
	fenced := map[string]bool{}
	defer func() { n.fences.keep(fenced) }()
	for _, listed := range n.streams() {
		if listed.Status != string(storage.StatusUpdating) || listed.Reshard != nil {
			continue
		}
		rec, v, ok := n.stream(listed.Name)
		if !ok || rec.Status != string(storage.StatusUpdating) || rec.Reshard != nil {
			continue
		}
		// A fenced change's clock starts here, once applied (so after its
		// commit), whatever its delay; a new metadata leader starts it anew.
		if rec.Fence {
			fenced[rec.Name] = true
			if !n.fences.passed(rec.Name, v, n.fenceTerm()) {
				continue
			}
		}
		if rec.PendingUntilNs > now {
			continue
		}
		rec.Status, rec.PendingUntilNs, rec.Fence = string(storage.StatusActive), 0, false
		if rec.PendingMaxRecordSizeKiB != 0 {
			rec.MaxRecordSizeKiB, rec.PendingMaxRecordSizeKiB = rec.PendingMaxRecordSizeKiB, 0
		}
		key := replica.StreamKey(rec.Name)
		if _, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}); err != nil {
			n.cfg.Logger.Debug("ending an update", "stream", rec.Name, "error", err)
		}
	}
}
