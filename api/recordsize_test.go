package api

import (
	"strings"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
)

func TestUpdateMaxRecordSizeValidation(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	const arn = `"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s"`
	const vErr = "1 validation error detected: "
	tests := []struct {
		name, body string
		typ, msg   string
	}{
		{"size missing", `{` + arn + `}`, wire.TypeValidation,
			vErr + "Value null at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must not be null"},
		{"size below 1024", `{` + arn + `,"MaxRecordSizeInKiB":1023}`, wire.TypeValidation,
			vErr + "Value '1023' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to 1024"},
		{"size above 10240", `{` + arn + `,"MaxRecordSizeInKiB":10241}`, wire.TypeValidation,
			vErr + "Value '10241' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value less than or equal to 10240"},
		{"size, then the ARN", `{"StreamARN":"x","MaxRecordSizeInKiB":0}`, wire.TypeValidation,
			"2 validation errors detected: Value '0' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to 1024; " +
				"Value 'x' at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"},
		{"no stream", `{"MaxRecordSizeInKiB":2048}`, wire.TypeInvalidArgument, "Either StreamName or StreamARN must be provided."},
		{"StreamName is not a member", `{"StreamName":"s","MaxRecordSizeInKiB":2048}`, wire.TypeInvalidArgument, "Either StreamName or StreamARN must be provided."},
		{"missing stream", `{"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:stream/nope","MaxRecordSizeInKiB":2048}`, wire.TypeResourceNotFound,
			"Stream nope under account 123456789012 not found."},
		{"another account's stream", `{"StreamARN":"arn:aws:kinesis:us-east-1:999999999999:stream/s","MaxRecordSizeInKiB":2048}`, wire.TypeResourceNotFound,
			"Stream s under account 999999999999 not found."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.call("UpdateMaxRecordSize", tc.body), 400, tc.typ, tc.msg)
		})
	}
}

// TestMaxRecordSizeSetAndReported: CreateStream's and UpdateMaxRecordSize's
// size is what DescribeStreamSummary reports and what PutRecord allows.
func TestMaxRecordSizeSetAndReported(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	h.ok("CreateStream", `{"StreamName":"c","ShardCount":1,"MaxRecordSizeInKiB":2048}`)
	summary := func(name string) any {
		return h.ok("DescribeStreamSummary", `{"StreamName":"`+name+`"}`).body["StreamDescriptionSummary"].(map[string]any)["MaxRecordSizeInKiB"]
	}
	if got := summary("s"); got != 1024.0 {
		t.Fatalf("default stream reports %v KiB", got)
	}
	if got := summary("c"); got != 2048.0 {
		t.Fatalf("stream created with 2048 KiB reports %v", got)
	}
	twoMiB := `{"StreamName":"s","PartitionKey":"k","Data":"` + b64(2<<20-1) + `"}`
	wantError(t, h.call("PutRecord", twoMiB), 400, wire.TypeInvalidArgument, "")
	r := h.ok("UpdateMaxRecordSize", `{"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s","MaxRecordSizeInKiB":2048}`)
	if strings.TrimSpace(r.raw) != "" && strings.TrimSpace(r.raw) != "{}" {
		t.Fatalf("response body %q", r.raw)
	}
	if got := summary("s"); got != 2048.0 {
		t.Fatalf("updated stream reports %v KiB", got)
	}
	h.ok("PutRecord", twoMiB)
}
