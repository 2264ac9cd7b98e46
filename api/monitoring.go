package api

import (
	"context"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// Enable/DisableEnhancedMonitoring: a stream's shard-level metrics, kept in
// storage (meta.db) and exported on /metrics (metrics_shard.go).

// MonitoringStore is the part of a Backend that keeps enhanced monitoring
// settings; *storage.Store has it. Backends without it (test fakes) answer
// the two operations UnknownOperationException.
type MonitoringStore interface {
	SetShardLevelMetrics(ctx context.Context, name string, metrics []string, enable bool) (storage.MonitoringChange, error)
}

var _ MonitoringStore = (*storage.Store)(nil)

// metricsNames are the MetricsName enum's values as the enum message lists
// them. The model's order, ALL last: no capture of AWS's message for this
// member exists, and AWS's order for other enums is not the model's
// (iteratorTypes), so this order is a guess.
var metricsNames = []string{"IncomingBytes", "IncomingRecords", "OutgoingBytes", "OutgoingRecords",
	"WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded", "IteratorAgeMilliseconds", "ALL"}

type enhancedMonitoringInput struct {
	wire.StreamSelector
	ShardLevelMetrics []string
	StreamId          *string // reserved by AWS; accepted and ignored
}

type enhancedMonitoringOutput struct {
	StreamName               string
	StreamARN                string
	CurrentShardLevelMetrics []string
	DesiredShardLevelMetrics []string
}

func (s *Server) enableEnhancedMonitoring(rc *reqCtx, body []byte) (any, error) {
	return s.setEnhancedMonitoring(rc, body, true)
}

func (s *Server) disableEnhancedMonitoring(rc *reqCtx, body []byte) (any, error) {
	return s.setEnhancedMonitoring(rc, body, false)
}

// setEnhancedMonitoring enables or disables shard-level metrics. ALL stands
// for every metric, alone or among others; a metric named twice, or
// enabled when already enabled, is accepted.
func (s *Server) setEnhancedMonitoring(rc *reqCtx, body []byte, enable bool) (any, error) {
	ms, ok := s.b.(MonitoringStore)
	if !ok {
		return nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	var in enhancedMonitoringInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("shardLevelMetrics", in.ShardLevelMetrics != nil) {
			v.EnumList("shardLevelMetrics", in.ShardLevelMetrics, 1, 7, metricsNames)
		}
	})
	if err != nil {
		return nil, err
	}
	// No metrics lock is held across the change: in cluster mode it is a
	// compare-and-set that may wait out leader elections, and scrapes must
	// not wait with it.
	ch, err := ms.SetShardLevelMetrics(rc.ctx, name, expandMetrics(in.ShardLevelMetrics), enable)
	if err != nil {
		return nil, err
	}
	s.metrics.shardLevelChanged(name, levelOf(ch.Desired))
	return enhancedMonitoringOutput{StreamName: name, StreamARN: s.arnFor(rc, name),
		CurrentShardLevelMetrics: ch.Current, DesiredShardLevelMetrics: ch.Desired}, nil
}

// expandMetrics replaces ALL by every metric's name.
func expandMetrics(names []string) []string {
	for _, n := range names {
		if n == "ALL" {
			return storage.ShardLevelMetricNames
		}
	}
	return names
}
