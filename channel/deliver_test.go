package channel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/storage"
)

func openStore(t *testing.T, dir string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), storage.Options{Dir: dir, ChannelAnyMode: true, RetentionEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startDelivery(s *storage.Store, out string) *Manager {
	return Start(StoreSource(s), Options{Dest: Dir(out), FlushEvery: 20 * time.Millisecond, Poll: 5 * time.Millisecond})
}

type line struct {
	K string
	N int
}

// delivered reads every object of bucket b under out, in delivery order
// (the number each key ends with), and returns its records.
func delivered(t *testing.T, out string) []line {
	t.Helper()
	var files []string
	filepath.WalkDir(filepath.Join(out, "b"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.HasPrefix(e.Name(), ".tmp-") {
			files = append(files, p)
		}
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i]) < filepath.Base(files[j]) })
	var got []line
	for _, f := range files {
		if !strings.Contains(f, "/kinesis-channel/ch/") {
			t.Fatalf("object %s is not under the default template's prefix", f)
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %q: %v", f, sc.Text(), err)
			}
			got = append(got, l)
		}
		fh.Close()
	}
	return got
}

func waitDelivered(t *testing.T, out string, n int) []line {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a bound on a hang, not a speed requirement
	for {
		got := delivered(t, out)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func put(t *testing.T, s *storage.Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		k := fmt.Sprintf("k%d", i%10)
		data, _ := json.Marshal(line{K: k, N: i})
		if _, err := s.Put(context.Background(), "s", []storage.PutEntry{{PartitionKey: k, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeliveryExactlyOnceAcrossRestartAndSplit: records put before the
// channel is ACTIVE are not delivered; every record put after is delivered
// once, and in order per partition key (so per shard, and from a parent to
// its children), across a restart and a split.
func TestDeliveryExactlyOnceAcrossRestartAndSplit(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	ctx := context.Background()
	s := openStore(t, dir)
	if err := s.CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 2, Mode: storage.ModeProvisioned}); err != nil {
		t.Fatal(err)
	}
	put(t, s, -20, 0) // before the channel: never delivered
	cfg := storage.ChannelConfig{RecordFormat: "JSON", BucketARN: "arn:aws:s3:::b", Compression: "NONE", FreshnessSecs: 300}
	if _, err := s.CreateChannel(ctx, storage.CreateChannelInput{Name: "ch", Stream: "s", Config: cfg}); err != nil {
		t.Fatal(err)
	}
	m := startDelivery(s, out)
	put(t, s, 0, 50)
	waitDelivered(t, out, 50)
	m.Close()
	s.Close()

	s = openStore(t, dir)
	defer s.Close()
	m = startDelivery(s, out)
	defer m.Close()
	put(t, s, 50, 100)
	info, err := s.DescribeStream(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	mid := "85070591730234615865843651857942052864" // 2^126, inside shard 0 of two
	if err := s.SplitShard(ctx, "s", info.Shards[0].ID, mid); err != nil {
		t.Fatal(err)
	}
	put(t, s, 100, 150)
	got := waitDelivered(t, out, 150)
	checkOnceInOrder(t, got, 150)
}

func checkOnceInOrder(t *testing.T, got []line, n int) {
	t.Helper()
	seen := map[int]bool{}
	last := map[string]int{}
	for _, l := range got {
		if l.N < 0 || l.N >= n || seen[l.N] {
			t.Fatalf("record %d delivered twice, or put before the channel was ACTIVE", l.N)
		}
		seen[l.N] = true
		if prev, ok := last[l.K]; ok && prev > l.N {
			t.Fatalf("key %s: record %d delivered after %d", l.K, l.N, prev)
		}
		last[l.K] = l.N
	}
	if len(seen) != n {
		t.Fatalf("delivered %d of %d records", len(seen), n)
	}
}

// TestDirPaths: every S3 key has a file inside the directory, also keys with
// parts a file system cannot name (a channel named "." or "..", an empty
// part), and no key or bucket leaves the directory.
func TestDirPaths(t *testing.T) {
	d := Dir("/out")
	tests := []struct{ bucket, key, want string }{
		{"b", "kinesis-channel/c/x.json", "/out/b/kinesis-channel/c/x.json"},
		{"b", "kinesis-channel/./x", "/out/b/kinesis-channel/%2E/x"},
		{"b", "kinesis-channel/../x", "/out/b/kinesis-channel/%2E%2E/x"},
		{"b", "../../etc/passwd", "/out/b/%2E%2E/%2E%2E/etc/passwd"},
		{"b", "a//b", "/out/b/a/%2F/b"},
		{"..", "x", "/out/%2E%2E/x"},
	}
	for _, tt := range tests {
		got, err := d.path(tt.bucket, tt.key)
		if err != nil || got != tt.want {
			t.Errorf("path(%q, %q) = %q, %v; want %q", tt.bucket, tt.key, got, err, tt.want)
		}
	}
	if _, err := d.path("a/b", "x"); err == nil {
		t.Error("a bucket with a slash was given a path")
	}
}
