package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// The cluster fault test's workload (writers and readers through random
// nodes), what it was told (clusterLog), and the final check.

// ccRequestTimeout bounds one SDK call: an answer later than that is
// indeterminate (the write may or may not be stored, never twice).
const ccRequestTimeout = 5 * time.Second

type workload struct {
	cc    *crashCluster
	log   *clusterLog
	stopc chan struct{}
	wg    sync.WaitGroup
}

func startWorkload(cc *crashCluster, seed uint64) *workload {
	w := &workload{cc: cc, log: newClusterLog(), stopc: make(chan struct{})}
	for i := range 4 {
		rng := rand.New(rand.NewPCG(seed, uint64(100+i)))
		w.wg.Go(func() { w.writer(i, rng) })
	}
	for i := range 2 {
		rng := rand.New(rand.NewPCG(seed, uint64(200+i)))
		w.wg.Go(func() { w.reader(rng) })
	}
	return w
}

func (w *workload) stop() {
	close(w.stopc)
	w.wg.Wait()
}

func (w *workload) stopped() bool {
	select {
	case <-w.stopc:
		return true
	default:
		return false
	}
}

// writer sends PutRecord and PutRecords (1-10 records) through random
// nodes; every 23rd request is invalid and must be refused whole.
func (w *workload) writer(wi int, rng *rand.Rand) {
	for n := 0; !w.stopped(); n++ {
		via := uint64(1 + rng.IntN(3))
		c := w.cc.client(via)
		if c == nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		bad := n%23 == 11
		size := 1 + rng.IntN(10)
		if !bad && rng.IntN(4) == 0 {
			size = 1
		}
		entries := make([]types.PutRecordsRequestEntry, size)
		for i := range entries {
			data := fmt.Sprintf("w%d-n%d-i%d", wi, n, i)
			entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("pk%d", rng.IntN(64))), Data: []byte(data)}
		}
		if bad {
			entries[size-1].ExplicitHashKey = aws.String("-1")
		}
		w.log.attempt(entries)
		epoch := w.log.partitionEpoch(via)
		ctx, cancel := context.WithTimeout(context.Background(), ccRequestTimeout)
		outcome, acks := put(ctx, c, via, entries, bad)
		cancel()
		w.log.record(epoch, via, outcome, acks, entries, bad)
		if outcome == "transport" {
			time.Sleep(5 * time.Millisecond) // the node is down: do not spin
		}
	}
}

// put sends one request; its outcome is "acked", "partial" (some records
// failed), "rejected" (an invalid request refused), "transport" (no
// answer), or the AWS error code.
func put(ctx context.Context, c *kinesis.Client, via uint64, entries []types.PutRecordsRequestEntry, bad bool) (string, []ackedRecord) {
	now := time.Now
	if len(entries) == 1 && !bad {
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(ccStream), PartitionKey: entries[0].PartitionKey, Data: entries[0].Data})
		if err != nil {
			return errOutcome(err), nil
		}
		return "acked", []ackedRecord{{shard: *out.ShardId, seq: *out.SequenceNumber, data: string(entries[0].Data), via: via, at: now()}}
	}
	out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(ccStream), Records: entries})
	switch code := apiErr(err); {
	case bad && (code == "InvalidArgumentException" || code == "ValidationException"):
		return "rejected", nil
	case bad && err == nil:
		return "accepted-invalid", nil
	case err != nil:
		return errOutcome(err), nil
	}
	var acks []ackedRecord
	for i, r := range out.Records {
		if r.ErrorCode == nil {
			acks = append(acks, ackedRecord{shard: *r.ShardId, seq: *r.SequenceNumber, data: string(entries[i].Data), via: via, at: now()})
		}
	}
	if len(acks) < len(entries) {
		return "partial", acks
	}
	return "acked", acks
}

func errOutcome(err error) string {
	if code := apiErr(err); code != "" {
		return code
	}
	return "transport"
}

// reader reads from a random acknowledged record of a random shard
// through a random node and checks what it gets (clusterLog.checkRead).
// Freshness is not checked here: a node that is cut off or catching up
// serves its own applied state, which may be behind; the final check
// reads everything from every node.
func (w *workload) reader(rng *rand.Rand) {
	for !w.stopped() {
		via := uint64(1 + rng.IntN(3))
		c := w.cc.client(via)
		shard := ccShards[rng.IntN(len(ccShards))]
		from := w.log.randomAcked(shard, rng)
		if c == nil || from == "" {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ccRequestTimeout)
		recs, err := readFrom(ctx, c, shard, from, 100)
		cancel()
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		w.log.checkRead(via, shard, from, recs)
	}
}

// readFrom is one page of shard's records from seq on.
func readFrom(ctx context.Context, c *kinesis.Client, shard, seq string, limit int32) ([]types.Record, error) {
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(ccStream), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: aws.String(seq)})
	if err != nil {
		return nil, err
	}
	out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(limit)})
	if err != nil {
		return nil, err
	}
	return out.Records, nil
}

// readAt is the data of the record at seq.
func readAt(c *kinesis.Client, shard, seq string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ccRequestTimeout)
	defer cancel()
	recs, err := readFrom(ctx, c, shard, seq, 1)
	if err != nil {
		return "", err
	}
	if len(recs) == 0 || *recs[0].SequenceNumber != seq {
		return "", fmt.Errorf("%s not served (%d records)", seq, len(recs))
	}
	return string(recs[0].Data), nil
}

type ackedRecord struct {
	shard, seq, data string
	via              uint64
	at               time.Time
}

// clusterLog is what the clients were told.
type clusterLog struct {
	mu        sync.Mutex
	acked     map[string]ackedRecord // sequence number → acknowledgement
	seqOf     map[string]string      // data → its acknowledged sequence number
	attempted map[string]bool        // data of every record sent
	rejected  map[string]bool        // data of records in requests refused as invalid
	byShard   map[string][]string    // acknowledged sequence numbers, per shard
	events    []ackedRecord          // acknowledgements in the order they came
	outcome   map[string]int         // requests by outcome
	violation []string
	// The partition under way: the cut-off node, the partition's number,
	// and what writes through that node were told meanwhile.
	partitioned  uint64
	epoch        int
	minority     map[string]int
	minorityAcks []ackedRecord
}

func newClusterLog() *clusterLog {
	return &clusterLog{acked: map[string]ackedRecord{}, seqOf: map[string]string{}, attempted: map[string]bool{},
		rejected: map[string]bool{}, byShard: map[string][]string{}, outcome: map[string]int{}, minority: map[string]int{}}
}

func (l *clusterLog) attempt(entries []types.PutRecordsRequestEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		l.attempted[string(e.Data)] = true
	}
}

func (l *clusterLog) violate(format string, args ...any) {
	l.violation = append(l.violation, fmt.Sprintf(format, args...))
}

// partitionEpoch is the partition under way if it cuts off via, else -1.
func (l *clusterLog) partitionEpoch(via uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.partitioned == via {
		return l.epoch
	}
	return -1
}

// record logs one request's outcome. epoch is partitionEpoch(via) when
// it was sent: a request sent and answered within one partition of its
// node counts as the minority's.
func (l *clusterLog) record(epoch int, via uint64, outcome string, acks []ackedRecord, entries []types.PutRecordsRequestEntry, bad bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outcome[outcome]++
	switch {
	case outcome == "accepted-invalid":
		l.violate("an invalid PutRecords (ExplicitHashKey -1) through node %d was accepted", via)
	case outcome == "rejected":
		for _, e := range entries {
			l.rejected[string(e.Data)] = true
		}
	case bad:
		// An invalid request that got no answer or a server fault: it was
		// not stored whole (validation precedes any write) or at all.
	case !slices.Contains([]string{"acked", "partial", "transport", "ServiceUnavailable", "InternalFailure"}, outcome):
		l.violate("a write through node %d was answered %s", via, outcome)
	}
	minority := epoch >= 0 && l.epoch == epoch && l.partitioned == via && !bad
	if minority {
		l.minority[outcome]++
	}
	for _, a := range acks {
		if prev, dup := l.acked[a.seq]; dup {
			l.violate("sequence number %s acknowledged twice: %q and %q", a.seq, prev.data, a.data)
		}
		l.acked[a.seq], l.seqOf[a.data] = a, a.seq
		l.byShard[a.shard] = append(l.byShard[a.shard], a.seq)
		l.events = append(l.events, a)
		if minority {
			l.minorityAcks = append(l.minorityAcks, a)
		}
	}
}

func (l *clusterLog) beginPartition(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partitioned = id
	l.epoch++
}

// endPartition ends the partition's accounting and returns the writes
// acknowledged through the cut-off node during it.
func (l *clusterLog) endPartition() []ackedRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partitioned = 0
	acks := l.minorityAcks
	l.minorityAcks = nil
	return acks
}

// ackedSince counts acknowledgements after t through one of via, of
// records of shard (any shard if it is "").
func (l *clusterLog) ackedSince(t time.Time, via []uint64, shard string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for i := len(l.events) - 1; i >= 0 && l.events[i].at.After(t); i-- {
		if e := l.events[i]; slices.Contains(via, e.via) && (shard == "" || e.shard == shard) {
			n++
		}
	}
	return n
}

func (l *clusterLog) randomAcked(shard string, rng *rand.Rand) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seqs := l.byShard[shard]
	if len(seqs) == 0 {
		return ""
	}
	return seqs[rng.IntN(len(seqs))]
}

// checkRead checks a page read from the acknowledged record from on:
// increasing numbers from it on, nothing unsent or refused, and every
// acknowledged record at its acknowledged number.
func (l *clusterLog) checkRead(via uint64, shard, from string, recs []types.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := from
	for i, r := range recs {
		seq, data := *r.SequenceNumber, string(r.Data)
		if (i == 0 && lessSeq(seq, from)) || (i > 0 && !lessSeq(prev, seq)) {
			l.violate("node %d, %s: %s read after %s", via, shard, seq, prev)
		}
		prev = seq
		switch {
		case !l.attempted[data] || l.rejected[data]:
			l.violate("node %d, %s: phantom record %q at %s", via, shard, data, seq)
		case l.acked[seq].data != "" && l.acked[seq].data != data:
			l.violate("node %d, %s: %s holds %q, acknowledged as %q", via, shard, seq, data, l.acked[seq].data)
		case l.seqOf[data] != "" && l.seqOf[data] != seq:
			l.violate("node %d, %s: %q read at %s, acknowledged at %s", via, shard, data, seq, l.seqOf[data])
		}
	}
}

func (l *clusterLog) violationCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.violation)
}

func (l *clusterLog) outcomes() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("requests by outcome %v; reader/writer violations %d: %s", l.outcome, len(l.violation), strings.Join(l.violation[:min(len(l.violation), 20)], "; "))
}

func (l *clusterLog) minorityCounts() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, k := range sortedKeys(l.minority) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, l.minority[k]))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// checkResult is the final check's count, summed over the nodes.
type checkResult struct {
	acked, checked                                int
	lost, dups, phantoms, misnumbered, disordered int
}

func (r checkResult) broken() int { return r.dups + r.phantoms + r.misnumbered + r.disordered }

// checkEveryNode reads every shard from every node once the workload has
// stopped and every node is up and healed. A node may still be catching
// up, so a node that lacks acknowledged records (and has nothing wrong
// otherwise) is read again until ccRecover has passed.
func (cc *crashCluster) checkEveryNode(l *clusterLog) checkResult {
	res := checkResult{acked: len(l.acked)}
	var want string
	for id := uint64(1); id <= uint64(len(cc.nodes)); id++ {
		waitFor(cc.t, fmt.Sprintf("node %d healthy for the final check", id), func() error { return cc.healthy(id) })
		var shards string
		waitFor(cc.t, fmt.Sprintf("ListShards through node %d", id), func() (err error) { shards, err = cc.listShards(id); return err })
		if want == "" {
			want = shards
		} else if shards != want {
			cc.t.Errorf("node %d lists the shards\n%s\nnode 1 lists\n%s", id, shards, want)
		}
		var r checkResult
		deadline := time.Now().Add(ccRecover)
		for {
			var err error
			r, err = cc.verifyNode(id, l)
			if err == nil && (r.lost == 0 || r.broken() > 0) {
				break
			}
			if time.Now().After(deadline) {
				if err != nil {
					cc.t.Fatalf("reading every shard through node %d: %v", id, err)
				}
				cc.t.Errorf("node %d does not serve %d acknowledged records", id, r.lost)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		res.checked += r.checked
		res.lost += r.lost
		res.dups += r.dups
		res.phantoms += r.phantoms
		res.misnumbered += r.misnumbered
		res.disordered += r.disordered
	}
	return res
}

// listShards is node id's ListShards, as JSON: shards, parents, hash and
// sequence number ranges.
func (cc *crashCluster) listShards(id uint64) (string, error) {
	c := cc.client(id)
	ctx, cancel := context.WithTimeout(context.Background(), ccRequestTimeout)
	defer cancel()
	out, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(ccStream)})
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(out.Shards)
	return string(b), err
}

// verifyNode reads every shard through node id and compares it with the log.
func (cc *crashCluster) verifyNode(id uint64, l *clusterLog) (checkResult, error) {
	var r checkResult
	c := cc.client(id)
	found := map[string]string{} // sequence number → data
	seen := map[string]bool{}    // data, across shards
	for _, shard := range ccShards {
		recs, err := readShard(c, shard)
		if err != nil {
			return r, err
		}
		prev := new(big.Int).SetInt64(-1)
		for _, rec := range recs {
			seq, data := *rec.SequenceNumber, string(rec.Data)
			n, _ := new(big.Int).SetString(seq, 10)
			if n.Cmp(prev) <= 0 {
				r.disordered++
				cc.t.Errorf("node %d, %s: %s after %s", id, shard, seq, prev)
			}
			prev = n
			switch {
			case !l.attempted[data] || l.rejected[data]:
				r.phantoms++
				cc.t.Errorf("node %d, %s: phantom record %q at %s", id, shard, data, seq)
			case seen[data]:
				r.dups++
				cc.t.Errorf("node %d, %s: record %q stored twice", id, shard, data)
			}
			seen[data], found[seq] = true, data
		}
	}
	for seq, a := range l.acked {
		switch got, ok := found[seq]; {
		case !ok && seen[a.data]:
			r.misnumbered++
			cc.t.Errorf("node %d: %q acknowledged at %s is stored at another number", id, a.data, seq)
		case !ok:
			r.lost++
		case got != a.data:
			r.misnumbered++
			cc.t.Errorf("node %d: %s holds %q, acknowledged as %q", id, seq, got, a.data)
		default:
			r.checked++
		}
	}
	return r, nil
}

// readShard reads a whole shard from TRIM_HORIZON.
func readShard(c *kinesis.Client, shard string) ([]types.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*ccRequestTimeout)
	defer cancel()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(ccStream), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		return nil, err
	}
	var all []types.Record
	for iter := it.ShardIterator; iter != nil; {
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			return nil, err
		}
		all = append(all, out.Records...)
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			break
		}
		iter = out.NextShardIterator
	}
	return all, nil
}
