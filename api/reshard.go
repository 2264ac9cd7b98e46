package api

import (
	"context"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// Resharder is the part of a Backend that reshards; *storage.Store has it.
// It is separate from Backend so backends without resharding (test fakes)
// still satisfy Backend: their resharding requests get
// UnknownOperationException, as if the operations did not exist.
type Resharder interface {
	// SplitShard, MergeShards and UpdateShardCount fail as AWS does:
	// ErrValidation for an ON_DEMAND stream, ErrResourceInUse when the stream
	// is not ACTIVE, ErrShardNotFound, ErrInvalidArgument (bad hash key, a
	// closed or non-adjacent shard) and ErrLimitExceeded.
	SplitShard(ctx context.Context, stream, shardToSplit, newStartingHashKey string) error
	MergeShards(ctx context.Context, stream, shardToMerge, adjacentShardToMerge string) error
	UpdateShardCount(ctx context.Context, stream string, target int) (storage.UpdateShardCountResult, error)
}

var _ Resharder = (*storage.Store)(nil)

// scalingTypes are UpdateShardCount's ScalingType values.
var scalingTypes = []string{"UNIFORM_SCALING"}

type splitShardInput struct {
	wire.StreamSelector
	ShardToSplit       *string
	NewStartingHashKey *string
}

type mergeShardsInput struct {
	wire.StreamSelector
	ShardToMerge         *string
	AdjacentShardToMerge *string
}

type updateShardCountInput struct {
	wire.StreamSelector
	TargetShardCount wire.OptInt
	ScalingType      *string
}

type updateShardCountOutput struct {
	StreamName        string
	CurrentShardCount int
	TargetShardCount  int
	StreamARN         string
}

func (s *Server) resharder(rc *reqCtx) (Resharder, error) {
	r, ok := s.b.(Resharder)
	if !ok {
		return nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	return r, nil
}

func (s *Server) splitShard(rc *reqCtx, body []byte) (any, error) {
	r, err := s.resharder(rc)
	if err != nil {
		return nil, err
	}
	var in splitShardInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		v.ReqStr("shardToSplit", in.ShardToSplit, wire.PatternName, 1, 128)
		v.ReqStr("newStartingHashKey", in.NewStartingHashKey, wire.PatternHashKey, 0, -1)
	})
	if err != nil {
		return nil, err
	}
	return nil, r.SplitShard(rc.ctx, name, *in.ShardToSplit, *in.NewStartingHashKey)
}

func (s *Server) mergeShards(rc *reqCtx, body []byte) (any, error) {
	r, err := s.resharder(rc)
	if err != nil {
		return nil, err
	}
	var in mergeShardsInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		v.ReqStr("shardToMerge", in.ShardToMerge, wire.PatternName, 1, 128)
		v.ReqStr("adjacentShardToMerge", in.AdjacentShardToMerge, wire.PatternName, 1, 128)
	})
	if err != nil {
		return nil, err
	}
	return nil, r.MergeShards(rc.ctx, name, *in.ShardToMerge, *in.AdjacentShardToMerge)
}

func (s *Server) updateShardCount(rc *reqCtx, body []byte) (any, error) {
	r, err := s.resharder(rc)
	if err != nil {
		return nil, err
	}
	var in updateShardCountInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("targetShardCount", in.TargetShardCount.Set) {
			v.IntRange("targetShardCount", in.TargetShardCount, 1, 100000)
		}
		if v.NotNull("scalingType", in.ScalingType != nil) {
			v.Enum("scalingType", in.ScalingType, scalingTypes)
		}
	})
	if err != nil {
		return nil, err
	}
	res, err := r.UpdateShardCount(rc.ctx, name, int(in.TargetShardCount.Val))
	if err != nil {
		return nil, err
	}
	return updateShardCountOutput{StreamName: name, CurrentShardCount: res.Current, TargetShardCount: res.Target, StreamARN: s.arnFor(rc, name)}, nil
}
