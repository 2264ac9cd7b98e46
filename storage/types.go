package storage

import (
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
)

// StreamStatus and StreamMode are stored in meta.db's records, so datadir
// defines them; these aliases keep storage.StatusActive and the rest the
// names storage and its callers use.
type (
	// StreamStatus is a stream's lifecycle state, as Kinesis names it.
	StreamStatus = datadir.StreamStatus
	// StreamMode is the capacity mode.
	StreamMode = datadir.StreamMode
)

const (
	StatusCreating = datadir.StatusCreating
	StatusActive   = datadir.StatusActive
	StatusUpdating = datadir.StatusUpdating
	StatusDeleting = datadir.StatusDeleting
)

const (
	ModeProvisioned = datadir.ModeProvisioned
	ModeOnDemand    = datadir.ModeOnDemand
)

// RecordDistribution is a stream's record distribution strategy; it is
// stored, so datadir defines it.
type RecordDistribution = datadir.RecordDistribution

const (
	DistributionUserKey = datadir.DistributionUserKey
	DistributionAuto    = datadir.DistributionAuto
)

// Retention bounds, in hours.
const (
	MinRetentionHours     = 24
	MaxRetentionHours     = 8760
	DefaultRetentionHours = 24
)

// ShardInfo describes one shard, open or closed.
type ShardInfo struct {
	ID             string // shardId-%012d
	Index          uint32
	Parent         string // "" if none
	AdjacentParent string // "" if none
	HashRange      hashkey.Range
	StartingSeq    string // decimal sequence number
	EndingSeq      string // "" while open
}

// Open reports whether the shard still takes writes.
func (s ShardInfo) Open() bool { return s.EndingSeq == "" }

// StreamInfo is a snapshot of a stream's metadata.
type StreamInfo struct {
	Name           string
	Created        time.Time
	Status         StreamStatus
	Mode           StreamMode
	RetentionHours int
	Shards         []ShardInfo // all shards not yet expired, in index order
	Tags           map[string]string
	ConsumerCount  int // registered consumers, in any state
	ChannelCount   int // channels delivering the stream, in any state
	// Distribution is the record distribution strategy, never "".
	Distribution RecordDistribution
	// ShardLevelMetrics are the enhanced monitoring metrics enabled, in
	// ShardLevelMetricNames' order; empty when none.
	ShardLevelMetrics []string
	// MaxRecordSizeKiB is the largest record (data + partition key) the
	// stream takes now, in KiB.
	MaxRecordSizeKiB int
	// WarmMiBps is an ON_DEMAND stream's warm throughput target, 0 if none.
	WarmMiBps int
	// EncryptionType is EncryptionKMS or EncryptionNone; KeyID is the KeyId
	// given to StartStreamEncryption ("" with EncryptionNone).
	EncryptionType string
	KeyID          string
}

// OpenShardCount counts the shards that take writes.
func (s StreamInfo) OpenShardCount() int {
	n := 0
	for _, sh := range s.Shards {
		if sh.Open() {
			n++
		}
	}
	return n
}

// CreateStreamInput is validated by the api layer for syntax; the Store checks
// existence and limits.
type CreateStreamInput struct {
	Name       string
	ShardCount int
	Mode       StreamMode
	Tags       map[string]string
	// Distribution is the record distribution strategy; "" is
	// DistributionUserKey. The api allows DistributionAuto only for
	// ON_DEMAND streams.
	Distribution RecordDistribution
	// MaxRecordSizeKiB is the stream's maximum record size in KiB, within
	// [MinMaxRecordSizeKiB, MaxMaxRecordSizeKiB]; 0 means the default.
	MaxRecordSizeKiB int
	// WarmMiBps, if set, is the warm throughput of an ON_DEMAND stream: it
	// starts with that many shards (at least OnDemandShards).
	WarmMiBps *int
}

// PutEntry is one record to store. The api layer has checked lengths and
// syntax; ExplicitHashKey, if set, overrides the partition key's hash. On a
// stream with DistributionAuto both are ignored for placement, and
// PartitionKey may be "": the record has none, and is read back without one.
type PutEntry struct {
	PartitionKey    string
	ExplicitHashKey *hashkey.Key
	Data            []byte
	// SequenceNumberForOrdering, if set, is a sequence number the new record's
	// must exceed (PutRecord only).
	SequenceNumberForOrdering string
}

// PutResult is the outcome for one entry: either ShardID and SequenceNumber, or
// Err (e.g. ErrThrottled for that record alone).
type PutResult struct {
	ShardID        string
	SequenceNumber string
	Err            error
	// Encrypted: the record was stored encrypted (its stream had
	// StartStreamEncryption in effect when it was written).
	Encrypted bool
}

// IteratorType is a GetShardIterator ShardIteratorType.
type IteratorType string

const (
	AtSequenceNumber    IteratorType = "AT_SEQUENCE_NUMBER"
	AfterSequenceNumber IteratorType = "AFTER_SEQUENCE_NUMBER"
	TrimHorizon         IteratorType = "TRIM_HORIZON"
	Latest              IteratorType = "LATEST"
	AtTimestamp         IteratorType = "AT_TIMESTAMP"
)

// Position is where a reader stands in a shard: the next ordinal to return.
// It is what a shard iterator carries; StreamCreated pins it to one incarnation
// of a stream name, so a recreated stream rejects old iterators.
type Position struct {
	Stream        string
	StreamCreated int64 // unix nanoseconds
	ShardIndex    uint32
	Ordinal       uint64
}

// Record is a stored record as GetRecords returns it.
type Record struct {
	SequenceNumber string
	Arrival        time.Time // millisecond precision
	PartitionKey   string
	Data           []byte
	// Encrypted: the record is stored encrypted (it was written while
	// StartStreamEncryption was in effect).
	Encrypted bool
}

// ChildShard is a child of a closed shard, as GetRecords lists them at the end
// of a parent.
type ChildShard struct {
	ShardID      string
	ParentShards []string
	HashRange    hashkey.Range
}

// ReadResult is one GetRecords page.
type ReadResult struct {
	Records []Record
	// Next is where to continue; nil when the shard is closed and fully read.
	Next *Position
	// MillisBehindLatest is how far the last returned record (or the position,
	// if none) is behind the shard's tip; 0 at the tip.
	MillisBehindLatest int64
	ChildShards        []ChildShard // set when Next is nil
	Bytes              int          // data + partition-key bytes returned
}
