package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/cluster"
)

const clusterToken = "e2e-cluster-token"

// clusterProcs is a three-process cluster on loopback.
type clusterProcs struct {
	t     *testing.T
	bin   string
	peers string
	dirs  map[uint64]string
	procs map[uint64]*process
	// acked is every acknowledged record: sequence number → data;
	// attempted every data value ever sent.
	acked     map[string]string
	attempted map[string]bool
	extra     []string // more serve flags, after the defaults (startProcess's --throttle=false among them)
}

func startClusterProcs(t *testing.T, extra ...string) *clusterProcs {
	c := &clusterProcs{t: t, bin: buildBinary(t), dirs: map[uint64]string{}, procs: map[uint64]*process{},
		acked: map[string]string{}, attempted: map[string]bool{}, extra: extra}
	var parts []string
	for id := uint64(1); id <= 3; id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%d=%s", id, ln.Addr()))
		ln.Close()
		c.dirs[id] = filepath.Join(t.TempDir(), "data")
	}
	c.peers = strings.Join(parts, ",")
	for id := uint64(1); id <= 3; id++ {
		c.start(id)
	}
	return c
}

// start runs node id; with the token given, it serves before a quorum is up.
func (c *clusterProcs) start(id uint64) {
	c.procs[id] = startProcess(c.t, c.bin, c.dirs[id], append([]string{"--cluster", "--node-id", fmt.Sprint(id), "--peers", c.peers,
		"--cluster-token", clusterToken}, c.extra...)...)
}

// status is node id's view of the cluster.
func (c *clusterProcs) status(id uint64) cluster.NodeStatus {
	req, _ := http.NewRequest(http.MethodGet, c.procs[id].endpoint+"/_cluster/v1/status", nil)
	req.Header.Set(cluster.AuthHeader, cluster.ForwardAuth(clusterToken))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st cluster.NodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		c.t.Fatal(err)
	}
	return st
}

// put sends one PutRecords of n records through node id (single attempt)
// and keeps what was acknowledged; it reports whether all were.
func (c *clusterProcs) put(id uint64, round, n int) bool {
	var entries []types.PutRecordsRequestEntry
	for i := range n {
		data := fmt.Sprintf("r%d-%d", round, i)
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(data), Data: []byte(data)})
	}
	// As a producer does, failed records are sent again, for a while: a
	// reshard or a leader moving can fail some (503, or InternalFailure,
	// which is indeterminate). A retry carries new data (suffix /k), so a
	// failed attempt that was stored after all is a sent record, never a
	// second copy of an acknowledged one.
	for attempt := 0; len(entries) > 0 && attempt < 30; attempt++ {
		if attempt > 0 {
			time.Sleep(100 * time.Millisecond)
			for i := range entries {
				data := fmt.Sprintf("%s/%d", strings.SplitN(string(entries[i].Data), "/", 2)[0], attempt)
				entries[i] = types.PutRecordsRequestEntry{PartitionKey: entries[i].PartitionKey, Data: []byte(data)}
			}
		}
		for _, e := range entries {
			c.attempted[string(e.Data)] = true
		}
		out, err := c.procs[id].client().PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String("cl"), Records: entries})
		if err != nil {
			continue
		}
		var failed []types.PutRecordsRequestEntry
		for i, r := range out.Records {
			if r.ErrorCode == nil {
				c.acked[*r.SequenceNumber] = string(entries[i].Data)
			} else {
				failed = append(failed, entries[i])
			}
		}
		entries = failed
	}
	return len(entries) == 0
}

// verify reads every shard through node id: every acknowledged record is
// there exactly once, every record read was sent, sequence numbers rise.
func (c *clusterProcs) verify(id uint64) error {
	cl := c.procs[id].client()
	ctx := context.Background()
	shards, err := cl.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("cl")})
	if err != nil {
		return err
	}
	seen := map[string]string{}
	for _, sh := range shards.Shards {
		it, err := cl.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("cl"), ShardId: sh.ShardId,
			ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return err
		}
		last := ""
		for iter := it.ShardIterator; iter != nil; {
			out, err := cl.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(100)})
			if err != nil {
				return err
			}
			for _, r := range out.Records {
				seq, data := *r.SequenceNumber, string(r.Data)
				switch {
				case !lessSeq(last, seq):
					return fmt.Errorf("shard %s: %s after %s", *sh.ShardId, seq, last)
				case !c.attempted[data]:
					return fmt.Errorf("phantom record %q", data)
				case seen[data] != "":
					return fmt.Errorf("record %q stored twice (%s, %s)", data, seen[data], seq)
				}
				seen[data], last = seq, seq
			}
			if len(out.Records) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	for seq, data := range c.acked {
		if seen[data] != seq {
			return fmt.Errorf("acknowledged %q (%s) read as %q; %d read, %d acknowledged", data, seq, seen[data], len(seen), len(c.acked))
		}
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for err := cond(); err != nil; err = cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterProcesses: three `shardlog serve --cluster` processes. The SDK
// creates a stream through node 1, writes through node 2, reads through node
// 3. Then shard 0's leader is killed with SIGKILL: writes resume through the
// survivors, and every acknowledged record is read back exactly once from
// both; the killed node, restarted on its data directory, catches up and
// serves the same records.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	c := startClusterProcs(t)
	ctx := context.Background()
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("cl"), ShardCount: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream ACTIVE through node 3", func() error {
		out, err := c.procs[3].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("cl")})
		if err == nil && out.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
		}
		return err
	})
	for round := range 10 {
		if !c.put(2, round, 50) {
			t.Fatalf("PutRecords round %d through node 2 failed", round)
		}
	}
	if err := c.verify(3); err != nil {
		t.Fatal(err)
	}

	st := c.status(1)
	leader := st.Groups[fmt.Sprint(st.Shards["cl/shardId-000000000000"])].Leader
	if leader == 0 {
		t.Fatalf("no leader for shard 0: %+v", st)
	}
	survivors := []uint64{leader%3 + 1, (leader+1)%3 + 1}
	c.procs[leader].kill()
	killed := time.Now()
	round := 100
	waitFor(t, "writes resume through a survivor", func() error {
		round++
		if !c.put(survivors[0], round, 50) {
			return fmt.Errorf("round %d not fully acknowledged", round)
		}
		return nil
	})
	t.Logf("failover: %v from kill -9 of node %d (leader of shard 0) to a fully acknowledged PutRecords of 50 records over 3 shards", time.Since(killed).Round(time.Millisecond), leader)
	for range 5 {
		round++
		if !c.put(survivors[1], round, 50) {
			t.Fatalf("PutRecords through node %d after the failover failed", survivors[1])
		}
	}
	for _, id := range survivors {
		if err := c.verify(id); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
	}

	c.start(leader)
	waitFor(t, "the restarted node serves every acknowledged record", func() error { return c.verify(leader) })
}
