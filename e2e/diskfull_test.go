package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// TestDiskFullOnFaultFS fills a fault-injecting filesystem: writes fail with
// InternalFailure naming the cause, acknowledged records stay readable, the
// server keeps serving reads, and writes succeed again once space is freed.
func TestDiskFullOnFaultFS(t *testing.T) {
	fs := vfs.NewMemFS()
	srv := startServerWith(t, t.TempDir(), storage.Options{FS: fs})
	checkDiskFull(t, srv, func() { fs.SetCapacity(fs.Used() + 4096) }, func() { fs.SetCapacity(0) })
}

// TestDiskFullOnTmpfs does the same on a real 4 MiB tmpfs, freeing space by
// deleting a ballast file. It needs permission to mount and skips without it.
func TestDiskFullOnTmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "data")
	srv := startServerWith(t, dir, storage.Options{})
	ballast := filepath.Join(mnt, "ballast")
	checkDiskFull(t, srv, func() { fillUp(t, ballast) }, func() {
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
	})
}

// fillUp writes path until the filesystem is full, then gives 64 KiB back.
func fillUp(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(max(0, info.Size()-int64(len(buf)))); err != nil {
		t.Fatal(err)
	}
}

func checkDiskFull(t *testing.T, srv *server, fill, free func()) {
	t.Helper()
	ctx := context.Background()
	c := srv.client(1)
	createStream(t, c, "full", 1)
	var acked []string
	put := func(data []byte) error {
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("full"), PartitionKey: aws.String("k"), Data: data})
		if err == nil {
			acked = append(acked, *out.SequenceNumber)
		}
		return err
	}
	for range 10 {
		if err := put([]byte("before the disk filled")); err != nil {
			t.Fatal(err)
		}
	}
	fill()
	var fullErr error
	for i := 0; i < 2000 && fullErr == nil; i++ {
		fullErr = put(randomBytes(8 << 10))
	}
	if apiErr(fullErr) != "InternalFailure" || !strings.Contains(fullErr.Error(), "no space left on device") {
		t.Fatalf("writing to a full disk gave %v, want InternalFailure naming the cause", fullErr)
	}
	if got := readSeqs(t, srv.reader(), "full"); !slices.Equal(got, acked) {
		t.Fatalf("while full, read %d records, %d were acknowledged", len(got), len(acked))
	}
	free()
	if err := put([]byte("after space was freed")); err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
	srv.restart()
	if got := readSeqs(t, srv.reader(), "full"); !slices.Equal(got, acked) {
		t.Fatalf("after restart, read %d records, %d were acknowledged", len(got), len(acked))
	}
}

// randomBytes is incompressible data, so the disk really fills.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// readSeqs reads a one-shard stream from TRIM_HORIZON and returns its
// sequence numbers.
func readSeqs(t *testing.T, c *kinesis.Client, stream string) []string {
	t.Helper()
	it, err := c.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String(stream),
		ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for iter := it.ShardIterator; iter != nil; {
		page, err := c.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			out = append(out, *r.SequenceNumber)
		}
		if len(page.Records) == 0 && aws.ToInt64(page.MillisBehindLatest) == 0 {
			return out
		}
		iter = page.NextShardIterator
	}
	return out
}
