package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// wantReason fails unless err is a *storage.Error of that kind and reason.
func wantReason(t *testing.T, what string, err error, kind error, r storage.Reason) *storage.Error {
	t.Helper()
	var se *storage.Error
	if !errors.As(err, &se) || !errors.Is(err, kind) || se.Reason != r {
		t.Fatalf("%s: %v, want %v / %q", what, err, kind, r)
	}
	return se
}

// TestConsumersEverywhere: consumers registered through one node are seen
// the same through every other, with single-node mode's lifecycle, limits
// and errors; gone channels close when a consumer goes; DeleteStream takes
// them along only when told to.
func TestConsumersEverywhere(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	// Only RegisterConsumer and DeregisterConsumer read ConsumerDelay, from
	// this goroutine: node 1 keeps consumers CREATING for long, node 3
	// briefly, node 2 not at all.
	c.node(1).setConsumerDelay(time.Hour)
	c.node(3).setConsumerDelay(200 * time.Millisecond)

	brief, err := c.node(3).RegisterConsumer(ctx, "s", "brief", map[string]string{"k": "v"})
	if err != nil || brief.Status != storage.ConsumerCreating {
		t.Fatalf("register through node 3: %+v, %v", brief, err)
	}
	eventually(t, "the consumer turns ACTIVE", func() error {
		got, err := c.node(1).DescribeConsumer(ctx, "s", "brief")
		if err == nil && got.Status != storage.ConsumerActive {
			err = fmt.Errorf("status %s", got.Status)
		}
		return err
	})
	for id := uint64(1); id <= 3; id++ {
		got, err := c.node(id).DescribeConsumer(ctx, "s", "brief")
		want := brief
		want.Status = storage.ConsumerActive
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("node %d describes %+v, %v; want %+v", id, got, err, want)
		}
	}
	_, err = c.node(2).RegisterConsumer(ctx, "s", "brief", nil)
	wantReason(t, "the same name again", err, storage.ErrResourceInUse, storage.ReasonConsumerExists)

	c.node(1).setConsumerDelay(3 * time.Second)
	start := time.Now()
	for i := range storage.MaxCreatingConsumers {
		if _, err := c.node(1).RegisterConsumer(ctx, "s", fmt.Sprintf("slow%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.node(2).RegisterConsumer(ctx, "s", "sixth", nil)
	if time.Since(start) < c.node(1).consumerDelay() { // else the machine was too slow to tell
		wantReason(t, "a sixth CREATING", err, storage.ErrLimitExceeded, storage.ReasonConsumersCreating)
	}
	eventually(t, "the slow consumers turn ACTIVE", func() error {
		list, err := c.node(3).ListConsumers(ctx, "s")
		for _, ci := range list {
			if err == nil && ci.Status != storage.ConsumerActive {
				err = fmt.Errorf("%s is %s", ci.Name, ci.Status)
			}
		}
		return err
	})
	c.node(1).setConsumerDelay(0)
	for i := 1 + storage.MaxCreatingConsumers; ; i++ {
		list, err := c.node(1).ListConsumers(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == storage.MaxConsumersPerStream {
			break
		}
		if _, err := c.node(uint64(i%3+1)).RegisterConsumer(ctx, "s", fmt.Sprintf("c%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.node(3).RegisterConsumer(ctx, "s", "one-too-many", nil)
	wantReason(t, "a 21st consumer", err, storage.ErrLimitExceeded, storage.ReasonConsumerLimit)
	list, err := c.node(2).ListConsumers(ctx, "s")
	if err != nil || len(list) != storage.MaxConsumersPerStream || list[0].Name != "brief" || list[1].Name != "slow0" {
		t.Fatalf("ListConsumers: %d consumers, %v", len(list), err)
	}

	c.node(3).setConsumerDelay(time.Hour)
	if err := c.node(3).DeregisterConsumer(ctx, "s", "slow0"); err != nil {
		t.Fatal(err)
	}
	err = c.node(2).DeregisterConsumer(ctx, "s", "slow0")
	wantReason(t, "deregister a DELETING consumer", err, storage.ErrResourceInUse, storage.ReasonConsumerNotActive)
	_, _, err = c.node(2).ActiveConsumer(ctx, "s", "slow0", list[1].Created)
	wantReason(t, "subscribe as a DELETING consumer", err, storage.ErrResourceInUse, storage.ReasonConsumerNotActive)
	_, _, err = c.node(2).ActiveConsumer(ctx, "s", "c6", list[6].Created.Add(-time.Second))
	wantReason(t, "another incarnation's ARN", err, storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound)
	_, gone, err := c.node(2).ActiveConsumer(ctx, "s", "c6", list[6].Created)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.node(1).DeregisterConsumer(ctx, "s", "c6"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(time.Minute): // only bounds a hung test
		t.Fatal("node 2's gone channel stayed open after the consumer was deregistered through node 1")
	}
	_, err = c.node(3).DescribeConsumer(ctx, "s", "c6")
	wantReason(t, "describe a deregistered consumer", err, storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound)
	again, err := c.node(2).RegisterConsumer(ctx, "s", "c6", nil)
	if err != nil || again.Created.Unix() == list[6].Created.Unix() {
		t.Fatalf("registered again: %+v (before %v), %v: the ARN must differ", again, list[6].Created, err)
	}

	err = c.node(3).DeleteStreamWith(ctx, "s", storage.DeleteOptions{})
	se := wantReason(t, "delete a stream with consumers", err, storage.ErrResourceInUse, storage.ReasonHasConsumers)
	if se.Current != storage.MaxConsumersPerStream-1 { // slow0, DELETING, does not count

		t.Fatalf("consumers counted: %d", se.Current)
	}
	if err := c.node(3).DeleteStreamWith(ctx, "s", storage.DeleteOptions{EnforceConsumerDeletion: true}); err != nil {
		t.Fatal(err)
	}
	_, err = c.node(1).ListConsumers(ctx, "s")
	wantReason(t, "consumers of a deleted stream", err, storage.ErrStreamNotFound, storage.ReasonStreamNotFound)
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 2)
	if list, err := c.node(2).ListConsumers(ctx, "s"); err != nil || len(list) != 0 {
		t.Fatalf("the stream created again lists %d consumers, %v", len(list), err)
	}
}
