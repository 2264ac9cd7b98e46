package api

import (
	"encoding/binary"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// Iterator types in the order AWS lists them in enum messages.
var iteratorTypes = []string{"AFTER_SEQUENCE_NUMBER", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER", "TRIM_HORIZON"}

type getShardIteratorInput struct {
	wire.StreamSelector
	ShardId                *string
	ShardIteratorType      *string
	StartingSequenceNumber *string
	Timestamp              wire.OptTime
}

func (s *Server) getShardIterator(rc *reqCtx, body []byte) (any, error) {
	var in getShardIteratorInput
	stream, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		v.ReqStr("shardId", in.ShardId, wire.PatternName, 1, 128)
		if v.NotNull("shardIteratorType", in.ShardIteratorType != nil) {
			v.Enum("shardIteratorType", in.ShardIteratorType, iteratorTypes)
		}
		v.Str("startingSequenceNumber", in.StartingSequenceNumber, wire.PatternSequence, 0, -1)
	})
	if err != nil {
		return nil, err
	}
	typ := storage.IteratorType(*in.ShardIteratorType)
	seq := ""
	if in.StartingSequenceNumber != nil {
		seq = *in.StartingSequenceNumber
	}
	now := s.now()
	if argErr := iteratorArgError(typ, in.StartingSequenceNumber != nil, in.Timestamp, now); argErr != nil {
		// AWS reports a missing stream or shard before a bad combination of
		// arguments, so look the shard up first.
		if _, err := s.b.Position(rc.ctx, stream, *in.ShardId, storage.TrimHorizon, "", time.Time{}); err != nil {
			return nil, err
		}
		return nil, argErr
	}
	pos, err := s.b.Position(rc.ctx, stream, *in.ShardId, typ, seq, in.Timestamp.T)
	if err != nil {
		return nil, err
	}
	return struct{ ShardIterator string }{s.encodeIterator(pos, now)}, nil
}

// iteratorArgError checks that the iterator type and its arguments agree,
// with AWS's messages.
func iteratorArgError(typ storage.IteratorType, hasSeq bool, ts wire.OptTime, now time.Time) error {
	const either = "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified "
	bySeq := typ == storage.AtSequenceNumber || typ == storage.AfterSequenceNumber
	switch {
	case hasSeq && !bySeq:
		return wire.InvalidArgument(either + string(typ) + " and also a StartingSequenceNumber.")
	case !hasSeq && bySeq:
		return wire.InvalidArgument(either + string(typ) + " and no StartingSequenceNumber.")
	case typ != storage.AtTimestamp:
		return nil
	case !ts.Set:
		return wire.InvalidArgument("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")
	case ts.T.UnixMilli() > now.UnixMilli():
		return reasonError(wire.TypeInvalidArgument, storage.ReasonFutureTime, storage.Facts{N: ts.T.UnixMilli(), Limit: now.UnixMilli()})
	}
	return nil
}

// encodeIterator seals a position into a shard iterator issued at now. The
// payload names the stream incarnation (name and creation time), the shard
// and the ordinal; the MAC makes it unforgeable, so a client can only read
// positions the server handed out.
func (s *Server) encodeIterator(pos storage.Position, now time.Time) string {
	return s.keys.Seal(wire.TokenIterator, now.UnixMilli(), iteratorPayload(pos))
}

func iteratorPayload(pos storage.Position) []byte {
	b := make([]byte, 0, 8+4+8+1+len(pos.Stream))
	b = binary.BigEndian.AppendUint64(b, uint64(pos.StreamCreated))
	b = binary.BigEndian.AppendUint32(b, pos.ShardIndex)
	b = binary.BigEndian.AppendUint64(b, pos.Ordinal)
	return wire.AppendStr(b, pos.Stream)
}

// decodeIterator verifies and opens a shard iterator. Malformed, tampered
// or foreign tokens are "Invalid ShardIterator."; genuine tokens older than
// five minutes are ExpiredIteratorException, worded as AWS words it.
func (s *Server) decodeIterator(tok string, now time.Time) (storage.Position, error) {
	pos, issued, ok := s.openIterator(tok)
	if !ok {
		return pos, wire.InvalidArgument("Invalid ShardIterator.")
	}
	if wire.Expired(issued, now.UnixMilli()) {
		return pos, wire.ClientError(wire.TypeExpiredIterator, "Iterator expired. The iterator was created at time "+javaDate(issued)+
			" while right now it is "+javaDate(now.UnixMilli())+msgIteratorDelay)
	}
	return pos, nil
}

// openIterator verifies the MAC and parses the payload.
func (s *Server) openIterator(tok string) (pos storage.Position, issued int64, ok bool) {
	issued, payload, err := s.keys.Open(wire.TokenIterator, tok)
	if err != nil {
		return pos, 0, false
	}
	r := wire.NewPayloadReader(payload)
	pos = storage.Position{StreamCreated: int64(r.U64()), ShardIndex: r.U32(), Ordinal: r.U64(), Stream: r.Str()}
	return pos, issued, r.Done()
}

// javaDate renders unix ms as Java's Date.toString does in UTC:
// "Thu Jan 22 01:22:02 UTC 2015".
func javaDate(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("Mon Jan 02 15:04:05 MST 2006")
}
