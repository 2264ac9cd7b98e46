package api

import (
	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// UpdateStreamRecordDistributionStrategy, and the record distribution
// strategy CreateStream takes. storage/distribution.go has the rules.

// recordDistributions are the strategies in the order AWS lists them in
// enum messages (the model's order).
var recordDistributions = []string{string(storage.DistributionAuto), string(storage.DistributionUserKey)}

type updateDistributionInput struct {
	StreamARN                  *string
	StreamId                   *string // reserved by AWS; accepted and ignored
	RecordDistributionStrategy *string
}

// updateDistribution checks, in the model's member order, StreamARN (which
// the operation requires, as UpdateStreamMode does) then the strategy.
func (s *Server) updateDistribution(rc *reqCtx, body []byte) (any, error) {
	var in updateDistributionInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.ReqStr("streamARN", in.StreamARN, wire.PatternARN, 1, 2048)
	if v.NotNull("recordDistributionStrategy", in.RecordDistributionStrategy != nil) {
		v.Enum("recordDistributionStrategy", in.RecordDistributionStrategy, recordDistributions)
	}
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
	return nil, s.b.SetRecordDistribution(rc.ctx, stream, storage.RecordDistribution(*in.RecordDistributionStrategy))
}

// summaryDistribution is DescribeStreamSummary's RecordDistributionStrategy:
// AWS reports it for ON_DEMAND streams only ("" leaves it out).
func summaryDistribution(info storage.StreamInfo) string {
	if info.Mode != storage.ModeOnDemand {
		return ""
	}
	return string(info.Distribution)
}
