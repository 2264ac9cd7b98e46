package storage

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// Rules of the channel operations, as pure functions of the records they
// change: single-node mode (the Store, whose channels live in their stream's
// meta.db record) and cluster mode (package cluster, whose channels live in
// its metadata group) both call them, so the two answer with the same
// rules, limits, errors and facts, in the same order. account fills the
// errors' Facts.Account.

// ChannelTarget is what CreateChannel's rules see of the source stream
// (looked up first: ErrStreamNotFound is the caller's) and of the account.
type ChannelTarget struct {
	Stream  string
	Status  StreamStatus
	Mode    StreamMode
	AnyMode bool // Options.ChannelAnyMode: PROVISIONED streams too
	// NameTaken: a channel of the name exists in the account, in any state.
	NameTaken bool
	// Channels is how many channels the stream has, in any state.
	Channels int
}

// CheckCreateChannel applies CreateChannel's rules in single-node mode's
// order: the stream must be ACTIVE (ErrResourceInUse), ON_DEMAND unless
// AnyMode (ErrInvalidArgument), the name free (ErrResourceInUse), and the
// stream below MaxChannelsPerStream (ErrLimitExceeded).
func CheckCreateChannel(account, name string, t ChannelTarget) error {
	switch {
	case t.Status != StatusActive:
		return newError(ErrResourceInUse, ReasonNotActive, Facts{Account: account, Stream: t.Stream, State: t.Status})
	case t.Mode != ModeOnDemand && !t.AnyMode:
		return newError(ErrInvalidArgument, ReasonChannelMode, Facts{Account: account, Stream: t.Stream, Channel: name})
	case t.NameTaken:
		return newError(ErrResourceInUse, ReasonChannelExists, Facts{Account: account, Channel: name})
	case t.Channels >= MaxChannelsPerStream:
		return newError(ErrLimitExceeded, ReasonChannelLimit, Facts{Account: account, Stream: t.Stream, Channel: name, Limit: MaxChannelsPerStream})
	}
	return nil
}

// NewChannel is the record of a channel CreateChannel makes at now: CREATING
// until now+delay. With no delay the caller activates it at once (its
// progress starts at the stream's tip, which only the caller can read).
func NewChannel(in CreateChannelInput, now time.Time, delay time.Duration) datadir.ChannelRecord {
	c := datadir.ChannelRecord{Name: in.Name, ID: newChannelID(), CreatedMs: now.UnixMilli(), Status: ChannelCreating,
		PendingUntilNs: now.Add(delay).UnixNano(), Config: in.Config}
	if len(in.Tags) > 0 {
		c.Tags = copyTags(in.Tags)
	}
	return c
}

// newChannelID is a random UUID (version 4), the form of AWS's channel IDs.
func newChannelID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// ChannelUpdated is UpdateChannel's change of c at now: only an ACTIVE
// channel is updated (ErrResourceInUse); it is then UPDATING until
// now+delay, or ACTIVE again at once with no delay (an ACTIVE channel has
// its progress: nothing else changes when UPDATING ends).
func ChannelUpdated(account string, c datadir.ChannelRecord, u ChannelUpdate, now time.Time, delay time.Duration) (datadir.ChannelRecord, error) {
	if c.Status != ChannelActive {
		return c, ChannelNotActive(account, c)
	}
	if u.FreshnessSecs != nil {
		c.Config.FreshnessSecs = *u.FreshnessSecs
	}
	if u.Logging != nil {
		l := *u.Logging
		c.Config.Logging = &l
	}
	c.Status, c.PendingUntilNs = ChannelUpdating, now.Add(delay).UnixNano()
	if delay <= 0 {
		c.Status, c.PendingUntilNs = ChannelActive, 0
	}
	return c, nil
}

// ChannelDeleted is DeleteChannel's change of c at now: only an ACTIVE
// channel is deleted (ErrResourceInUse); it is then DELETING until
// now+delay, or, with no delay, to be removed at once (remove).
func ChannelDeleted(account string, c datadir.ChannelRecord, now time.Time, delay time.Duration) (_ datadir.ChannelRecord, remove bool, _ error) {
	if c.Status != ChannelActive {
		return c, false, ChannelNotActive(account, c)
	}
	c.Status, c.PendingUntilNs = ChannelDeleting, now.Add(delay).UnixNano()
	return c, delay <= 0, nil
}

// ChannelProgressSaved is c with the progress p of its incarnation id
// stored. Once that incarnation is gone or DELETING, or before it first
// turned ACTIVE, it is ErrChannelNotFound: its delivery must stop.
func ChannelProgressSaved(account string, c datadir.ChannelRecord, id string, p *ChannelProgress) (datadir.ChannelRecord, error) {
	if c.ID != id || c.Status == ChannelDeleting || c.Progress == nil {
		return c, ChannelNotFound(account, c.Name)
	}
	c.Progress = p
	return c, nil
}

// ChannelNotFound is the error of a channel that does not exist.
func ChannelNotFound(account, name string) error {
	return newError(ErrChannelNotFound, ReasonChannelNotFound, Facts{Account: account, Channel: name})
}

// ChannelNotActive is the error of a change of a channel that is not ACTIVE.
func ChannelNotActive(account string, c datadir.ChannelRecord) error {
	return newError(ErrResourceInUse, ReasonChannelNotActive, Facts{Account: account, Channel: c.Name, Given: string(c.Status)})
}

// LiveChannels counts the channels that hold a stream's deletion back: all
// but those DELETING, which go with the stream.
func LiveChannels(cs []datadir.ChannelRecord) int {
	n := 0
	for _, c := range cs {
		if c.Status != ChannelDeleting {
			n++
		}
	}
	return n
}

// HasChannels is DeleteStream's error for a stream with n live channels.
// AWS refuses to delete a stream that has channels ("A stream cannot be
// deleted while it has active deliveries"), whatever the options.
func HasChannels(account, stream string, n int) error {
	return newError(ErrResourceInUse, ReasonHasChannels, Facts{Account: account, Stream: stream, Current: int64(n)})
}

// ChannelInfoOf describes channel c of the stream created at streamCreated.
func ChannelInfoOf(stream string, streamCreated time.Time, c datadir.ChannelRecord) ChannelInfo {
	return ChannelInfo{Name: c.Name, ID: c.ID, Stream: stream, StreamCreated: streamCreated, Status: c.Status,
		Created: time.UnixMilli(c.CreatedMs), Tags: copyTags(c.Tags), Config: c.Config, Progress: c.Progress}
}
