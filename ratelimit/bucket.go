// Package ratelimit is Kinesis's admission control: token buckets for the
// per-shard write and read limits, and per-account control-plane rates. It
// keeps no clock of its own; every call takes the time, so tests drive it
// with a fake clock and get exact answers.
package ratelimit

import (
	"sync"
	"time"
)

// Bucket is a token bucket that may be overdrawn.
//
// golang.org/x/time/rate does not fit here: Kinesis's byte limits admit a
// request while any budget is left and charge its full size afterwards (a
// GetRecords that returns 10 MiB against 2 MiB/s throttles the next 5 s), so
// the balance must go negative and be paid back, and the size of a read is
// only known after it ran.
type Bucket struct {
	rate  float64 // tokens per second; 0 means unlimited
	burst float64 // the most the balance can hold
	mu    sync.Mutex
	bal   float64
	last  time.Time
}

// NewBucket returns a full bucket. rate <= 0 makes a bucket that admits
// everything.
func NewBucket(rate, burst float64) *Bucket {
	return &Bucket{rate: rate, burst: burst, bal: burst}
}

func (b *Bucket) refill(now time.Time) {
	if b.rate <= 0 {
		return
	}
	if b.last.IsZero() {
		b.last = now
		return
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.bal = min(b.burst, b.bal+d*b.rate)
		b.last = now
	}
}

// Take removes n tokens if the balance holds n, and reports whether it did.
func (b *Bucket) Take(now time.Time, n float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.take(n)
}

// Open reports whether the balance is not negative: an overdraft has been
// paid back.
func (b *Bucket) Open(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.open()
}

// Charge removes n tokens unconditionally; the balance may go negative.
func (b *Bucket) Charge(now time.Time, n float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.charge(n)
}

// take, open and charge are the unlocked forms, for a caller that holds the
// lock (or owns the bucket) and has refilled it.
func (b *Bucket) take(n float64) bool {
	if b.rate <= 0 {
		return true
	}
	if b.bal < n {
		return false
	}
	b.bal -= n
	return true
}

func (b *Bucket) open() bool { return b.rate <= 0 || b.bal >= 0 }

// holds reports whether the balance is at least n (n >= 0).
func (b *Bucket) holds(n float64) bool { return b.rate <= 0 || b.bal >= n }

func (b *Bucket) charge(n float64) {
	if b.rate > 0 {
		b.bal -= n
	}
}

// refund gives back n tokens charged earlier, up to the burst.
func (b *Bucket) refund(n float64) {
	if b.rate > 0 {
		b.bal = min(b.burst, b.bal+n)
	}
}

// Balance is the current balance, for tests and diagnostics.
func (b *Bucket) Balance(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.bal
}
