package fsck_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/vfs"
)

type nopTransport struct{}

func (nopTransport) Send(replica.Batch) {}

// clusterGroup is the Raft group the fixture writes.
const clusterGroup = 7

// clusterFixture runs a one-node replica host on a real directory, as
// `serve --cluster` lays it out (<dir>/cluster), until its WAL has rolled
// and its group's segments have rolled a few times; everything is driven
// by hand (seeded elections, a clock that moves per step), so the files are
// the same at every run.
func clusterFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	step := 0
	h, err := replica.Open(replica.Config{NodeID: 1, FS: vfs.OS{}, Dir: filepath.Join(dir, fsck.ClusterDir),
		Groups: []replica.GroupConfig{{ID: clusterGroup, Peers: []uint64{1}}}, Transport: nopTransport{},
		Rand: rand.New(rand.NewPCG(1, 1)), WALSegmentSize: 4 << 10, CompactMinEntries: 2, StateSegmentSize: 1 << 10,
		Now: func() time.Time { return base.Add(time.Duration(step) * time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	var p *replica.Proposal
	written := 0
	for ; written < 120 && step < 5000; step++ {
		h.Tick()
		if p == nil && h.Status(clusterGroup).Leader == 1 {
			p, _ = h.Propose(clusterGroup, [][]byte{[]byte(fmt.Sprintf("record-%03d-a", written)), []byte(fmt.Sprintf("record-%03d-b", written))})
		}
		for range 2 {
			if err := h.HandleReady(); err != nil {
				t.Fatal(err)
			}
		}
		if p != nil {
			select {
			case <-p.Done():
				if _, err := p.Result(); err != nil {
					t.Fatal(err)
				}
				p = nil
				written++
			default:
			}
		}
	}
	if written < 120 {
		t.Fatalf("wrote %d entries", written)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func verifyText(t *testing.T, dir string) (string, *fsck.Report) {
	t.Helper()
	rep, err := fsck.Verify(fsck.Options{Dir: dir, FS: vfs.OS{}, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	// The temporary directory's name is not part of any line; sizes and
	// times come from the fixture's own deterministic run.
	return b.String(), rep
}

// TestGoldenVerifyCluster: verify of a cluster node's data directory checks
// every WAL file's frames and the group's segments (golden output), reports
// a damaged sealed segment, a torn WAL tail and a leftover generation, and
// repair refuses the directory, saying why.
func TestGoldenVerifyCluster(t *testing.T) {
	dir := clusterFixture(t)
	text, rep := verifyText(t, dir)
	if rep.Errors != 0 || rep.Warnings != 0 || len(rep.Shards) != 1 || len(rep.WAL) < 2 || rep.Shards[0].Segments < 3 {
		t.Fatalf("clean fixture: %d errors, %d warnings, %d groups, %d WAL files:\n%s", rep.Errors, rep.Warnings, len(rep.Shards), len(rep.WAL), text)
	}
	golden(t, "verify_cluster_clean", text)

	gdir := filepath.Join(dir, fsck.ClusterDir, "groups", fmt.Sprintf("%016x", clusterGroup))
	segs, err := filepath.Glob(filepath.Join(gdir, "0000000000000000", "*"))
	if err != nil || len(segs) < 2 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	slices.Sort(segs)
	flipByte(t, segs[0], -3) // inside the oldest (sealed) segment's last frame
	wals, _ := filepath.Glob(filepath.Join(dir, fsck.ClusterDir, "wal-*.log"))
	slices.Sort(wals)
	appendBytes(t, wals[len(wals)-1], []byte{9, 0, 0, 0, 1, 2}) // a torn frame at the newest WAL file's end
	if err := os.Mkdir(filepath.Join(gdir, "0000000000000005"), 0o755); err != nil {
		t.Fatal(err)
	}
	text, rep = verifyText(t, dir)
	if rep.Errors == 0 || rep.Warnings < 2 {
		t.Fatalf("damaged fixture: %d errors, %d warnings:\n%s", rep.Errors, rep.Warnings, text)
	}
	golden(t, "verify_cluster_damaged", text)

	if _, err := fsck.Repair(fsck.Options{Dir: dir, FS: vfs.OS{}}, false); !errors.Is(err, fsck.ErrClusterRepair) {
		t.Fatalf("repair of a cluster directory: %v", err)
	}
}

func flipByte(t *testing.T, name string, fromEnd int64) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	b[int64(len(b))+fromEnd] ^= 0x40
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, name string, extra []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(extra); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyClusterListsDamagedReplicas: a damaged replica's files, moved
// aside by the node, are listed (a warning), not reported as strays.
func TestVerifyClusterListsDamagedReplicas(t *testing.T) {
	dir := clusterFixture(t)
	name := fmt.Sprintf("%016x.damaged-20260102T030405.000000000Z", clusterGroup)
	if err := os.MkdirAll(filepath.Join(dir, fsck.ClusterDir, "groups", name, "0000000000000000"), 0o755); err != nil {
		t.Fatal(err)
	}
	text, rep := verifyText(t, dir)
	var found int
	for _, p := range rep.Problems {
		if p.Code == fsck.WStrayFile {
			t.Errorf("reported as a stray: %+v", p)
		}
		if p.Code == fsck.WDamagedReplica && strings.HasSuffix(p.File, name) {
			found++
		}
	}
	if found != 1 || rep.Errors != 0 {
		t.Fatalf("want one %s for %s, no errors:\n%s", fsck.WDamagedReplica, name, text)
	}
}

// TestVerifyClusterAfterRetention: a group whose oldest segments retention
// deleted (replica.Host.Trim) verifies clean: its chain starts later.
func TestVerifyClusterAfterRetention(t *testing.T) {
	dir := clusterFixture(t)
	segs, _ := filepath.Glob(filepath.Join(dir, fsck.ClusterDir, "groups", fmt.Sprintf("%016x", clusterGroup), "0000000000000000", "*"))
	slices.Sort(segs)
	for _, s := range segs[:3] {
		if err := os.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	text, rep := verifyText(t, dir)
	if rep.Errors != 0 || rep.Warnings != 0 || rep.Shards[0].Segments != len(segs)-3 {
		t.Fatalf("after retention: %d errors, %d warnings:\n%s", rep.Errors, rep.Warnings, text)
	}
}
