package datadir

// The types here are meta.db's schema: a StreamRecord is stored as JSON under
// the stream's name in meta.db's streams bucket. The JSON names are on disk
// and must never change; new fields must be optional (omitempty), since
// readers ignore what they do not know.
//
// StreamStatus and StreamMode are defined here, not in storage, because
// their values are stored; storage declares aliases of them (and of the
// constants), so storage and its callers keep using storage.StreamStatus
// unchanged while the records are one definition.

// StreamStatus is a stream's lifecycle state, as Kinesis names it.
type StreamStatus string

const (
	StatusCreating StreamStatus = "CREATING"
	StatusActive   StreamStatus = "ACTIVE"
	StatusUpdating StreamStatus = "UPDATING"
	StatusDeleting StreamStatus = "DELETING"
)

// StreamMode is the capacity mode.
type StreamMode string

const (
	ModeProvisioned StreamMode = "PROVISIONED"
	ModeOnDemand    StreamMode = "ON_DEMAND"
)

// RecordDistribution is how a stream places records on its shards
// (UpdateStreamRecordDistributionStrategy). "" is DistributionUserKey, the
// default, so records written before the field existed read as it.
type RecordDistribution string

const (
	// DistributionUserKey places a record by its partition key's MD5 (or its
	// ExplicitHashKey).
	DistributionUserKey RecordDistribution = "USER_PARTITION_KEY"
	// DistributionAuto spreads records evenly over the open shards, ignoring
	// partition keys and explicit hash keys.
	DistributionAuto RecordDistribution = "AUTO"
)

// StreamRecord is a stream's record in meta.db. Changing it is one bbolt
// transaction, so a stream's shards, their ranges and lineage change
// atomically.
type StreamRecord struct {
	Name           string            `json:"name"`
	CreatedNs      int64             `json:"created_ns"`
	Status         StreamStatus      `json:"status"`
	Mode           StreamMode        `json:"mode"`
	RetentionHours int               `json:"retention_hours"`
	Tags           map[string]string `json:"tags,omitempty"`
	Shards         []ShardRecord     `json:"shards"`
	NextShardIndex uint32            `json:"next_shard_index"`
	// PendingUntilNs is when a CREATING, UPDATING or DELETING status completes.
	PendingUntilNs int64 `json:"pending_until_ns,omitempty"`
	// ScalingNs are the times of UpdateShardCount calls in the last 24 hours.
	ScalingNs []int64 `json:"scaling_ns,omitempty"`
	// DeletedCreating marks a stream deleted while it was CREATING: AWS
	// lists no shards for it while it is DELETING.
	DeletedCreating bool `json:"deleted_creating,omitempty"`
	// Reshard is a reshard accepted but not yet carried out: it is set only
	// while the stream is UPDATING, and Shards are the old ones until it takes
	// effect, when UPDATING ends.
	Reshard *ReshardRecord `json:"reshard,omitempty"`
	// Consumers are the stream's enhanced fan-out consumers, in registration
	// order. They live in the stream's record so that they change in the
	// same transaction as the stream and go with it.
	Consumers []ConsumerRecord `json:"consumers,omitempty"`
	// RetiredConsumers maps the name of a consumer that was removed to its
	// creation second, kept only while that second is the current one: a
	// consumer registered again under the name in the same second gets a
	// later second, so its ARN differs from the removed one's.
	RetiredConsumers map[string]int64 `json:"retired_consumers,omitempty"`
	// Policy is the stream's resource-based policy (PutResourcePolicy's
	// JSON text, as given), "" when it has none.
	Policy string `json:"policy,omitempty"`
	// Channels are the channels delivering the stream's records (a channel
	// has one source stream). They live in the stream's record so that they
	// change in the same transaction as the stream, and their delivery
	// progress names the stream's shards.
	Channels []ChannelRecord `json:"channels,omitempty"`
	// Distribution is the stream's record distribution strategy; "" is
	// DistributionUserKey.
	Distribution RecordDistribution `json:"record_distribution,omitempty"`
	// ShardLevelMetrics are the enhanced monitoring metrics enabled
	// (EnableEnhancedMonitoring), by their Kinesis names; none when empty.
	ShardLevelMetrics []string `json:"shard_level_metrics,omitempty"`
	// MaxRecordSizeKiB is the largest record (data + partition key) the
	// stream takes, in KiB; 0 means the default, 1024 (every stream
	// created before the field existed has 0).
	MaxRecordSizeKiB int `json:"max_record_size_kib,omitempty"`
	// PendingMaxRecordSizeKiB is an accepted UpdateMaxRecordSize that has
	// not taken effect: set only while the stream is UPDATING, it becomes
	// MaxRecordSizeKiB in the transaction that ends UPDATING.
	PendingMaxRecordSizeKiB int `json:"pending_max_record_size_kib,omitempty"`
	// WritePeaks are an ON_DEMAND stream's peak write rates, one per UTC day
	// of the last 30, oldest first: its capacity is twice the highest.
	WritePeaks []PeakRecord `json:"write_peaks,omitempty"`
	// ModeSwitchNs are the times of UpdateStreamMode calls in the last 24
	// hours.
	ModeSwitchNs []int64 `json:"mode_switch_ns,omitempty"`
	// WarmMiBps is an ON_DEMAND stream's warm throughput target
	// (UpdateStreamWarmThroughput, or CreateStream's), 0 when none is set.
	WarmMiBps int `json:"warm_mibps,omitempty"`
	// EncryptionType is "KMS" once StartStreamEncryption was accepted (and
	// until StopStreamEncryption); "" means NONE. KeyID is the KeyId as
	// the client gave it, which DescribeStream reports; KeyFingerprint (hex)
	// names the master key it resolved to, so that the stream keeps its key
	// across restarts even if the keyring renames it.
	EncryptionType string `json:"encryption_type,omitempty"`
	KeyID          string `json:"key_id,omitempty"`
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	// KeyChangesNs are the times of StartStreamEncryption calls in the last
	// 24 hours (AWS allows 25).
	KeyChangesNs []int64 `json:"key_changes_ns,omitempty"`
}

// PeakRecord is the highest write rate a stream took during one UTC day
// (Day: days since the Unix epoch), in data + partition-key bytes per second
// and records per second, each measured over the on-demand scaler's window.
type PeakRecord struct {
	Day     int64 `json:"day"`
	Bytes   int64 `json:"bytes"`
	Records int64 `json:"records"`
}

// MetaAccountKey is the key of the AccountRecord in meta.db's server bucket.
const MetaAccountKey = "account"

// CommitmentStatus is the account's MinimumThroughputBillingCommitment
// status, as Kinesis names it.
type CommitmentStatus string

const (
	CommitmentEnabled  CommitmentStatus = "ENABLED"
	CommitmentDisabled CommitmentStatus = "DISABLED"
	// CommitmentEnding is a commitment disabled before its earliest allowed
	// end: it stays in force until then.
	CommitmentEnding CommitmentStatus = "ENABLED_UNTIL_EARLIEST_ALLOWED_END"
)

// AccountRecord is the account's settings (DescribeAccountSettings), stored
// as JSON under MetaAccountKey. Times are unix milliseconds, 0 when unset.
// An absent record is a DISABLED commitment that never started.
type AccountRecord struct {
	Commitment           CommitmentStatus `json:"commitment,omitempty"`
	StartedMs            int64            `json:"started_ms,omitempty"`
	EndedMs              int64            `json:"ended_ms,omitempty"`
	EarliestAllowedEndMs int64            `json:"earliest_allowed_end_ms,omitempty"`
}

// ConsumerStatus is an enhanced fan-out consumer's lifecycle state, as
// Kinesis names it.
type ConsumerStatus string

const (
	ConsumerCreating ConsumerStatus = "CREATING"
	ConsumerActive   ConsumerStatus = "ACTIVE"
	ConsumerDeleting ConsumerStatus = "DELETING"
)

// ConsumerRecord is one consumer of a StreamRecord. CreatedMs is its
// ConsumerCreationTimestamp (unix milliseconds); CreatedMs/1000 is the
// creation second in its ARN, unique per name within the stream's record.
type ConsumerRecord struct {
	Name      string         `json:"name"`
	CreatedMs int64          `json:"created_ms"`
	Status    ConsumerStatus `json:"status"`
	// PendingUntilNs is when CREATING becomes ACTIVE, or DELETING ends and
	// the consumer is removed.
	PendingUntilNs int64             `json:"pending_until_ns,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	// Policy is the consumer's resource-based policy, "" when it has none;
	// it goes with the consumer.
	Policy string `json:"policy,omitempty"`
}

// ReshardRecord is an accepted reshard, waiting for its stream's UPDATING to
// end. When it takes effect, one transaction closes the shards of Seal, appends
// Add (with their epochs and ClosedMs set then), sets NextShardIndex, clears
// Reshard and makes the stream ACTIVE.
type ReshardRecord struct {
	Seal           []uint32      `json:"seal"`
	Add            []ShardRecord `json:"add"` // CreateSecs and ClosedMs are 0 until it takes effect
	NextShardIndex uint32        `json:"next_shard_index"`
}

// ShardRecord is one shard of a StreamRecord, open or closed. Parent and
// AdjParent are shard IDs (ShardID); the hash range is in decimal.
type ShardRecord struct {
	Index      uint32 `json:"index"`
	Parent     string `json:"parent,omitempty"`
	AdjParent  string `json:"adjacent_parent,omitempty"`
	HashStart  string `json:"hash_start"`
	HashEnd    string `json:"hash_end"`
	CreateSecs int64  `json:"create_secs"` // the sequence-number epoch of this shard
	Closed     bool   `json:"closed,omitempty"`
	ClosedMs   int64  `json:"closed_ms,omitempty"`
}

// Dir is the name of the stream's directory.
func (r *StreamRecord) Dir() string { return StreamDir(r.Name, r.CreatedNs) }

// Clone copies r so that the copy can be changed without changing r: the
// server replaces a stream's record, never mutates it, because readers use
// the old one without a lock. Tags of the copy is never nil.
func (r *StreamRecord) Clone() *StreamRecord {
	c := *r
	c.Tags = make(map[string]string, len(r.Tags))
	for k, v := range r.Tags {
		c.Tags[k] = v
	}
	c.Shards = append([]ShardRecord(nil), r.Shards...)
	c.ScalingNs = append([]int64(nil), r.ScalingNs...)
	c.ShardLevelMetrics = append([]string(nil), r.ShardLevelMetrics...)
	c.WritePeaks = append([]PeakRecord(nil), r.WritePeaks...)
	c.ModeSwitchNs = append([]int64(nil), r.ModeSwitchNs...)
	c.KeyChangesNs = append([]int64(nil), r.KeyChangesNs...)
	if r.Reshard != nil {
		rr := *r.Reshard
		rr.Seal = append([]uint32(nil), rr.Seal...)
		rr.Add = append([]ShardRecord(nil), rr.Add...)
		c.Reshard = &rr
	}
	// A consumer's Tags map is never changed once stored (a change stores a
	// new map), so copies may share it.
	c.Consumers = append([]ConsumerRecord(nil), r.Consumers...)
	// Likewise a channel's Tags and Progress are replaced, never changed.
	c.Channels = append([]ChannelRecord(nil), r.Channels...)
	if r.RetiredConsumers != nil {
		c.RetiredConsumers = make(map[string]int64, len(r.RetiredConsumers))
		for k, v := range r.RetiredConsumers {
			c.RetiredConsumers[k] = v
		}
	}
	return &c
}
