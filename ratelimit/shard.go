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
	// LargeRecordBurst is write-byte credit an idle shard holds on top of
	// the usual half second, so that records larger than 1 MiB are taken
	// as a burst: the stream's maximum record size minus 1 MiB (0 on a
	// default stream). See AdmitWrites. Scale leaves it alone: it is a
	// record size, not a rate.
	LargeRecordBurst float64
}

// smallRecord is the default maximum record size: a record up to it needs
// only a non-negative byte balance.
const smallRecord = 1 << 20

// Kinesis is the per-shard capacity AWS documents for a provisioned shard.
var Kinesis = Limits{WriteRecords: 1000, WriteBytes: 1 << 20, ReadCalls: 5, ReadBytes: 2 << 20, IteratorCalls: 5}

// Scale multiplies every rate by f.
func (l Limits) Scale(f float64) Limits {
	return Limits{l.WriteRecords * f, l.WriteBytes * f, l.ReadCalls * f, l.ReadBytes * f, l.IteratorCalls * f, l.LargeRecordBurst}
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
	// largeBurst is Limits.LargeRecordBurst: the most credit a large record
	// needs.
	largeBurst float64
}

// NewShard returns a controller enforcing l. A zero rate is unlimited.
func NewShard(l Limits) *Shard {
	return &Shard{
		records: NewBucket(l.WriteRecords, l.WriteRecords*writeBurst),
		bytes:   NewBucket(l.WriteBytes, l.WriteBytes*writeBurst+max(l.LargeRecordBurst, 0)),
		// Reads: a full second of calls, and no stored byte credit: a read
		// is admitted while the byte balance is not negative and charged
		// afterwards, so a 10 MiB response at 2 MiB/s closes the shard to
		// reads for 5 s, as AWS documents.
		reads:      NewBucket(l.ReadCalls, l.ReadCalls),
		readBytes:  NewBucket(l.ReadBytes, 0),
		iterators:  NewBucket(l.IteratorCalls, l.IteratorCalls),
		largeBurst: max(l.LargeRecordBurst, 0),
	}
}

// AdmitWrites decides, record by record and in order, which records of one
// request may be stored: each needs a record token and a non-negative byte
// balance, and is then charged its size. sizes are data + partition-key
// bytes. A record that is refused does not consume budget.
//
// A record larger than 1 MiB (on a stream whose maximum record size allows
// it) also needs the balance to cover its part beyond 1 MiB, up to
// LargeRecordBurst. So an idle shard of a 10 MiB stream, whose bucket holds
// 9.5 MiB, takes one 10 MiB record and is left 0.5 MiB overdrawn, as a 1 MiB
// record leaves an idle default shard; smaller records go on as the bucket
// refills at the shard's rate, and the next 10 MiB record waits until the
// bucket holds 9 MiB again. The burst is thus one maximum-size record, and
// over any span T a shard takes at most rate*T + the bucket + 1 MiB.
func (s *Shard) AdmitWrites(now time.Time, sizes []int) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes.refill(now)
	s.records.refill(now)
	ok := make([]bool, len(sizes))
	for i, n := range sizes {
		need := min(max(float64(n-smallRecord), 0), s.largeBurst)
		if !s.bytes.holds(need) || !s.records.take(1) {
			continue
		}
		s.bytes.charge(float64(n))
		ok[i] = true
	}
	return ok
}

// RefundWrites gives back what AdmitWrites charged for records that were
// then definitely not stored (their proposal was dropped), so that a retry
// of them is not charged twice. The balances never exceed their bursts.
func (s *Shard) RefundWrites(now time.Time, sizes []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes.refill(now)
	s.records.refill(now)
	for _, n := range sizes {
		s.bytes.refund(float64(n))
		s.records.refund(1)
	}
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
