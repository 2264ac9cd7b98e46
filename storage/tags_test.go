package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
)

// TestResourceTags: a stream's tags by resource are its AddTags tags; a
// consumer's start as RegisterConsumer's, change alone, survive a reopen,
// and are capped at 50; a consumer ARN's creation second must match.
func TestResourceTags(t *testing.T) {
	ctx := context.Background()
	r := newConsumerRig(t, 0)
	c, err := r.s.RegisterConsumer(ctx, "s", "c", map[string]string{"from": "register"})
	if err != nil {
		t.Fatal(err)
	}
	stream := PolicyTarget{Stream: "s", ConsumerSecs: -1}
	consumer := PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: c.Created.Unix()}
	tags := func(tg PolicyTarget) map[string]string {
		t.Helper()
		m, err := r.s.ResourceTags(ctx, tg)
		if err != nil {
			t.Fatalf("ResourceTags(%+v): %v", tg, err)
		}
		return m
	}
	if err := r.s.AddTags(ctx, "s", map[string]string{"a": "1"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.s.TagResource(ctx, stream, map[string]string{"b": "2"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.s.TagResource(ctx, consumer, map[string]string{"x": "1", "y": "2"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.s.UntagResource(ctx, consumer, []string{"y", "absent"}, nil); err != nil {
		t.Fatal(err)
	}
	r.reopen()
	if got, want := tags(stream), map[string]string{"a": "1", "b": "2"}; !maps.Equal(got, want) {
		t.Fatalf("stream tags %v, want %v", got, want)
	}
	if got, want := tags(consumer), map[string]string{"from": "register", "x": "1"}; !maps.Equal(got, want) {
		t.Fatalf("consumer tags %v, want %v", got, want)
	}
	if info, _ := r.s.DescribeConsumer(ctx, "s", "c"); !maps.Equal(info.Tags, tags(consumer)) {
		t.Fatalf("DescribeConsumer's tags %v", info.Tags)
	}

	many := map[string]string{}
	for i := range MaxTagsPerConsumer - 1 { // with "from" and "x": one too many
		many[fmt.Sprint("k", i)] = ""
	}
	wantConsumerErr(t, r.s.TagResource(ctx, consumer, many, nil), ErrInvalidArgument, ReasonTooManyConsumerTags)
	delete(many, "k0")
	if err := r.s.TagResource(ctx, consumer, many, nil); err != nil {
		t.Fatalf("50 tags: %v", err)
	}

	stale := consumer
	stale.ConsumerSecs--
	_, err = r.s.ResourceTags(ctx, stale)
	wantConsumerErr(t, err, ErrConsumerNotFound, ReasonConsumerNotFound)
	missing := PolicyTarget{Stream: "nope", ConsumerSecs: -1}
	wantConsumerErr(t, r.s.TagResource(ctx, missing, many, nil), ErrStreamNotFound, ReasonStreamNotFound)
}

// TestResourceTagCheckOrder: the caller's check runs once the stream and
// the consumer are found, before the stream's status and the tag limit.
func TestResourceTagCheckOrder(t *testing.T) {
	ctx := context.Background()
	r := newConsumerRig(t, 0)
	c := r.register("c")
	bad := errors.New("bad characters")
	check := func() error { return bad }
	tests := []struct {
		name string
		tg   PolicyTarget
		want error
	}{
		{"missing stream", PolicyTarget{Stream: "nope", ConsumerSecs: -1}, ErrStreamNotFound},
		{"missing consumer", PolicyTarget{Stream: "s", Consumer: "other", ConsumerSecs: -1}, ErrConsumerNotFound},
		{"stale consumer", PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: c.Created.Unix() + 1}, ErrConsumerNotFound},
		{"consumer", PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: c.Created.Unix()}, bad},
		{"stream", PolicyTarget{Stream: "s", ConsumerSecs: -1}, bad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.s.TagResource(ctx, tc.tg, map[string]string{"k": "v"}, check); !errors.Is(err, tc.want) {
				t.Errorf("TagResource: %v, want %v", err, tc.want)
			}
			if err := r.s.UntagResource(ctx, tc.tg, []string{"k"}, check); !errors.Is(err, tc.want) {
				t.Errorf("UntagResource: %v, want %v", err, tc.want)
			}
		})
	}
}
