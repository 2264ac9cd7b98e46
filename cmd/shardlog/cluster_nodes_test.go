package main

import (
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/cluster"
)

// TestPrintNodesShowsDamage: `shardlog cluster nodes` shows, under its
// node, each damaged replica being replaced: group, when, why, and where
// its files were kept.
func TestPrintNodesShowsDamage(t *testing.T) {
	var b strings.Builder
	at := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	printNodes(&b, []cluster.NodeInfo{
		{ID: 1, State: "member", Replicas: 3},
		{ID: 2, State: "member", Replicas: 3, Damaged: []cluster.DamagedReplica{{Group: 7, At: at,
			Reason: "segment x.seg: corrupt at offset 64", Dir: "/data/cluster/groups/0000000000000007.damaged-20261202T130000Z"}}},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[2], "2 ") {
		t.Fatalf("output:\n%s", b.String())
	}
	for _, want := range []string{"group 7", "2026-12-02T13:00:00Z", "corrupt at offset 64", "0000000000000007.damaged-", "node 2"} {
		if !strings.Contains(lines[3], want) {
			t.Errorf("the damage line %q lacks %q", lines[3], want)
		}
	}
}
