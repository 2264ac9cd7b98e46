package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// settingsClock is a cluster's clock that the test moves forward, so an
// UPDATING period ends when the test says, not after a sleep.
type settingsClock struct{ offset atomic.Int64 }

func (c *settingsClock) now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *settingsClock) add(d time.Duration) { c.offset.Add(int64(d)) }

var errCheck = errors.New("the request's tag check")

func failingCheck() error { return errCheck }

// TestSettingsErrors: the settings operations answer single-node mode's
// errors, in its order, through any node.
func TestSettingsErrors(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	ci, err := c.node(2).RegisterConsumer(ctx, "s", "c", nil)
	if err != nil {
		t.Fatal(err)
	}
	full := map[string]string{}
	for i := range storage.MaxTagsPerStream {
		full[fmt.Sprint("k", i)] = "v"
	}
	if err := c.node(3).AddTags(ctx, "s", full, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.node(3).TagResource(ctx, storage.PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: -1}, full, nil); err != nil {
		t.Fatal(err)
	}
	missing := storage.PolicyTarget{Stream: "nope", ConsumerSecs: -1}
	noConsumer := storage.PolicyTarget{Stream: "s", Consumer: "other", ConsumerSecs: -1}
	oldConsumer := storage.PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: ci.Created.Unix() - 1}
	consumer := storage.PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: ci.Created.Unix()}
	for _, tc := range []struct {
		name   string
		call   func(n *Node) error
		kind   error
		reason storage.Reason
	}{
		{"AddTags to a missing stream, before the check", func(n *Node) error { return n.AddTags(ctx, "nope", map[string]string{"a": "b"}, failingCheck) },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"RemoveTags of a missing stream", func(n *Node) error { return n.RemoveTags(ctx, "nope", []string{"a"}, nil) },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"a 51st tag", func(n *Node) error { return n.AddTags(ctx, "s", map[string]string{"new": "v"}, nil) },
			storage.ErrInvalidArgument, storage.ReasonTooManyTags},
		{"a consumer's 51st tag", func(n *Node) error { return n.TagResource(ctx, consumer, map[string]string{"new": "v"}, nil) },
			storage.ErrInvalidArgument, storage.ReasonTooManyConsumerTags},
		{"TagResource of a missing consumer, before the check", func(n *Node) error { return n.TagResource(ctx, noConsumer, nil, failingCheck) },
			storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound},
		{"UntagResource of another incarnation", func(n *Node) error { return n.UntagResource(ctx, oldConsumer, []string{"k1"}, nil) },
			storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound},
		{"ResourceTags of a missing stream", func(n *Node) error { _, err := n.ResourceTags(ctx, missing); return err },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"ResourcePolicy of a missing consumer", func(n *Node) error { _, err := n.ResourcePolicy(ctx, noConsumer); return err },
			storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound},
		{"SetResourcePolicy of a missing stream", func(n *Node) error { return n.SetResourcePolicy(ctx, missing, "{}") },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"SetResourcePolicy of a missing consumer", func(n *Node) error { return n.SetResourcePolicy(ctx, noConsumer, "{}") },
			storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound},
		{"monitoring of a missing stream", func(n *Node) error {
			_, err := n.SetShardLevelMetrics(ctx, "nope", []string{"IncomingBytes"}, true)
			return err
		}, storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"UpdateMaxRecordSize of a missing stream", func(n *Node) error { return n.UpdateMaxRecordSize(ctx, "nope", 2048) },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"AUTO distribution of a PROVISIONED stream", func(n *Node) error { return n.SetRecordDistribution(ctx, "s", storage.DistributionAuto) },
			storage.ErrInvalidArgument, storage.ReasonAutoProvisioned},
		{"distribution of a missing stream", func(n *Node) error { return n.SetRecordDistribution(ctx, "nope", storage.DistributionUserKey) },
			storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for id := uint64(1); id <= 3; id++ {
				se := wantReason(t, fmt.Sprintf("node %d", id), tc.call(c.node(id)), tc.kind, tc.reason)
				if se.Account != "123456789012" {
					t.Fatalf("account %q", se.Account)
				}
			}
		})
	}
	for _, call := range []func() error{
		func() error { return c.node(1).AddTags(ctx, "s", map[string]string{"k1": "v"}, failingCheck) },
		func() error { return c.node(2).TagResource(ctx, consumer, map[string]string{"k1": "v"}, failingCheck) },
	} {
		if err := call(); !errors.Is(err, errCheck) {
			t.Fatalf("the check runs before the limit: %v", err)
		}
	}
	if err := c.node(1).SetRecordDistribution(ctx, "s", storage.DistributionUserKey); err != nil {
		t.Fatalf("USER_PARTITION_KEY on a PROVISIONED stream: %v", err)
	}
}

// TestSettingsEverywhere: settings changed through one node are seen
// through the others and survive a restart of every node; concurrent tag
// changes through three nodes all land; UPDATING ends on the leader's
// clock, and the new record size is enforced only then; a stream deleted
// and created again has none of the old settings.
func TestSettingsEverywhere(t *testing.T) {
	clock := &settingsClock{}
	c := newTestClusterWith(t, 3, func(c *testCluster) { c.now, c.update = clock.now, time.Hour })
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 2, Tags: map[string]string{"created": "1"}}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	ci, err := c.node(3).RegisterConsumer(ctx, "s", "c", map[string]string{"x": "1"})
	if err != nil {
		t.Fatal(err)
	}
	consumer := storage.PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: ci.Created.Unix()}

	var wg sync.WaitGroup
	for id := uint64(1); id <= 3; id++ {
		wg.Go(func() {
			if err := c.node(id).AddTags(ctx, "s", map[string]string{fmt.Sprint("n", id): "v", "gone": "x"}, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := c.node(2).RemoveTags(ctx, "s", []string{"gone", "absent"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.node(1).TagResource(ctx, consumer, map[string]string{"y": "2"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.node(2).UntagResource(ctx, consumer, []string{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.node(1).SetResourcePolicy(ctx, storage.PolicyTarget{Stream: "s", ConsumerSecs: -1}, "stream policy"); err != nil {
		t.Fatal(err)
	}
	if err := c.node(3).SetResourcePolicy(ctx, consumer, "consumer policy"); err != nil {
		t.Fatal(err)
	}
	streamTags := map[string]string{"created": "1", "n1": "v", "n2": "v", "n3": "v"}
	c.checkSettings(streamTags, map[string]string{"y": "2"}, "stream policy", "consumer policy")

	// Enhanced monitoring: UPDATING until the clock passes the delay.
	ch, err := c.node(2).SetShardLevelMetrics(ctx, "s", []string{"OutgoingBytes", "IncomingBytes"}, true)
	want := storage.MonitoringChange{Current: []string{}, Desired: []string{"IncomingBytes", "OutgoingBytes"}}
	if err != nil || !reflect.DeepEqual(ch, want) {
		t.Fatalf("EnableEnhancedMonitoring: %+v, %v", ch, err)
	}
	c.wantStatus("s", storage.StatusUpdating)
	err = c.node(1).AddTags(ctx, "s", map[string]string{"a": "b"}, nil)
	if se := wantReason(t, "AddTags while UPDATING", err, storage.ErrResourceInUse, storage.ReasonNotActive); se.State != storage.StatusUpdating {
		t.Fatalf("state %s", se.State)
	}
	_, err = c.node(3).SetShardLevelMetrics(ctx, "s", []string{"IncomingBytes"}, false)
	wantReason(t, "monitoring while UPDATING", err, storage.ErrResourceInUse, storage.ReasonNotActive)
	err = c.node(2).TagResource(ctx, consumer, map[string]string{"z": "3"}, nil)
	wantReason(t, "a consumer's tags while UPDATING", err, storage.ErrResourceInUse, storage.ReasonNotActive)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "while-updating", nil); err != nil {
		t.Fatalf("RegisterConsumer while UPDATING (single-node mode takes it): %v", err)
	}
	if err := c.node(1).DeregisterConsumer(ctx, "s", "while-updating"); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour)
	c.waitActive("s", 1, 2, 3)
	ch, err = c.node(3).SetShardLevelMetrics(ctx, "s", []string{"IncomingBytes"}, false)
	if err != nil || !reflect.DeepEqual(ch, storage.MonitoringChange{Current: want.Desired, Desired: []string{"OutgoingBytes"}}) {
		t.Fatalf("DisableEnhancedMonitoring: %+v, %v", ch, err)
	}
	clock.add(time.Hour)
	c.waitActive("s", 1, 2, 3)

	// UpdateMaxRecordSize: the old size holds while UPDATING.
	if err := c.node(1).UpdateMaxRecordSize(ctx, "s", 2048); err != nil {
		t.Fatal(err)
	}
	c.wantStatus("s", storage.StatusUpdating)
	c.wantRecordLimit("s", storage.DefaultMaxRecordSizeKiB<<10)
	clock.add(time.Hour)
	c.waitActive("s", 1, 2, 3)
	c.wantRecordLimit("s", 2048<<10)
	if err := c.node(2).UpdateMaxRecordSize(ctx, "s", 2048); err != nil {
		t.Fatal(err)
	}
	c.wantStatus("s", storage.StatusActive) // the same size: nothing changes

	for id := uint64(1); id <= 3; id++ {
		c.stop(id)
	}
	var starts sync.WaitGroup
	for id := uint64(1); id <= 3; id++ {
		starts.Go(func() { c.start(id) })
	}
	starts.Wait()
	for id := uint64(1); id <= 3; id++ {
		eventually(t, "a metadata leader after the restart", func() error {
			if c.node(id).host.Status(metaGroup).Leader == 0 {
				return errors.New("none")
			}
			return nil
		})
	}
	c.checkSettings(streamTags, map[string]string{"y": "2"}, "stream policy", "consumer policy")
	c.wantRecordLimit("s", 2048<<10)
	for id := uint64(1); id <= 3; id++ {
		if info, err := c.node(id).DescribeStream(ctx, "s"); err != nil || !reflect.DeepEqual(info.ShardLevelMetrics, []string{"OutgoingBytes"}) ||
			info.MaxRecordSizeKiB != 2048 {
			t.Fatalf("node %d after the restart: metrics %v, size %d KiB, %v", id, info.ShardLevelMetrics, info.MaxRecordSizeKiB, err)
		}
	}

	if err := c.node(2).DeleteStreamWith(ctx, "s", storage.DeleteOptions{EnforceConsumerDeletion: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.node(3).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "c", nil); err != nil {
		t.Fatal(err)
	}
	c.checkSettings(map[string]string{}, map[string]string{}, "", "")
	info, err := c.node(2).DescribeStream(ctx, "s")
	if err != nil || len(info.ShardLevelMetrics) != 0 || info.MaxRecordSizeKiB != storage.DefaultMaxRecordSizeKiB {
		t.Fatalf("the stream created again: metrics %v, size %d KiB, %v", info.ShardLevelMetrics, info.MaxRecordSizeKiB, err)
	}
}

// checkSettings checks, through every node, stream s's tags (DescribeStream
// and ResourceTags) and policy, and consumer c's tags and policy. Policies
// are read from each node's applied metadata (ResourcePolicy), so they are
// waited for.
func (c *testCluster) checkSettings(streamTags, consumerTags map[string]string, streamPolicy, consumerPolicy string) {
	c.t.Helper()
	ctx := context.Background()
	st := storage.PolicyTarget{Stream: "s", ConsumerSecs: -1}
	ct := storage.PolicyTarget{Stream: "s", Consumer: "c", ConsumerSecs: -1}
	for id := uint64(1); id <= 3; id++ {
		n := c.node(id)
		info, err := n.DescribeStream(ctx, "s")
		if err != nil || !sameTags(info.Tags, streamTags) {
			c.t.Fatalf("node %d describes tags %v, %v; want %v", id, info.Tags, err, streamTags)
		}
		for _, tc := range []struct {
			target storage.PolicyTarget
			want   map[string]string
		}{{st, streamTags}, {ct, consumerTags}} {
			got, err := n.ResourceTags(ctx, tc.target)
			if err != nil || !sameTags(got, tc.want) {
				c.t.Fatalf("node %d: tags of %+v: %v, %v; want %v", id, tc.target, got, err, tc.want)
			}
		}
		ci, err := n.DescribeConsumer(ctx, "s", "c")
		if err != nil || !sameTags(ci.Tags, consumerTags) {
			c.t.Fatalf("node %d describes the consumer's tags %v, %v", id, ci.Tags, err)
		}
		eventually(c.t, fmt.Sprintf("node %d applies the policies", id), func() error {
			sp, err1 := n.ResourcePolicy(ctx, st)
			cp, err2 := n.ResourcePolicy(ctx, ct)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			if sp != streamPolicy || cp != consumerPolicy {
				return fmt.Errorf("policies %q and %q", sp, cp)
			}
			return nil
		})
	}
}

// wantStatus checks the stream's status through every node.
func (c *testCluster) wantStatus(name string, want storage.StreamStatus) {
	c.t.Helper()
	for id := uint64(1); id <= 3; id++ {
		if info, err := c.node(id).DescribeStream(context.Background(), name); err != nil || info.Status != want {
			c.t.Fatalf("node %d: status %s, %v; want %s", id, info.Status, err, want)
		}
	}
}

// wantRecordLimit checks the record size enforced through every node.
func (c *testCluster) wantRecordLimit(name string, want int) {
	c.t.Helper()
	for id := uint64(1); id <= 3; id++ {
		if got, err := c.node(id).RecordLimit(context.Background(), name); err != nil || got != want {
			c.t.Fatalf("node %d: record limit %d, %v; want %d", id, got, err, want)
		}
	}
}

// sameTags compares tag sets; nil and empty are the same.
func sameTags(a, b map[string]string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}
