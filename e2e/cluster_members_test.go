package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/cluster"
)

// admin is an operator's client of node id.
func (c *clusterProcs) admin(id uint64) cluster.Admin {
	return cluster.Admin{Endpoint: c.procs[id].endpoint, Token: clusterToken}
}

// settledWith checks, as node id reports it, that no move is in progress
// and that every node in want holds replicas and the others none.
func (c *clusterProcs) settledWith(id uint64, want ...uint64) error {
	nodes, err := c.admin(id).Nodes(context.Background())
	if err != nil {
		return err
	}
	for _, n := range nodes {
		holds := false
		for _, w := range want {
			holds = holds || w == n.ID
		}
		switch {
		case n.Moving > 0:
			return fmt.Errorf("node %d: %d moves in progress", n.ID, n.Moving)
		case holds && n.Replicas == 0, !holds && n.Replicas > 0:
			return fmt.Errorf("node %d holds %d replicas", n.ID, n.Replicas)
		}
	}
	return nil
}

// TestClusterAddRemoveProcesses: three `shardlog serve --cluster` processes
// and a stream of four shards. A fourth process joins with --join through
// node 2's API while the SDK writes through every node; replicas move until
// it holds its share, and every acknowledged record is read exactly once
// through every node. Then `shardlog cluster remove-node` removes node 1
// (a seed) while writes go on; once it reports the node removed, node 1 is
// killed, writes go on through the three others, and they read every
// acknowledged record.
func TestClusterAddRemoveProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs four servers")
	}
	c := startClusterProcs(t)
	ctx := context.Background()
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("cl"), ShardCount: aws.Int32(4)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream ACTIVE", func() error {
		out, err := c.procs[1].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("cl")})
		if err == nil && out.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
		}
		return err
	})
	round := 0
	for ; round < 5; round++ {
		if !c.put(1, round, 50) {
			t.Fatalf("PutRecords round %d failed", round)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := ln.Addr().String()
	ln.Close()
	c.dirs[4] = filepath.Join(t.TempDir(), "data")
	c.procs[4] = startProcess(t, c.bin, c.dirs[4], "--cluster", "--node-id", "4", "--peers", "4="+peer,
		"--join", strings.TrimPrefix(c.procs[2].endpoint, "http://"), "--cluster-token", clusterToken)
	before := len(c.acked)
	waitFor(t, "node 4 holds its share", func() error {
		round++
		c.put(uint64(round%4+1), round, 20)
		return c.settledWith(3, 1, 2, 3, 4)
	})
	if len(c.acked) == before {
		t.Fatal("no write acknowledged while replicas moved")
	}
	for id := uint64(1); id <= 4; id++ {
		if err := c.verify(id); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
	}

	cli := exec.Command(c.bin, "cluster", "remove-node", "--endpoint", c.procs[3].endpoint, "--node-id", "1",
		"--cluster-token", clusterToken, "--wait", "80s")
	var out strings.Builder
	cli.Stdout, cli.Stderr = &out, &out
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cli.Wait() }()
	before = len(c.acked)
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("remove-node: %v\n%s", err, out.String())
			}
			waiting = false
		default:
			round++
			c.put(uint64(round%3+2), round, 20)
		}
	}
	if !strings.Contains(out.String(), "node 1: removed") || len(c.acked) == before {
		t.Fatalf("remove-node said:\n%s\n%d records acknowledged meanwhile", out.String(), len(c.acked)-before)
	}
	t.Logf("remove-node:\n%s", out.String())
	list, err := exec.Command(c.bin, "cluster", "nodes", "--endpoint", c.procs[4].endpoint, "--cluster-token", clusterToken).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "removed") || strings.Count(string(list), "member") != 3 {
		t.Fatalf("cluster nodes: %v\n%s", err, list)
	}
	t.Logf("cluster nodes:\n%s", list)
	c.procs[1].kill()
	waitFor(t, "placement settles on nodes 2-4", func() error { return c.settledWith(2, 2, 3, 4) })
	for range 5 {
		round++
		if !c.put(uint64(round%3+2), round, 20) {
			t.Fatalf("PutRecords round %d after node 1 stopped failed", round)
		}
	}
	for _, id := range []uint64{2, 3, 4} {
		if err := c.verify(id); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
	}
}
