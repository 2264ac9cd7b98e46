package datadir

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// TestStreamRecordRoundTrip: meta.db records written by the server before
// the record moved here decode, and encode back byte for byte, so an
// existing meta.db reads and rewrites unchanged. testdata/stream_record.json
// is a record storage wrote (tags, a split, a merge, an UpdateShardCount
// still pending); the others are the shape of a fresh stream's record,
// every optional field absent, and of one with AUTO record distribution.
func TestStreamRecordRoundTrip(t *testing.T) {
	written, err := os.ReadFile("testdata/stream_record.json")
	if err != nil {
		t.Fatal(err)
	}
	fresh := []byte(`{"name":"events","created_ns":1709294400000000000,"status":"ACTIVE","mode":"ON_DEMAND","retention_hours":24,` +
		`"shards":[{"index":0,"hash_start":"0","hash_end":"340282366920938463463374607431768211455","create_secs":1709294400}],"next_shard_index":1}`)
	auto := []byte(`{"name":"auto","created_ns":1709294400000000000,"status":"ACTIVE","mode":"ON_DEMAND","retention_hours":24,` +
		`"shards":[],"next_shard_index":0,"record_distribution":"AUTO"}`)
	for _, sample := range [][]byte{written, fresh, auto} {
		var r StreamRecord
		if err := json.Unmarshal(sample, &r); err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, sample) {
			t.Fatalf("re-encoded record differs:\n got %s\nwant %s", got, sample)
		}
	}
}

// TestStreamRecordFields: the written sample decodes into the fields its
// JSON names, so a renamed tag cannot pass as an ignored field.
func TestStreamRecordFields(t *testing.T) {
	b, err := os.ReadFile("testdata/stream_record.json")
	if err != nil {
		t.Fatal(err)
	}
	var r StreamRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Name != "orders" || r.CreatedNs != 1796183838075648609 || r.Status != StatusUpdating || r.Mode != ModeProvisioned ||
		r.RetentionHours != 24 || r.Tags["team"] != "billing" || r.NextShardIndex != 10 ||
		r.PendingUntilNs != 1796187438092828953 || !reflect.DeepEqual(r.ScalingNs, []int64{1796183838092828953}) {
		t.Fatalf("stream fields: %+v", r)
	}
	if r.Dir() != "orders-18ed53af23cbfa61" {
		t.Fatalf("Dir() = %q", r.Dir())
	}
	want := ShardRecord{Index: 4, Parent: "shardId-000000000002", AdjParent: "shardId-000000000003", HashStart: "0",
		HashEnd: "170141183460469231731687303715884105727", CreateSecs: 1796183840, Closed: true, ClosedMs: 1796183838092}
	if len(r.Shards) != 10 || r.Shards[4] != want {
		t.Fatalf("shard 4: %+v, want %+v", r.Shards[4], want)
	}
}

// TestClone: changing a clone's tags, shards, scaling times or pending
// reshard leaves the original as it was.
func TestClone(t *testing.T) {
	orig := &StreamRecord{Name: "s", Tags: map[string]string{"a": "1"}, Shards: []ShardRecord{{Index: 0}}, ScalingNs: []int64{5},
		Reshard: &ReshardRecord{Seal: []uint32{0}, Add: []ShardRecord{{Index: 1}}, NextShardIndex: 2}}
	c := orig.Clone()
	c.Tags["a"], c.Shards[0].Closed, c.ScalingNs[0] = "2", true, 6
	c.Shards = append(c.Shards, ShardRecord{Index: 1})
	c.Reshard.Seal[0], c.Reshard.Add[0].Closed, c.Reshard.NextShardIndex = 9, true, 3
	if orig.Tags["a"] != "1" || orig.Shards[0].Closed || orig.ScalingNs[0] != 5 || len(orig.Shards) != 1 ||
		orig.Reshard.Seal[0] != 0 || orig.Reshard.Add[0].Closed || orig.Reshard.NextShardIndex != 2 {
		t.Fatalf("the original changed: %+v", orig)
	}
	if (&StreamRecord{}).Clone().Tags == nil {
		t.Fatal("a clone's Tags is nil")
	}
}

// TestCloneConsumers: changing a clone's consumers or retired consumers
// leaves the original as it was.
func TestCloneConsumers(t *testing.T) {
	orig := &StreamRecord{Consumers: []ConsumerRecord{{Name: "c", Status: ConsumerCreating}}, RetiredConsumers: map[string]int64{"d": 1}}
	c := orig.Clone()
	c.Consumers[0].Status, c.RetiredConsumers["d"] = ConsumerActive, 2
	if orig.Consumers[0].Status != ConsumerCreating || orig.RetiredConsumers["d"] != 1 {
		t.Fatalf("the original changed: %+v", orig)
	}
}

// TestMaxRecordSizeFields: the maximum record size and a pending one are
// stored under their own JSON names, and absent (0: the default) when unset.
func TestMaxRecordSizeFields(t *testing.T) {
	var r StreamRecord
	if err := json.Unmarshal([]byte(`{"max_record_size_kib":10240,"pending_max_record_size_kib":2048}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.MaxRecordSizeKiB != 10240 || r.PendingMaxRecordSizeKiB != 2048 {
		t.Fatalf("decoded %+v", r)
	}
	b, err := json.Marshal(&StreamRecord{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("max_record_size")) {
		t.Fatalf("unset sizes are written: %s", b)
	}
}
