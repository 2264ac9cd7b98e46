package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// consumerRig is a store on a MemFS and a real directory, with a real clock
// (the consumer delays run on timers), reopenable.
type consumerRig struct {
	t    *testing.T
	fs   vfs.FS
	dir  string
	opts Options
	s    *Store
}

func newConsumerRig(t *testing.T, delay time.Duration) *consumerRig {
	t.Helper()
	r := &consumerRig{t: t, fs: vfs.NewMemFS(), dir: t.TempDir(), opts: Options{ConsumerDelay: delay, IndexInterval: time.Millisecond}}
	r.open()
	t.Cleanup(func() { r.s.Close() })
	if err := r.s.CreateStream(context.Background(), CreateStreamInput{Name: "s", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *consumerRig) open() {
	r.t.Helper()
	o := r.opts
	o.Dir, o.FS = r.dir, r.fs
	s, err := Open(context.Background(), o)
	if err != nil {
		r.t.Fatal(err)
	}
	r.s = s
}

func (r *consumerRig) reopen() {
	r.t.Helper()
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

func (r *consumerRig) register(name string) ConsumerInfo {
	r.t.Helper()
	c, err := r.s.RegisterConsumer(context.Background(), "s", name, nil)
	if err != nil {
		r.t.Fatalf("register %s: %v", name, err)
	}
	return c
}

// waitStatus waits (bounded by the test's timeout) until the consumer is in
// status want; want "" waits until it is gone.
func (r *consumerRig) waitStatus(name string, want ConsumerStatus) {
	r.t.Helper()
	for {
		c, err := r.s.DescribeConsumer(context.Background(), "s", name)
		switch {
		case want == "" && errors.Is(err, ErrConsumerNotFound):
			return
		case err != nil && want != "":
			r.t.Fatalf("describe %s: %v", name, err)
		case err == nil && c.Status == want:
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func wantConsumerErr(t *testing.T, err error, kind error, reason Reason) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || !errors.Is(err, kind) || se.Reason != reason {
		t.Fatalf("got %v, want %v / %q", err, kind, reason)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestConsumerLifecycle: CREATING, then ACTIVE after the delay; ActiveConsumer
// resolves only then; deregistration closes gone at once (DELETING), and the
// consumer disappears after the delay.
func TestConsumerLifecycle(t *testing.T) {
	r := newConsumerRig(t, 20*time.Millisecond)
	ctx := context.Background()
	c := r.register("c1")
	if c.Status != ConsumerCreating || c.Name != "c1" || c.Stream != "s" {
		t.Fatalf("registered %+v", c)
	}
	_, _, err := r.s.ActiveConsumer(ctx, "s", "c1", c.Created)
	wantConsumerErr(t, err, ErrResourceInUse, ReasonConsumerNotActive)
	r.waitStatus("c1", ConsumerActive)
	got, gone, err := r.s.ActiveConsumer(ctx, "s", "c1", c.Created)
	if err != nil || got.Status != ConsumerActive || !got.Created.Equal(c.Created) || isClosed(gone) {
		t.Fatalf("ActiveConsumer: %+v %v closed=%v", got, err, isClosed(gone))
	}
	if err := r.s.DeregisterConsumer(ctx, "s", "c1"); err != nil {
		t.Fatal(err)
	}
	if !isClosed(gone) {
		t.Fatal("gone still open after DeregisterConsumer")
	}
	d, err := r.s.DescribeConsumer(ctx, "s", "c1")
	if err != nil || d.Status != ConsumerDeleting {
		t.Fatalf("after deregister: %+v %v", d, err)
	}
	wantConsumerErr(t, r.s.DeregisterConsumer(ctx, "s", "c1"), ErrResourceInUse, ReasonConsumerNotActive)
	r.waitStatus("c1", "")
	wantConsumerErr(t, r.s.DeregisterConsumer(ctx, "s", "c1"), ErrConsumerNotFound, ReasonConsumerNotFound)
}

func TestConsumerLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("20 per stream", func(t *testing.T) {
		r := newConsumerRig(t, 0)
		for i := range MaxConsumersPerStream {
			if c := r.register(fmt.Sprintf("c%02d", i)); c.Status != ConsumerActive {
				t.Fatalf("with no delay %s is %s", c.Name, c.Status)
			}
		}
		_, err := r.s.RegisterConsumer(ctx, "s", "one-more", nil)
		wantConsumerErr(t, err, ErrLimitExceeded, ReasonConsumerLimit)
		list, err := r.s.ListConsumers(ctx, "s")
		if err != nil || len(list) != MaxConsumersPerStream || list[0].Name != "c00" || list[19].Name != "c19" {
			t.Fatalf("list: %d %v", len(list), err)
		}
	})
	t.Run("5 creating", func(t *testing.T) {
		r := newConsumerRig(t, time.Hour)
		for i := range MaxCreatingConsumers {
			r.register(fmt.Sprintf("c%d", i))
		}
		_, err := r.s.RegisterConsumer(ctx, "s", "sixth", nil)
		wantConsumerErr(t, err, ErrLimitExceeded, ReasonConsumersCreating)
	})
	t.Run("duplicate name", func(t *testing.T) {
		r := newConsumerRig(t, time.Hour)
		r.register("dup")
		_, err := r.s.RegisterConsumer(ctx, "s", "dup", nil)
		wantConsumerErr(t, err, ErrResourceInUse, ReasonConsumerExists)
	})
}

func TestConsumerLookups(t *testing.T) {
	r := newConsumerRig(t, 0)
	ctx := context.Background()
	c := r.register("c")
	tests := []struct {
		name          string
		stream, cname string
		created       time.Time
		kind          error
		reason        Reason
	}{
		{"other second", "s", "c", c.Created.Add(time.Second), ErrConsumerNotFound, ReasonConsumerNotFound},
		{"other name", "s", "d", c.Created, ErrConsumerNotFound, ReasonConsumerNotFound},
		{"no stream", "nope", "c", c.Created, ErrStreamNotFound, ReasonStreamNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := r.s.ActiveConsumer(ctx, tt.stream, tt.cname, tt.created)
			wantConsumerErr(t, err, tt.kind, tt.reason)
		})
	}
	_, err := r.s.DescribeConsumer(ctx, "s", "d")
	wantConsumerErr(t, err, ErrConsumerNotFound, ReasonConsumerNotFound)
	_, err = r.s.RegisterConsumer(ctx, "nope", "c", nil)
	wantConsumerErr(t, err, ErrStreamNotFound, ReasonStreamNotFound)
	_, err = r.s.ListConsumers(ctx, "nope")
	wantConsumerErr(t, err, ErrStreamNotFound, ReasonStreamNotFound)
}

// TestConsumerReRegisteredGetsNewSecond: a consumer deregistered and
// registered again in the same second gets a later creation second, so the
// old ARN does not resolve to the new consumer.
func TestConsumerReRegisteredGetsNewSecond(t *testing.T) {
	r := newConsumerRig(t, 0)
	ctx := context.Background()
	seen := map[int64]bool{}
	for range 3 {
		c := r.register("c")
		if seen[c.Created.Unix()] {
			t.Fatalf("creation second %d given twice", c.Created.Unix())
		}
		seen[c.Created.Unix()] = true
		if err := r.s.DeregisterConsumer(ctx, "s", "c"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConsumerTagsStored(t *testing.T) {
	r := newConsumerRig(t, 0)
	if _, err := r.s.RegisterConsumer(context.Background(), "s", "c", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	r.reopen()
	c, err := r.s.DescribeConsumer(context.Background(), "s", "c")
	if err != nil || c.Tags["k"] != "v" {
		t.Fatalf("%+v %v", c, err)
	}
}

// TestConsumersSurviveRestart: consumers, their states and creation times
// are in meta.db; a CREATING consumer's pending change resumes at Open.
func TestConsumersSurviveRestart(t *testing.T) {
	r := newConsumerRig(t, time.Hour)
	a := r.register("a")
	r.reopen()
	got, err := r.s.DescribeConsumer(context.Background(), "s", "a")
	if err != nil || got.Status != ConsumerCreating || !got.Created.Equal(a.Created) {
		t.Fatalf("after restart: %+v %v (registered %+v)", got, err, a)
	}
	r.s.Close()
	r.opts.ConsumerDelay = 0 // its time has passed; the restart finishes it
	r.opts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	r.open()
	r.waitStatus("a", ConsumerActive)
}

func TestStreamDeletionAndConsumers(t *testing.T) {
	ctx := context.Background()
	r := newConsumerRig(t, 0)
	c := r.register("c")
	_, gone, err := r.s.ActiveConsumer(ctx, "s", "c", c.Created)
	if err != nil {
		t.Fatal(err)
	}
	wantConsumerErr(t, r.s.DeleteStreamWith(ctx, "s", DeleteOptions{}), ErrResourceInUse, ReasonHasConsumers)
	if isClosed(gone) {
		t.Fatal("refused deletion closed gone")
	}
	if err := r.s.DeleteStreamWith(ctx, "s", DeleteOptions{EnforceConsumerDeletion: true}); err != nil {
		t.Fatal(err)
	}
	if !isClosed(gone) {
		t.Fatal("gone still open after DeleteStream")
	}
	if err := r.s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if list, err := r.s.ListConsumers(ctx, "s"); err != nil || len(list) != 0 {
		t.Fatalf("re-created stream lists %v %v", list, err)
	}
	// A stream whose only consumer is DELETING may be deleted without enforcement.
	r.opts.ConsumerDelay = time.Hour
	r.reopen()
	r.s.opts.ConsumerDelay = 0
	r.register("d")
	r.s.opts.ConsumerDelay = time.Hour
	if err := r.s.DeregisterConsumer(ctx, "s", "d"); err != nil {
		t.Fatal(err)
	}
	if err := r.s.DeleteStreamWith(ctx, "s", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestGoneClosesWithStore(t *testing.T) {
	r := newConsumerRig(t, 0)
	c := r.register("c")
	_, gone, err := r.s.ActiveConsumer(context.Background(), "s", "c", c.Created)
	if err != nil {
		t.Fatal(err)
	}
	r.reopen()
	if !isClosed(gone) {
		t.Fatal("gone still open after Close")
	}
}

// TestConsumersSurviveReshard: a reshard taking effect commits the record it
// computed when it began; consumers registered before it are kept.
func TestConsumersSurviveReshard(t *testing.T) {
	r := newConsumerRig(t, 0)
	ctx := context.Background()
	r.register("c")
	if err := r.s.SplitShard(ctx, "s", "shardId-000000000000", "1000"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.DescribeConsumer(ctx, "s", "c"); err != nil {
		t.Fatalf("after split: %v", err)
	}
}

func TestRegisterNeedsActiveStream(t *testing.T) {
	r := newConsumerRig(t, 0)
	ctx := context.Background()
	r.s.opts.CreateDelay = time.Hour
	if err := r.s.CreateStream(ctx, CreateStreamInput{Name: "new", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := r.s.RegisterConsumer(ctx, "new", "c", nil)
	wantConsumerErr(t, err, ErrResourceInUse, ReasonNotActive)
	_, err = r.s.ListConsumers(ctx, "new")
	wantConsumerErr(t, err, ErrResourceInUse, ReasonNotActive)
}
