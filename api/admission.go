package api

import (
	"context"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/ratelimit"
)

// ControlPlaneLimits is an Admission that enforces AWS's control-plane rates
// (per account; ListShards per stream), answering LimitExceededException.
// Data-plane operations pass: their per-shard limits are the storage
// engine's, which knows which shard a record goes to.
type ControlPlaneLimits struct {
	c       *ratelimit.Control
	account string
	now     func() time.Time
}

// NewControlPlaneLimits enforces limits for account; now nil means time.Now.
func NewControlPlaneLimits(limits ratelimit.ControlLimits, account string, now func() time.Time) *ControlPlaneLimits {
	if now == nil {
		now = time.Now
	}
	return &ControlPlaneLimits{c: ratelimit.NewControl(limits), account: account, now: now}
}

// Admit implements Admission.
func (l *ControlPlaneLimits) Admit(_ context.Context, req AdmissionRequest) error {
	if l.c.Admit(l.now(), req.Operation, req.Stream) {
		return nil
	}
	return wire.ClientError(wire.TypeLimitExceeded, "Rate exceeded for operation "+req.Operation+" under account "+l.account+".")
}
