package storage

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Every error the Store returns for a caller's mistake or a
// resource state wraps exactly one of these in an *Error; the api package maps
// them to AWS error types (and nowhere else does that mapping happen).
var (
	ErrStreamNotFound = errors.New("stream not found")
	ErrStreamExists   = errors.New("stream already exists")
	// ErrChannelNotFound means no channel of that name exists in the
	// account (channel names are unique per account and region).
	ErrChannelNotFound = errors.New("channel not found")
	// ErrConsumerNotFound means no consumer of that name (and, looked up by
	// ARN, that creation second) is registered with the stream.
	ErrConsumerNotFound = errors.New("consumer not found")
	ErrResourceInUse    = errors.New("resource in use") // e.g. stream not ACTIVE for this operation
	ErrShardNotFound    = errors.New("shard not found")
	ErrInvalidArgument  = errors.New("invalid argument")
	ErrLimitExceeded    = errors.New("limit exceeded")       // shard limit, etc.
	ErrThrottled        = errors.New("throughput exceeded")  // per-shard admission control
	ErrShardReadOnly    = errors.New("shard refuses writes") // corrupt, or a failed fsync poisoned it
	ErrExpired          = errors.New("position expired")     // trimmed away by retention
	ErrClosed           = errors.New("store closed")
	// ErrShardClosed means a record met a shard that a reshard closed while
	// the record was on its way, and the reshards that followed left no time
	// to route it to a child. Retrying the request routes it again.
	ErrShardClosed = errors.New("shard closed by a reshard")
	ErrDiskFull    = errors.New("no space left on device")
	ErrValidation  = errors.New("validation failed") // e.g. resharding an ON_DEMAND stream
	// ErrServiceFault is a request AWS itself fails with a bare 500
	// InternalFailure that has no message; shardlog answers it the same way.
	ErrServiceFault = errors.New("request AWS answers with a service fault")
	// The KMS family: a master key that is not in the keyring, disabled, or
	// pending deletion (StartStreamEncryption; writes and reads of a stream
	// whose key went missing).
	ErrKMSNotFound     = errors.New("KMS key not found")
	ErrKMSDisabled     = errors.New("KMS key disabled")
	ErrKMSInvalidState = errors.New("KMS key in an invalid state")
	// ErrUnavailable means cluster mode could not reach a leader for the
	// shard (or for the metadata) within an election timeout: nothing was
	// written, and the client may retry (HTTP 503, which SDKs retry).
	ErrUnavailable = errors.New("service unavailable")
)

// Reason says which situation an Error reports, within its Kind. Storage
// words no message for clients: package api renders each Reason, with the
// Facts, in AWS's words (api/messages.go), so every text has one home.
type Reason string

// Reasons, grouped by the sentinel they come with.
const (
	ReasonStreamNotFound Reason = "stream not found" // ErrStreamNotFound
	ReasonStreamExists   Reason = "stream exists"    // ErrStreamExists

	ReasonNotActive   Reason = "stream not active"                // ErrResourceInUse; State
	ReasonNoOpenShard Reason = "no open shard for hash key"       // ErrResourceInUse; Given: the key
	ReasonOnDemand    Reason = "reshard of an on-demand stream"   // ErrValidation
	ReasonShardClosed Reason = "shard closed by a reshard"        // ErrShardClosed
	ReasonShutdown    Reason = "server shutting down"             // ErrClosed
	ReasonDiskFull    Reason = "no space left on device"          // ErrDiskFull; Detail
	ReasonReadOnly    Reason = "shard refuses writes"             // ErrShardReadOnly; Detail
	ReasonThrottled   Reason = "shard rate exceeded"              // ErrThrottled; Shard
	ReasonMerged      Reason = "shard already merged or split"    // ErrInvalidArgument; Shard
	ReasonShardGone   Reason = "shard does not exist"             // ErrShardNotFound; Shard (also for a stream missing, CREATING or gone)
	ReasonBadShardID  Reason = "shard id does not resolve"        // ErrShardNotFound; Given: the id as sent
	ReasonNoSuchShard Reason = "no shard with that index"         // ErrShardNotFound; Shard (MergeShards, SplitShard)
	ReasonTooManyTags Reason = "too many tags"                    // ErrInvalidArgument; Limit
	ReasonBadSplitKey Reason = "split key outside the shard"      // ErrInvalidArgument; Given, Shard, Start, End
	ReasonNotAdjacent Reason = "shards not adjacent"              // ErrInvalidArgument; Shard, Shard2
	ReasonOrderingSeq Reason = "bad SequenceNumberForOrdering"    // ErrInvalidArgument; Given
	ReasonIterType    Reason = "bad shard iterator type"          // ErrInvalidArgument; Given
	ReasonFutureTime  Reason = "timestamp in the future"          // ErrInvalidArgument; N: the time, Limit: now (ms)
	ReasonStartSeq    Reason = "bad starting sequence number"     // ErrInvalidArgument; Given, Shard
	ReasonSeqShard    Reason = "sequence number of another shard" // ErrInvalidArgument; Shard2: encoded, Shard
	ReasonSeqStream   Reason = "sequence number of another stream"
	ReasonSeqMax      Reason = "sequence number at its maximum"       // ErrInvalidArgument
	ReasonSeqLegacy   Reason = "version-0 number of the shard itself" // ErrServiceFault; Given, Shard

	ReasonRetentionMin   Reason = "retention below the minimum"   // ErrInvalidArgument; N, Limit
	ReasonRetentionMax   Reason = "retention above the maximum"   // ErrInvalidArgument; N, Limit
	ReasonRetentionLower Reason = "increase to a lower retention" // ErrInvalidArgument; N, Current
	ReasonRetentionRaise Reason = "decrease to a higher retention"

	ReasonMaxShards    Reason = "shard count above the stream maximum" // ErrLimitExceeded; Limit, Current, Target
	ReasonScaleUp      Reason = "scale up over double"                 // ErrLimitExceeded; Current, Target
	ReasonScaleDown    Reason = "scale down below half"                // ErrLimitExceeded; Current, Target
	ReasonScalingCalls Reason = "UpdateShardCount calls per day"       // ErrLimitExceeded; Limit
	ReasonShardLimit   Reason = "account shard limit"                  // ErrLimitExceeded; Current, Limit, N: shards added

	ReasonConsumerNotFound  Reason = "consumer not found"              // ErrConsumerNotFound; Stream, Consumer
	ReasonConsumerExists    Reason = "consumer exists"                 // ErrResourceInUse; Stream, Consumer
	ReasonConsumerNotActive Reason = "consumer not active"             // ErrResourceInUse; Stream, Consumer, N: its creation (unix ms)
	ReasonConsumerLimit     Reason = "consumers per stream"            // ErrLimitExceeded; Stream, Consumer, Limit
	ReasonConsumersCreating Reason = "consumers creating at once"      // ErrLimitExceeded; Stream, Consumer, Limit
	ReasonHasConsumers      Reason = "stream has registered consumers" // ErrResourceInUse; Stream, Current: how many

	ReasonChannelNotFound  Reason = "channel not found"               // ErrChannelNotFound; Channel
	ReasonChannelExists    Reason = "channel exists"                  // ErrResourceInUse; Channel
	ReasonChannelNotActive Reason = "channel not active"              // ErrResourceInUse; Channel, Given: its status
	ReasonChannelLimit     Reason = "channels per stream"             // ErrLimitExceeded; Stream, Channel, Limit
	ReasonChannelMode      Reason = "channel of a provisioned stream" // ErrInvalidArgument; Stream
	ReasonHasChannels      Reason = "stream has channels"             // ErrResourceInUse; Stream, Current: how many
)

// Reasons of the tag-by-resource and record-distribution operations.
const (
	ReasonTooManyConsumerTags Reason = "too many tags on a consumer" // ErrInvalidArgument; Stream, Consumer, Limit
	// ReasonAutoProvisioned is AUTO record distribution asked of a stream
	// that is not ON_DEMAND.
	ReasonAutoProvisioned Reason = "AUTO distribution on a provisioned stream" // ErrInvalidArgument; Stream
	// ReasonOrderingAuto is PutRecord's SequenceNumberForOrdering on a
	// stream with AUTO record distribution.
	ReasonOrderingAuto    Reason = "SequenceNumberForOrdering with AUTO distribution" // ErrInvalidArgument; Stream
	ReasonSameMode        Reason = "stream already in that mode"                      // ErrInvalidArgument; Stream, Given: the mode
	ReasonModeSwitches    Reason = "UpdateStreamMode calls per day"                   // ErrLimitExceeded; Stream, Limit
	ReasonOnDemandLimit   Reason = "account on-demand stream limit"                   // ErrLimitExceeded; Current, Limit
	ReasonWarmProvisioned Reason = "warm throughput of a provisioned stream"          // ErrInvalidArgument; Stream
	ReasonNoCommitment    Reason = "warm throughput without commitment"               // ErrInvalidArgument; Stream
	ReasonWarmMax         Reason = "warm throughput above the maximum"                // ErrLimitExceeded; Stream, N, Limit
	ReasonKeyChanges      Reason = "encryption key changes per day"                   // ErrLimitExceeded; Stream, Limit
	ReasonKMSNotFound     Reason = "KMS key not found"                                // ErrKMSNotFound; Stream, Given: the KeyId, Detail
	ReasonKMSDisabled     Reason = "KMS key disabled"                                 // ErrKMSDisabled; Stream, Given, Detail
	ReasonKMSInvalidState Reason = "KMS key pending deletion"                         // ErrKMSInvalidState; Stream, Given, Detail
)

// Reasons of cluster mode (package cluster).
const (
	// ReasonNoLeader: no leader answered within an election timeout (a
	// partition's minority side, or an election under way).
	ReasonNoLeader Reason = "no leader within an election timeout" // ErrUnavailable; Stream, Shard ("" for metadata), Detail
	// ReasonClusterUnsupported is an operation cluster mode does not do yet.
	ReasonClusterUnsupported Reason = "not supported in cluster mode yet" // ErrInvalidArgument; Given: the operation or feature
)

// Facts are what a client's message names. Which fields a Reason fills is
// listed beside it; the rest stay zero.
type Facts struct {
	Account string
	Stream  string
	State   StreamStatus
	Shard   string // a shard's id as AWS renders it (shardId-%012d)
	Shard2  string // the other shard of a pair
	// Consumer is an enhanced fan-out consumer's name.
	Consumer string
	Channel  string // a channel's name
	Given    string // a value as the client sent it
	Start    string // a shard's hash-key range, in decimal
	End      string
	N        int64  // a requested quantity
	Limit    int64  // the bound it broke
	Current  int64  // the present quantity
	Target   int64  // a requested shard count
	Detail   string // a server-side failure's cause, for operators
}

// Error is a storage error: a sentinel Kind, the Reason within it, and the
// Facts the client's message names.
type Error struct {
	Kind   error
	Reason Reason
	Facts
}

// Error renders the error for logs, not for clients.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Reason != "" && string(e.Reason) != e.Kind.Error() {
		b.WriteString(": " + string(e.Reason))
	}
	f := e.Facts
	for _, kv := range [][2]string{{"stream", f.Stream}, {"state", string(f.State)}, {"shard", f.Shard}, {"shard2", f.Shard2}, {"consumer", f.Consumer}, {"channel", f.Channel},
		{"given", f.Given}, {"detail", f.Detail}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + "=" + strconv.Quote(kv[1]))
		}
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, r Reason, f Facts) error { return &Error{Kind: kind, Reason: r, Facts: f} }

// fail builds an *Error of the store's account.
func (s *Store) fail(kind error, r Reason, f Facts) error {
	f.Account = s.opts.AccountID
	return newError(kind, r, f)
}
