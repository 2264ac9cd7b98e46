package ratelimit

import (
	"sync"
	"time"
)

// ControlLimits are per-account (or, where AWS says so, per-stream)
// control-plane rates in calls/s, by operation name.
type ControlLimits map[string]float64

// KinesisControl is AWS's documented control-plane TPS. The operations in
// perStream are per stream; every other entry is per account.
var KinesisControl = ControlLimits{
	"CreateStream": 5, "DeleteStream": 5, "DescribeStream": 10, "DescribeStreamSummary": 20,
	"ListStreams": 5, "ListShards": 1000, "SplitShard": 5, "MergeShards": 5, "UpdateShardCount": 10,
	"DescribeLimits": 1, "AddTagsToStream": 5, "RemoveTagsFromStream": 5, "ListTagsForStream": 5,
	"IncreaseStreamRetentionPeriod": 5, "DecreaseStreamRetentionPeriod": 5,
	"RegisterStreamConsumer": 5, "DeregisterStreamConsumer": 5, "DescribeStreamConsumer": 20, "ListStreamConsumers": 5,
	"UpdateStreamWarmThroughput": 5, "DescribeAccountSettings": 5, "UpdateAccountSettings": 5,
}

// perStream lists the operations whose limit applies to each stream apart.
// AWS documents RegisterStreamConsumer's 5 TPS per account, the other
// consumer operations' per stream.
var perStream = map[string]bool{"ListShards": true, "DeregisterStreamConsumer": true, "DescribeStreamConsumer": true, "ListStreamConsumers": true}

// Control admits control-plane calls. A nil *Control admits everything.
type Control struct {
	limits ControlLimits
	mu     sync.Mutex
	byKey  map[string]*Bucket
}

// NewControl returns a controller for limits.
func NewControl(limits ControlLimits) *Control {
	return &Control{limits: limits, byKey: map[string]*Bucket{}}
}

// Admit decides whether a call of op (on stream, for per-stream limits) may
// run now. Operations without a limit always may.
func (c *Control) Admit(now time.Time, op, stream string) bool {
	if c == nil {
		return true
	}
	rate, ok := c.limits[op]
	if !ok {
		return true
	}
	key := op
	if perStream[op] {
		key += "/" + stream
	}
	c.mu.Lock()
	b := c.byKey[key]
	if b == nil {
		b = NewBucket(rate, rate)
		c.byKey[key] = b
	}
	c.mu.Unlock()
	return b.Take(now, 1)
}
