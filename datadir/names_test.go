package datadir

import (
	"math"
	"testing"
)

func TestParseShardID(t *testing.T) {
	tests := []struct {
		id   string
		want uint32
		ok   bool
	}{
		{"2147483647", 2147483647, true},
		{"x-2147483647", 2147483647, true},
		{"a-00002147483647", 2147483647, true},
		{"-00002147483647", 2147483647, true},
		{"shardId-000000000001", 1, true},
		{"shardId-1", 1, true},
		{"1", 1, true},
		{"0", 0, true},
		{"shardId-000000000000", 0, true},
		{"a-b-7", 7, true}, // the last '-' counts
		{"00000000000000000000000000000000000000009", 9, true},
		{"2147483648", 0, false},
		{"shardId-002147483648", 0, false},
		{"4294967296", 0, false},
		{"99999999999999999999999", 0, false},
		{"ABKLFD8", 0, false},
		{"2.14E4", 0, false},
		{"", 0, false},
		{"shardId-", 0, false},
		{"-", 0, false},
		{"shardId-1-", 0, false},
		{"shardId-+1", 0, false},
		{"shardId- 1", 0, false},
		{"shardId-x", 0, false},
		{"shardId-1x", 0, false},
		{"shardId-１", 0, false}, // a non-ASCII digit
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, ok := ParseShardID(tt.id)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseShardID(%q) = %d, %v; want %d, %v", tt.id, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestShardIDRoundTrip(t *testing.T) {
	for _, i := range []uint32{0, 1, 9, 10, 12345, 999999999999 % math.MaxInt32, MaxShardIndex} {
		id := ShardID(i)
		if len(id) != len(ShardPrefix)+12 {
			t.Errorf("ShardID(%d) = %q, want 12 digits", i, id)
		}
		for _, parse := range []func(string) (uint32, bool){ParseShardID, ParseShardDir} {
			if got, ok := parse(id); !ok || got != i {
				t.Errorf("parse(ShardID(%d) = %q) = %d, %v", i, id, got, ok)
			}
		}
	}
	if got := ShardID(3); got != "shardId-000000000003" {
		t.Fatalf("ShardID(3) = %q", got)
	}
}

// TestEncodedShardID: a sequence number's shard field is a signed int32 in
// AWS's messages; real shard indexes render as ShardID does.
func TestEncodedShardID(t *testing.T) {
	for _, tt := range []struct {
		i    uint32
		want string
	}{
		{0, "shardId-000000000000"},
		{5, "shardId-000000000005"},
		{MaxShardIndex, "shardId-002147483647"},
		{0x80000000, "shardId--02147483648"},
		{0xffffffff, "shardId--00000000001"},
	} {
		if got := EncodedShardID(tt.i); got != tt.want {
			t.Errorf("EncodedShardID(%#x) = %q, want %q", tt.i, got, tt.want)
		}
	}
}

// TestParseShardDir: a directory name is a canonical shard ID only, so two
// directories never name one shard.
func TestParseShardDir(t *testing.T) {
	tests := []struct {
		name string
		want uint32
		ok   bool
	}{
		{"shardId-000000000003", 3, true},
		{"shardId-002147483647", 2147483647, true},
		{"shardId-3", 0, false},
		{"3", 0, false},
		{"x-000000000003", 0, false},
		{"shardId-0000000000003", 0, false},
		{"shardId-002147483648", 0, false},
		{"shardId-", 0, false},
		{"shardId-00000000000x", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseShardDir(tt.name)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseShardDir(%q) = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestStreamDir(t *testing.T) {
	tests := []struct {
		name      string
		createdNs int64
		dir       string
	}{
		{"orders", 1709294400000000000, "orders-17b8a23358908000"},
		{"a", 0, "a-0000000000000000"},
		{"with-dashes-0000000000000001", 1, "with-dashes-0000000000000001-0000000000000001"},
		{"x", math.MaxInt64, "x-7fffffffffffffff"},
		{"dots.and_under", 255, "dots.and_under-00000000000000ff"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			if got := StreamDir(tt.name, tt.createdNs); got != tt.dir {
				t.Fatalf("StreamDir(%q, %d) = %q, want %q", tt.name, tt.createdNs, got, tt.dir)
			}
			name, created, ok := ParseStreamDir(tt.dir)
			if !ok || name != tt.name || created != tt.createdNs {
				t.Fatalf("ParseStreamDir(%q) = %q, %d, %v", tt.dir, name, created, ok)
			}
		})
	}
}

func TestParseStreamDirRejects(t *testing.T) {
	for _, dir := range []string{
		"",
		"orders",
		"-0000000000000001",                         // no name
		"orders0000000000000001",                    // no '-'
		"orders-000000000000001",                    // 15 digits
		"orders_0000000000000001",                   // not '-'
		"orders-00000000000000001",                  // 17 digits: name "orders-" and a bad separator
		"orders-000000000000000G",                   // not hex
		"orders-000000000000000A",                   // uppercase: StreamDir never makes it
		"orders-8000000000000000",                   // above MaxInt64
		"orders-ffffffffffffffff",                   // above MaxInt64
		"orders- 000000000000001",                   // space
		"orders-+000000000000001",                   // sign
		"shardId-000000000003",                      // a shard directory
		"00000000000000000001-0000000000000001.seg", // a segment
	} {
		if name, created, ok := ParseStreamDir(dir); ok {
			t.Errorf("ParseStreamDir(%q) = %q, %d, true; want false", dir, name, created)
		}
	}
}

func TestIndexAndShardKey(t *testing.T) {
	key := IndexKey(StreamDir("orders", 1709294400000000000), 1)
	if key != "orders-17b8a23358908000/shardId-000000000001" {
		t.Fatalf("IndexKey = %q", key)
	}
	// FNV-64a reference values: the empty string is the offset basis, and
	// "a" is a published test vector. Segment headers on disk carry these,
	// so the hash must never change.
	tests := []struct {
		key  string
		want uint64
	}{
		{"", 0xcbf29ce484222325},
		{"a", 0xaf63dc4c8601ec8c},
	}
	for _, tt := range tests {
		if got := ShardKey(tt.key); got != tt.want {
			t.Errorf("ShardKey(%q) = %016x, want %016x", tt.key, got, tt.want)
		}
	}
	if ShardKey(key) == ShardKey(IndexKey(StreamDir("orders", 1709294400000000000), 2)) {
		t.Fatal("two shards of a stream share a shard key")
	}
}

func TestPaths(t *testing.T) {
	tests := []struct{ got, want string }{
		{LockPath("/d"), "/d/LOCK"},
		{MetaPath("/d"), "/d/meta.db"},
		{IndexPath("/d"), "/d/index.db"},
		{StreamsPath("/d"), "/d/streams"},
		{ShardPath("/d", "s-0000000000000001/shardId-000000000000"), "/d/streams/s-0000000000000001/shardId-000000000000"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
