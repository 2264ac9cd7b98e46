package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// deliverer delivers one channel incarnation. Its state: committed is the
// progress storage holds; the batch holds the records read past it, and
// next the progress the batch completes.
type deliverer struct {
	src     Source
	opts    Options
	info    storage.ChannelInfo
	updates <-chan storage.ChannelInfo
	log     hclog.Logger

	committed *storage.ChannelProgress
	readers   map[string]storage.EventSource // by shard ID
	batch     batch
}

type batch struct {
	records []shardRecord
	bytes   int
	started time.Time // when the batch's first record (or progress) was read
	next    *storage.ChannelProgress
}

type shardRecord struct {
	shard string
	rec   storage.Record
}

// run delivers until ctx ends, the channel stops being deliverable (nil), or
// an error (which the Manager answers by starting a deliverer again).
func (d *deliverer) run(ctx context.Context) error {
	defer d.closeReaders()
	if err := d.recover(ctx); err != nil {
		return stopped(err)
	}
	d.readers = map[string]storage.EventSource{}
	if err := d.openReaders(ctx); err != nil {
		return stopped(err)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-d.updates:
			d.info.Config = c.Config
			continue
		case <-timer.C:
		}
		if err := d.step(ctx); err != nil {
			return stopped(err)
		}
		timer.Reset(d.opts.Poll)
	}
}

// stopped is nil for the errors that mean the channel is no longer
// delivered (deleted, or the store closing).
func stopped(err error) error {
	if errors.Is(err, storage.ErrChannelNotFound) || errors.Is(err, storage.ErrClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// step reads what is new and delivers the batch if it is due.
func (d *deliverer) step(ctx context.Context) error {
	ended, err := d.read(ctx)
	if err != nil {
		return err
	}
	if ended {
		if err := d.openReaders(ctx); err != nil {
			return err
		}
	}
	if d.due() {
		return d.flush(ctx)
	}
	return nil
}

// recover settles a batch a crash left pending.
func (d *deliverer) recover(ctx context.Context) error {
	p := d.info.Progress
	if p.Pending == nil {
		d.committed = p
		return nil
	}
	all := true
	for _, k := range p.Pending.Keys {
		bucket, key := splitKey(k)
		ok, err := d.opts.Dest.Exists(ctx, bucket, key)
		if err != nil {
			return err
		}
		all = all && ok
	}
	next := p.Pending.Next
	if !all {
		for _, k := range p.Pending.Keys {
			bucket, key := splitKey(k)
			if err := d.opts.Dest.Remove(ctx, bucket, key); err != nil {
				return err
			}
		}
		next = clone(p)
		next.Pending = nil
	}
	if err := d.src.SaveChannelProgress(ctx, d.info.Name, d.info.ID, next); err != nil {
		return err
	}
	d.committed = next
	return nil
}

func clone(p *storage.ChannelProgress) *storage.ChannelProgress {
	c := *p
	c.Shards = maps.Clone(p.Shards)
	if c.Shards == nil {
		c.Shards = map[string]string{}
	}
	c.Done = slices.Clone(p.Done)
	return &c
}

// progress is the progress so far: the batch's, or the committed one.
func (d *deliverer) progress() *storage.ChannelProgress {
	if d.batch.next != nil {
		return d.batch.next
	}
	return d.committed
}

// openReaders subscribes to every shard to be read now: those in progress,
// and those not yet read whose parents have all been read to their end
// (from their start). A parent no longer listed expired by retention.
func (d *deliverer) openReaders(ctx context.Context) error {
	info, err := d.src.DescribeStream(ctx, d.info.Stream)
	if err != nil {
		return err
	}
	if !info.Created.Equal(d.info.StreamCreated) {
		return storage.ErrChannelNotFound // another stream of the name: the channel went with the old one
	}
	p := d.progress()
	listed := map[string]bool{}
	for _, sh := range info.Shards {
		listed[sh.ID] = true
	}
	for _, sh := range info.Shards {
		if d.readers[sh.ID] != nil || slices.Contains(p.Done, sh.ID) {
			continue
		}
		in := storage.SubscribeInput{Stream: d.info.Stream, ShardID: sh.ID, Consumer: d.info.Name}
		if cont, ok := p.Shards[sh.ID]; ok {
			in.Type, in.StartSeq = storage.AfterSequenceNumber, cont
		} else if parentsDone(sh, p, listed) {
			in.Type = storage.TrimHorizon
		} else {
			continue
		}
		sub, err := d.src.Subscribe(ctx, in, nil)
		if err != nil {
			return fmt.Errorf("read %s: %w", sh.ID, err)
		}
		d.readers[sh.ID] = sub
	}
	return nil
}

func parentsDone(sh storage.ShardInfo, p *storage.ChannelProgress, listed map[string]bool) bool {
	for _, parent := range []string{sh.Parent, sh.AdjacentParent} {
		if parent != "" && listed[parent] && !slices.Contains(p.Done, parent) {
			return false
		}
	}
	return true
}

func (d *deliverer) closeReaders() {
	for _, sub := range d.readers {
		sub.Close()
	}
}

// read takes what every reader has, while the batch has room; ended
// reports that a shard was read to its end (its children may be read now).
func (d *deliverer) read(ctx context.Context) (ended bool, err error) {
	for _, id := range slices.Sorted(maps.Keys(d.readers)) {
		for d.batch.bytes < d.opts.MaxObjectBytes {
			ev, err := d.readers[id].Next(ctx, d.opts.MaxObjectBytes-d.batch.bytes, 0)
			if err != nil {
				return ended, fmt.Errorf("read %s: %w", id, err)
			}
			if len(ev.Records) == 0 && !ev.End() && samePosition(ev.ContinuationSequenceNumber, d.progress().Shards[id]) {
				break // nothing new
			}
			d.take(id, ev)
			if ev.End() {
				d.readers[id].Close()
				delete(d.readers, id)
				ended = true
				break
			}
		}
	}
	return ended, nil
}

// samePosition reports whether two continuation numbers of one shard name
// the same position. A subscription opened AFTER_SEQUENCE_NUMBER X reports,
// until it delivers a record, a number of X's shard and ordinal whose
// arrival second may differ from X's (cluster mode gives the shard's
// creation second, single-node mode the tip's last arrival), so a string
// comparison would take it for progress: an empty batch and a progress
// save per shard at every deliverer start (review 8 #2).
func samePosition(a, b string) bool {
	if a == b {
		return true
	}
	pa, errA := seqnum.Parse(a)
	pb, errB := seqnum.Parse(b)
	return errA == nil && errB == nil &&
		pa.ShardCreateSecs == pb.ShardCreateSecs && pa.ShardIndex == pb.ShardIndex && pa.Ordinal == pb.Ordinal
}

// take adds one event of shard id to the batch.
func (d *deliverer) take(id string, ev storage.SubscribeEvent) {
	if d.batch.next == nil {
		d.batch.next, d.batch.started = clone(d.committed), d.opts.Now()
	}
	n := d.batch.next
	for _, r := range ev.Records {
		d.batch.records = append(d.batch.records, shardRecord{shard: id, rec: r})
		d.batch.bytes += len(r.Data) + len(r.PartitionKey)
	}
	if ev.End() {
		delete(n.Shards, id)
		n.Done = append(n.Done, id)
		return
	}
	n.Shards[id] = ev.ContinuationSequenceNumber
}

// due reports whether the batch is to be delivered now.
func (d *deliverer) due() bool {
	b := d.batch
	if b.next == nil {
		return false
	}
	wait := time.Duration(d.info.Config.FreshnessSecs) * time.Second
	if d.opts.FlushEvery > 0 && (wait <= 0 || d.opts.FlushEvery < wait) {
		wait = d.opts.FlushEvery
	}
	return b.bytes >= d.opts.MaxObjectBytes || !d.opts.Now().Before(b.started.Add(wait))
}

// flush delivers the batch: pending, objects, progress.
func (d *deliverer) flush(ctx context.Context) error {
	next := clone(d.batch.next)
	next.Pending = nil
	objs, err := d.objects(next.Objects)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		next.Objects++
		pending := clone(d.committed)
		pending.Pending = &storage.ChannelPending{Next: next}
		for _, o := range objs {
			pending.Pending.Keys = append(pending.Pending.Keys, o.bucket+"/"+o.key)
		}
		if err := d.src.SaveChannelProgress(ctx, d.info.Name, d.info.ID, pending); err != nil {
			return err
		}
		for _, o := range objs {
			if err := d.opts.Dest.Put(ctx, o.bucket, o.key, o.body); err != nil {
				return fmt.Errorf("deliver s3://%s/%s: %w", o.bucket, o.key, err)
			}
		}
	}
	if err := d.src.SaveChannelProgress(ctx, d.info.Name, d.info.ID, next); err != nil {
		return err
	}
	d.committed, d.batch = next, batch{}
	return nil
}

type object struct {
	bucket, key string
	body        []byte
}

// objects encodes the batch as object number n and, for records that fail
// the format's validation, its dead-letter object.
func (d *deliverer) objects(n uint64) ([]object, error) {
	if len(d.batch.records) == 0 {
		return nil, nil
	}
	cfg := d.info.Config
	var body, dlq bytes.Buffer
	oldest := d.batch.records[0].rec.Arrival
	for _, r := range d.batch.records {
		if r.rec.Arrival.Before(oldest) {
			oldest = r.rec.Arrival
		}
		if err := appendRecord(&body, &dlq, cfg.RecordFormat, r.shard, r.rec); err != nil {
			return nil, err
		}
	}
	key := objectKey(d.info, n, oldest, extension(cfg))
	var out []object
	for _, part := range []struct {
		b      *bytes.Buffer
		bucket string
		key    string
	}{{&dlq, dlqBucket(cfg), dlqPrefix(cfg) + key}, {&body, bucketOf(cfg.BucketARN), key}} {
		if part.b.Len() == 0 {
			continue
		}
		z, err := compress(cfg.Compression, part.b.Bytes())
		if err != nil {
			return nil, err
		}
		out = append(out, object{bucket: part.bucket, key: part.key, body: z})
	}
	return out, nil
}

func dlqBucket(cfg storage.ChannelConfig) string {
	if cfg.DLQBucketARN != "" {
		return bucketOf(cfg.DLQBucketARN)
	}
	return bucketOf(cfg.BucketARN)
}

func dlqPrefix(cfg storage.ChannelConfig) string {
	if cfg.DLQPrefix != "" {
		return cfg.DLQPrefix
	}
	return DefaultErrorPrefix
}

// splitKey splits "BUCKET/KEY".
func splitKey(k string) (bucket, key string) {
	bucket, key, _ = strings.Cut(k, "/")
	return bucket, key
}
