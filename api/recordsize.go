package api

import (
	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// updateMaxRecordSizeInput is UpdateMaxRecordSize's request. The model's
// StreamId ("Not Implemented. Reserved for future use.") is not decoded, as
// for every other operation that carries it.
type updateMaxRecordSizeInput struct {
	StreamARN          *string
	MaxRecordSizeInKiB wire.OptInt
}

// updateMaxRecordSize is UpdateMaxRecordSize: the stream's maximum record
// size, 1024-10240 KiB (out of range: ValidationException, as the model
// and AWS's documentation say). The stream is named by StreamARN alone;
// the model makes it optional (beside the unimplemented StreamId), so a
// request without it gets the text every stream operation gives for a
// stream named by nothing (AWS's answer here was never captured).
func (s *Server) updateMaxRecordSize(rc *reqCtx, body []byte) (any, error) {
	var in updateMaxRecordSizeInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	if v.NotNull("maxRecordSizeInKiB", in.MaxRecordSizeInKiB.Set) {
		v.IntRange("maxRecordSizeInKiB", in.MaxRecordSizeInKiB, storage.MinMaxRecordSizeKiB, storage.MaxMaxRecordSizeKiB)
	}
	v.StreamARN("streamARN", in.StreamARN)
	if err := v.Err(); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(wire.StreamSelector{StreamARN: in.StreamARN})
	if err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: stream}); err != nil {
		return nil, err
	}
	return nil, s.b.UpdateMaxRecordSize(rc.ctx, stream, int(in.MaxRecordSizeInKiB.Val))
}
