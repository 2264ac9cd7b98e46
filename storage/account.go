package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// Account settings: the MinimumThroughputBillingCommitment
// (DescribeAccountSettings, UpdateAccountSettings), kept in meta.db
// (datadir.AccountRecord). AWS's rules, from the API reference
// (MinimumThroughputBillingCommitmentInput):
//   - enabling starts a commitment that must last CommitmentMinimum (24 h):
//     StartedAt is now, EarliestAllowedEndAt now + 24 h;
//   - disabling after EarliestAllowedEndAt ends it at once (DISABLED,
//     EndedAt now); disabling before schedules the end for
//     EarliestAllowedEndAt (ENABLED_UNTIL_EARLIEST_ALLOWED_END), which a
//     later enable cancels (ENABLED again, the same commitment);
//   - asking for the status the commitment already has changes nothing.
//
// A scheduled end takes effect by itself when EarliestAllowedEndAt passes:
// the record is read through commitmentAt, so nothing needs a timer.

// CommitmentStatus is the commitment's status, as Kinesis names it.
type CommitmentStatus = datadir.CommitmentStatus

const (
	CommitmentEnabled  = datadir.CommitmentEnabled
	CommitmentDisabled = datadir.CommitmentDisabled
	CommitmentEnding   = datadir.CommitmentEnding
)

// CommitmentMinimum is how long a commitment lasts at least.
const CommitmentMinimum = 24 * time.Hour

// Commitment is the account's MinimumThroughputBillingCommitment; zero
// times are unset.
type Commitment struct {
	Status             CommitmentStatus
	Started, Ended     time.Time
	EarliestAllowedEnd time.Time
}

// InForce reports whether warm throughput may be used: the commitment is
// enabled, or disabled but not yet ended.
func (c Commitment) InForce() bool {
	return c.Status == CommitmentEnabled || c.Status == CommitmentEnding
}

func (s *Store) loadAccount() error {
	b, err := s.meta.Account()
	if err != nil || b == nil {
		return err
	}
	if err := json.Unmarshal(b, &s.account); err != nil {
		return fmt.Errorf("meta.db: account settings: %w", err)
	}
	return nil
}

// AccountSettings is DescribeAccountSettings.
func (s *Store) AccountSettings(ctx context.Context) (Commitment, error) {
	return s.commitment(), nil
}

// commitment is the account's commitment now.
func (s *Store) commitment() Commitment {
	s.acctMu.Lock()
	defer s.acctMu.Unlock()
	return commitmentOf(commitmentAt(s.account, s.opts.Now()))
}

// UpdateAccountSettings is UpdateAccountSettings: enable or disable the
// commitment, by AWS's rules (the top of this file). It returns the
// commitment as it is afterwards.
func (s *Store) UpdateAccountSettings(ctx context.Context, enable bool) (Commitment, error) {
	s.acctMu.Lock()
	defer s.acctMu.Unlock()
	now := s.opts.Now()
	cur := commitmentAt(s.account, now)
	next := switchCommitment(cur, enable, now)
	if next != s.account {
		b, err := json.Marshal(next)
		if err != nil {
			return Commitment{}, err
		}
		if err := s.meta.PutAccount(b); err != nil {
			return Commitment{}, err
		}
		s.account = next
	}
	return commitmentOf(next), nil
}

// commitmentAt is r as it stands at now: a scheduled end that has passed
// has happened.
func commitmentAt(r datadir.AccountRecord, now time.Time) datadir.AccountRecord {
	if r.Commitment == "" {
		r.Commitment = CommitmentDisabled
	}
	if r.Commitment == CommitmentEnding && now.UnixMilli() >= r.EarliestAllowedEndMs {
		r.Commitment, r.EndedMs = CommitmentDisabled, r.EarliestAllowedEndMs
	}
	return r
}

// switchCommitment applies an UpdateAccountSettings to cur (already at now).
func switchCommitment(cur datadir.AccountRecord, enable bool, now time.Time) datadir.AccountRecord {
	ms := now.UnixMilli()
	switch {
	case enable && cur.Commitment == CommitmentDisabled:
		return datadir.AccountRecord{Commitment: CommitmentEnabled, StartedMs: ms, EarliestAllowedEndMs: now.Add(CommitmentMinimum).UnixMilli()}
	case enable && cur.Commitment == CommitmentEnding:
		cur.Commitment = CommitmentEnabled
	case !enable && cur.Commitment == CommitmentEnabled && ms >= cur.EarliestAllowedEndMs:
		cur.Commitment, cur.EndedMs = CommitmentDisabled, ms
	case !enable && cur.Commitment == CommitmentEnabled:
		cur.Commitment = CommitmentEnding
	}
	return cur
}

func commitmentOf(r datadir.AccountRecord) Commitment {
	t := func(ms int64) time.Time {
		if ms == 0 {
			return time.Time{}
		}
		return time.UnixMilli(ms)
	}
	return Commitment{Status: r.Commitment, Started: t(r.StartedMs), Ended: t(r.EndedMs), EarliestAllowedEnd: t(r.EarliestAllowedEndMs)}
}
