package api

import (
	"net/http"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
)

// TestRecordDistribution: UpdateStreamRecordDistributionStrategy and
// CreateStream's strategy; DescribeStreamSummary reports it for ON_DEMAND
// streams only; an AUTO stream takes records without a partition key and
// spreads them over its shards, and GetRecords leaves the missing key out.
func TestRecordDistribution(t *testing.T) {
	h := newStoreHarness(t)
	h.ok("CreateStream", `{"StreamName":"od","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`)
	h.ok("CreateStream", `{"StreamName":"p","ShardCount":2}`)
	summary := func(name string) map[string]any {
		return h.ok("DescribeStreamSummary", `{"StreamName":"`+name+`"}`).body["StreamDescriptionSummary"].(map[string]any)
	}
	if d, ok := summary("od")["RecordDistributionStrategy"]; d != "USER_PARTITION_KEY" {
		t.Fatalf("ON_DEMAND default: %v %v", d, ok)
	}
	if d, ok := summary("p")["RecordDistributionStrategy"]; ok {
		t.Fatalf("PROVISIONED stream reports %v", d)
	}
	keyless := `{"StreamName":"od","Data":"eA=="}`
	wantError(t, h.call("PutRecord", keyless), http.StatusBadRequest, wire.TypeValidation,
		"1 validation error detected: Value null at 'partitionKey' failed to satisfy constraint: Member must not be null")

	h.ok("UpdateStreamRecordDistributionStrategy", `{"StreamARN":"`+storeARN+`od","RecordDistributionStrategy":"AUTO"}`)
	if d := summary("od")["RecordDistributionStrategy"]; d != "AUTO" {
		t.Fatalf("after the update: %v", d)
	}
	if s := summary("od")["StreamStatus"]; s != "ACTIVE" {
		t.Fatalf("status %v: the change takes effect at once", s)
	}
	shards := map[string]int{}
	for range 4 {
		r := h.ok("PutRecord", keyless)
		shards[str(r.body["ShardId"])]++
	}
	r := h.ok("PutRecords", `{"StreamName":"od","Records":[{"Data":"eQ=="},{"Data":"eg==","PartitionKey":"k","ExplicitHashKey":"0"},{"Data":"eg=="},{"Data":"eg=="}]}`)
	for _, rec := range r.body["Records"].([]any) {
		shards[str(rec.(map[string]any)["ShardId"])]++
	}
	if len(shards) != 4 || shards["shardId-000000000000"] != 2 {
		t.Fatalf("8 records over 4 shards: %v", shards)
	}
	it := h.ok("GetShardIterator", `{"StreamName":"od","ShardId":"shardId-000000000001","ShardIteratorType":"TRIM_HORIZON"}`)
	got := h.ok("GetRecords", `{"ShardIterator":"`+str(it.body["ShardIterator"])+`"}`)
	// Shard 1 took turns 1 and 5: the second PutRecord's keyless record, and
	// PutRecords' second, whose key is kept although placement ignored it.
	recs := got.body["Records"].([]any)
	if len(recs) != 2 {
		t.Fatalf("records of shard 1: %s", got.raw)
	}
	if _, has := recs[0].(map[string]any)["PartitionKey"]; has || recs[1].(map[string]any)["PartitionKey"] != "k" {
		t.Fatalf("a keyless record has a PartitionKey, or a keyed one lost it: %s", got.raw)
	}
	wantError(t, h.call("PutRecord", `{"StreamName":"od","Data":"eA==","SequenceNumberForOrdering":"1"}`), http.StatusBadRequest, wire.TypeInvalidArgument,
		"SequenceNumberForOrdering is not supported for stream od under account 000000000000 because it uses the AUTO record distribution strategy.")
	// Model constraints still apply to the keys AUTO ignores.
	wantError(t, h.call("PutRecord", `{"StreamName":"od","Data":"eA==","PartitionKey":""}`), http.StatusBadRequest, wire.TypeValidation,
		"1 validation error detected: Value '' at 'partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1")

	h.ok("UpdateStreamRecordDistributionStrategy", `{"StreamARN":"`+storeARN+`od","RecordDistributionStrategy":"USER_PARTITION_KEY"}`)
	wantError(t, h.call("PutRecords", `{"StreamName":"od","Records":[{"Data":"eA=="}]}`), http.StatusBadRequest, wire.TypeValidation,
		"1 validation error detected: Value null at 'records.1.member.partitionKey' failed to satisfy constraint: Member must not be null")

	h.ok("CreateStream", `{"StreamName":"auto","StreamModeDetails":{"StreamMode":"ON_DEMAND"},"RecordDistributionStrategy":"AUTO"}`)
	if d := summary("auto")["RecordDistributionStrategy"]; d != "AUTO" {
		t.Fatalf("CreateStream's strategy: %v", d)
	}
	h.ok("PutRecord", `{"StreamName":"auto","Data":"eA=="}`)
}

func TestRecordDistributionErrors(t *testing.T) {
	h := newStoreHarness(t)
	h.ok("CreateStream", `{"StreamName":"p","ShardCount":1}`)
	const notNull = "failed to satisfy constraint: Member must not be null"
	tests := []struct {
		op, body, typ, msg string
	}{
		{"UpdateStreamRecordDistributionStrategy", `{}`, wire.TypeValidation,
			"2 validation errors detected: Value null at 'streamARN' " + notNull + "; Value null at 'recordDistributionStrategy' " + notNull},
		{"UpdateStreamRecordDistributionStrategy", `{"StreamARN":"p","RecordDistributionStrategy":"RANDOM"}`, wire.TypeValidation,
			"2 validation errors detected: Value 'p' at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: " + wire.PatternARN +
				"; Value 'RANDOM' at 'recordDistributionStrategy' failed to satisfy constraint: Member must satisfy enum value set: [AUTO, USER_PARTITION_KEY]"},
		{"UpdateStreamRecordDistributionStrategy", `{"StreamARN":"` + storeARN + `nope","RecordDistributionStrategy":"AUTO"}`, wire.TypeResourceNotFound,
			"Stream nope under account 000000000000 not found."},
		{"UpdateStreamRecordDistributionStrategy", `{"StreamARN":"` + storeARN + `p","RecordDistributionStrategy":"AUTO"}`, wire.TypeInvalidArgument,
			"Record distribution strategy AUTO is not supported for stream p under account 000000000000 because it is in PROVISIONED capacity mode."},
		{"CreateStream", `{"StreamName":"q","ShardCount":1,"RecordDistributionStrategy":"AUTO"}`, wire.TypeInvalidArgument,
			"Record distribution strategy AUTO is not supported for stream q under account 000000000000 because it is in PROVISIONED capacity mode."},
		{"CreateStream", `{"StreamName":"q","ShardCount":1,"RecordDistributionStrategy":"auto"}`, wire.TypeValidation,
			"1 validation error detected: Value 'auto' at 'recordDistributionStrategy' failed to satisfy constraint: Member must satisfy enum value set: [AUTO, USER_PARTITION_KEY]"},
	}
	for _, tc := range tests {
		t.Run(tc.op+" "+tc.body, func(t *testing.T) {
			wantError(t, h.call(tc.op, tc.body), http.StatusBadRequest, tc.typ, tc.msg)
		})
	}
	h.ok("UpdateStreamRecordDistributionStrategy", `{"StreamARN":"`+storeARN+`p","RecordDistributionStrategy":"USER_PARTITION_KEY"}`)
}
