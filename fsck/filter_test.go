package fsck_test

import (
	"path"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/fsck"
)

// TestShardFilterIDs: --shard takes a shard ID by AWS's rule
// (datadir.ParseShardID), canonical or not.
func TestShardFilterIDs(t *testing.T) {
	f := newFixture(t, defaultStreams)
	tests := []struct {
		shard string
		ok    bool
	}{
		{"shardId-000000000001", true},
		{"1", true},
		{"shardId-1", true},
		{"x-00001", true},
		{"shardId-x", false},
		{"shardId-", false},
		{"2147483648", false},
		{"1.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.shard, func(t *testing.T) {
			o := f.opts()
			o.Stream, o.Shard = "orders", tt.shard
			rep, err := fsck.Verify(o)
			if !tt.ok {
				if err == nil {
					t.Fatal("a bad shard ID should fail")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Shards) != 1 || !strings.HasSuffix(rep.Shards[0].Dir, "/shardId-000000000001") {
				t.Fatalf("filtered verify checked %+v", rep.Shards)
			}
		})
	}
}

// TestNonCanonicalShardDir: only a directory named exactly as the server
// names shards (datadir.ShardID) is a shard's; "shardId-1" is a stray
// directory, not a second name of shard 1.
func TestNonCanonicalShardDir(t *testing.T) {
	f := newFixture(t, defaultStreams)
	rel := path.Join(path.Dir(f.shardDirs()[0]), "shardId-1")
	if err := f.fs.MkdirAll(f.abs(rel)); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f.opts())
	if len(rep.Problems) != 1 || rep.Problems[0].Code != fsck.WStrayFile || rep.Problems[0].File != rel {
		t.Fatalf("want one W_STRAY_FILE for %s:\n%s", rel, text(t, rep))
	}
}
