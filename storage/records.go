package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/shard"
)

// placement is how one Put places its records: the stream's routing table
// and strategy, read together.
type placement struct {
	routes []route
	auto   bool // DistributionAuto
}

// writableStream returns the placement of a stream that takes writes.
// Kinesis answers a write to a stream that is not ACTIVE or UPDATING as if
// the stream did not exist.
func (s *Store) writableStream(name string) (*stream, placement, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(name)
	if err != nil {
		return nil, placement{}, err
	}
	if st.meta.Status != StatusActive && st.meta.Status != StatusUpdating {
		return nil, placement{}, s.notFound(name)
	}
	if err := s.keyUsableLocked(st.meta); err != nil {
		return nil, placement{}, err
	}
	return st, placement{routes: st.routes, auto: st.meta.Distribution == DistributionAuto}, nil
}

// Put stores entries. Whole-request problems are returned as the error;
// otherwise every entry gets a PutResult, in order, each either stored or
// failed on its own (its shard failed).
func (s *Store) Put(ctx context.Context, name string, entries []PutEntry) ([]PutResult, error) {
	st, pl, err := s.writableKeyed(name)
	if err != nil {
		return nil, err
	}
	groups, err := s.groupByShard(st, pl, entries)
	if err != nil {
		return nil, err
	}
	results := make([]PutResult, len(entries))
	s.putGroups(ctx, name, groups, results)
	for range maxReroutes {
		if !s.rerouteClosed(ctx, name, entries, results) {
			break
		}
	}
	return results, nil
}

// maxReroutes bounds how often one Put follows reshards: each retry waits
// for the reshard that closed its shard, so only reshards started back to
// back (UpdateShardCount with no UPDATING delay) need more than one.
const maxReroutes = 3

// rerouteClosed retries the entries whose shard a reshard closed while they
// were on their way: the routing table read now (after the reshard
// installed its children) sends them to the open children. It reports
// whether it retried any.
func (s *Store) rerouteClosed(ctx context.Context, name string, entries []PutEntry, results []PutResult) bool {
	var idx []int
	for i, r := range results {
		if errors.Is(r.Err, ErrShardClosed) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return false
	}
	s.awaitReshard(ctx, name) // the reshard that sealed the shard installs the children
	st, pl, err := s.writableKeyed(name)
	if err != nil {
		// Not a reshard after all: the stream was deleted, or the store is
		// closing. The entries fail with that, not with a reshard's answer.
		for _, i := range idx {
			results[i].Err = err
		}
		return false
	}
	sub := make([]PutEntry, len(idx))
	for j, i := range idx {
		sub[j] = entries[i]
	}
	groups, err := s.groupByShard(st, pl, sub)
	if err != nil {
		return false
	}
	subRes := make([]PutResult, len(sub))
	s.putGroups(ctx, name, groups, subRes)
	for j, i := range idx {
		results[i] = subRes[j]
	}
	return true
}

// writableKeyed is writableStream for a write: an encrypted stream whose
// master key went missing takes no writes until healKey finds it. Put and
// its re-routing both pass here, so records re-routed to a reshard's
// children are held to the same rule as the first attempt.
func (s *Store) writableKeyed(name string) (*stream, placement, error) {
	st, pl, err := s.writableStream(name)
	if err != nil {
		return nil, placement{}, err
	}
	if st.keyMissing.Load() {
		if err := s.healKey(st); err != nil {
			return nil, placement{}, err
		}
	}
	return st, pl, nil
}

// putGroups stores each group on its shard, concurrently.
func (s *Store) putGroups(ctx context.Context, name string, groups []*group, results []PutResult) {
	var wg sync.WaitGroup
	for _, g := range groups {
		if len(groups) == 1 {
			s.putGroup(ctx, name, g, results)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.putGroup(ctx, name, g, results)
		}()
	}
	wg.Wait()
}

// group is the entries of one request that go to one shard, in order.
type group struct {
	r        route
	gate     *sync.RWMutex // the stream's
	idx      []int
	entries  []shard.Entry
	minFirst uint64
}

func (s *Store) groupByShard(st *stream, pl placement, entries []PutEntry) ([]*group, error) {
	turn, err := s.autoTurns(st, pl, entries)
	if err != nil {
		return nil, err
	}
	byShard := map[uint32]*group{}
	var order []*group
	for i, e := range entries {
		r, err := s.place(st, pl, turn+uint64(i), &entries[i])
		if err != nil {
			return nil, err
		}
		g := byShard[r.index]
		if g == nil {
			g = &group{r: r, gate: &st.gate}
			byShard[r.index] = g
			order = append(order, g)
		}
		g.idx = append(g.idx, i)
		g.entries = append(g.entries, shard.Entry{PartitionKey: e.PartitionKey, Data: e.Data})
		if e.SequenceNumberForOrdering != "" {
			min, err := s.orderingFloor(st, r, e.SequenceNumberForOrdering)
			if err != nil {
				return nil, err
			}
			g.minFirst = max(g.minFirst, min)
		}
	}
	return order, nil
}

// autoTurns takes a Put's turns when the stream distributes records by
// AUTO (0 otherwise). Such a stream refuses SequenceNumberForOrdering, as
// AWS documents: ordering does not apply there.
func (s *Store) autoTurns(st *stream, pl placement, entries []PutEntry) (uint64, error) {
	if !pl.auto {
		return 0, nil
	}
	for i := range entries {
		if entries[i].SequenceNumberForOrdering != "" {
			return 0, s.fail(ErrInvalidArgument, ReasonOrderingAuto, Facts{Stream: st.name})
		}
	}
	return st.takeTurns(len(entries)), nil
}

// place finds an entry's open shard: by turn with AUTO distribution, else by
// its hash key.
func (s *Store) place(st *stream, pl placement, turn uint64, e *PutEntry) (route, error) {
	if pl.auto && len(pl.routes) > 0 {
		return pl.routes[turn%uint64(len(pl.routes))], nil
	}
	k := hashkey.FromPartitionKey(e.PartitionKey)
	if e.ExplicitHashKey != nil {
		k = *e.ExplicitHashKey
	}
	r, ok := findRoute(pl.routes, k)
	if !ok {
		return route{}, s.fail(ErrResourceInUse, ReasonNoOpenShard, Facts{Stream: st.name, Given: k.String()})
	}
	return r, nil
}

// orderingFloor turns SequenceNumberForOrdering into the least ordinal the
// new record may take. Only a number from the same shard can constrain it:
// numbers of parents sort below every child number by construction, and a
// partition key maps to one open shard at a time.
func (s *Store) orderingFloor(st *stream, r route, seq string) (uint64, error) {
	p, err := seqnum.Parse(seq)
	if err != nil {
		if l, ok := seqnum.ParseLegacy(seq); ok && l.Version == 1 {
			// AWS accepts a version-1 number here (captured from AWS
			// responses; unverified against the current service). shardlog
			// never issued one, so it cannot constrain the new number.
			return 0, nil
		}
	}
	if err != nil || p.Ordinal >= seqnum.MaxOrdinal-1<<32 {
		return 0, s.fail(ErrInvalidArgument, ReasonOrderingSeq, Facts{Stream: st.name, Given: seq})
	}
	if p.ShardIndex != r.index || p.ShardCreateSecs != r.epoch {
		return 0, nil
	}
	return p.Ordinal + 1, nil
}

func (s *Store) putGroup(ctx context.Context, stream string, g *group, results []PutResult) {
	s.admitWrites(stream, g, results)
	if len(g.entries) == 0 {
		return
	}
	id := shardID(g.r.index)
	g.gate.RLock()
	res, err := g.r.sh.Append(ctx, g.entries, g.minFirst)
	g.gate.RUnlock()
	if err != nil {
		err = s.writeError(err)
	} else {
		g.r.traffic.add(groupBytes(g.entries), len(g.entries))
	}
	for j, i := range g.idx {
		if err != nil {
			results[i] = PutResult{ShardID: id, Err: err}
			continue
		}
		seq := seqnum.Seq{ShardCreateSecs: g.r.epoch, ShardIndex: g.r.index, Ordinal: res.First + uint64(j), ArrivalSecs: res.ArrivalMs / 1000}
		results[i] = PutResult{ShardID: id, SequenceNumber: seq.String(), Encrypted: res.Encrypted}
	}
}

// groupBytes is what entries count against a shard's write rate: data plus
// partition key.
func groupBytes(entries []shard.Entry) int {
	n := 0
	for _, e := range entries {
		n += len(e.Data) + len(e.PartitionKey)
	}
	return n
}

// writeError classifies a shard's write failure for the api layer.
func (s *Store) writeError(err error) error {
	switch {
	case errors.Is(err, shard.ErrDiskFull), errors.Is(err, syscall.ENOSPC):
		return s.fail(ErrDiskFull, ReasonDiskFull, Facts{Detail: err.Error()})
	case errors.Is(err, shard.ErrReadOnly):
		return s.fail(ErrShardReadOnly, ReasonReadOnly, Facts{Detail: err.Error()})
	case errors.Is(err, shard.ErrClosed) && s.isClosed():
		return s.fail(ErrClosed, ReasonShutdown, Facts{Detail: err.Error()})
	case errors.Is(err, shard.ErrClosed):
		return s.fail(ErrShardClosed, ReasonShardClosed, Facts{Detail: err.Error()})
	}
	return err
}

// shardRef is a shard as a request found it. meta is the stream's metadata
// at that moment: metadata is replaced, never changed in place, so it may be
// read after the store lock is released (st.meta may not).
type shardRef struct {
	st   *stream
	meta *streamMeta
	sm   shardMeta
	sh   *shard.Shard
}

// shardOf returns a stream and the metadata of one of its shards, for
// GetShardIterator and GetRecords. As on AWS (captured from AWS responses;
// unverified against the current service), the id resolves first, so an
// unresolvable id is reported as sent even when the stream is missing; then
// a stream that is missing, or not ACTIVE or UPDATING, is reported as the
// shard not existing, like a shard the stream lacks.
func (s *Store) shardOf(name, id string) (shardRef, error) {
	idx, ok := datadir.ParseShardID(id)
	if !ok {
		return shardRef{}, s.fail(ErrShardNotFound, ReasonBadShardID, Facts{Stream: name, Given: id})
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(name)
	if errors.Is(err, ErrStreamNotFound) {
		return shardRef{}, s.shardGone(name, idx)
	}
	if err != nil {
		return shardRef{}, err
	}
	if st.meta.Status != StatusActive && st.meta.Status != StatusUpdating {
		return shardRef{}, s.shardGone(name, idx)
	}
	for _, sm := range st.meta.Shards {
		if sm.Index == idx && st.shards[idx] != nil {
			return shardRef{st: st, meta: st.meta, sm: sm, sh: st.shards[idx]}, nil
		}
	}
	return shardRef{}, s.shardGone(name, idx)
}

// shardGone is GetShardIterator's and GetRecords' not-found error.
func (s *Store) shardGone(name string, idx uint32) error {
	return s.fail(ErrShardNotFound, ReasonShardGone, Facts{Stream: name, Shard: shardID(idx)})
}

// Position resolves a GetShardIterator request to a reader position.
func (s *Store) Position(ctx context.Context, name, id string, typ IteratorType, startSeq string, ts time.Time) (Position, error) {
	ref, err := s.shardOf(name, id)
	if err != nil {
		return Position{}, err
	}
	st, sm, sh := ref.st, ref.sm, ref.sh
	if err := s.admitIterator(name, sm.Index, sh); err != nil {
		return Position{}, err
	}
	pos := Position{Stream: name, StreamCreated: ref.meta.CreatedNs, ShardIndex: sm.Index}
	pos.Ordinal, err = s.startOrdinal(st, sm, sh, typ, startSeq, ts)
	return pos, err
}

// startOrdinal resolves a starting position (GetShardIterator's,
// SubscribeToShard's) to the first ordinal to return.
func (s *Store) startOrdinal(st *stream, sm shardMeta, sh *shard.Shard, typ IteratorType, startSeq string, ts time.Time) (uint64, error) {
	switch typ {
	case TrimHorizon:
		return 0, nil
	case Latest:
		return sh.Tip().Next, nil
	case AtSequenceNumber, AfterSequenceNumber:
		return s.seqPosition(st, sm, typ, startSeq)
	case AtTimestamp:
		return s.timePosition(sh, ts)
	}
	return 0, s.fail(ErrInvalidArgument, ReasonIterType, Facts{Stream: st.name, Given: string(typ)})
}

func (s *Store) seqPosition(st *stream, sm shardMeta, typ IteratorType, seq string) (uint64, error) {
	f := Facts{Stream: st.name, Shard: shardID(sm.Index), Given: seq}
	p, err := seqnum.Parse(seq)
	switch {
	case err != nil:
		return s.legacyPosition(sm, f)
	case p.ShardIndex != sm.Index:
		f.Shard2 = datadir.EncodedShardID(p.ShardIndex)
		return 0, s.fail(ErrInvalidArgument, ReasonSeqShard, f)
	case p.ShardCreateSecs != sm.CreateSecs:
		return 0, s.fail(ErrInvalidArgument, ReasonSeqStream, f)
	case typ == AfterSequenceNumber && p.Ordinal == seqnum.MaxOrdinal:
		return 0, s.fail(ErrInvalidArgument, ReasonSeqMax, f)
	case typ == AfterSequenceNumber:
		return p.Ordinal + 1, nil
	}
	return p.Ordinal, nil
}

// legacyPosition answers a StartingSequenceNumber that is not in the layout
// shardlog issues. AWS reads a number below 2^124 as a version-0 number whose
// low 16 bits name a shard: another shard's is refused by name, and the
// shard's own gets a bare 500 InternalFailure (captured from AWS responses;
// unverified against the current service, and a fault on AWS's side that may
// have been fixed since). Anything else is invalid.
func (s *Store) legacyPosition(sm shardMeta, f Facts) (uint64, error) {
	l, ok := seqnum.ParseLegacy(f.Given)
	switch {
	case !ok || l.Version != 0:
		return 0, s.fail(ErrInvalidArgument, ReasonStartSeq, f)
	case l.ShardIndex != sm.Index:
		f.Shard2 = datadir.EncodedShardID(l.ShardIndex)
		return 0, s.fail(ErrInvalidArgument, ReasonSeqShard, f)
	}
	return 0, s.fail(ErrServiceFault, ReasonSeqLegacy, f)
}

func (s *Store) timePosition(sh *shard.Shard, ts time.Time) (uint64, error) {
	now := s.opts.Now()
	if ts.After(now) {
		return 0, s.fail(ErrInvalidArgument, ReasonFutureTime, Facts{N: ts.UnixMilli(), Limit: now.UnixMilli()})
	}
	ord, err := sh.OrdinalAt(ts.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("find records at %v: %w", ts, err)
	}
	return ord, nil
}

// Read returns one page of records from pos.
func (s *Store) Read(ctx context.Context, pos Position, maxRecords, maxBytes int) (ReadResult, error) {
	res, err := s.readOnce(ctx, pos, maxRecords, maxBytes)
	if errors.Is(err, shard.ErrClosed) {
		// A reshard sealed the shard (replacing its handle) during the read.
		return s.readOnce(ctx, pos, maxRecords, maxBytes)
	}
	return res, err
}

func (s *Store) readOnce(ctx context.Context, pos Position, maxRecords, maxBytes int) (ReadResult, error) {
	ref, err := s.shardOf(pos.Stream, shardID(pos.ShardIndex))
	if err != nil {
		return ReadResult{}, err
	}
	sm, sh := ref.sm, ref.sh
	if ref.meta.CreatedNs != pos.StreamCreated { // deleted and created again
		return ReadResult{}, s.shardGone(pos.Stream, pos.ShardIndex)
	}
	if err := s.admitRead(pos.Stream, sm.Index, sh); err != nil {
		return ReadResult{}, err
	}
	horizon := s.opts.Now().Add(-time.Duration(ref.meta.RetentionHours) * time.Hour).UnixMilli()
	r, err := sh.Read(pos.Ordinal, maxRecords, maxBytes, horizon)
	s.chargeRead(sh, r.Bytes)
	if err != nil {
		return ReadResult{}, s.readKeyError(pos.Stream, ref.meta, fmt.Errorf("read %s/%s: %w", pos.Stream, shardID(pos.ShardIndex), err))
	}
	out := ReadResult{Records: recordsOf(sm, r.Records), Bytes: r.Bytes}
	if r.AtTip && sm.Closed {
		out.ChildShards = s.children(pos.Stream, shardID(sm.Index))
		return out, nil
	}
	next := pos
	next.Ordinal = r.Next
	out.Next = &next
	if !r.AtTip && len(r.Records) > 0 {
		out.MillisBehindLatest = max(0, sh.Tip().LastTs-r.Records[len(r.Records)-1].ArrivalMs)
	}
	return out, nil
}

// children lists the shards whose parent (or adjacent parent) is id.
func (s *Store) children(name, id string) []ChildShard {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.streams[name]
	if !ok {
		return nil
	}
	var out []ChildShard
	for _, sm := range st.meta.Shards {
		if sm.Parent == id || sm.AdjParent == id {
			parents := []string{sm.Parent}
			if sm.AdjParent != "" {
				parents = append(parents, sm.AdjParent)
			}
			out = append(out, ChildShard{ShardID: shardID(sm.Index), ParentShards: parents, HashRange: hashRangeOf(sm)})
		}
	}
	return out
}
