package storage

import (
	"math/rand/v2"
	"strconv"

	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/shard"
)

// MultiplierTag is the stream tag that scales a stream's per-shard rates,
// e.g. "shardlog.throughput-multiplier" = "4" for four times the capacity.
const MultiplierTag = "shardlog.throughput-multiplier"

// OnDemandShards is the shard count of a new ON_DEMAND stream, and its
// minimum capacity in shards' worth (4 MB/s write, 8 MB/s read).
const OnDemandShards = 4

// limitsFor computes a stream's per-shard limits; nil when throttling is off.
// An ON_DEMAND stream's capacity (ondemand.go) is spread over its open
// shards: each takes at least its own rates, more when the capacity exceeds
// what the shards give.
func (s *Store) limitsFor(m *streamMeta) *ratelimit.Limits {
	if !s.opts.Throttle {
		return nil
	}
	l := s.baseLimits(m)
	if m.Mode == ModeOnDemand {
		l = OnDemandLimits(l, openCount(m), m.WarmMiBps, m.WritePeaks, s.opts.Now())
	}
	return &l
}

// baseLimits are one shard's rates for m, whether enforced or not: AWS's,
// times ThrottleMultiplier and the stream's multiplier tag, with the large
// record burst of its maximum record size.
func (s *Store) baseLimits(m *streamMeta) ratelimit.Limits {
	return ProvisionedLimits(s.opts.ThrottleMultiplier, m.Tags, recordSizeKiB(m))
}

// ProvisionedLimits is the rule for one shard of a PROVISIONED stream:
// AWS's rates times multiplier (--throttle-multiplier) and the stream's
// MultiplierTag, and the write-byte credit a record of the stream's maximum
// size (maxRecordSizeKiB; 0: the default) needs beyond 1 MiB. Single-node
// mode's limitsFor and cluster mode's admission share it.
func ProvisionedLimits(multiplier float64, tags map[string]string, maxRecordSizeKiB int) ratelimit.Limits {
	if v, err := strconv.ParseFloat(tags[MultiplierTag], 64); err == nil && v > 0 {
		multiplier *= v
	}
	if maxRecordSizeKiB == 0 {
		maxRecordSizeKiB = DefaultMaxRecordSizeKiB
	}
	l := ratelimit.Kinesis.Scale(multiplier)
	l.LargeRecordBurst = float64((maxRecordSizeKiB - DefaultMaxRecordSizeKiB) << 10)
	return l
}

// applyLimits gives every shard of st the limits its metadata calls for.
func (s *Store) applyLimits(st *stream) {
	l := s.limitsFor(st.meta)
	for _, sh := range st.shards {
		sh.SetLimits(l)
	}
}

func (s *Store) throttled(stream string, index uint32) error {
	return s.fail(ErrThrottled, ReasonThrottled, Facts{Stream: stream, Shard: shardID(index)})
}

// injected reports whether fault injection throttles this call or record.
func (s *Store) injected() bool {
	return s.opts.InjectThrottleRate > 0 && rand.Float64() < s.opts.InjectThrottleRate
}

// admitWrites filters a group down to the records its shard admits now; the
// others get ErrThrottled in results and are never stored.
func (s *Store) admitWrites(stream string, g *group, results []PutResult) {
	adm := g.r.sh.Admission()
	if adm == nil && s.opts.InjectThrottleRate == 0 {
		return
	}
	sizes := make([]int, len(g.entries))
	for i, e := range g.entries {
		sizes[i] = len(e.Data) + len(e.PartitionKey)
	}
	ok := make([]bool, len(sizes))
	for i := range ok {
		ok[i] = true
	}
	if adm != nil {
		ok = adm.AdmitWrites(s.opts.Now(), sizes)
	}
	keptIdx, kept := g.idx[:0:0], g.entries[:0:0]
	for i := range ok {
		if ok[i] && !s.injected() {
			keptIdx, kept = append(keptIdx, g.idx[i]), append(kept, g.entries[i])
			continue
		}
		results[g.idx[i]] = PutResult{ShardID: shardID(g.r.index), Err: s.throttled(stream, g.r.index)}
	}
	g.idx, g.entries = keptIdx, kept
}

// admitRead decides whether a GetRecords call on sh may run now.
func (s *Store) admitRead(stream string, index uint32, sh *shard.Shard) error {
	if adm := sh.Admission(); (adm != nil && !adm.AdmitRead(s.opts.Now())) || s.injected() {
		return s.throttled(stream, index)
	}
	return nil
}

func (s *Store) chargeRead(sh *shard.Shard, n int) {
	if adm := sh.Admission(); adm != nil {
		adm.ChargeRead(s.opts.Now(), n)
	}
}

// admitIterator decides whether a GetShardIterator call on sh may run now.
func (s *Store) admitIterator(stream string, index uint32, sh *shard.Shard) error {
	if adm := sh.Admission(); (adm != nil && !adm.AdmitIterator(s.opts.Now())) || s.injected() {
		return s.throttled(stream, index)
	}
	return nil
}
