package storage

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

func openChannelStore(t *testing.T, fs vfs.FS, dir string, c *clock) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, FS: fs, Now: c.now, ChannelDelay: time.Hour, IndexInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// createChannelSource creates a 2-shard ON_DEMAND stream, a channel's source.
func createChannelSource(t *testing.T, s *Store, name string) {
	t.Helper()
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: name, ShardCount: 2, Mode: ModeOnDemand}); err != nil {
		t.Fatal(err)
	}
}

var s3Config = ChannelConfig{RecordFormat: "JSON", BucketARN: "arn:aws:s3:::b", Compression: "NONE", FreshnessSecs: 300}

// advanceAll makes every pending channel transition whose time has come,
// as the timers would (they are an hour away here).
func advanceAll(s *Store) {
	for _, c := range mustChannels(s) {
		s.mu.RLock()
		st := s.streams[c.Stream]
		s.mu.RUnlock()
		s.advanceChannel(st, c.Name, c.ID)
	}
}

func mustChannels(s *Store) []ChannelInfo {
	cs, err := s.Channels(context.Background())
	if err != nil {
		panic(err)
	}
	return cs
}

// TestChannelLifecycle: CREATING → ACTIVE (progress at the tip of every
// open shard, so earlier records are not delivered) → UPDATING → ACTIVE →
// DELETING → gone, and the errors of each state.
func TestChannelLifecycle(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Now()}
	s := openChannelStore(t, vfs.NewMemFS(), t.TempDir(), c)
	defer s.Close()
	createChannelSource(t, s, "s")
	put(t, s, PutEntry{PartitionKey: "a", Data: []byte("{}")})
	info, err := s.CreateChannel(ctx, CreateChannelInput{Name: "ch", Stream: "s", Config: s3Config})
	if err != nil || info.Status != ChannelCreating || info.Progress != nil {
		t.Fatalf("create: %+v %v", info, err)
	}
	steps := []struct {
		name string
		do   func() error
		want ChannelStatus // "" means gone
		kind error         // of a further Update and Delete in this state, nil if allowed
	}{
		{"created", func() error { return nil }, ChannelCreating, ErrResourceInUse},
		{"active", func() error { advanceAll(s); return nil }, ChannelActive, nil},
		{"updating", func() error {
			n := 600
			_, err := s.UpdateChannel(ctx, "ch", ChannelUpdate{FreshnessSecs: &n})
			return err
		}, ChannelUpdating, ErrResourceInUse},
		{"active again", func() error { advanceAll(s); return nil }, ChannelActive, nil},
		{"deleting", func() error { return s.DeleteChannel(ctx, "ch") }, ChannelDeleting, ErrResourceInUse},
		{"gone", func() error { advanceAll(s); return nil }, "", ErrChannelNotFound},
	}
	for _, step := range steps {
		c.t = c.t.Add(2 * time.Hour)
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got, err := s.DescribeChannel(ctx, "ch")
		switch {
		case step.want == "" && !errors.Is(err, ErrChannelNotFound):
			t.Fatalf("%s: describe = %+v, %v; want not found", step.name, got, err)
		case step.want != "" && (err != nil || got.Status != step.want):
			t.Fatalf("%s: describe = %+v, %v; want %s", step.name, got, err, step.want)
		}
		if step.kind != nil {
			if _, err := s.UpdateChannel(ctx, "ch", ChannelUpdate{}); !errors.Is(err, step.kind) {
				t.Fatalf("%s: update = %v, want %v", step.name, err, step.kind)
			}
			if err := s.DeleteChannel(ctx, "ch"); !errors.Is(err, step.kind) {
				t.Fatalf("%s: delete = %v, want %v", step.name, err, step.kind)
			}
		}
		if step.want == ChannelActive {
			p := got.Progress
			if p == nil || len(p.Shards) != 2 || p.Shards["shardId-000000000000"] == "" {
				t.Fatalf("%s: progress %+v", step.name, p)
			}
		}
	}
}

// TestCreateChannelErrors: the name is unique in the account, a stream has
// at most one channel, PROVISIONED streams are refused, and a stream with a
// channel cannot be deleted.
func TestCreateChannelErrors(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Now()}
	s := openChannelStore(t, vfs.NewMemFS(), t.TempDir(), c)
	defer s.Close()
	createChannelSource(t, s, "a")
	createChannelSource(t, s, "b")
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "p", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateChannel(ctx, CreateChannelInput{Name: "ch", Stream: "a", Config: s3Config}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, channel, stream string
		kind                  error
		reason                Reason
	}{
		{"name taken on another stream", "ch", "b", ErrResourceInUse, ReasonChannelExists},
		{"second channel of a stream", "ch2", "a", ErrLimitExceeded, ReasonChannelLimit},
		{"provisioned stream", "ch3", "p", ErrInvalidArgument, ReasonChannelMode},
		{"missing stream", "ch4", "nope", ErrStreamNotFound, ReasonStreamNotFound},
	}
	for _, tc := range tests {
		_, err := s.CreateChannel(ctx, CreateChannelInput{Name: tc.channel, Stream: tc.stream, Config: s3Config})
		var se *Error
		if !errors.As(err, &se) || se.Kind != tc.kind || se.Reason != tc.reason {
			t.Errorf("%s: %v, want %v/%s", tc.name, err, tc.kind, tc.reason)
		}
	}
	err := s.DeleteStreamWith(ctx, "a", DeleteOptions{EnforceConsumerDeletion: true})
	var se *Error
	if !errors.As(err, &se) || se.Reason != ReasonHasChannels {
		t.Fatalf("delete a stream with a channel: %v", err)
	}
}

// TestChannelSurvivesRestart: a channel and its pending transition are in
// meta.db; a CREATING channel whose delay passed while the server was down
// turns ACTIVE after Open.
func TestChannelSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	fs, dir := vfs.NewMemFS(), t.TempDir()
	c := &clock{time.Now()}
	s := openChannelStore(t, fs, dir, c)
	createChannelSource(t, s, "s")
	in := CreateChannelInput{Name: "ch", Stream: "s", Config: s3Config, Tags: map[string]string{"k": "v"}}
	created, err := s.CreateChannel(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.t = c.t.Add(2 * time.Hour)
	s = openChannelStore(t, fs, dir, c)
	defer s.Close()
	for { // the resumed transition runs on a timer that is due at once
		got, err := s.DescribeChannel(ctx, "ch")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == ChannelActive {
			if got.ID != created.ID || got.Tags["k"] != "v" || got.Config != s3Config || !got.Created.Equal(created.Created) {
				t.Fatalf("after restart: %+v, created %+v", got, created)
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
}
