package storage

import (
	"slices"

	"github.com/shardlog/shardlog/datadir"
)

// Rules of the stream and consumer settings operations, as pure functions
// of the records they change: single-node mode (the Store) and cluster mode
// (package cluster, whose records live in its metadata group) both call
// them, so the two answer with the same limits, errors and facts. account
// fills the errors' Facts.Account. Each returns a new map or slice, never
// the one it was given: the records they come from may be shared.

// TagsAdded returns a stream's tags cur with add added or overwritten, or
// ErrInvalidArgument (ReasonTooManyTags) when the stream would have more
// than MaxTagsPerStream.
func TagsAdded(account, stream string, cur, add map[string]string) (map[string]string, error) {
	out := copyTags(cur)
	for k, v := range add {
		out[k] = v
	}
	if len(out) > MaxTagsPerStream {
		return nil, newError(ErrInvalidArgument, ReasonTooManyTags, Facts{Account: account, Stream: stream, Limit: MaxTagsPerStream})
	}
	return out, nil
}

// ConsumerTagsAdded is TagsAdded for a consumer: its limit is
// MaxTagsPerConsumer (ReasonTooManyConsumerTags).
func ConsumerTagsAdded(account, stream, consumer string, cur, add map[string]string) (map[string]string, error) {
	out := copyTags(cur)
	for k, v := range add {
		out[k] = v
	}
	if len(out) > MaxTagsPerConsumer {
		return nil, newError(ErrInvalidArgument, ReasonTooManyConsumerTags,
			Facts{Account: account, Stream: stream, Consumer: consumer, Limit: MaxTagsPerConsumer})
	}
	return out, nil
}

// TagsRemoved returns cur without keys (absent keys are ignored); nil when
// no tag is left.
func TagsRemoved(cur map[string]string, keys []string) map[string]string {
	out := copyTags(cur)
	for _, k := range keys {
		delete(out, k)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// TargetConsumer is the index in consumers of the consumer t names (a
// policy's or tags' target): the name must match and, when t gives one,
// the creation second. Otherwise ErrConsumerNotFound.
func TargetConsumer(account string, consumers []datadir.ConsumerRecord, t PolicyTarget) (int, error) {
	i := slices.IndexFunc(consumers, func(c datadir.ConsumerRecord) bool { return c.Name == t.Consumer })
	if i < 0 || (t.ConsumerSecs >= 0 && consumers[i].CreatedMs/1000 != t.ConsumerSecs) {
		return -1, newError(ErrConsumerNotFound, ReasonConsumerNotFound, Facts{Account: account, Stream: t.Stream, Consumer: t.Consumer})
	}
	return i, nil
}

// ShardLevelMetricsChange is Enable (enable) or DisableEnhancedMonitoring
// of metrics (names from ShardLevelMetricNames, ALL expanded) on a stream
// whose enabled metrics are cur: the set before and after, each in
// ShardLevelMetricNames' order and never nil.
func ShardLevelMetricsChange(cur, metrics []string, enable bool) MonitoringChange {
	out := MonitoringChange{Current: orderMetrics(func(n string) bool { return slices.Contains(cur, n) })}
	out.Desired = orderMetrics(func(n string) bool {
		if slices.Contains(metrics, n) {
			return enable
		}
		return slices.Contains(cur, n)
	})
	return out
}

// CheckDistribution refuses AUTO record distribution on a stream that is
// not ON_DEMAND (ErrInvalidArgument, ReasonAutoProvisioned), as AWS
// documents; USER_PARTITION_KEY is accepted on any stream.
func CheckDistribution(account, stream string, mode StreamMode, d RecordDistribution) error {
	if d == DistributionAuto && mode != ModeOnDemand {
		return newError(ErrInvalidArgument, ReasonAutoProvisioned, Facts{Account: account, Stream: stream})
	}
	return nil
}
