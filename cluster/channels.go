package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Channels in cluster mode (CreateChannel and its kin), with single-node
// mode's rules, limits, errors and check order (storage/channel_rules.go,
// shared). A channel is one metadata key, "channel/<name>" (channelRec:
// single-node's datadir.ChannelRecord, its delivery progress included, and
// its source stream), so names are unique in the account by the key's
// absence; its stream's record lists its channels' names (streamRec.Channels),
// so "one channel per stream", "a stream with a channel cannot be deleted"
// and ChannelCount are decided by the stream record's version. Every change
// is a compare-and-set of the metadata group; reads follow a ReadIndex
// round, so every node answers the same.
//
// Lifecycle: CREATING for Config.ChannelDelay, then ACTIVE (at once with no
// delay), UPDATING for the delay after UpdateChannel, DELETING for the delay
// after DeleteChannel, then removed. The metadata leader's reconcile makes
// the transitions by its clock (advanceChannels), as it ends consumers' and
// streams' pending states, so one due while the leader changes is made by
// the next one. Delivery: deliver.go.

const channelPrefix = "channel/"

func channelKey(name string) string { return channelPrefix + name }

// channelRec is a channel and the stream incarnation it reads.
type channelRec struct {
	Stream          string `json:"stream"`
	StreamCreatedNs int64  `json:"streamCreatedNs"`
	datadir.ChannelRecord
}

func (c channelRec) info() storage.ChannelInfo {
	return storage.ChannelInfoOf(c.Stream, time.Unix(0, c.StreamCreatedNs), c.ChannelRecord)
}

// channel reads a channel from the local state, and its key's version for
// a compare-and-set (0: absent).
func (n *Node) channel(name string) (channelRec, uint64, bool) {
	var c channelRec
	v, ok := n.getJSON(channelKey(name), &c)
	return c, v, ok
}

// channelRecs reads every channel from the local state, by name.
func (n *Node) channelRecs() []channelRec {
	var out []channelRec
	snap := n.meta.Snapshot()
	for _, k := range sortedKeys(snap) {
		if !strings.HasPrefix(k, channelPrefix) {
			continue
		}
		var c channelRec
		if json.Unmarshal(snap[k].Value, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

func (n *Node) channelNotFound(name string) error {
	return storage.ChannelNotFound(n.cfg.AccountID, name)
}

// CreateChannel creates a channel reading an ACTIVE stream. Errors, in
// single-node mode's order: ErrStreamNotFound, ErrResourceInUse (stream not
// ACTIVE), ErrInvalidArgument (a PROVISIONED stream, unless
// Config.ChannelAnyMode), ErrResourceInUse (the name is taken in the
// account), ErrLimitExceeded (the stream has its one channel).
func (n *Node) CreateChannel(ctx context.Context, in storage.CreateChannelInput) (storage.ChannelInfo, error) {
	var made channelRec
	err := n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		rec, v, ok := n.stream(in.Stream)
		if !ok {
			return nil, nil, n.fail(storage.ErrStreamNotFound, storage.ReasonStreamNotFound, storage.Facts{Stream: in.Stream})
		}
		_, _, taken := n.channel(in.Name)
		err := storage.CheckCreateChannel(n.cfg.AccountID, in.Name, storage.ChannelTarget{Stream: rec.Name,
			Status: storage.StreamStatus(rec.Status), Mode: rec.mode(), AnyMode: n.cfg.ChannelAnyMode, NameTaken: taken,
			Channels: len(rec.Channels)})
		if err != nil {
			return nil, nil, err
		}
		made = channelRec{Stream: rec.Name, StreamCreatedNs: rec.CreatedNs,
			ChannelRecord: storage.NewChannel(in, n.cfg.Now(), n.cfg.ChannelDelay)}
		if n.cfg.ChannelDelay <= 0 {
			if made.ChannelRecord, err = n.activate(ctx, rec, made.ChannelRecord); err != nil {
				return nil, nil, err
			}
		}
		rec.Channels = append(slices.Clone(rec.Channels), in.Name)
		skey, ckey := replica.StreamKey(rec.Name), channelKey(in.Name)
		return []replica.MetaCond{{Key: skey, Version: v}, {Key: ckey}},
			[]replica.MetaOp{{Key: skey, Value: mustJSON(rec)}, {Key: ckey, Value: mustJSON(made)}}, nil
	})
	if err != nil {
		return storage.ChannelInfo{}, err
	}
	return made.info(), nil
}

// activate makes c ACTIVE. The first time, its progress starts at the tip
// of every open shard, read from a current replica of its group (AWS
// delivers only records written after the channel is ACTIVE; a record
// acknowledged between the tip's read and the activation's commit is
// delivered too). Shards already closed count as read.
func (n *Node) activate(ctx context.Context, rec streamRec, c datadir.ChannelRecord) (datadir.ChannelRecord, error) {
	c.Status, c.PendingUntilNs = storage.ChannelActive, 0
	if c.Progress != nil {
		return c, nil
	}
	p := &storage.ChannelProgress{Shards: map[string]string{}}
	for _, sh := range rec.Shards {
		if isClosed(sh) {
			p.Done = append(p.Done, sh.ID)
			continue
		}
		idx, _ := datadir.ParseShardID(sh.ID)
		var tip uint64
		if sh.Group != 0 {
			var err error
			if tip, err = n.position(ctx, sh.Group, true, 0); err != nil {
				return c, n.unavailable(rec.Name, sh.ID, err)
			}
		}
		p.Shards[sh.ID] = contBefore(shardEpoch(rec, sh), idx, tip)
	}
	c.Progress = p
	return c, nil
}

// DescribeChannel returns a channel, in any state.
func (n *Node) DescribeChannel(ctx context.Context, name string) (storage.ChannelInfo, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return storage.ChannelInfo{}, n.unavailable("", "", err)
	}
	c, _, ok := n.channel(name)
	if !ok {
		return storage.ChannelInfo{}, n.channelNotFound(name)
	}
	return c.info(), nil
}

// Channels returns every channel of the account, by name (ListChannels).
func (n *Node) Channels(ctx context.Context) ([]storage.ChannelInfo, error) {
	if err := n.linearize(ctx, metaGroup); err != nil {
		return nil, n.unavailable("", "", err)
	}
	return n.localChannels(), nil
}

func (n *Node) localChannels() []storage.ChannelInfo {
	out := []storage.ChannelInfo{}
	for _, c := range n.channelRecs() {
		out = append(out, c.info())
	}
	return out
}

// changeChannel runs a channel change as a compare-and-set of its key:
// the channel is looked up (ErrChannelNotFound), then change edits a copy.
func (n *Node) changeChannel(ctx context.Context, name string, change func(*channelRec) error) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		c, v, ok := n.channel(name)
		if !ok {
			return nil, nil, n.channelNotFound(name)
		}
		if err := change(&c); err != nil {
			return nil, nil, err
		}
		key := channelKey(name)
		return []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(c)}}, nil
	})
}

// UpdateChannel changes an ACTIVE channel's configuration, which delivery
// uses from then on; it is UPDATING for Config.ChannelDelay. Errors:
// ErrChannelNotFound, ErrResourceInUse (not ACTIVE).
func (n *Node) UpdateChannel(ctx context.Context, name string, u storage.ChannelUpdate) (storage.ChannelInfo, error) {
	var out channelRec
	err := n.changeChannel(ctx, name, func(c *channelRec) error {
		next, err := storage.ChannelUpdated(n.cfg.AccountID, c.ChannelRecord, u, n.cfg.Now(), n.cfg.ChannelDelay)
		if err != nil {
			return err
		}
		c.ChannelRecord = next
		out = *c
		return nil
	})
	if err != nil {
		return storage.ChannelInfo{}, err
	}
	return out.info(), nil
}

// DeleteChannel makes an ACTIVE channel DELETING: its delivery stops (the
// deliverer's next progress save fails), and it is removed after
// Config.ChannelDelay (at once with no delay). Objects delivered stay.
// Errors: ErrChannelNotFound, ErrResourceInUse (not ACTIVE).
func (n *Node) DeleteChannel(ctx context.Context, name string) error {
	return n.casLoop(ctx, func() ([]replica.MetaCond, []replica.MetaOp, error) {
		c, v, ok := n.channel(name)
		if !ok {
			return nil, nil, n.channelNotFound(name)
		}
		next, remove, err := storage.ChannelDeleted(n.cfg.AccountID, c.ChannelRecord, n.cfg.Now(), n.cfg.ChannelDelay)
		if err != nil {
			return nil, nil, err
		}
		if remove {
			conds, ops := n.removeChannel(c, v)
			return conds, ops, nil
		}
		c.ChannelRecord = next
		key := channelKey(name)
		return []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(c)}}, nil
	})
}

// removeChannel is the transaction removing channel c (at version v) and
// its name from its stream's record.
func (n *Node) removeChannel(c channelRec, v uint64) ([]replica.MetaCond, []replica.MetaOp) {
	key := channelKey(c.Name)
	conds, ops := []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key}}
	rec, sv, ok := n.stream(c.Stream)
	if ok && rec.CreatedNs == c.StreamCreatedNs {
		rec.Channels = slices.DeleteFunc(slices.Clone(rec.Channels), func(s string) bool { return s == c.Name })
		skey := replica.StreamKey(rec.Name)
		conds = append(conds, replica.MetaCond{Key: skey, Version: sv})
		ops = append(ops, replica.MetaOp{Key: skey, Value: mustJSON(rec)})
	}
	return conds, ops
}

// advanceChannels makes the channel transitions that are due (CREATING and
// UPDATING to ACTIVE, DELETING to removed): on the metadata leader, from
// its reconcile loop. Each is a compare-and-set; a lost race is redone at
// the next round.
func (n *Node) advanceChannels(ctx context.Context) {
	now := n.cfg.Now().UnixNano()
	for _, c := range n.channelRecs() {
		if c.PendingUntilNs == 0 || c.PendingUntilNs > now || c.Status == storage.ChannelActive {
			continue
		}
		cur, v, ok := n.channel(c.Name)
		if !ok || cur.ID != c.ID {
			continue
		}
		var conds []replica.MetaCond
		var ops []replica.MetaOp
		if cur.Status == storage.ChannelDeleting {
			conds, ops = n.removeChannel(cur, v)
		} else {
			rec, _, ok := n.stream(cur.Stream)
			if !ok || rec.CreatedNs != cur.StreamCreatedNs {
				continue // its stream went (a DELETING channel goes with it): nothing to activate
			}
			next, err := n.activate(ctx, rec, cur.ChannelRecord)
			if err != nil {
				n.cfg.Logger.Debug("activating a channel", "channel", c.Name, "error", err)
				continue
			}
			cur.ChannelRecord = next
			key := channelKey(c.Name)
			conds, ops = []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(cur)}}
		}
		if _, err := n.txn(ctx, conds, ops); err != nil {
			n.cfg.Logger.Debug("advancing a channel", "channel", c.Name, "error", err)
		}
	}
}

// channelsOnDelete is DeleteStream's part for channels: refused while the
// stream has channels other than DELETING ones, whatever the options (as in
// single-node mode); the DELETING ones go with the stream, in its
// transaction.
func (n *Node) channelsOnDelete(rec streamRec) ([]replica.MetaCond, []replica.MetaOp, error) {
	var recs []datadir.ChannelRecord
	var conds []replica.MetaCond
	var ops []replica.MetaOp
	for _, name := range rec.Channels {
		c, v, ok := n.channel(name)
		if !ok || c.Stream != rec.Name || c.StreamCreatedNs != rec.CreatedNs {
			continue
		}
		recs = append(recs, c.ChannelRecord)
		conds = append(conds, replica.MetaCond{Key: channelKey(name), Version: v})
		ops = append(ops, replica.MetaOp{Key: channelKey(name)})
	}
	if live := storage.LiveChannels(recs); live > 0 {
		return nil, nil, storage.HasChannels(n.cfg.AccountID, rec.Name, live)
	}
	return conds, ops, nil
}
