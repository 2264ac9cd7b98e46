package storage

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

func wantStorageErr(t *testing.T, err, kind error, r Reason) {
	t.Helper()
	var se *Error
	if !errors.Is(err, kind) || !errors.As(err, &se) || se.Reason != r {
		t.Fatalf("got %v, want %v (%s)", err, kind, r)
	}
}

func ptr(n int) *int { return &n }

// TestUpdateStreamMode: a switch is UPDATING then ACTIVE; to ON_DEMAND keeps
// the shards and refuses users' reshards; to PROVISIONED allows them again;
// AWS's refusals.
func TestUpdateStreamMode(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Unix(1_800_000_000, 0)}
	opts := scalerOptions(c)
	opts.OnDemandStreamLimit = 2
	s := openReshardStore(t, opts)
	mustCreate(t, s, "p", 3)
	if err := s.UpdateStreamMode(ctx, "p", ModeOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	info, _ := s.DescribeStream(ctx, "p")
	if info.Mode != ModeOnDemand || info.Status != StatusActive || info.OpenShardCount() != 3 {
		t.Fatalf("after the switch: %s %s, %d open", info.Mode, info.Status, info.OpenShardCount())
	}
	_, err := s.UpdateShardCount(ctx, "p", 4)
	wantStorageErr(t, err, ErrValidation, ReasonOnDemand)
	wantStorageErr(t, s.UpdateStreamMode(ctx, "p", ModeOnDemand, nil), ErrInvalidArgument, ReasonSameMode)
	wantStorageErr(t, s.UpdateStreamMode(ctx, "x", ModeOnDemand, nil), ErrStreamNotFound, ReasonStreamNotFound)
	if err := s.UpdateStreamMode(ctx, "p", ModeProvisioned, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateShardCount(ctx, "p", 4); err != nil {
		t.Fatalf("provisioned again: %v", err)
	}
	wantStorageErr(t, s.UpdateStreamMode(ctx, "p", ModeOnDemand, nil), ErrLimitExceeded, ReasonModeSwitches)
	c.t = c.t.Add(24 * time.Hour)
	if err := s.UpdateStreamMode(ctx, "p", ModeOnDemand, nil); err != nil {
		t.Fatalf("a day later: %v", err)
	}
	createOnDemand(t, s, "od2")
	err = s.CreateStream(ctx, CreateStreamInput{Name: "od3", Mode: ModeOnDemand, ShardCount: OnDemandShards})
	wantStorageErr(t, err, ErrLimitExceeded, ReasonOnDemandLimit)
	mustCreate(t, s, "q", 1)
	wantStorageErr(t, s.UpdateStreamMode(ctx, "q", ModeOnDemand, nil), ErrLimitExceeded, ReasonOnDemandLimit)
	if err := s.DeleteStream(ctx, "od2"); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateStreamMode(ctx, "q", ModeOnDemand, nil); err != nil {
		t.Fatalf("after a deletion freed the limit: %v", err)
	}
}

// TestUpdateStreamModeIsUpdating: with an UPDATING delay the stream is
// UPDATING until it passes, and refuses another switch meanwhile; the switch
// survives a restart.
func TestUpdateStreamModeIsUpdating(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Unix(1_800_000_000, 0)}
	opts := scalerOptions(c)
	opts.UpdateDelay, opts.Dir, opts.FS = time.Minute, t.TempDir(), vfs.NewMemFS()
	s := openReshardStore(t, opts)
	mustCreate(t, s, "p", 1)
	if err := s.UpdateStreamMode(ctx, "p", ModeOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	info, _ := s.DescribeStream(ctx, "p")
	if info.Status != StatusUpdating || info.Mode != ModeOnDemand {
		t.Fatalf("during the switch: %s %s", info.Status, info.Mode)
	}
	wantStorageErr(t, s.UpdateStreamMode(ctx, "p", ModeProvisioned, nil), ErrResourceInUse, ReasonNotActive)
	s.Close()
	c.t = c.t.Add(2 * time.Minute)
	s = openReshardStore(t, opts)
	info, _ = s.DescribeStream(ctx, "p")
	if info.Status != StatusActive || info.Mode != ModeOnDemand {
		t.Fatalf("after the restart: %s %s", info.Status, info.Mode)
	}
}

// TestWarmThroughput: it needs the account's commitment and an ON_DEMAND
// stream; it pre-scales the shards to one per MiB/s through the reshard
// path, and a lower target releases them down to the on-demand minimum.
func TestWarmThroughput(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Unix(1_800_000_000, 0)}
	s := openReshardStore(t, scalerOptions(c))
	createOnDemand(t, s, "od")
	mustCreate(t, s, "p", 1)
	_, err := s.UpdateStreamWarmThroughput(ctx, "od", 10)
	wantStorageErr(t, err, ErrInvalidArgument, ReasonNoCommitment)
	err = s.CreateStream(ctx, CreateStreamInput{Name: "w", Mode: ModeOnDemand, ShardCount: OnDemandShards, WarmMiBps: ptr(6)})
	wantStorageErr(t, err, ErrInvalidArgument, ReasonNoCommitment)
	if _, err := s.UpdateAccountSettings(ctx, true); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateStreamWarmThroughput(ctx, "p", 10)
	wantStorageErr(t, err, ErrInvalidArgument, ReasonWarmProvisioned)
	_, err = s.UpdateStreamWarmThroughput(ctx, "od", MaxWarmMiBps+1)
	wantStorageErr(t, err, ErrLimitExceeded, ReasonWarmMax)
	_, err = s.UpdateStreamWarmThroughput(ctx, "od", 600)
	wantStorageErr(t, err, ErrLimitExceeded, ReasonShardLimit)

	w, err := s.UpdateStreamWarmThroughput(ctx, "od", 10)
	if err != nil || w != (WarmThroughput{TargetMiBps: 10, CurrentMiBps: 4}) {
		t.Fatalf("warm 10: %+v, %v", w, err)
	}
	info, _ := s.DescribeStream(ctx, "od")
	if info.OpenShardCount() != 10 || info.WarmMiBps != 10 || info.Status != StatusActive {
		t.Fatalf("after warm 10: %d open, warm %d, %s", info.OpenShardCount(), info.WarmMiBps, info.Status)
	}
	if w, _ := s.UpdateStreamWarmThroughput(ctx, "od", 2); w.CurrentMiBps != 10 {
		t.Fatalf("warm 2: %+v", w)
	}
	info, _ = s.DescribeStream(ctx, "od")
	if info.OpenShardCount() != OnDemandShards {
		t.Fatalf("after warm 2: %d open, want the minimum %d", info.OpenShardCount(), OnDemandShards)
	}
	checkLineage(t, s, "od", nil)

	if err := s.CreateStream(ctx, CreateStreamInput{Name: "w", Mode: ModeOnDemand, ShardCount: OnDemandShards, WarmMiBps: ptr(6)}); err != nil {
		t.Fatal(err)
	}
	info, _ = s.DescribeStream(ctx, "w")
	if info.OpenShardCount() != 6 || info.WarmMiBps != 6 {
		t.Fatalf("created warm: %d open, warm %d", info.OpenShardCount(), info.WarmMiBps)
	}
	err = s.CreateStream(ctx, CreateStreamInput{Name: "pw", Mode: ModeProvisioned, ShardCount: 1, WarmMiBps: ptr(6)})
	wantStorageErr(t, err, ErrInvalidArgument, ReasonWarmProvisioned)
	if err := s.UpdateStreamMode(ctx, "p", ModeOnDemand, ptr(5)); err != nil {
		t.Fatal(err)
	}
	info, _ = s.DescribeStream(ctx, "p")
	if info.OpenShardCount() != 5 || info.Mode != ModeOnDemand || info.WarmMiBps != 5 {
		t.Fatalf("switched with warm 5: %d open, %s, warm %d", info.OpenShardCount(), info.Mode, info.WarmMiBps)
	}
	wantStorageErr(t, s.UpdateStreamMode(ctx, "od", ModeProvisioned, ptr(5)), ErrInvalidArgument, ReasonWarmProvisioned)
}

// TestAccountSettings: AWS's commitment rules, and the record survives a
// restart.
func TestAccountSettings(t *testing.T) {
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	c := &clock{t0}
	opts := Options{Now: c.now, Dir: t.TempDir(), FS: vfs.NewMemFS(), OnDemand: ScalerOptions{Interval: -1}}
	s := openReshardStore(t, opts)
	steps := []struct {
		at     time.Duration
		enable *bool // nil: only Describe
		want   Commitment
	}{
		{0, nil, Commitment{Status: CommitmentDisabled}},
		{0, boolp(false), Commitment{Status: CommitmentDisabled}},
		{time.Hour, boolp(true), Commitment{Status: CommitmentEnabled, Started: t0.Add(time.Hour), EarliestAllowedEnd: t0.Add(25 * time.Hour)}},
		{2 * time.Hour, boolp(true), Commitment{Status: CommitmentEnabled, Started: t0.Add(time.Hour), EarliestAllowedEnd: t0.Add(25 * time.Hour)}},
		{3 * time.Hour, boolp(false), Commitment{Status: CommitmentEnding, Started: t0.Add(time.Hour), EarliestAllowedEnd: t0.Add(25 * time.Hour)}},
		{4 * time.Hour, boolp(true), Commitment{Status: CommitmentEnabled, Started: t0.Add(time.Hour), EarliestAllowedEnd: t0.Add(25 * time.Hour)}},
		{5 * time.Hour, boolp(false), Commitment{Status: CommitmentEnding, Started: t0.Add(time.Hour), EarliestAllowedEnd: t0.Add(25 * time.Hour)}},
		{25 * time.Hour, nil, Commitment{Status: CommitmentDisabled, Started: t0.Add(time.Hour), Ended: t0.Add(25 * time.Hour), EarliestAllowedEnd: t0.Add(25 * time.Hour)}},
		{26 * time.Hour, boolp(true), Commitment{Status: CommitmentEnabled, Started: t0.Add(26 * time.Hour), EarliestAllowedEnd: t0.Add(50 * time.Hour)}},
		{51 * time.Hour, boolp(false), Commitment{Status: CommitmentDisabled, Started: t0.Add(26 * time.Hour), Ended: t0.Add(51 * time.Hour), EarliestAllowedEnd: t0.Add(50 * time.Hour)}},
	}
	for i, st := range steps {
		c.t = t0.Add(st.at)
		got, err := s.AccountSettings(ctx)
		if st.enable != nil {
			got, err = s.UpdateAccountSettings(ctx, *st.enable)
		}
		if err != nil || !sameCommitment(got, st.want) {
			t.Fatalf("step %d: %+v, %v; want %+v", i, got, err, st.want)
		}
		if i == 5 { // the record is in meta.db
			s.Close()
			s = openReshardStore(t, opts)
			if got, _ := s.AccountSettings(ctx); !sameCommitment(got, st.want) {
				t.Fatalf("after a restart: %+v, want %+v", got, st.want)
			}
		}
	}
}

func boolp(b bool) *bool { return &b }

func sameCommitment(a, b Commitment) bool {
	return a.Status == b.Status && a.Started.Equal(b.Started) && a.Ended.Equal(b.Ended) && a.EarliestAllowedEnd.Equal(b.EarliestAllowedEnd)
}
