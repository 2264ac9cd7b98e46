package ratelimit

import (
	"sync"
	"time"
)

// Limits are one shard's documented rates.
type Limits struct {
	WriteRecords  float64 // records/s
	WriteBytes    float64 // data + partition-key bytes/s
	ReadCalls     float64 // GetRecords calls/s
	ReadBytes     float64 // bytes/s returned by GetRecords
	IteratorCalls float64 // GetShardIterator calls/s
}

// Kinesis is the per-shard capacity AWS documents for a provisioned shard.
var Kinesis = Limits{WriteRecords: 1000, WriteBytes: 1 << 20, ReadCalls: 5, ReadBytes: 2 << 20, IteratorCalls: 5}

// Scale multiplies every rate by f.
func (l Limits) Scale(f float64) Limits {
	return Limits{l.WriteRecords * f, l.WriteBytes * f, l.ReadCalls * f, l.ReadBytes * f, l.IteratorCalls * f}
}

// writeBurst is how much of one second's write budget a shard can spend at
// once. Half a second lets an idle shard take one full 500-record PutRecords,
// while keeping the rate over any sustained overload within a few percent of
// the limit.
const writeBurst = 0.5

// Shard is one shard's admission controller. It is safe for concurrent use:
// its buckets are used only under mu, through their unlocked methods.
type Shard struct {
	mu        sync.Mutex
	records   *Bucket
	bytes     *Bucket
	reads     *Bucket
	readBytes *Bucket
	iterators *Bucket
}

// NewShard returns a controller enforcing l. A zero rate is unlimited.
func NewShard(l Limits) *Shard {
	return &Shard{
		records: NewBucket(l.WriteRecords, l.WriteRecords*writeBurst),
		bytes:   NewBucket(l.WriteBytes, l.WriteBytes*writeBurst),
		// Reads: a full second of calls, and no stored byte credit: a read
		// is admitted while the byte balance is not negative and charged
		// afterwards, so a 10 MiB response at 2 MiB/s closes the shard to
		// reads for 5 s, as AWS documents.
		reads:     NewBucket(l.ReadCalls, l.ReadCalls),
		readBytes: NewBucket(l.ReadBytes, 0),
		iterators: NewBucket(l.IteratorCalls, l.IteratorCalls),
	}
}

// AdmitWrites decides, record by record and in order, which records of one
// request may be stored: each needs a record token and a non-negative byte
// balance, and is then charged its size. sizes are data + partition-key
// bytes. A record that is refused does not consume budget.
func (s *Shard) AdmitWrites(now time.Time, sizes []int) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes.refill(now)
	s.records.refill(now)
	ok := make([]bool, len(sizes))
	for i, n := range sizes {
		if !s.bytes.open() || !s.records.take(1) {
			continue
		}
		s.bytes.charge(float64(n))
		ok[i] = true
	}
	return ok
}

// AdmitRead decides whether a GetRecords call may run now.
func (s *Shard) AdmitRead(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readBytes.refill(now)
	s.reads.refill(now)
	return s.readBytes.open() && s.reads.take(1)
}

// ChargeRead charges the bytes a GetRecords call returned.
func (s *Shard) ChargeRead(now time.Time, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readBytes.refill(now)
	s.readBytes.charge(float64(n))
}

// AdmitIterator decides whether a GetShardIterator call may run now.
func (s *Shard) AdmitIterator(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.iterators.refill(now)
	return s.iterators.take(1)
}
