package api

import (
	"encoding/binary"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

func hashKeyRange(r hashkey.Range) wire.HashKeyRange {
	return wire.HashKeyRange{StartingHashKey: r.Start.String(), EndingHashKey: r.End.String()}
}

type sequenceNumberRange struct {
	StartingSequenceNumber string
	EndingSequenceNumber   string `json:",omitempty"`
}

type shardOut struct {
	ShardId               string
	ParentShardId         string `json:",omitempty"`
	AdjacentParentShardId string `json:",omitempty"`
	HashKeyRange          wire.HashKeyRange
	SequenceNumberRange   sequenceNumberRange
}

// shardsOut renders shards; the result is never nil (AWS sends "Shards": []).
func shardsOut(shards []storage.ShardInfo) []shardOut {
	out := make([]shardOut, len(shards))
	for i, sh := range shards {
		out[i] = shardOut{
			ShardId: sh.ID, ParentShardId: sh.Parent, AdjacentParentShardId: sh.AdjacentParent,
			HashKeyRange:        hashKeyRange(sh.HashRange),
			SequenceNumberRange: sequenceNumberRange{sh.StartingSeq, sh.EndingSeq},
		}
	}
	return out
}

// shardsAfter returns the shards that follow start in shard order. An id that
// does not parse is compared as text, which orders the canonical zero-padded
// ids the same way.
func shardsAfter(shards []storage.ShardInfo, start string) []storage.ShardInfo {
	idx, ok := datadir.ParseShardID(start)
	for i, sh := range shards {
		if ok && sh.Index > idx || !ok && sh.ID > start {
			return shards[i:]
		}
	}
	return nil
}

// Shard filter types in AWS's order.
var shardFilterTypes = []string{"AFTER_SHARD_ID", "AT_TRIM_HORIZON", "FROM_TRIM_HORIZON", "AT_LATEST", "AT_TIMESTAMP", "FROM_TIMESTAMP"}

type shardFilterIn struct {
	Type      *string
	ShardId   *string
	Timestamp wire.OptTime
}

type listShardsInput struct {
	wire.StreamSelector
	NextToken               *string
	ExclusiveStartShardId   *string
	MaxResults              wire.OptInt
	StreamCreationTimestamp wire.OptTime
	ShardFilter             *shardFilterIn
}

type listShardsOutput struct {
	Shards    []shardOut
	NextToken string `json:",omitempty"`
}

// listShardsMax is the most shards ListShards returns in one call.
const listShardsMax = 1000

// shardQuery is what a ListShards page needs; a NextToken carries all of it.
type shardQuery struct {
	stream  string
	created int64 // the stream's creation, unix ns (pins one incarnation)
	filter  string
	after   int64 // list shards with index > after; -1 for all
	ts      int64 // filter timestamp, unix ms
}

func (s *Server) listShards(rc *reqCtx, body []byte) (any, error) {
	var in listShardsInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	if err := validateListShards(&in); err != nil {
		return nil, err
	}
	q, err := s.shardQueryFor(rc, &in)
	if err != nil {
		return nil, err
	}
	info, err := s.b.DescribeStream(rc.ctx, q.stream)
	if err != nil {
		return nil, err
	}
	if err := checkIncarnation(info, &q, in.StreamCreationTimestamp, s.account); err != nil {
		return nil, err
	}
	limit := listShardsMax
	if in.MaxResults.Set {
		limit = min(limit, int(in.MaxResults.Val))
	}
	return s.shardPage(info, q, limit), nil
}

func validateListShards(in *listShardsInput) error {
	var v wire.Validator
	v.StreamName("streamName", in.StreamName)
	v.Str("nextToken", in.NextToken, "", 1, 1048576)
	v.Str("exclusiveStartShardId", in.ExclusiveStartShardId, wire.PatternName, 1, 128)
	v.IntRange("maxResults", in.MaxResults, 1, 10000)
	if f := in.ShardFilter; f != nil {
		if v.NotNull("shardFilter.type", f.Type != nil) {
			v.Enum("shardFilter.type", f.Type, shardFilterTypes)
		}
		v.Str("shardFilter.shardId", f.ShardId, wire.PatternName, 1, 128)
	}
	v.StreamARN("streamARN", in.StreamARN)
	return v.Err()
}

// shardQueryFor builds the query from a NextToken or from the request.
func (s *Server) shardQueryFor(rc *reqCtx, in *listShardsInput) (shardQuery, error) {
	if in.NextToken != nil {
		switch {
		case in.StreamName != nil || in.StreamARN != nil:
			return shardQuery{}, wire.InvalidArgument("NextToken and StreamName cannot be provided together.")
		case in.ExclusiveStartShardId != nil:
			return shardQuery{}, wire.InvalidArgument("NextToken and ExclusiveStartShardId cannot be provided together.")
		case in.StreamCreationTimestamp.Set:
			return shardQuery{}, wire.InvalidArgument("NextToken and StreamCreationTimestamp cannot be provided together.")
		}
		q, err := s.openShardsToken(*in.NextToken)
		if err != nil {
			return q, err
		}
		return q, s.admit(rc, AdmissionRequest{Stream: q.stream})
	}
	if in.StreamName == nil && in.StreamARN == nil {
		return shardQuery{}, wire.InvalidArgument("Either NextToken or StreamName should be provided.")
	}
	stream, err := s.resolveStream(in.StreamSelector)
	if err != nil {
		return shardQuery{}, err
	}
	q, err := filterQuery(stream, in)
	if err != nil {
		return q, err
	}
	return q, s.admit(rc, AdmissionRequest{Stream: stream})
}

// filterQuery applies ShardFilter and ExclusiveStartShardId.
func filterQuery(stream string, in *listShardsInput) (shardQuery, error) {
	q := shardQuery{stream: stream, filter: "FROM_TRIM_HORIZON", after: -1}
	if in.ExclusiveStartShardId != nil {
		q.after = startIndex(*in.ExclusiveStartShardId)
	}
	f := in.ShardFilter
	if f == nil {
		return q, nil
	}
	q.filter = *f.Type
	switch {
	case q.filter == "AFTER_SHARD_ID" && f.ShardId == nil:
		return q, wire.InvalidArgument("ShardId must be specified when the ShardFilter type is AFTER_SHARD_ID.")
	case q.filter != "AFTER_SHARD_ID" && f.ShardId != nil:
		return q, wire.InvalidArgument("ShardId can only be specified when the ShardFilter type is AFTER_SHARD_ID.")
	case (q.filter == "AT_TIMESTAMP" || q.filter == "FROM_TIMESTAMP") && !f.Timestamp.Set:
		return q, wire.InvalidArgument("Timestamp must be specified when the ShardFilter type is " + q.filter + ".")
	case q.filter != "AT_TIMESTAMP" && q.filter != "FROM_TIMESTAMP" && f.Timestamp.Set:
		return q, wire.InvalidArgument("Timestamp can only be specified when the ShardFilter type is AT_TIMESTAMP or FROM_TIMESTAMP.")
	}
	if f.ShardId != nil {
		q.after = max(q.after, startIndex(*f.ShardId))
	}
	q.ts = f.Timestamp.T.UnixMilli()
	return q, nil
}

// startIndex is the index to list after for an exclusive start shard id; an
// id that does not parse names no shard, so listing starts at the beginning.
func startIndex(id string) int64 {
	if idx, ok := datadir.ParseShardID(id); ok {
		return int64(idx)
	}
	return -1
}

// checkIncarnation pins the query to one incarnation of the stream name:
// StreamCreationTimestamp (millisecond precision) or the token's creation
// time must match. A stream still CREATING has no shards to list.
func checkIncarnation(info storage.StreamInfo, q *shardQuery, created wire.OptTime, account string) error {
	facts := storage.Facts{Account: account, Stream: info.Name, State: info.Status}
	notFound := reasonError(wire.TypeResourceNotFound, storage.ReasonStreamNotFound, facts)
	switch {
	case q.created != 0 && q.created != info.Created.UnixNano():
		return notFound
	case created.Set && created.T.UnixMilli() != info.Created.UnixMilli():
		return notFound
	case info.Status == storage.StatusCreating:
		return reasonError(wire.TypeResourceInUse, storage.ReasonNotActive, facts)
	}
	q.created = info.Created.UnixNano()
	return nil
}

// shardPage filters, pages and, when more remain, seals a NextToken.
func (s *Server) shardPage(info storage.StreamInfo, q shardQuery, limit int) listShardsOutput {
	now := s.now()
	var page []storage.ShardInfo
	more := false
	for _, sh := range filterShards(info, q, now) {
		if int64(sh.Index) <= q.after {
			continue
		}
		if len(page) == limit {
			more = true
			break
		}
		page = append(page, sh)
	}
	out := listShardsOutput{Shards: shardsOut(page)}
	if more {
		q.after = int64(page[len(page)-1].Index)
		out.NextToken = s.keys.Seal(wire.TokenListShards, now.UnixMilli(), q.payload())
	}
	return out
}

// filterShards applies a ShardFilter type. Shard lifetimes come from the
// sequence numbers: a shard's StartingSequenceNumber encodes its creation
// second and a closed shard's EndingSequenceNumber its closing second.
func filterShards(info storage.StreamInfo, q shardQuery, now time.Time) []storage.ShardInfo {
	switch q.filter {
	case "AT_LATEST":
		return keep(info.Shards, func(sh storage.ShardInfo) bool { return sh.Open() })
	case "AT_TRIM_HORIZON":
		return trimHorizonShards(info.Shards)
	case "AT_TIMESTAMP":
		t := q.ts / 1000
		if t <= info.Created.Unix() || t < now.Add(-time.Duration(info.RetentionHours)*time.Hour).Unix() {
			return trimHorizonShards(info.Shards)
		}
		return keep(info.Shards, func(sh storage.ShardInfo) bool {
			created, closed, open := shardLife(sh)
			return created <= t && (open || closed >= t)
		})
	case "FROM_TIMESTAMP":
		t := q.ts / 1000
		return keep(info.Shards, func(sh storage.ShardInfo) bool {
			_, closed, open := shardLife(sh)
			return open || closed >= t
		})
	}
	return info.Shards // FROM_TRIM_HORIZON, AFTER_SHARD_ID: every shard within retention
}

// trimHorizonShards are the shards open at the trim horizon: those none of
// whose parents is still listed. (A listed shard's parents closed when it
// was created; if they have expired, it was already open at the horizon.)
func trimHorizonShards(shards []storage.ShardInfo) []storage.ShardInfo {
	listed := make(map[string]bool, len(shards))
	for _, sh := range shards {
		listed[sh.ID] = true
	}
	return keep(shards, func(sh storage.ShardInfo) bool { return !listed[sh.Parent] && !listed[sh.AdjacentParent] })
}

// shardLife returns a shard's creation and closing seconds; unknown times
// (sequence numbers of another layout) count as "always".
func shardLife(sh storage.ShardInfo) (created, closed int64, open bool) {
	closed = 1<<62 - 1
	if s, err := seqnum.Parse(sh.StartingSeq); err == nil {
		created = s.ShardCreateSecs
	}
	if sh.Open() {
		return created, closed, true
	}
	if s, err := seqnum.Parse(sh.EndingSeq); err == nil {
		closed = s.ArrivalSecs
	}
	return created, closed, false
}

func keep(shards []storage.ShardInfo, f func(storage.ShardInfo) bool) []storage.ShardInfo {
	var out []storage.ShardInfo
	for _, sh := range shards {
		if f(sh) {
			out = append(out, sh)
		}
	}
	return out
}

// payload encodes the query for a ListShards NextToken.
func (q shardQuery) payload() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(q.created))
	b = binary.BigEndian.AppendUint64(b, uint64(q.after))
	b = binary.BigEndian.AppendUint64(b, uint64(q.ts))
	b = wire.AppendStr(b, q.filter)
	return wire.AppendStr(b, q.stream)
}

func (s *Server) openShardsToken(tok string) (shardQuery, error) {
	issued, payload, err := s.keys.Open(wire.TokenListShards, tok)
	if err != nil {
		return shardQuery{}, wire.InvalidArgument("Invalid NextToken.")
	}
	if wire.Expired(issued, s.now().UnixMilli()) {
		return shardQuery{}, wire.ClientError(wire.TypeExpiredNextToken, msgNextTokenExpired)
	}
	r := wire.NewPayloadReader(payload)
	q := shardQuery{created: int64(r.U64()), after: int64(r.U64()), ts: int64(r.U64()), filter: r.Str(), stream: r.Str()}
	if !r.Done() {
		return shardQuery{}, wire.InvalidArgument("Invalid NextToken.")
	}
	return q, nil
}
