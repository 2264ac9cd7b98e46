package shard

import "sync/atomic"

// Counter hands out ordinals to the writers of the shards that share it, so
// that records written one after another to different shards of a group get
// consecutive ordinals, as AWS's sequence numbers do (storage shares one
// among shards 0-4, 5-9, ... of a stream).
//
// A shard's ordinals stay its own record positions: every ordinal a shard
// takes from the counter is at least its own next ordinal, so they strictly
// increase within the shard whatever the other shards do, and the shard
// simply skips the values the others took (segments allow such gaps, as
// they do for SequenceNumberForOrdering). The counter is never stored: it
// holds no durable state, only a hint of where the group is. After a restart
// each shard raises it to its recovered next ordinal (Open), which is above
// every ordinal it ever acknowledged, so nothing acknowledged is handed out
// again, within the shard or (as an index) within the group. Ordinals that
// were taken but never acknowledged may be taken again, exactly as a lone
// shard reuses the ordinals of a torn, unacknowledged tail.
type Counter struct{ next atomic.Uint64 }

// NewCounter returns a counter whose first ordinal is at least first.
func NewCounter(first uint64) *Counter {
	c := &Counter{}
	c.next.Store(first)
	return c
}

// Take reserves n consecutive ordinals, the first at least floor, and
// returns the first.
func (c *Counter) Take(floor uint64, n int) uint64 {
	for {
		cur := c.next.Load()
		first := max(cur, floor)
		if c.next.CompareAndSwap(cur, first+uint64(n)) {
			return first
		}
	}
}

// Raise makes the next ordinal at least v.
func (c *Counter) Raise(v uint64) {
	for {
		cur := c.next.Load()
		if cur >= v || c.next.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Next is the counter's next ordinal.
func (c *Counter) Next() uint64 { return c.next.Load() }
