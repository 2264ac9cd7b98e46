package api

import (
	"strings"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
)

// AWS's texts for list values (aws-fidelity A10, A11).
const (
	putRecordsEntry = "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310"
	tagKeysMembers  = "Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"
)

func TestValidationMessages(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	long := strings.Repeat("a", 129)
	tests := []struct {
		op, body, msg string
	}{
		{"CreateStream", `{"ShardCount":1}`,
			"1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"},
		{"CreateStream", `{"StreamName":"","ShardCount":0}`,
			"3 validation errors detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1; " +
				"Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; " +
				"Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"CreateStream", `{"StreamName":"` + long + `","ShardCount":1}`,
			"1 validation error detected: Value '" + long + "' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128"},
		{"CreateStream", `{"StreamName":"a","StreamModeDetails":{"StreamMode":"FAST"}}`,
			"1 validation error detected: Value 'FAST' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"},
		{"CreateStream", `{"StreamName":"a","StreamModeDetails":{}}`,
			"1 validation error detected: Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must not be null"},
		{"CreateStream", `{"StreamName":"a","ShardCount":1,"Tags":{}}`,
			"1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"DescribeStream", `{"StreamName":"a b","Limit":0}`,
			"2 validation errors detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1; " +
				"Value 'a b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"},
		{"DescribeStream", `{"StreamARN":"arn:aws:kinesis:us-east-1:12345:stream/s"}`,
			"1 validation error detected: Value 'arn:aws:kinesis:us-east-1:12345:stream/s' at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"},
		{"GetShardIterator", `{"StreamName":"s","ShardIteratorType":"OLDEST"}`,
			"2 validation errors detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null; " +
				"Value 'OLDEST' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]"},
		{"GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":"01"}`,
			"1 validation error detected: Value '01' at 'startingSequenceNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})"},
		{"PutRecord", `{"StreamName":"s"}`,
			"2 validation errors detected: Value null at 'partitionKey' failed to satisfy constraint: Member must not be null; " +
				"Value null at 'data' failed to satisfy constraint: Member must not be null"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"` + strings.Repeat("k", 257) + `","Data":"","ExplicitHashKey":"x"}`,
			"2 validation errors detected: Value '" + strings.Repeat("k", 257) + "' at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256; " +
				"Value 'x' at 'explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})"},
		{"PutRecords", `{"StreamName":"s","Records":[]}`,
			"1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"PutRecords", `{"StreamName":"s","Records":[` + strings.Repeat(`{"PartitionKey":"k","Data":""},`, 500) + `{"PartitionKey":"k","Data":""}]}`,
			"1 validation error detected: Value '[" + strings.Repeat(putRecordsEntry+", ", 500) + putRecordsEntry + "]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"},
		{"PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"a","Data":""},{"Data":"","PartitionKey":""}]}`,
			"1 validation error detected: Value '' at 'records.2.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"PutRecords", `{"Records":null}`,
			"1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null"},
		{"GetRecords", `{"Limit":10001}`,
			"2 validation errors detected: Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000; " +
				"Value null at 'shardIterator' failed to satisfy constraint: Member must not be null"},
		{"ListTagsForStream", `{"StreamName":"s","Limit":51,"ExclusiveStartTagKey":""}`,
			"2 validation errors detected: Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50; " +
				"Value '' at 'exclusiveStartTagKey' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a",""]}`,
			"1 validation error detected: Value '[a, ]' at 'tagKeys' failed to satisfy constraint: " + tagKeysMembers},
		{"RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a","` + long + `","b",""]}`,
			"1 validation error detected: Value '[a, " + long + ", b, ]' at 'tagKeys' failed to satisfy constraint: " + tagKeysMembers},
		{"RemoveTagsFromStream", `{"StreamName":"s","TagKeys":[]}`,
			"1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"IncreaseStreamRetentionPeriod", `{"StreamName":"s"}`,
			"1 validation error detected: Value null at 'retentionPeriodHours' failed to satisfy constraint: Member must not be null"},
		{"ListShards", `{"StreamName":"s","ShardFilter":{"Type":"SOME"}}`,
			"1 validation error detected: Value 'SOME' at 'shardFilter.type' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]"},
	}
	for _, tc := range tests {
		t.Run(tc.op+" "+tc.body[:min(len(tc.body), 60)], func(t *testing.T) {
			wantError(t, h.call(tc.op, tc.body), 400, wire.TypeValidation, tc.msg)
		})
	}
}

func TestValidationCapsAtTen(t *testing.T) {
	h := newHarness(t)
	recs := strings.Repeat(`{},`, 20)
	r := h.call("PutRecords", `{"StreamName":"s","Records":[`+recs[:len(recs)-1]+`]}`)
	wantError(t, r, 400, wire.TypeValidation, "")
	if !strings.HasPrefix(r.message(), "10 validation errors detected: ") || strings.Count(r.message(), "; ") != 9 {
		t.Fatalf("message: %s", r.message())
	}
}
