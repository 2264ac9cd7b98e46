package storage

import "context"

// Record distribution strategies (UpdateStreamRecordDistributionStrategy).
// With DistributionUserKey (the default) a record goes to the open shard
// whose hash range holds its partition key's MD5, or its ExplicitHashKey.
// With DistributionAuto, which AWS allows on ON_DEMAND streams only, both
// are ignored: a stream's records take turns over its open shards in hash
// order (stream.autoTurn), so N records written one request after another
// put N/len(shards) on each, give or take one. Records already written stay
// where they are; the strategy applies from the next Put.

// storedDistribution is what a stream's record keeps: "" for the default,
// so records of streams that never changed it look as they did before the
// field existed.
func storedDistribution(d RecordDistribution) RecordDistribution {
	if d == DistributionUserKey {
		return ""
	}
	return d
}

// SetRecordDistribution changes an ACTIVE stream's record distribution
// strategy; it takes effect at once, with no UPDATING status: AWS documents
// that the change "takes effect immediately" (unverified against the
// service). AUTO on a stream that is not ON_DEMAND is ErrInvalidArgument, as
// AWS documents; USER_PARTITION_KEY is accepted on any stream, since it is
// every PROVISIONED stream's strategy already (AWS's answer there is not
// documented).
func (s *Store) SetRecordDistribution(ctx context.Context, name string, d RecordDistribution) error {
	return s.updateMeta(name, nil, func(m *streamMeta) error {
		if err := CheckDistribution(s.opts.AccountID, name, m.Mode, d); err != nil {
			return err
		}
		m.Distribution = storedDistribution(d)
		return nil
	})
}

// takeTurns takes n consecutive turns of AUTO distribution and returns the
// first: record i of the Put goes to open shard (first+i) mod len(routes).
// The turns are taken in one atomic step, so a concurrent Put's records take
// other ones.
func (st *stream) takeTurns(n int) uint64 {
	return st.autoTurn.Add(uint64(n)) - uint64(n)
}
