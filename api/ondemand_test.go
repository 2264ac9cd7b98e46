package api

import (
	"context"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// capacityFake adds the capacity operations to the fake backend: it records
// what the api passed and answers what the test set.
type capacityFake struct {
	*fakeBackend
	mode   storage.StreamMode
	warm   *int
	stream string
	err    error
	acct   storage.Commitment
	enable *bool
}

func (f *capacityFake) UpdateStreamMode(ctx context.Context, stream string, mode storage.StreamMode, warm *int) error {
	f.stream, f.mode, f.warm = stream, mode, warm
	return f.err
}

func (f *capacityFake) UpdateStreamWarmThroughput(ctx context.Context, stream string, mibps int) (storage.WarmThroughput, error) {
	f.stream, f.warm = stream, &mibps
	return storage.WarmThroughput{TargetMiBps: mibps, CurrentMiBps: 4}, f.err
}

func (f *capacityFake) AccountSettings(ctx context.Context) (storage.Commitment, error) {
	return f.acct, f.err
}

func (f *capacityFake) UpdateAccountSettings(ctx context.Context, enable bool) (storage.Commitment, error) {
	f.enable = &enable
	return f.acct, f.err
}

func (f *capacityFake) OnDemandStreamLimit() int { return 7 }

func newCapacityHarness(t *testing.T) (*harness, *capacityFake) {
	h := newHarness(t)
	cf := &capacityFake{fakeBackend: h.fake, acct: storage.Commitment{Status: storage.CommitmentDisabled}}
	h.srv = New(Config{Now: h.clock}, cf)
	return h, cf
}

const arnOrders = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"

func TestUpdateStreamModeRequests(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		typ, msg   string
		mode       storage.StreamMode
		warm       int // -1: none
	}{
		{"to on-demand", `{"StreamARN":"` + arnOrders + `","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`, 200, "", "", storage.ModeOnDemand, -1},
		{"with warm throughput", `{"StreamARN":"` + arnOrders + `","StreamModeDetails":{"StreamMode":"ON_DEMAND"},"WarmThroughputMiBps":12}`, 200, "", "", storage.ModeOnDemand, 12},
		{"to provisioned", `{"StreamARN":"` + arnOrders + `","StreamModeDetails":{"StreamMode":"PROVISIONED"}}`, 200, "", "", storage.ModeProvisioned, -1},
		{"nothing", `{}`, 400, wire.TypeValidation, "2 validation errors detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null; " +
			"Value null at 'streamModeDetails' failed to satisfy constraint: Member must not be null", "", 0},
		{"no mode", `{"StreamARN":"` + arnOrders + `","StreamModeDetails":{}}`, 400, wire.TypeValidation,
			"1 validation error detected: Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must not be null", "", 0},
		{"bad mode", `{"StreamARN":"` + arnOrders + `","StreamModeDetails":{"StreamMode":"FAST"}}`, 400, wire.TypeValidation,
			"1 validation error detected: Value 'FAST' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]", "", 0},
		{"negative warm", `{"StreamARN":"` + arnOrders + `","StreamModeDetails":{"StreamMode":"ON_DEMAND"},"WarmThroughputMiBps":-1}`, 400, wire.TypeValidation,
			"1 validation error detected: Value '-1' at 'warmThroughputMiBps' failed to satisfy constraint: Member must have value greater than or equal to 0", "", 0},
		{"a name is not an ARN", `{"StreamName":"orders","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`, 400, wire.TypeValidation,
			"1 validation error detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null", "", 0},
		{"another account's stream", `{"StreamARN":"arn:aws:kinesis:eu-west-1:999999999999:stream/orders","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`, 400,
			wire.TypeResourceNotFound, "Stream orders under account 999999999999 not found.", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, cf := newCapacityHarness(t)
			r := h.call("UpdateStreamMode", tt.body)
			if tt.status != 200 {
				wantError(t, r, tt.status, tt.typ, tt.msg)
				if cf.stream != "" {
					t.Fatal("a refused request reached storage")
				}
				return
			}
			if r.status != 200 || r.raw != "{}" && r.raw != "" {
				t.Fatalf("answer %d %q", r.status, r.raw)
			}
			if cf.stream != "orders" || cf.mode != tt.mode || (tt.warm < 0) != (cf.warm == nil) || (cf.warm != nil && *cf.warm != tt.warm) {
				t.Fatalf("storage got %q %s %v", cf.stream, cf.mode, cf.warm)
			}
		})
	}
}

// TestCapacityErrorTexts: storage's refusals reach the client with their
// AWS error types and shardlog's texts.
func TestCapacityErrorTexts(t *testing.T) {
	f := storage.Facts{Account: "123456789012", Stream: "orders"}
	tests := []struct {
		reason storage.Reason
		kind   error
		facts  storage.Facts
		typ    string
		msg    string
	}{
		{storage.ReasonSameMode, storage.ErrInvalidArgument, storage.Facts{Account: f.Account, Stream: f.Stream, Given: "ON_DEMAND"}, wire.TypeInvalidArgument,
			"Stream orders under account 123456789012 is already in ON_DEMAND capacity mode."},
		{storage.ReasonModeSwitches, storage.ErrLimitExceeded, storage.Facts{Account: f.Account, Stream: f.Stream, Limit: 2}, wire.TypeLimitExceeded,
			"Exceeded the limit of 2 UpdateStreamMode calls per rolling 24 hours for stream orders under account 123456789012."},
		{storage.ReasonOnDemandLimit, storage.ErrLimitExceeded, storage.Facts{Account: f.Account, Current: 50, Limit: 50}, wire.TypeLimitExceeded,
			"This request would exceed the on-demand stream limit for the account 123456789012 in eu-west-1. Current on-demand stream count for the account: 50. Limit: 50."},
		{storage.ReasonNoCommitment, storage.ErrInvalidArgument, f, wire.TypeInvalidArgument,
			"Warm throughput is only supported in accounts with MinimumThroughputBillingCommitment enabled. Account 123456789012 does not have it enabled."},
	}
	for _, tt := range tests {
		t.Run(string(tt.reason), func(t *testing.T) {
			h, cf := newCapacityHarness(t)
			cf.err = &storage.Error{Kind: tt.kind, Reason: tt.reason, Facts: tt.facts}
			wantError(t, h.call("UpdateStreamMode", `{"StreamARN":"`+arnOrders+`","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`), 400, tt.typ, tt.msg)
		})
	}
}

func TestUpdateStreamWarmThroughputRequests(t *testing.T) {
	h, cf := newCapacityHarness(t)
	r := h.ok("UpdateStreamWarmThroughput", `{"StreamName":"orders","WarmThroughputMiBps":20}`)
	w := r.body["WarmThroughput"].(map[string]any)
	if r.body["StreamName"] != "orders" || r.body["StreamARN"] != arnOrders || w["TargetMiBps"] != 20.0 || w["CurrentMiBps"] != 4.0 || *cf.warm != 20 {
		t.Fatalf("answer %s", r.raw)
	}
	wantError(t, h.call("UpdateStreamWarmThroughput", `{"StreamName":"orders"}`), 400, wire.TypeValidation,
		"1 validation error detected: Value null at 'warmThroughputMiBps' failed to satisfy constraint: Member must not be null")
	wantError(t, h.call("UpdateStreamWarmThroughput", `{"WarmThroughputMiBps":1}`), 400, wire.TypeInvalidArgument, "Either StreamName or StreamARN must be provided.")
}

func TestAccountSettingsRequests(t *testing.T) {
	h, cf := newCapacityHarness(t)
	r := h.ok("DescribeAccountSettings", `{}`)
	if r.raw != `{"MinimumThroughputBillingCommitment":{"Status":"DISABLED"}}` {
		t.Fatalf("describe: %s", r.raw)
	}
	start := time.UnixMilli(1_800_000_000_123)
	cf.acct = storage.Commitment{Status: storage.CommitmentEnabled, Started: start, EarliestAllowedEnd: start.Add(24 * time.Hour)}
	r = h.ok("UpdateAccountSettings", `{"MinimumThroughputBillingCommitment":{"Status":"ENABLED"}}`)
	if r.raw != `{"MinimumThroughputBillingCommitment":{"Status":"ENABLED","StartedAt":1800000000.123,"EarliestAllowedEndAt":1800086400.123}}` || !*cf.enable {
		t.Fatalf("update: %s", r.raw)
	}
	h.ok("UpdateAccountSettings", `{"MinimumThroughputBillingCommitment":{"Status":"DISABLED"}}`)
	if *cf.enable {
		t.Fatal("DISABLED enabled")
	}
	wantError(t, h.call("UpdateAccountSettings", `{}`), 400, wire.TypeValidation,
		"1 validation error detected: Value null at 'minimumThroughputBillingCommitment' failed to satisfy constraint: Member must not be null")
	wantError(t, h.call("UpdateAccountSettings", `{"MinimumThroughputBillingCommitment":{"Status":"ENABLED_UNTIL_EARLIEST_ALLOWED_END"}}`), 400, wire.TypeValidation,
		"1 validation error detected: Value 'ENABLED_UNTIL_EARLIEST_ALLOWED_END' at 'minimumThroughputBillingCommitment.status' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]")
}

// TestCapacityWithoutBackendSupport: a backend without the capacity
// operations answers them as unknown, and DescribeLimits reports AWS's
// default limit; one with them reports its own.
func TestCapacityWithoutBackendSupport(t *testing.T) {
	h := newHarness(t)
	for _, op := range []string{"UpdateStreamMode", "UpdateStreamWarmThroughput", "DescribeAccountSettings", "UpdateAccountSettings"} {
		wantError(t, h.call(op, `{}`), 400, wire.TypeUnknownOperation, "")
	}
	if r := h.ok("DescribeLimits", `{}`); r.body["OnDemandStreamCountLimit"] != 50.0 {
		t.Fatalf("limits: %s", r.raw)
	}
	h, _ = newCapacityHarness(t)
	if r := h.ok("DescribeLimits", `{}`); r.body["OnDemandStreamCountLimit"] != 7.0 {
		t.Fatalf("limits: %s", r.raw)
	}
}

// TestSummaryWarmThroughput: DescribeStreamSummary shows WarmThroughput only
// for an ON_DEMAND stream while the account's commitment is in force.
func TestSummaryWarmThroughput(t *testing.T) {
	h, cf := newCapacityHarness(t)
	h.ok("CreateStream", `{"StreamName":"od","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`)
	h.createStream("p", 1)
	summary := func(name string) map[string]any {
		return h.ok("DescribeStreamSummary", `{"StreamName":"`+name+`"}`).body["StreamDescriptionSummary"].(map[string]any)
	}
	if _, ok := summary("od")["WarmThroughput"]; ok {
		t.Fatal("WarmThroughput without a commitment")
	}
	cf.acct.Status = storage.CommitmentEnding
	if w, _ := summary("od")["WarmThroughput"].(map[string]any); w == nil || w["CurrentMiBps"] != 4.0 || w["TargetMiBps"] != nil {
		t.Fatalf("on-demand summary: %v", summary("od"))
	}
	if _, ok := summary("p")["WarmThroughput"]; ok {
		t.Fatal("WarmThroughput on a provisioned stream")
	}
}
