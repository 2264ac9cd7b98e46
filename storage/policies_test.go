package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestResourcePolicies: policies survive a restart, go with their consumer
// and their stream, and a consumer ARN's creation second must match.
func TestResourcePolicies(t *testing.T) {
	ctx := context.Background()
	r := newConsumerRig(t, 0)
	c := r.register("c1")
	stream := PolicyTarget{Stream: "s", ConsumerSecs: -1}
	consumer := PolicyTarget{Stream: "s", Consumer: "c1", ConsumerSecs: c.Created.Unix()}
	get := func(tg PolicyTarget) string {
		t.Helper()
		p, err := r.s.ResourcePolicy(ctx, tg)
		if err != nil {
			t.Fatalf("ResourcePolicy(%+v): %v", tg, err)
		}
		return p
	}
	if p := get(stream); p != "" {
		t.Fatalf("new stream has policy %q", p)
	}
	if err := r.s.SetResourcePolicy(ctx, stream, `{"s":1}`); err != nil {
		t.Fatal(err)
	}
	if err := r.s.SetResourcePolicy(ctx, consumer, `{"c":1}`); err != nil {
		t.Fatal(err)
	}
	stale := consumer
	stale.ConsumerSecs--
	wantConsumerErr(t, r.s.SetResourcePolicy(ctx, stale, `{}`), ErrConsumerNotFound, ReasonConsumerNotFound)
	r.reopen()
	if get(stream) != `{"s":1}` || get(consumer) != `{"c":1}` {
		t.Fatalf("after reopen: stream %q consumer %q", get(stream), get(consumer))
	}
	if err := r.s.DeregisterConsumer(ctx, "s", "c1"); err != nil {
		t.Fatal(err)
	}
	r.waitStatus("c1", "")
	c2 := r.register("c1")
	if p := get(PolicyTarget{Stream: "s", Consumer: "c1", ConsumerSecs: c2.Created.Unix()}); p != "" {
		t.Fatalf("re-registered consumer has policy %q", p)
	}
	if err := r.s.SetResourcePolicy(ctx, stream, ""); err != nil {
		t.Fatal(err)
	}
	if p := get(stream); p != "" {
		t.Fatalf("deleted policy is %q", p)
	}
	if err := r.s.SetResourcePolicy(ctx, stream, `{"s":2}`); err != nil {
		t.Fatal(err)
	}
	if err := r.s.DeleteStream(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := r.s.ResourcePolicy(ctx, stream)
		if errors.Is(err, ErrStreamNotFound) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := r.s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if p := get(stream); p != "" {
		t.Fatalf("recreated stream has policy %q", p)
	}
}
