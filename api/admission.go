package api

import (
	"context"
	"fmt"
	"time"

	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/storage"
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
	return &storage.Error{Kind: storage.ErrLimitExceeded,
		Msg: fmt.Sprintf("Rate exceeded for operation %s under account %s.", req.Operation, l.account)}
}
