package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/storage"
)

// channelBackend is what the channel tests ask of single-node mode's Store
// and of a cluster node alike.
type channelBackend interface {
	CreateStream(ctx context.Context, in storage.CreateStreamInput) error
	DeleteStreamWith(ctx context.Context, name string, o storage.DeleteOptions) error
	DescribeStream(ctx context.Context, name string) (storage.StreamInfo, error)
	CreateChannel(ctx context.Context, in storage.CreateChannelInput) (storage.ChannelInfo, error)
	DescribeChannel(ctx context.Context, name string) (storage.ChannelInfo, error)
	Channels(ctx context.Context) ([]storage.ChannelInfo, error)
	UpdateChannel(ctx context.Context, name string, u storage.ChannelUpdate) (storage.ChannelInfo, error)
	DeleteChannel(ctx context.Context, name string) error
}

var testChannelConfig = storage.ChannelConfig{RoleARN: "arn:aws:iam::123456789012:role/r", RecordFormat: "JSON",
	BucketARN: "arn:aws:s3:::b", Compression: "NONE", BucketOwner: "123456789012", FreshnessSecs: 300}

func channelInput(name, stream string) storage.CreateChannelInput {
	return storage.CreateChannelInput{Name: name, Stream: stream, Config: testChannelConfig, Tags: map[string]string{"t": "v"}}
}

// errShape is what an error answers with: its kind, reason and facts
// (api/messages.go words it from these), or "" for none.
func errShape(err error) string {
	if err == nil {
		return ""
	}
	var se *storage.Error
	if !errors.As(err, &se) {
		return "not a storage error: " + err.Error()
	}
	return fmt.Sprintf("%v / %s / %+v", se.Kind, se.Reason, se.Facts)
}

// TestChannelErrorsAsSingleNode: the same steps against single-node mode's
// Store and a three-node cluster (each step through another node) answer
// the same errors, with the same facts, in the same order of checks.
func TestChannelErrorsAsSingleNode(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, storage.Options{Dir: t.TempDir(), AccountID: "123456789012", ChannelDelay: time.Hour, RetentionEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.tune = func(cfg *Config) { cfg.ChannelDelay = time.Hour }
	})
	steps := []struct {
		name string
		do   func(b channelBackend) error
		wait string // a stream created: wait until it is ACTIVE everywhere
	}{
		{"create on-demand stream", func(b channelBackend) error {
			return b.CreateStream(ctx, storage.CreateStreamInput{Name: "od", ShardCount: 1, Mode: storage.ModeOnDemand})
		}, "od"},
		{"create second on-demand stream", func(b channelBackend) error {
			return b.CreateStream(ctx, storage.CreateStreamInput{Name: "od2", ShardCount: 1, Mode: storage.ModeOnDemand})
		}, "od2"},
		{"create provisioned stream", func(b channelBackend) error {
			return b.CreateStream(ctx, storage.CreateStreamInput{Name: "prov", ShardCount: 1})
		}, "prov"},
		{"channel of a missing stream", func(b channelBackend) error {
			_, err := b.CreateChannel(ctx, channelInput("ch", "missing"))
			return err
		}, ""},
		{"channel of a provisioned stream", func(b channelBackend) error {
			_, err := b.CreateChannel(ctx, channelInput("ch", "prov"))
			return err
		}, ""},
		{"create", func(b channelBackend) error {
			got, err := b.CreateChannel(ctx, channelInput("ch", "od"))
			if err == nil && (got.Status != storage.ChannelCreating || got.Progress != nil) {
				return fmt.Errorf("created %+v", got)
			}
			return err
		}, ""},
		{"name taken on another stream", func(b channelBackend) error {
			_, err := b.CreateChannel(ctx, channelInput("ch", "od2"))
			return err
		}, ""},
		{"second channel of the stream", func(b channelBackend) error {
			_, err := b.CreateChannel(ctx, channelInput("ch2", "od"))
			return err
		}, ""},
		{"update while CREATING", func(b channelBackend) error {
			n := 600
			_, err := b.UpdateChannel(ctx, "ch", storage.ChannelUpdate{FreshnessSecs: &n})
			return err
		}, ""},
		{"delete while CREATING", func(b channelBackend) error { return b.DeleteChannel(ctx, "ch") }, ""},
		{"describe missing", func(b channelBackend) error {
			_, err := b.DescribeChannel(ctx, "nope")
			return err
		}, ""},
		{"update missing", func(b channelBackend) error {
			_, err := b.UpdateChannel(ctx, "nope", storage.ChannelUpdate{})
			return err
		}, ""},
		{"delete missing", func(b channelBackend) error { return b.DeleteChannel(ctx, "nope") }, ""},
		{"delete the channel's stream", func(b channelBackend) error {
			return b.DeleteStreamWith(ctx, "od", storage.DeleteOptions{EnforceConsumerDeletion: true})
		}, ""},
		{"channel count", func(b channelBackend) error {
			info, err := b.DescribeStream(ctx, "od")
			if err == nil && info.ChannelCount != 1 {
				return fmt.Errorf("ChannelCount %d", info.ChannelCount)
			}
			return err
		}, ""},
		{"list", func(b channelBackend) error {
			list, err := b.Channels(ctx)
			if err == nil && (len(list) != 1 || list[0].Name != "ch" || list[0].Stream != "od" || list[0].Tags["t"] != "v") {
				return fmt.Errorf("listed %+v", list)
			}
			return err
		}, ""},
	}
	for i, st := range steps {
		node := c.node(uint64(i%3 + 1))
		want, got := errShape(st.do(store)), errShape(st.do(node))
		if fails := strings.Contains(st.name, " ") && !strings.HasPrefix(st.name, "create ") && st.name != "channel count"; fails != (want != "") {
			t.Errorf("%s: single-node mode answers %q", st.name, want)
		}
		if want != got {
			t.Errorf("%s: single-node mode answers %q, node %d %q", st.name, want, i%3+1, got)
		}
		if st.wait != "" {
			c.waitActive(st.wait, 1, 2, 3)
		}
	}
}

// TestChannelLifecycle: a channel created through one node is described
// the same through the others; the metadata leader ends CREATING, UPDATING
// and DELETING by its clock; a stream whose channel is DELETING can be
// deleted, and the channel goes with it.
func TestChannelLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := &settingsClock{}
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.now = clock.now
		c.tune = func(cfg *Config) { cfg.ChannelDelay = time.Minute }
	})
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "od", ShardCount: 1, Mode: storage.ModeOnDemand}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("od", 1, 2, 3)
	made, err := c.node(1).CreateChannel(ctx, channelInput("ch", "od"))
	if err != nil || made.Status != storage.ChannelCreating {
		t.Fatalf("create: %+v, %v", made, err)
	}
	for id := uint64(2); id <= 3; id++ {
		if got, err := c.node(id).DescribeChannel(ctx, "ch"); err != nil || !reflect.DeepEqual(got, made) {
			t.Fatalf("node %d describes %+v, %v; want %+v", id, got, err, made)
		}
	}
	wantStatus := func(id uint64, want storage.ChannelStatus) storage.ChannelInfo {
		t.Helper()
		var got storage.ChannelInfo
		eventually(t, fmt.Sprintf("channel %s on node %d", want, id), func() (err error) {
			got, err = c.node(id).DescribeChannel(ctx, "ch")
			if err == nil && got.Status != want {
				err = fmt.Errorf("status %s", got.Status)
			}
			return err
		})
		return got
	}
	clock.add(time.Minute)
	if got := wantStatus(3, storage.ChannelActive); got.Progress == nil || len(got.Progress.Shards) != 1 {
		t.Fatalf("activated without a start for every shard: %+v", got.Progress)
	}
	n := 600
	up, err := c.node(2).UpdateChannel(ctx, "ch", storage.ChannelUpdate{FreshnessSecs: &n})
	if err != nil || up.Status != storage.ChannelUpdating || up.Config.FreshnessSecs != 600 {
		t.Fatalf("update: %+v, %v", up, err)
	}
	clock.add(time.Minute)
	wantStatus(1, storage.ChannelActive)
	if err := c.node(3).DeleteChannel(ctx, "ch"); err != nil {
		t.Fatal(err)
	}
	wantStatus(2, storage.ChannelDeleting)
	clock.add(time.Minute)
	eventually(t, "the DELETING channel removed", func() error {
		_, err := c.node(1).DescribeChannel(ctx, "ch")
		if !errors.Is(err, storage.ErrChannelNotFound) {
			return fmt.Errorf("describe: %v", err)
		}
		return nil
	})
	if info, err := c.node(2).DescribeStream(ctx, "od"); err != nil || info.ChannelCount != 0 {
		t.Fatalf("ChannelCount after removal: %d, %v", info.ChannelCount, err)
	}

	again, err := c.node(3).CreateChannel(ctx, channelInput("ch", "od"))
	if err != nil || again.ID == made.ID {
		t.Fatalf("create again: %+v, %v (first ID %s)", again, err, made.ID)
	}
	clock.add(time.Minute)
	wantStatus(1, storage.ChannelActive)
	if err := c.node(1).DeleteChannel(ctx, "ch"); err != nil {
		t.Fatal(err)
	}
	if err := c.node(2).DeleteStreamWith(ctx, "od", storage.DeleteOptions{}); err != nil {
		t.Fatalf("delete a stream whose channel is DELETING: %v", err)
	}
	for id := uint64(1); id <= 3; id++ {
		if list, err := c.node(id).Channels(ctx); err != nil || len(list) != 0 {
			t.Fatalf("node %d lists %+v, %v after the stream's deletion", id, list, err)
		}
	}
}

// byteArrayLine is a BYTE_ARRAY record as delivered.
type byteArrayLine struct {
	SequenceNumber, PartitionKey, ShardId string
	Data                                  []byte
	dir                                   string
}

// deliveredLines reads every object of bucket under each dir (its own
// delivery order: the number each key ends with) and checks the keys are
// single-node mode's default template's.
func deliveredLines(t *testing.T, dirs []string, bucket string, info storage.ChannelInfo) []byteArrayLine {
	t.Helper()
	keyRE := regexp.MustCompile(`^kinesis-channel/` + info.Name + `/` + info.ID + `/\d{4}/\d{2}/\d{2}/\d{2}/` +
		info.Name + `-` + info.ID + `-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-(\d{20})\.json$`)
	var out []byteArrayLine
	for _, dir := range dirs {
		root := filepath.Join(dir, bucket)
		numbered := map[string]string{}
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			m := keyRE.FindStringSubmatch(filepath.ToSlash(rel))
			if m == nil {
				t.Fatalf("object %s does not have single-node mode's key", rel)
			}
			numbered[m[1]] = p
			return nil
		})
		nums := make([]string, 0, len(numbered))
		for k := range numbered {
			nums = append(nums, k)
		}
		sort.Strings(nums)
		for _, k := range nums {
			b, err := os.ReadFile(numbered[k])
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				var l byteArrayLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("%s: %q: %v", numbered[k], sc.Text(), err)
				}
				l.dir = dir
				out = append(out, l)
			}
		}
	}
	return out
}

// putRound writes ten records, one per partition key k0..k9, through node
// id, retrying the entries refused while a leader is elected; it records
// the acknowledged sequence numbers.
func putRound(t *testing.T, c *testCluster, id uint64, stream string, round int, acked map[string]string) {
	t.Helper()
	var todo []storage.PutEntry
	for i := range 10 {
		todo = append(todo, storage.PutEntry{PartitionKey: fmt.Sprintf("k%d", i), Data: fmt.Appendf(nil, "%d", round*10+i)})
	}
	eventually(t, fmt.Sprintf("round %d through node %d", round, id), func() error {
		res, err := c.node(id).Put(context.Background(), stream, todo)
		if err != nil {
			return err
		}
		var rest []storage.PutEntry
		for i, r := range res {
			if r.Err != nil {
				rest = append(rest, todo[i])
				continue
			}
			acked[r.SequenceNumber] = todo[i].PartitionKey + "=" + string(todo[i].Data)
		}
		if todo = rest; len(todo) > 0 {
			return fmt.Errorf("%d entries refused", len(todo))
		}
		return nil
	})
}

// checkChannelLines checks lines against acked: each acknowledged record is
// delivered (once, with once), none delivered that was not put, and in
// each directory each partition key's records in the order they were put.
func checkChannelLines(lines []byteArrayLine, acked map[string]string, once bool) error {
	seen := map[string]int{}
	type dirKey struct{ dir, key string }
	last := map[dirKey]int{}
	for _, l := range lines {
		var n int
		fmt.Sscan(string(l.Data), &n)
		if once && seen[l.SequenceNumber] > 0 {
			return fmt.Errorf("record %s (%s=%s) delivered twice", l.SequenceNumber, l.PartitionKey, l.Data)
		}
		seen[l.SequenceNumber]++
		if want, ok := acked[l.SequenceNumber]; ok && want != l.PartitionKey+"="+string(l.Data) {
			return fmt.Errorf("record %s delivered as %s=%s, acknowledged as %s", l.SequenceNumber, l.PartitionKey, l.Data, want)
		}
		k := dirKey{l.dir, l.PartitionKey}
		if prev, ok := last[k]; ok && prev > n {
			return fmt.Errorf("key %s: record %d delivered after %d", l.PartitionKey, n, prev)
		}
		last[k] = n
	}
	for seq, v := range acked {
		if seen[seq] == 0 {
			return fmt.Errorf("acknowledged record %s (%s) not delivered (%d lines)", seq, v, len(lines))
		}
	}
	return nil
}

func metaLeader(c *testCluster, skip uint64) uint64 {
	for id := range c.nodes {
		if n := c.node(id); n != nil && id != skip {
			if l := n.host.Status(metaGroup).Leader; l != 0 && l != skip {
				return l
			}
		}
	}
	return 0
}

// TestChannelDelivery: a channel's records, put through every node, are
// delivered by the metadata leader once each, in order per partition key,
// as objects with single-node mode's keys and layout; the metadata leader
// stops mid-stream and the new one resumes from the last committed
// progress, losing no record (with one shared directory, delivering none
// twice; with a directory per node, at least once across them); after
// DeleteChannel nothing put is delivered.
func TestChannelDelivery(t *testing.T) {
	for _, tt := range []struct {
		name   string
		shared bool
	}{{"shared dir", true}, {"dir per node", false}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			base := t.TempDir()
			dirOf := func(id uint64) string {
				if tt.shared {
					return base
				}
				return filepath.Join(base, fmt.Sprint(id))
			}
			c := newTestClusterWith(t, 3, func(c *testCluster) {
				c.tune = func(cfg *Config) {
					cfg.Channels = channel.Options{Dest: channel.Dir(dirOf(cfg.NodeID)), FlushEvery: 30 * time.Millisecond, Poll: 10 * time.Millisecond}
				}
			})
			dirs := []string{base}
			if !tt.shared {
				dirs = []string{dirOf(1), dirOf(2), dirOf(3)}
			}
			for _, s := range []string{"s", "s2"} {
				if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: s, ShardCount: 2, Mode: storage.ModeOnDemand}); err != nil {
					t.Fatal(err)
				}
				c.waitActive(s, 1, 2, 3)
			}
			before := map[string]string{} // put before the channel: never delivered
			putRound(t, c, 2, "s", 99, before)
			in := channelInput("ch", "s")
			in.Config.RecordFormat = "BYTE_ARRAY"
			info, err := c.node(1).CreateChannel(ctx, in)
			if err != nil || info.Status != storage.ChannelActive {
				t.Fatalf("create: %+v, %v", info, err)
			}
			acked := map[string]string{}
			for round := range 5 {
				putRound(t, c, uint64(round%3+1), "s", round, acked)
			}
			eventually(t, "the first records delivered", func() error {
				if len(deliveredLines(t, dirs, "b", info)) == 0 {
					return errors.New("none yet")
				}
				return nil
			})
			leader := metaLeader(c, 0)
			c.stop(leader)
			var up []uint64
			for id := uint64(1); id <= 3; id++ {
				if id != leader {
					up = append(up, id)
				}
			}
			for round := 5; round < 10; round++ {
				putRound(t, c, up[round%2], "s", round, acked)
			}
			eventually(t, "every record delivered after the leader change", func() error {
				return checkChannelLines(deliveredLines(t, dirs, "b", info), acked, false)
			})
			if err := checkChannelLines(deliveredLines(t, dirs, "b", info), acked, tt.shared); err != nil {
				t.Fatal(err)
			}
			next := metaLeader(c, leader)
			if next == 0 || next == leader {
				t.Fatalf("no new metadata leader (%d)", next)
			}
			lines := deliveredLines(t, dirs, "b", info)
			for _, l := range lines {
				if _, ok := before[l.SequenceNumber]; ok {
					t.Fatalf("record %s put before the channel was ACTIVE was delivered", l.SequenceNumber)
				}
			}
			if !tt.shared && len(deliveredLines(t, []string{dirOf(next)}, "b", info)) == 0 {
				t.Fatalf("the new metadata leader, node %d, delivered nothing", next)
			}

			// DeleteChannel stops delivery: no record put after it is ever
			// delivered (a batch's objects are written only after its
			// pending save, which fails once the channel is gone). A second
			// channel, created after, delivering its stream's records put
			// alongside bounds the wait.
			if err := c.node(up[0]).DeleteChannel(ctx, "ch"); err != nil {
				t.Fatal(err)
			}
			in2 := channelInput("ch2", "s2")
			in2.Config.RecordFormat, in2.Config.BucketARN = "BYTE_ARRAY", "arn:aws:s3:::b2"
			info2, err := c.node(up[1]).CreateChannel(ctx, in2)
			if err != nil {
				t.Fatal(err)
			}
			acked2, after := map[string]string{}, map[string]string{}
			for round := 10; round < 13; round++ {
				putRound(t, c, up[round%2], "s", round, after)
				putRound(t, c, up[round%2], "s2", round, acked2)
			}
			eventually(t, "the second channel delivering", func() error {
				return checkChannelLines(deliveredLines(t, dirs, "b2", info2), acked2, false)
			})
			for _, l := range deliveredLines(t, dirs, "b", info) {
				if _, ok := after[l.SequenceNumber]; ok {
					t.Fatalf("record %s put after DeleteChannel was delivered", l.SequenceNumber)
				}
			}
		})
	}
}

// TestChannelDeliveryFenced: a progress save of a deliverer whose claim is
// not the newest, or whose node no longer leads in its term, fails with
// ErrChannelNotFound (its delivery stops) and changes nothing; the current
// deliverer's save commits.
func TestChannelDeliveryFenced(t *testing.T) {
	ctx := context.Background()
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.tune = func(cfg *Config) {
			cfg.Channels = channel.Options{Dest: channel.Dir(t.TempDir()), FlushEvery: time.Hour, Poll: time.Hour}
		}
	})
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1, Mode: storage.ModeOnDemand}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	info, err := c.node(2).CreateChannel(ctx, channelInput("ch", "s"))
	if err != nil {
		t.Fatal(err)
	}
	leader := metaLeader(c, 0)
	n := c.node(leader)
	var claim delivererRec
	eventually(t, "the metadata leader claims delivery", func() error {
		if v, ok := n.getJSON(keyDeliverer, &claim); !ok || claim.Node != leader || v == 0 {
			return fmt.Errorf("deliverer %+v", claim)
		}
		return nil
	})
	fence, term := n.fenceVersion(), n.host.Status(metaGroup).Term
	p := *info.Progress
	p.Objects = 42
	for _, tt := range []struct {
		name string
		src  *channelSource
		ok   bool
	}{
		{"a stale claim on the leader", &channelSource{n: n, term: term, fence: fence - 1}, false},
		{"an earlier term", &channelSource{n: n, term: term - 1, fence: fence}, false},
		{"a follower", &channelSource{n: c.node(leader%3 + 1), term: term, fence: fence}, false},
		{"the current deliverer", &channelSource{n: n, term: term, fence: fence}, true},
	} {
		err := tt.src.SaveChannelProgress(ctx, "ch", info.ID, &p)
		got, derr := c.node(leader%3+1).DescribeChannel(ctx, "ch")
		if derr != nil {
			t.Fatal(derr)
		}
		if saved := got.Progress.Objects == 42; (err == nil) != tt.ok || saved != tt.ok || (!tt.ok && !errors.Is(err, storage.ErrChannelNotFound)) {
			t.Fatalf("%s: save %v, progress saved %v", tt.name, err, saved)
		}
	}
}
