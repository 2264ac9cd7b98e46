package api

import (
	"context"
	"math"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// The capacity operations: UpdateStreamMode, UpdateStreamWarmThroughput,
// DescribeAccountSettings and UpdateAccountSettings (storage/mode.go and
// storage/account.go have their rules and errors).

// Capacity is the part of a Backend that manages capacity modes;
// *storage.Store has it. Backends without it (test fakes) answer these
// operations UnknownOperationException, and DescribeLimits reports AWS's
// default on-demand stream limit.
type Capacity interface {
	UpdateStreamMode(ctx context.Context, stream string, mode storage.StreamMode, warmMiBps *int) error
	UpdateStreamWarmThroughput(ctx context.Context, stream string, mibps int) (storage.WarmThroughput, error)
	AccountSettings(ctx context.Context) (storage.Commitment, error)
	UpdateAccountSettings(ctx context.Context, enable bool) (storage.Commitment, error)
	// OnDemandStreamLimit is the account's limit of ON_DEMAND streams.
	OnDemandStreamLimit() int
}

var _ Capacity = (*storage.Store)(nil)

func (s *Server) capacity() (Capacity, error) {
	c, ok := s.b.(Capacity)
	if !ok {
		return nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	return c, nil
}

// onDemandStreamLimit is what DescribeLimits reports.
func (s *Server) onDemandStreamLimit() int {
	if c, ok := s.b.(Capacity); ok {
		return c.OnDemandStreamLimit()
	}
	return storage.DefaultOnDemandStreamLimit
}

// warmIntMax is the model's bound of a WarmThroughputMiBps
// (NaturalIntegerObject: 0 to Integer.MAX_VALUE).
const warmIntMax = math.MaxInt32

type updateStreamModeInput struct {
	StreamARN           *string
	StreamModeDetails   *streamModeIn
	WarmThroughputMiBps wire.OptInt
}

func (s *Server) updateStreamMode(rc *reqCtx, body []byte) (any, error) {
	c, err := s.capacity()
	if err != nil {
		return nil, err
	}
	var in updateStreamModeInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.ReqStr("streamARN", in.StreamARN, wire.PatternARN, 1, 2048)
	if v.NotNull("streamModeDetails", in.StreamModeDetails != nil) && v.NotNull("streamModeDetails.streamMode", in.StreamModeDetails.StreamMode != nil) {
		v.Enum("streamModeDetails.streamMode", in.StreamModeDetails.StreamMode, streamModes)
	}
	v.IntRange("warmThroughputMiBps", in.WarmThroughputMiBps, 0, warmIntMax)
	if err := v.Err(); err != nil {
		return nil, err
	}
	name, err := s.resolveStream(wire.StreamSelector{StreamARN: in.StreamARN})
	if err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: name}); err != nil {
		return nil, err
	}
	return nil, c.UpdateStreamMode(rc.ctx, name, storage.StreamMode(*in.StreamModeDetails.StreamMode), optInt(in.WarmThroughputMiBps))
}

// optInt is an optional integer as storage takes it: nil when absent.
func optInt(n wire.OptInt) *int {
	if !n.Set {
		return nil
	}
	v := int(n.Val)
	return &v
}

type warmThroughputInput struct {
	wire.StreamSelector
	WarmThroughputMiBps wire.OptInt
}

// warmThroughputOut is AWS's WarmThroughputObject.
type warmThroughputOut struct {
	TargetMiBps  *int `json:",omitempty"`
	CurrentMiBps *int `json:",omitempty"`
}

type warmThroughputOutput struct {
	StreamARN      string
	StreamName     string
	WarmThroughput warmThroughputOut
}

func (s *Server) updateStreamWarmThroughput(rc *reqCtx, body []byte) (any, error) {
	c, err := s.capacity()
	if err != nil {
		return nil, err
	}
	var in warmThroughputInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("warmThroughputMiBps", in.WarmThroughputMiBps.Set) {
			v.IntRange("warmThroughputMiBps", in.WarmThroughputMiBps, 0, warmIntMax)
		}
	})
	if err != nil {
		return nil, err
	}
	w, err := c.UpdateStreamWarmThroughput(rc.ctx, name, int(in.WarmThroughputMiBps.Val))
	if err != nil {
		return nil, err
	}
	return warmThroughputOutput{StreamARN: s.arnFor(rc, name), StreamName: name,
		WarmThroughput: warmThroughputOut{TargetMiBps: &w.TargetMiBps, CurrentMiBps: &w.CurrentMiBps}}, nil
}

// warmThroughputOf is DescribeStreamSummary's WarmThroughput: present, as
// AWS documents, only for an ON_DEMAND stream in an account whose
// commitment is in force. CurrentMiBps is what the open shards give (1 MiB/s
// each); TargetMiBps the target set, absent when none is.
func (s *Server) warmThroughputOf(ctx context.Context, info storage.StreamInfo) *warmThroughputOut {
	c, ok := s.b.(Capacity)
	if !ok || info.Mode != storage.ModeOnDemand {
		return nil
	}
	if acct, err := c.AccountSettings(ctx); err != nil || !acct.InForce() {
		return nil
	}
	cur := info.OpenShardCount()
	out := &warmThroughputOut{CurrentMiBps: &cur}
	if info.WarmMiBps > 0 {
		out.TargetMiBps = &info.WarmMiBps
	}
	return out
}

// commitmentOut is AWS's MinimumThroughputBillingCommitmentOutput.
type commitmentOut struct {
	Status               string
	StartedAt            *wire.EpochTime `json:",omitempty"`
	EndedAt              *wire.EpochTime `json:",omitempty"`
	EarliestAllowedEndAt *wire.EpochTime `json:",omitempty"`
}

type accountSettingsOutput struct {
	MinimumThroughputBillingCommitment commitmentOut
}

func accountSettingsOut(c storage.Commitment) accountSettingsOutput {
	t := func(x time.Time) *wire.EpochTime {
		if x.IsZero() {
			return nil
		}
		e := wire.EpochTime(x)
		return &e
	}
	return accountSettingsOutput{commitmentOut{Status: string(c.Status), StartedAt: t(c.Started), EndedAt: t(c.Ended),
		EarliestAllowedEndAt: t(c.EarliestAllowedEnd)}}
}

func (s *Server) describeAccountSettings(rc *reqCtx, body []byte) (any, error) {
	c, err := s.capacity()
	if err != nil {
		return nil, err
	}
	var in struct{}
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{}); err != nil {
		return nil, err
	}
	acct, err := c.AccountSettings(rc.ctx)
	if err != nil {
		return nil, err
	}
	return accountSettingsOut(acct), nil
}

// commitmentStatuses are MinimumThroughputBillingCommitmentInputStatus's
// values, in the model's order.
var commitmentStatuses = []string{string(storage.CommitmentEnabled), string(storage.CommitmentDisabled)}

type updateAccountSettingsInput struct {
	MinimumThroughputBillingCommitment *struct {
		Status *string
	}
}

func (s *Server) updateAccountSettings(rc *reqCtx, body []byte) (any, error) {
	c, err := s.capacity()
	if err != nil {
		return nil, err
	}
	var in updateAccountSettingsInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	mc := in.MinimumThroughputBillingCommitment
	if v.NotNull("minimumThroughputBillingCommitment", mc != nil) && v.NotNull("minimumThroughputBillingCommitment.status", mc.Status != nil) {
		v.Enum("minimumThroughputBillingCommitment.status", mc.Status, commitmentStatuses)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{}); err != nil {
		return nil, err
	}
	acct, err := c.UpdateAccountSettings(rc.ctx, *mc.Status == string(storage.CommitmentEnabled))
	if err != nil {
		return nil, err
	}
	return accountSettingsOut(acct), nil
}
