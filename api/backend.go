package api

import (
	"context"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// Backend is what the API needs from the storage engine. *storage.Store
// satisfies it; tests use a fake. Errors are *storage.Error values: a
// sentinel, a Reason and the Facts. The api maps the sentinels to AWS error
// types in errors.go and words each Reason in messages.go, and nowhere else.
type Backend interface {
	// CreateStream fails with ErrStreamExists or ErrLimitExceeded.
	CreateStream(ctx context.Context, in storage.CreateStreamInput) error
	// DeleteStreamWith fails with ErrResourceInUse when the stream has
	// registered consumers, unless o.EnforceConsumerDeletion.
	DeleteStreamWith(ctx context.Context, name string, o storage.DeleteOptions) error
	// ListStreams returns every stream that is not gone, sorted by name.
	// Shards may be nil.
	ListStreams(ctx context.Context) ([]storage.StreamInfo, error)
	// DescribeStream includes Shards (empty while CREATING) and Tags.
	DescribeStream(ctx context.Context, name string) (storage.StreamInfo, error)
	// SetRetention produces AWS's InvalidArgument texts for the direction and
	// the bounds, and ErrResourceInUse when the stream is not ACTIVE.
	SetRetention(ctx context.Context, name string, hours int, increase bool) error
	// AddTags and RemoveTags run check (when not nil) once the stream is
	// found, before anything else, and fail with its error.
	AddTags(ctx context.Context, name string, tags map[string]string, check storage.TagCheck) error
	RemoveTags(ctx context.Context, name string, keys []string, check storage.TagCheck) error
	// SetRecordDistribution is UpdateStreamRecordDistributionStrategy: it
	// fails with ErrInvalidArgument for AUTO on a stream that is not
	// ON_DEMAND, and ErrResourceInUse when the stream is not ACTIVE.
	SetRecordDistribution(ctx context.Context, name string, d storage.RecordDistribution) error
	// Put stores entries in order of the request. A returned error fails the
	// whole request; PutResult.Err fails one record.
	Put(ctx context.Context, stream string, entries []storage.PutEntry) ([]storage.PutResult, error)
	// RecordLimit is the largest record (data + partition-key bytes) the
	// stream takes now. It fails as Put does for a stream that takes no
	// writes.
	RecordLimit(ctx context.Context, stream string) (int, error)
	// UpdateMaxRecordSize sets the stream's maximum record size in KiB
	// (validated: 1024-10240); ErrResourceInUse when it is not ACTIVE.
	UpdateMaxRecordSize(ctx context.Context, stream string, kib int) error
	// Position resolves a GetShardIterator request; shardID is the client's
	// text (parsed leniently by storage).
	Position(ctx context.Context, stream, shardID string, typ storage.IteratorType, startSeq string, ts time.Time) (storage.Position, error)
	// Read returns records from pos on. It fails with ErrShardNotFound when
	// the stream is gone or was recreated.
	Read(ctx context.Context, pos storage.Position, maxRecords, maxBytes int) (storage.ReadResult, error)
	// RegisterConsumer, DescribeConsumer, ListConsumers and
	// DeregisterConsumer are the enhanced fan-out consumers of a stream
	// (storage/consumers.go has their rules and errors).
	RegisterConsumer(ctx context.Context, stream, name string, tags map[string]string) (storage.ConsumerInfo, error)
	DescribeConsumer(ctx context.Context, stream, name string) (storage.ConsumerInfo, error)
	ListConsumers(ctx context.Context, stream string) ([]storage.ConsumerInfo, error)
	DeregisterConsumer(ctx context.Context, stream, name string) error
	// ActiveConsumer resolves SubscribeToShard's consumer: it must exist
	// with this creation second and be ACTIVE; gone is closed when it goes.
	ActiveConsumer(ctx context.Context, stream, name string, created time.Time) (storage.ConsumerInfo, <-chan struct{}, error)
	// Subscribe opens a subscription (storage/subscribe.go has its rules and
	// errors). It does not count against the shard's GetRecords limits.
	// A *storage.Store returns a *storage.Subscription: wrap the Store in
	// StoreBackend to serve it.
	Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (Subscription, error)
	// IteratorKey is a 32-byte secret kept in the data directory, so tokens
	// survive restarts and cannot be forged.
	IteratorKey() []byte
	// AccountID is the account in ARNs and messages.
	AccountID() string
	// ShardLimit is the account's open-shard limit (DescribeLimits).
	ShardLimit() int
}

// Admission is the seam for rate limiting. When Config.Admission is set, every
// operation calls Admit after the request has been decoded and validated and
// before the Backend is touched. A non-nil error ends the request: return a
// *wire.Error with AWS's type and message, or a *storage.Error, which is
// mapped and worded like any other.
type Admission interface {
	Admit(ctx context.Context, req AdmissionRequest) error
}

// AdmissionRequest describes a request about to run.
type AdmissionRequest struct {
	Operation string // e.g. "PutRecords"
	Region    string
	Stream    string // "" for account-level operations (ListStreams, DescribeLimits)
	Records   int    // records in a put
	Bytes     int    // data + partition-key bytes in a put
	// ResourceARN is the resource authorized: the stream's ARN, a
	// consumer's ARN, or "*" for account-level operations. Operations on a
	// stream may leave it empty (admit fills it in).
	ResourceARN string
	// target names the resource's policy, nil for account-level operations.
	target *storage.PolicyTarget
}

// Subscription is an open subscription: a *storage.Subscription, or cluster
// mode's. It is storage's interface, so a Backend below the api (package
// cluster) names it without importing the api.
type Subscription = storage.EventSource

// StoreBackend is a *storage.Store as a Backend. Only Subscribe differs:
// the Store's returns its concrete *storage.Subscription (which package
// channel uses), Backend's the Subscription interface. Every other method,
// and so every optional interface the api looks for (Resharder,
// PolicyStore, StatsSource...), is the Store's own, promoted.
func StoreBackend(s *storage.Store) Backend { return storeBackend{s} }

type storeBackend struct{ *storage.Store }

func (b storeBackend) Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (Subscription, error) {
	sub, err := b.Store.Subscribe(ctx, in, gone)
	if err != nil {
		return nil, err // not a nil *Subscription in a non-nil interface
	}
	return sub, nil
}
