package datadir

// ChannelStatus is a channel's lifecycle state, as Kinesis names it.
type ChannelStatus string

const (
	ChannelCreating ChannelStatus = "CREATING"
	ChannelActive   ChannelStatus = "ACTIVE"
	ChannelUpdating ChannelStatus = "UPDATING"
	ChannelDeleting ChannelStatus = "DELETING"
)

// ChannelRecord is one channel of a StreamRecord: its identity, its
// configuration as CreateChannel (and UpdateChannel) gave it, and how far it
// has delivered. Tags and Progress are replaced, never changed in place.
type ChannelRecord struct {
	Name      string        `json:"name"`
	ID        string        `json:"id"`
	CreatedMs int64         `json:"created_ms"`
	Status    ChannelStatus `json:"status"`
	// PendingUntilNs is when CREATING or UPDATING becomes ACTIVE, or
	// DELETING ends and the channel is removed.
	PendingUntilNs int64             `json:"pending_until_ns,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	Config         ChannelConfig     `json:"config"`
	// Progress is nil until the channel first turns ACTIVE, when it is set
	// to the tip of every open shard (AWS delivers no record written
	// before).
	Progress *ChannelProgress `json:"progress,omitempty"`
}

// ChannelConfig is a channel's configuration. shardlog delivers by
// RecordFormat, Bucket, Compression, KeyTemplate, FreshnessSecs and the
// dead-letter fields; the others are kept and described as given.
type ChannelConfig struct {
	RoleARN       string `json:"role_arn"`
	RecordFormat  string `json:"record_format"`
	SchemaARN     string `json:"schema_arn,omitempty"`
	BucketARN     string `json:"bucket_arn"`
	Compression   string `json:"compression"`
	BucketOwner   string `json:"bucket_owner"`
	KeyTemplate   string `json:"key_template,omitempty"`
	StorageClass  string `json:"storage_class,omitempty"`
	FreshnessSecs int    `json:"freshness_secs"`
	DLQBucketARN  string `json:"dlq_bucket_arn,omitempty"`
	DLQOwner      string `json:"dlq_owner,omitempty"`
	DLQPrefix     string `json:"dlq_prefix,omitempty"`
	KMSKeyID      string `json:"kms_key_id,omitempty"`
	// Logging is nil when the channel was given no LoggingConfiguration.
	Logging *ChannelLogging `json:"logging,omitempty"`
}

// ChannelLogging is a channel's CloudWatch Logs configuration.
type ChannelLogging struct {
	Enabled   bool   `json:"enabled"`
	LogGroup  string `json:"log_group,omitempty"`
	LogStream string `json:"log_stream,omitempty"`
}

// ChannelProgress is how far a channel has delivered. Shards maps each shard
// being read to the sequence number delivery continues AFTER; Done lists the
// shards read to their end (closed by a reshard), whose children are read
// from their start. Objects counts the objects delivered: the next object's
// number, which makes its key. Pending is an object batch being written: if
// all its keys exist at the destination, it was delivered and Next is the
// progress after it; otherwise it was not, and its keys that exist are
// removed before delivery goes on (so a batch is delivered once).
type ChannelProgress struct {
	Shards  map[string]string `json:"shards"`
	Done    []string          `json:"done,omitempty"`
	Objects uint64            `json:"objects"`
	Pending *ChannelPending   `json:"pending,omitempty"`
}

// ChannelPending is a batch of objects about to be written.
type ChannelPending struct {
	Keys []string         `json:"keys"` // "BUCKET/KEY"
	Next *ChannelProgress `json:"next"`
}
