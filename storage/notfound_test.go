package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// The not-found wording of shard-addressed operations and the order of
// their checks (aws-fidelity.md A5-A7), the tag checks' place (A9) and a
// stream deleted while CREATING (F3).

func openDelayed(t *testing.T, fs vfs.FS, dir string, opts Options) *Store {
	t.Helper()
	opts.Dir, opts.FS, opts.IndexInterval = dir, fs, time.Millisecond
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantReason checks err's kind, reason and facts (the account is the
// store's default, "000000000000").
func wantReason(t *testing.T, err, kind error, r Reason, f Facts) {
	t.Helper()
	f.Account = "000000000000"
	var e *Error
	if !errors.Is(err, kind) || !errors.As(err, &e) || e.Reason != r || e.Facts != f {
		t.Fatalf("error %v, want %v: %s %+v", err, kind, r, f)
	}
}

func TestShardNotFoundOrder(t *testing.T) {
	ctx := context.Background()
	s := openDelayed(t, vfs.NewMemFS(), t.TempDir(), Options{CreateDelay: time.Hour, DeleteDelay: time.Hour})
	defer s.Close()
	for _, name := range []string{"creating", "deleting"} {
		mustCreate(t, s, name, 2)
	}
	if err := s.DeleteStream(ctx, "deleting"); err != nil {
		t.Fatal(err)
	}
	gone := func(stream, shard string) Facts { return Facts{Stream: stream, Shard: shard} }
	bad := func(stream, given string) Facts { return Facts{Stream: stream, Given: given} }
	tests := []struct {
		stream, id string
		r          Reason
		f          Facts
	}{
		{"nope", "ABKLFD8", ReasonBadShardID, bad("nope", "ABKLFD8")},
		{"nope", "shardId-002147483648", ReasonBadShardID, bad("nope", "shardId-002147483648")},
		{"creating", "2.14E4", ReasonBadShardID, bad("creating", "2.14E4")},
		{"nope", "-00002147483647", ReasonShardGone, gone("nope", "shardId-002147483647")},
		{"nope", "a-00002147483647", ReasonShardGone, gone("nope", "shardId-002147483647")},
		{"creating", "shardId-0", ReasonShardGone, gone("creating", "shardId-000000000000")},
		{"deleting", "1", ReasonShardGone, gone("deleting", "shardId-000000000001")},
	}
	for _, tc := range tests {
		t.Run(tc.stream+"/"+tc.id, func(t *testing.T) {
			_, err := s.Position(ctx, tc.stream, tc.id, TrimHorizon, "", time.Time{})
			wantReason(t, err, ErrShardNotFound, tc.r, tc.f)
		})
	}
}

func TestReshardNotFoundOrder(t *testing.T) {
	ctx := context.Background()
	s := openDelayed(t, vfs.NewMemFS(), t.TempDir(), Options{CreateDelay: time.Hour})
	defer s.Close()
	mustCreate(t, s, "creating", 2)
	tests := []struct {
		name string
		call func() error
		kind error
		r    Reason
		f    Facts
	}{
		{"merge, missing stream, bad adjacent", func() error { return s.MergeShards(ctx, "nope", "x-0", "2147483648") },
			ErrShardNotFound, ReasonBadShardID, Facts{Stream: "nope", Given: "2147483648"}},
		{"merge, missing stream, bad first", func() error { return s.MergeShards(ctx, "nope", "2.14E4", "x") },
			ErrShardNotFound, ReasonBadShardID, Facts{Stream: "nope", Given: "2.14E4"}},
		{"split, missing stream, bad id", func() error { return s.SplitShard(ctx, "nope", "shardId-002147483648", "2") },
			ErrShardNotFound, ReasonBadShardID, Facts{Stream: "nope", Given: "shardId-002147483648"}},
		{"split, CREATING, bad id", func() error { return s.SplitShard(ctx, "creating", "ABKLFD8", "2") },
			ErrShardNotFound, ReasonBadShardID, Facts{Stream: "creating", Given: "ABKLFD8"}},
		{"merge, missing stream", func() error { return s.MergeShards(ctx, "nope", "0", "1") },
			ErrStreamNotFound, ReasonStreamNotFound, Facts{Stream: "nope"}},
		{"split, CREATING, absent shard", func() error { return s.SplitShard(ctx, "creating", "7", "2") },
			ErrResourceInUse, ReasonNotActive, Facts{Stream: "creating", State: StatusCreating}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantReason(t, tc.call(), tc.kind, tc.r, tc.f) })
	}
}

// TestReadOfAGoneStreamNamesTheShard: GetRecords with an iterator of a
// stream deleted, or deleted and created again, names the iterator's shard.
func TestReadOfAGoneStreamNamesTheShard(t *testing.T) {
	ctx := context.Background()
	s := openDelayed(t, vfs.NewMemFS(), t.TempDir(), Options{})
	defer s.Close()
	mustCreate(t, s, "r", 2)
	pos0, err := s.Position(ctx, "r", "0", TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	pos1, err := s.Position(ctx, "r", "1", TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		setup func()
		pos   Position
		shard string
	}{
		{"deleted", func() { mustDelete(t, s, "r") }, pos0, "shardId-000000000000"},
		{"created again", func() { mustCreate(t, s, "r", 1) }, pos0, "shardId-000000000000"},
		{"created again with fewer shards", nil, pos1, "shardId-000000000001"},
	}
	for _, st := range steps {
		if st.setup != nil {
			st.setup()
		}
		_, err := s.Read(ctx, st.pos, 10, 1<<20)
		wantReason(t, err, ErrShardNotFound, ReasonShardGone, Facts{Stream: "r", Shard: st.shard})
	}
}

func mustDelete(t *testing.T, s *Store, name string) {
	t.Helper()
	if err := s.DeleteStream(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// TestDeletedWhileCreatingHasNoShards: such a stream lists no shards while
// DELETING, also after a restart; a stream deleted once ACTIVE lists its
// shards.
func TestDeletedWhileCreatingHasNoShards(t *testing.T) {
	ctx := context.Background()
	fs, dir := vfs.NewMemFS(), t.TempDir()
	s := openDelayed(t, fs, dir, Options{CreateDelay: time.Hour, DeleteDelay: time.Hour})
	mustCreate(t, s, "c", 2)
	mustDelete(t, s, "c")
	check := func(s *Store, name string, shards int) {
		t.Helper()
		info, err := s.DescribeStream(ctx, name)
		if err != nil || info.Status != StatusDeleting || len(info.Shards) != shards {
			t.Fatalf("%s: %v, %+v", name, err, info)
		}
	}
	check(s, "c", 0)
	s.Close()
	s = openDelayed(t, fs, dir, Options{DeleteDelay: time.Hour})
	defer s.Close()
	check(s, "c", 0)
	mustCreate(t, s, "a", 2)
	mustDelete(t, s, "a")
	check(s, "a", 2)
}

// TestTagCheckAfterLookup: AddTags and RemoveTags run the caller's check
// once the stream is found (so a missing stream wins), before the status
// and the 50-tag limit, and store nothing when it fails.
func TestTagCheckAfterLookup(t *testing.T) {
	ctx := context.Background()
	s := openDelayed(t, vfs.NewMemFS(), t.TempDir(), Options{})
	defer s.Close()
	mustCreate(t, s, "s", 1)
	full := map[string]string{}
	for i := range MaxTagsPerStream {
		full[fmt.Sprintf("t%02d", i)] = ""
	}
	if err := s.AddTags(ctx, "s", full, nil); err != nil {
		t.Fatal(err)
	}
	errBad := errors.New("bad characters")
	calls := 0
	check := func() error { calls++; return errBad }
	if err := s.AddTags(ctx, "nope", map[string]string{"k": "v"}, check); !errors.Is(err, ErrStreamNotFound) || calls != 0 {
		t.Fatalf("missing stream: %v, %d calls", err, calls)
	}
	if err := s.RemoveTags(ctx, "nope", []string{"k"}, check); !errors.Is(err, ErrStreamNotFound) || calls != 0 {
		t.Fatalf("missing stream: %v, %d calls", err, calls)
	}
	if err := s.AddTags(ctx, "s", map[string]string{"new": "v"}, check); err != errBad {
		t.Fatalf("check before the tag limit: %v", err)
	}
	if err := s.RemoveTags(ctx, "s", []string{"t00"}, check); err != errBad {
		t.Fatalf("remove: %v", err)
	}
	info, _ := s.DescribeStream(ctx, "s")
	if len(info.Tags) != MaxTagsPerStream || calls != 2 {
		t.Fatalf("tags changed by refused calls: %d tags, %d calls", len(info.Tags), calls)
	}
	err := s.AddTags(ctx, "s", map[string]string{"new": "v"}, func() error { return nil })
	wantReason(t, err, ErrInvalidArgument, ReasonTooManyTags, Facts{Stream: "s", Limit: MaxTagsPerStream})
}
