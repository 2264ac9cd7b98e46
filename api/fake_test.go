package api

import (
	"cmp"
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// fakeBackend is an in-memory Backend for protocol tests only: streams are
// ACTIVE at once, records live in slices. Its messages imitate storage's.
type fakeBackend struct {
	mu         sync.Mutex
	account    string
	key        []byte
	streams    map[string]*fakeStream
	shardLimit int
	clock      func() time.Time

	// Fault injection.
	failAll    error         // every call fails with this
	putErr     error         // Put fails as a whole
	recordErrs map[int]error // Put fails these record indexes
	panicMsg   string        // every call panics
	lastPut    []storage.PutEntry
}

type fakeStream struct {
	consumers []storage.ConsumerInfo // ACTIVE at once; registration order
	info      storage.StreamInfo
	records   [][]storage.Record // per shard index
}

func newFake() *fakeBackend {
	return &fakeBackend{account: "123456789012", key: []byte("0123456789abcdef0123456789abcdef"), streams: map[string]*fakeStream{}, shardLimit: 500, clock: time.Now}
}

func (f *fakeBackend) IteratorKey() []byte { return f.key }
func (f *fakeBackend) AccountID() string   { return f.account }
func (f *fakeBackend) ShardLimit() int     { return f.shardLimit }

func (f *fakeBackend) enter() error {
	if f.panicMsg != "" {
		panic(f.panicMsg)
	}
	return f.failAll
}

func (f *fakeBackend) notFound(name string) error {
	return &storage.Error{Kind: storage.ErrStreamNotFound, Reason: storage.ReasonStreamNotFound, Facts: storage.Facts{Account: f.account, Stream: name}}
}

func (f *fakeBackend) CreateStream(ctx context.Context, in storage.CreateStreamInput) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.streams[in.Name]; ok {
		return &storage.Error{Kind: storage.ErrStreamExists, Reason: storage.ReasonStreamExists, Facts: storage.Facts{Account: f.account, Stream: in.Name}}
	}
	open := 0
	for _, st := range f.streams {
		open += st.info.OpenShardCount()
	}
	if open+in.ShardCount > f.shardLimit {
		return &storage.Error{Kind: storage.ErrLimitExceeded, Reason: storage.ReasonShardLimit, Facts: storage.Facts{Account: f.account, Current: int64(open), Limit: int64(f.shardLimit), N: int64(in.ShardCount)}}
	}
	now := f.clock()
	dist := in.Distribution
	if dist == "" {
		dist = storage.DistributionUserKey
	}
	st := &fakeStream{info: storage.StreamInfo{Name: in.Name, Created: now, Status: storage.StatusActive, Mode: in.Mode, RetentionHours: 24, Tags: map[string]string{},
		Distribution: dist, MaxRecordSizeKiB: cmp.Or(in.MaxRecordSizeKiB, storage.DefaultMaxRecordSizeKiB)}}
	for i, r := range hashkey.Split(in.ShardCount) {
		st.info.Shards = append(st.info.Shards, storage.ShardInfo{
			ID: shardID(uint32(i)), Index: uint32(i), HashRange: r,
			StartingSeq: seqnum.Seq{ShardCreateSecs: now.Unix(), ShardIndex: uint32(i)}.String(),
		})
	}
	st.records = make([][]storage.Record, in.ShardCount)
	for k, v := range in.Tags {
		st.info.Tags[k] = v
	}
	f.streams[in.Name] = st
	return nil
}

func shardID(i uint32) string { return datadir.ShardID(i) }

// closeShard closes shard idx and adds a child with the same range.
func (f *fakeBackend) closeShard(name string, idx uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[name]
	now := f.clock()
	parent := &st.info.Shards[idx]
	parent.EndingSeq = seqnum.Seq{ShardCreateSecs: now.Unix(), ShardIndex: idx, Ordinal: seqnum.MaxOrdinal, ArrivalSecs: now.Unix()}.String()
	child := uint32(len(st.info.Shards))
	st.info.Shards = append(st.info.Shards, storage.ShardInfo{
		ID: shardID(child), Index: child, Parent: parent.ID, HashRange: parent.HashRange,
		StartingSeq: seqnum.Seq{ShardCreateSecs: now.Unix() + 1, ShardIndex: child}.String(),
	})
	st.records = append(st.records, nil)
}

func (f *fakeBackend) get(name string) (*fakeStream, error) {
	st, ok := f.streams[name]
	if !ok {
		return nil, f.notFound(name)
	}
	return st, nil
}

func (f *fakeBackend) DeleteStreamWith(ctx context.Context, name string, o storage.DeleteOptions) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(name)
	if err != nil {
		return err
	}
	if len(st.consumers) > 0 && !o.EnforceConsumerDeletion {
		return &storage.Error{Kind: storage.ErrResourceInUse, Reason: storage.ReasonHasConsumers, Facts: storage.Facts{Account: f.account, Stream: name, Current: int64(len(st.consumers))}}
	}
	delete(f.streams, name)
	return nil
}

func (f *fakeBackend) ListStreams(ctx context.Context) ([]storage.StreamInfo, error) {
	if err := f.enter(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []storage.StreamInfo
	for _, st := range f.streams {
		info := st.info
		info.Shards = nil // as storage may
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeBackend) DescribeStream(ctx context.Context, name string) (storage.StreamInfo, error) {
	if err := f.enter(); err != nil {
		return storage.StreamInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(name)
	if err != nil {
		return storage.StreamInfo{}, err
	}
	info := st.info
	info.Shards = append([]storage.ShardInfo(nil), st.info.Shards...)
	info.Tags = map[string]string{}
	for k, v := range st.info.Tags {
		info.Tags[k] = v
	}
	return info, nil
}

func (f *fakeBackend) SetRetention(ctx context.Context, name string, hours int, increase bool) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(name)
	if err != nil {
		return err
	}
	if increase && hours <= st.info.RetentionHours || !increase && hours >= st.info.RetentionHours {
		reason := storage.ReasonRetentionLower
		if !increase {
			reason = storage.ReasonRetentionRaise
		}
		return &storage.Error{Kind: storage.ErrInvalidArgument, Reason: reason, Facts: storage.Facts{Account: f.account, Stream: name, N: int64(hours), Current: int64(st.info.RetentionHours)}}
	}
	st.info.RetentionHours = hours
	return nil
}

func (f *fakeBackend) AddTags(ctx context.Context, name string, tags map[string]string, check storage.TagCheck) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(name)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	for k, v := range tags {
		st.info.Tags[k] = v
	}
	return nil
}

func (f *fakeBackend) RemoveTags(ctx context.Context, name string, keys []string, check storage.TagCheck) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(name)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	for _, k := range keys {
		delete(st.info.Tags, k)
	}
	return nil
}

func (f *fakeBackend) SetRecordDistribution(ctx context.Context, name string, d storage.RecordDistribution) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(name)
	if err != nil {
		return err
	}
	if d == storage.DistributionAuto && st.info.Mode != storage.ModeOnDemand {
		return &storage.Error{Kind: storage.ErrInvalidArgument, Reason: storage.ReasonAutoProvisioned, Facts: storage.Facts{Account: f.account, Stream: name}}
	}
	st.info.Distribution = d
	return nil
}

func (f *fakeBackend) Put(ctx context.Context, stream string, entries []storage.PutEntry) ([]storage.PutResult, error) {
	if err := f.enter(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPut = entries
	if f.putErr != nil {
		return nil, f.putErr
	}
	st, err := f.get(stream)
	if err != nil {
		return nil, err
	}
	out := make([]storage.PutResult, len(entries))
	for i, e := range entries {
		if err := f.recordErrs[i]; err != nil {
			out[i].Err = err
			continue
		}
		out[i] = f.append(st, e)
	}
	return out, nil
}

func (f *fakeBackend) RecordLimit(ctx context.Context, stream string) (int, error) {
	if err := f.enter(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return 0, err
	}
	return st.info.MaxRecordSizeKiB << 10, nil
}

// UpdateMaxRecordSize takes effect at once; the stream stays ACTIVE.
func (f *fakeBackend) UpdateMaxRecordSize(ctx context.Context, stream string, kib int) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return err
	}
	st.info.MaxRecordSizeKiB = kib
	return nil
}

func (f *fakeBackend) append(st *fakeStream, e storage.PutEntry) storage.PutResult {
	k := hashkey.FromPartitionKey(e.PartitionKey)
	if e.ExplicitHashKey != nil {
		k = *e.ExplicitHashKey
	}
	for _, sh := range st.info.Shards {
		if sh.Open() && sh.HashRange.Contains(k) {
			now := f.clock().Truncate(time.Millisecond)
			ord := uint64(len(st.records[sh.Index])) + 1
			start, _ := seqnum.Parse(sh.StartingSeq)
			seq := seqnum.Seq{ShardCreateSecs: start.ShardCreateSecs, ShardIndex: sh.Index, Ordinal: ord, ArrivalSecs: now.Unix()}.String()
			st.records[sh.Index] = append(st.records[sh.Index], storage.Record{SequenceNumber: seq, Arrival: now, PartitionKey: e.PartitionKey, Data: e.Data})
			return storage.PutResult{ShardID: sh.ID, SequenceNumber: seq}
		}
	}
	return storage.PutResult{Err: errors.New("no open shard")}
}

func (f *fakeBackend) Position(ctx context.Context, stream, shard string, typ storage.IteratorType, startSeq string, ts time.Time) (storage.Position, error) {
	if err := f.enter(); err != nil {
		return storage.Position{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return storage.Position{}, err
	}
	idx, ok := datadir.ParseShardID(shard)
	if !ok || int(idx) >= len(st.info.Shards) {
		return storage.Position{}, &storage.Error{Kind: storage.ErrShardNotFound, Reason: storage.ReasonShardGone, Facts: storage.Facts{Account: f.account, Stream: stream, Shard: shard}}
	}
	pos := storage.Position{Stream: stream, StreamCreated: st.info.Created.UnixNano(), ShardIndex: idx}
	recs := st.records[idx]
	switch typ {
	case storage.Latest:
		pos.Ordinal = uint64(len(recs))
	case storage.AtSequenceNumber, storage.AfterSequenceNumber:
		s, err := seqnum.Parse(startSeq)
		if err != nil || s.ShardIndex != idx {
			return pos, &storage.Error{Kind: storage.ErrInvalidArgument, Reason: storage.ReasonStartSeq, Facts: storage.Facts{Account: f.account, Stream: stream, Shard: shard, Given: startSeq}}
		}
		pos.Ordinal = s.Ordinal - 1
		if typ == storage.AfterSequenceNumber {
			pos.Ordinal++
		}
	case storage.AtTimestamp:
		pos.Ordinal = uint64(sort.Search(len(recs), func(i int) bool { return !recs[i].Arrival.Before(ts) }))
	}
	return pos, nil
}

func (f *fakeBackend) Read(ctx context.Context, pos storage.Position, maxRecords, maxBytes int) (storage.ReadResult, error) {
	if err := f.enter(); err != nil {
		return storage.ReadResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.streams[pos.Stream]
	if !ok || st.info.Created.UnixNano() != pos.StreamCreated || int(pos.ShardIndex) >= len(st.records) {
		return storage.ReadResult{}, &storage.Error{Kind: storage.ErrShardNotFound, Reason: storage.ReasonShardGone, Facts: storage.Facts{Account: f.account, Stream: pos.Stream, Shard: shardID(pos.ShardIndex)}}
	}
	recs := st.records[pos.ShardIndex]
	var res storage.ReadResult
	i := int(min(pos.Ordinal, uint64(len(recs))))
	for ; i < len(recs) && len(res.Records) < maxRecords && res.Bytes < maxBytes; i++ {
		res.Records = append(res.Records, recs[i])
		res.Bytes += len(recs[i].Data) + len(recs[i].PartitionKey)
	}
	next := pos
	next.Ordinal = uint64(i)
	sh := st.info.Shards[pos.ShardIndex]
	if sh.Open() || i < len(recs) {
		res.Next = &next
		return res, nil
	}
	for _, c := range st.info.Shards {
		if c.Parent == sh.ID || c.AdjacentParent == sh.ID {
			res.ChildShards = append(res.ChildShards, storage.ChildShard{ShardID: c.ID, ParentShards: []string{sh.ID}, HashRange: c.HashRange})
		}
	}
	return res, nil
}
