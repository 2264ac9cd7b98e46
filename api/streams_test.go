package api

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

var epochRE = regexp.MustCompile(`"StreamCreationTimestamp":\d+\.\d{3}[,}]`)

func TestCreateDescribeDelete(t *testing.T) {
	h := newHarness(t)
	h.ok("CreateStream", `{"StreamName":"orders","ShardCount":3,"Tags":{"team":"a"}}`)
	wantError(t, h.call("CreateStream", `{"StreamName":"orders","ShardCount":1}`), 400, wire.TypeResourceInUse,
		"Stream orders under account 123456789012 already exists.")

	r := h.ok("DescribeStream", `{"StreamName":"orders"}`)
	if !epochRE.MatchString(r.raw) || strings.Contains(r.raw, "e+") {
		t.Fatalf("timestamp format: %s", r.raw)
	}
	d := r.body["StreamDescription"].(map[string]any)
	shards := d["Shards"].([]any)
	if len(shards) != 3 || d["StreamStatus"] != "ACTIVE" || d["HasMoreShards"] != false || d["EncryptionType"] != "NONE" {
		t.Fatalf("description: %s", r.raw)
	}
	last := shards[2].(map[string]any)["HashKeyRange"].(map[string]any)
	if last["EndingHashKey"] != "340282366920938463463374607431768211455" || last["StartingHashKey"] != "226854911280625642308916404954512140970" {
		t.Fatalf("hash range: %v", last)
	}
	if !strings.Contains(r.raw, `"EnhancedMonitoring":[{"ShardLevelMetrics":[]}]`) || !strings.Contains(r.raw, `"StreamModeDetails":{"StreamMode":"PROVISIONED"}`) {
		t.Fatalf("defaults: %s", r.raw)
	}

	r = h.ok("DescribeStream", `{"StreamName":"orders","Limit":1,"ExclusiveStartShardId":"shardId-000000000000"}`)
	d = r.body["StreamDescription"].(map[string]any)
	if got := d["Shards"].([]any)[0].(map[string]any)["ShardId"]; got != "shardId-000000000001" || d["HasMoreShards"] != true {
		t.Fatalf("paged describe: %s", r.raw)
	}

	r = h.ok("DescribeStreamSummary", `{"StreamARN":"arn:aws:kinesis:eu-west-1:123456789012:stream/orders"}`)
	sum := r.body["StreamDescriptionSummary"].(map[string]any)
	if sum["OpenShardCount"] != 3.0 || sum["ConsumerCount"] != 0.0 || sum["RetentionPeriodHours"] != 24.0 {
		t.Fatalf("summary: %s", r.raw)
	}

	h.ok("DeleteStream", `{"StreamName":"orders"}`)
	wantError(t, h.call("DescribeStream", `{"StreamName":"orders"}`), 400, wire.TypeResourceNotFound, "Stream orders under account 123456789012 not found.")
}

func TestCreateStreamModes(t *testing.T) {
	h := newHarness(t)
	h.ok("CreateStream", `{"StreamName":"od","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`)
	if got := h.fake.streams["od"].info.OpenShardCount(); got != 4 {
		t.Fatalf("on-demand shards = %d", got)
	}
	wantError(t, h.call("CreateStream", `{"StreamName":"p"}`), 400, wire.TypeInvalidArgument, "ShardCount cannot be null when creating stream in PROVISIONED StreamMode")
	wantError(t, h.call("CreateStream", `{"StreamName":"p","ShardCount":2,"StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`), 400, wire.TypeInvalidArgument, "")
	wantError(t, h.call("CreateStream", `{"StreamName":"p","ShardCount":2,"Tags":{"a!":"b"}}`), 400, wire.TypeInvalidArgument, msgInvalidTagChars)
	r := h.ok("DescribeLimits", `{}`)
	if r.body["OnDemandStreamCount"] != 1.0 || r.body["OpenShardCount"] != 4.0 || r.body["ShardLimit"] != 500.0 || r.body["OnDemandStreamCountLimit"] != 50.0 {
		t.Fatalf("limits: %s", r.raw)
	}
}

func TestShardLimitMessageGetsRegion(t *testing.T) {
	h := newHarness(t)
	h.fake.shardLimit = 2
	wantError(t, h.call("CreateStream", `{"StreamName":"big","ShardCount":3}`), 400, wire.TypeLimitExceeded,
		"This request would exceed the shard limit for the account 123456789012 in eu-west-1. Current shard count for the account: 0. Limit: 2. "+
			"Number of additional shards that would have resulted from this request: 3. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.")
}

func TestListStreamsPagination(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"c", "a", "b", "d"} {
		h.createStream(n, 1)
	}
	r := h.ok("ListStreams", `{"Limit":3}`)
	if got := r.body["StreamNames"].([]any); len(got) != 3 || got[0] != "a" || r.body["HasMoreStreams"] != true {
		t.Fatalf("page 1: %s", r.raw)
	}
	sum := r.body["StreamSummaries"].([]any)[0].(map[string]any)
	if sum["StreamARN"] != "arn:aws:kinesis:eu-west-1:123456789012:stream/a" || sum["StreamStatus"] != "ACTIVE" {
		t.Fatalf("summary: %v", sum)
	}
	tok := str(r.body["NextToken"])
	r = h.ok("ListStreams", `{"NextToken":"`+tok+`"}`)
	if got := r.body["StreamNames"].([]any); len(got) != 1 || got[0] != "d" || r.body["HasMoreStreams"] != false || r.body["NextToken"] != nil {
		t.Fatalf("page 2: %s", r.raw)
	}
	r = h.ok("ListStreams", `{"ExclusiveStartStreamName":"b"}`)
	if got := r.body["StreamNames"].([]any); len(got) != 2 || got[0] != "c" {
		t.Fatalf("exclusive start: %s", r.raw)
	}
	wantError(t, h.call("ListStreams", `{"NextToken":"bogus"}`), 400, wire.TypeInvalidArgument, "Invalid NextToken.")
	wantError(t, h.call("ListStreams", `{"NextToken":"`+tok+`","ExclusiveStartStreamName":"a"}`), 400, wire.TypeInvalidArgument, "")
	h.advance(301e9)
	wantError(t, h.call("ListStreams", `{"NextToken":"`+tok+`"}`), 400, wire.TypeExpiredNextToken, "")
	r = h.ok("ListStreams", `{}`)
	if !strings.Contains(r.raw, `"HasMoreStreams":false`) {
		t.Fatalf("empty: %s", r.raw)
	}
}

func TestStreamAddressing(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	const arn = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
	h.ok("DescribeStreamSummary", `{"StreamARN":"`+arn+`"}`)
	h.ok("DescribeStreamSummary", `{"StreamName":"s","StreamARN":"`+arn+`"}`)
	wantError(t, h.call("DescribeStreamSummary", `{}`), 400, wire.TypeInvalidArgument, "Either StreamName or StreamARN must be provided.")
	wantError(t, h.call("DescribeStreamSummary", `{"StreamName":"t","StreamARN":"`+arn+`"}`), 400, wire.TypeInvalidArgument, "")
	wantError(t, h.call("DescribeStreamSummary", `{"StreamARN":"arn:aws:kinesis:us-east-1:999999999999:stream/s"}`), 400, wire.TypeResourceNotFound,
		"Stream s under account 999999999999 not found.")
	wantError(t, h.call("PutRecord", `{"StreamARN":"arn:aws-cn:kinesis:cn-north-1:123456789012:stream/nope","PartitionKey":"k","Data":""}`), 400, wire.TypeResourceNotFound,
		"Stream nope under account 123456789012 not found.")
}

func TestRetention(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	h.ok("IncreaseStreamRetentionPeriod", `{"StreamName":"s","RetentionPeriodHours":48}`)
	wantError(t, h.call("IncreaseStreamRetentionPeriod", `{"StreamName":"s","RetentionPeriodHours":48}`), 400, wire.TypeInvalidArgument,
		"Requested retention period (48 hours) for stream s can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API.")
	h.ok("DecreaseStreamRetentionPeriod", `{"StreamName":"s","RetentionPeriodHours":24}`)
	if got := h.fake.streams["s"].info.RetentionHours; got != 24 {
		t.Fatalf("retention = %d", got)
	}
}

func TestStorageErrorMapping(t *testing.T) {
	tests := []struct {
		err    error
		status int
		typ    string
		msg    string
	}{
		{&storage.Error{Kind: storage.ErrResourceInUse, Reason: storage.ReasonNotActive, Facts: storage.Facts{Account: "1", Stream: "s", State: storage.StatusUpdating}},
			400, wire.TypeResourceInUse, "Stream s under account 1 not ACTIVE, instead in state UPDATING"},
		{&storage.Error{Kind: storage.ErrShardNotFound, Reason: storage.ReasonShardGone, Facts: storage.Facts{Account: "1", Stream: "s", Shard: "shardId-000000000002"}},
			400, wire.TypeResourceNotFound, "Shard shardId-000000000002 in stream s under account 1 does not exist"},
		{&storage.Error{Kind: storage.ErrThrottled, Reason: storage.ReasonThrottled, Facts: storage.Facts{Account: "1", Stream: "s", Shard: "shardId-000000000002"}},
			400, wire.TypeThroughput, "Rate exceeded for shard shardId-000000000002 in stream s under account 1."},
		{&storage.Error{Kind: storage.ErrLimitExceeded, Reason: storage.ReasonScalingCalls, Facts: storage.Facts{Account: "1", Stream: "s", Limit: 10}},
			400, wire.TypeLimitExceeded, "Exceeded the limit of 10 UpdateShardCount calls per rolling 24 hours for stream s under account 1."},
		{&storage.Error{Kind: storage.ErrDiskFull, Reason: storage.ReasonDiskFull, Facts: storage.Facts{Detail: "write segment: ENOSPC"}}, 500, wire.TypeInternalFailure, "Internal Service Failure: no space left on device"},
		{&storage.Error{Kind: storage.ErrShardReadOnly, Reason: storage.ReasonReadOnly, Facts: storage.Facts{Detail: "fsync failed"}}, 500, wire.TypeInternalFailure, "Internal Service Failure: shard refuses writes"},
		{storage.ErrClosed, 500, wire.TypeInternalFailure, "Internal Service Failure: store closed"},
		{&storage.Error{Kind: storage.ErrShardClosed, Reason: storage.ReasonShardClosed}, 500, wire.TypeInternalFailure,
			"Internal Service Failure: the shard was closed by a reshard while the request was on its way; retry it"},
		{errors.New("disk on fire"), 500, wire.TypeInternalFailure, "Internal Service Failure: disk on fire"},
	}
	for _, tc := range tests {
		h := newHarness(t)
		h.fake.failAll = tc.err
		wantError(t, h.call("ListStreams", `{}`), tc.status, tc.typ, tc.msg)
	}
}

func TestPanicBecomesInternalFailure(t *testing.T) {
	h := newHarness(t)
	h.fake.panicMsg = "boom"
	wantError(t, h.call("ListStreams", `{}`), 500, wire.TypeInternalFailure, "Internal Service Failure: boom")
}

type refuseAll struct{ seen []AdmissionRequest }

func (r *refuseAll) Admit(_ context.Context, req AdmissionRequest) error {
	r.seen = append(r.seen, req)
	return &storage.Error{Kind: storage.ErrThrottled, Reason: storage.ReasonThrottled, Facts: storage.Facts{Account: "123456789012", Stream: "s", Shard: "shardId-000000000000"}}
}

func TestAdmissionHook(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	adm := &refuseAll{}
	h.srv.cfg.Admission = adm
	wantError(t, h.call("PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"k","Data":"YWJj"}]}`), 400, wire.TypeThroughput, "Rate exceeded for shard shardId-000000000000 in stream s under account 123456789012.")
	if len(adm.seen) != 1 || adm.seen[0] != (AdmissionRequest{Operation: "PutRecords", Region: "eu-west-1", Stream: "s", Records: 1, Bytes: 4,
		ResourceARN: "arn:aws:kinesis:eu-west-1:123456789012:stream/s"}) {
		t.Fatalf("admission saw %+v", adm.seen)
	}
	if h.fake.lastPut != nil {
		t.Fatal("backend was called after admission refused")
	}
}
