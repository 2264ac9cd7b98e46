package api

import (
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api/auth"
)

// Config configures the HTTP API server.
type Config struct {
	// Region is used when a request carries no SigV4 credential scope.
	Region string
	// MaxBodyBytes caps request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives request and failure logs; nil means no logging.
	Logger hclog.Logger
	// Admission, if set, may refuse requests (rate limiting).
	Admission Admission
	// SubscriptionLifetime is how long a SubscribeToShard stream lasts
	// before the server ends it cleanly; 0 means DefaultSubscriptionLifetime
	// (AWS's 5 minutes).
	SubscriptionLifetime time.Duration
	// SubscribeRate paces each SubscribeToShard stream (a consumer-shard
	// pair) to this many record bytes per second; 0 means
	// DefaultSubscribeRate (AWS's dedicated 2 MiB/s), negative unlimited.
	SubscribeRate float64
	// Auth, if set, verifies every request's SigV4 signature against the
	// auth file's credentials (--auth-file); nil accepts any well-formed
	// signature, as before.
	Auth *auth.Verifier
	// Metrics receives the API's instrumentation; nil means a fresh
	// NewMetrics() (still served on GET /metrics).
	Metrics *Metrics
	// MetricsElsewhere stops GET /metrics on this handler (it is served on
	// --metrics-listen instead); /metrics is then answered as AWS answers
	// any GET.
	MetricsElsewhere bool
	// MetricsAuth, with Auth set, makes GET /metrics on this handler
	// require a valid SigV4 signature whose signer is allowed MetricsAction
	// (--metrics-auth); without it /metrics is open.
	MetricsAuth bool
	// Now is the clock; nil means time.Now. Tests move it to expire tokens.
	Now func() time.Time
}

// DefaultMaxBodyBytes fits the largest legal request for any stream: a
// PutRecords (or a PutRecord of one 10 MiB record) of 10 MiB of data and
// partition keys, its data base64-inflated to 13.3 MiB, its 500 keys
// escaped in JSON at up to 6 bytes a byte (0.7 MiB more), with their
// hash keys and punctuation. The cap is one for all streams: the per-stream
// maximum record size is the operation's check, and PutRecords takes 10 MiB
// on every stream, so no stream's clients could be held to a smaller body.
const DefaultMaxBodyBytes = 15 << 20

// Defaults for zero Config fields.
const (
	DefaultRegion = "us-east-1"
	// DefaultSubscriptionLifetime is AWS's SubscribeToShard lifetime.
	DefaultSubscriptionLifetime = 5 * time.Minute
	// DefaultSubscribeRate is an enhanced fan-out consumer's dedicated
	// throughput per shard, in bytes per second.
	DefaultSubscribeRate = 2 << 20
)

func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.SubscriptionLifetime <= 0 {
		c.SubscriptionLifetime = DefaultSubscriptionLifetime
	}
	if c.SubscribeRate == 0 {
		c.SubscribeRate = DefaultSubscribeRate
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
