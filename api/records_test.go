package api

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

func (h *harness) iterator(stream, shard, typ, extra string) string {
	h.t.Helper()
	r := h.ok("GetShardIterator", `{"StreamName":"`+stream+`","ShardId":"`+shard+`","ShardIteratorType":"`+typ+`"`+extra+`}`)
	return str(r.body["ShardIterator"])
}

func TestPutAndGetRecords(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	r := h.ok("PutRecord", `{"StreamName":"s","PartitionKey":"pk","Data":"aGVsbG8="}`)
	if r.body["ShardId"] != "shardId-000000000000" || len(str(r.body["SequenceNumber"])) != 56 || strings.Contains(r.raw, "EncryptionType") {
		t.Fatalf("PutRecord: %s", r.raw)
	}
	first := str(r.body["SequenceNumber"])
	r = h.ok("PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"a","Data":"MQ=="},{"PartitionKey":"b","Data":"Mg==","ExplicitHashKey":"5"}]}`)
	if r.raw[:len(`{"FailedRecordCount":0,"Records":[{"SequenceNumber":"`)] != `{"FailedRecordCount":0,"Records":[{"SequenceNumber":"` {
		t.Fatalf("PutRecords: %s", r.raw)
	}
	if k := h.fake.lastPut[1].ExplicitHashKey; k == nil || k.Lo != 5 {
		t.Fatalf("explicit hash key not passed: %+v", h.fake.lastPut[1])
	}

	it := h.iterator("s", "shardId-0", "TRIM_HORIZON", "")
	if !strings.HasPrefix(it, "AAAAAAAAAAE") || len(it) > 512 {
		t.Fatalf("iterator %q", it)
	}
	r = h.ok("GetRecords", `{"ShardIterator":"`+it+`","Limit":2}`)
	recs := r.body["Records"].([]any)
	rec0 := recs[0].(map[string]any)
	if len(recs) != 2 || rec0["Data"] != "aGVsbG8=" || rec0["PartitionKey"] != "pk" || rec0["SequenceNumber"] != first {
		t.Fatalf("GetRecords: %s", r.raw)
	}
	if !regexp.MustCompile(`"ApproximateArrivalTimestamp":1795694400\.000,`).MatchString(r.raw) {
		t.Fatalf("arrival format: %s", r.raw)
	}
	next := str(r.body["NextShardIterator"])
	r = h.ok("GetRecords", `{"ShardIterator":"`+next+`"}`)
	if recs := r.body["Records"].([]any); len(recs) != 1 || recs[0].(map[string]any)["Data"] != "Mg==" {
		t.Fatalf("second page: %s", r.raw)
	}
	// At the tip of an open shard: no records, a fresh iterator.
	tip := str(r.body["NextShardIterator"])
	h.advance(time.Millisecond)
	r = h.ok("GetRecords", `{"ShardIterator":"`+tip+`"}`)
	if !strings.HasPrefix(r.raw, `{"Records":[],"NextShardIterator":"`) || str(r.body["NextShardIterator"]) == tip || r.body["MillisBehindLatest"] != 0.0 {
		t.Fatalf("tip: %s", r.raw)
	}

	after := h.iterator("s", "0", "AFTER_SEQUENCE_NUMBER", `,"StartingSequenceNumber":"`+first+`"`)
	r = h.ok("GetRecords", `{"ShardIterator":"`+after+`"}`)
	if recs := r.body["Records"].([]any); len(recs) != 2 || recs[0].(map[string]any)["PartitionKey"] != "a" {
		t.Fatalf("AFTER_SEQUENCE_NUMBER: %s", r.raw)
	}
	latest := h.iterator("s", "0", "LATEST", "")
	if r = h.ok("GetRecords", `{"ShardIterator":"`+latest+`"}`); len(r.body["Records"].([]any)) != 0 {
		t.Fatalf("LATEST: %s", r.raw)
	}
	ts := h.iterator("s", "0", "AT_TIMESTAMP", `,"Timestamp":1795694399.5`)
	if r = h.ok("GetRecords", `{"ShardIterator":"`+ts+`"}`); len(r.body["Records"].([]any)) != 3 {
		t.Fatalf("AT_TIMESTAMP: %s", r.raw)
	}
	// AWS takes only numbers for a Timestamp (aws-fidelity A2).
	wantError(t, h.call("GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":"2026-11-26T11:00:00Z"}`),
		400, wire.TypeSerialization, "class java.lang.String can not be converted to milliseconds since epoch")
}

func TestClosedShardEnd(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	h.ok("PutRecord", `{"StreamName":"s","PartitionKey":"pk","Data":"YQ=="}`)
	h.fake.closeShard("s", 0)
	it := h.iterator("s", "0", "TRIM_HORIZON", "")
	r := h.ok("GetRecords", `{"ShardIterator":"`+it+`"}`)
	if _, has := r.body["NextShardIterator"]; has {
		t.Fatalf("closed shard end: %s", r.raw)
	}
	child := r.body["ChildShards"].([]any)[0].(map[string]any)
	if child["ShardId"] != "shardId-000000000001" || child["ParentShards"].([]any)[0] != "shardId-000000000000" {
		t.Fatalf("ChildShards: %s", r.raw)
	}
}

func TestPutRecordsPartialFailure(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 2)
	h.fake.recordErrs = map[int]error{
		1: &storage.Error{Kind: storage.ErrThrottled, Reason: storage.ReasonThrottled, Facts: storage.Facts{Account: "123456789012", Stream: "s", Shard: "shardId-000000000001"}},
		2: &storage.Error{Kind: storage.ErrShardReadOnly, Reason: storage.ReasonReadOnly, Facts: storage.Facts{Detail: "fsync"}},
	}
	r := h.ok("PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"a","Data":""},{"PartitionKey":"b","Data":""},{"PartitionKey":"c","Data":""}]}`)
	recs := r.body["Records"].([]any)
	if r.body["FailedRecordCount"] != 2.0 || len(recs) != 3 {
		t.Fatalf("partial: %s", r.raw)
	}
	if e := recs[1].(map[string]any); e["ErrorCode"] != wire.TypeThroughput || !strings.HasPrefix(str(e["ErrorMessage"]), "Rate exceeded for shard") {
		t.Fatalf("throttled entry: %v", e)
	}
	// AWS's text, then the server-side cause an operator can act on.
	if e := recs[2].(map[string]any); e["ErrorCode"] != "InternalFailure" || e["ErrorMessage"] != "Internal Service Failure: shard refuses writes" {
		t.Fatalf("failed entry: %v", e)
	}
	h.fake.recordErrs = map[int]error{0: &storage.Error{Kind: storage.ErrThrottled, Reason: storage.ReasonThrottled, Facts: storage.Facts{Account: "123456789012", Stream: "s", Shard: "shardId-000000000000"}}}
	wantError(t, h.call("PutRecord", `{"StreamName":"s","PartitionKey":"a","Data":""}`), 400, wire.TypeThroughput,
		"Rate exceeded for shard shardId-000000000000 in stream s under account 123456789012.")
}

func TestPutRecordErrors(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	wantError(t, h.call("PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"","ExplicitHashKey":"340282366920938463463374607431768211456"}`), 400, wire.TypeInvalidArgument,
		"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was 340282366920938463463374607431768211456")
	wantError(t, h.call("PutRecord", `{"StreamName":"nope","PartitionKey":"k","Data":""}`), 400, wire.TypeResourceNotFound, "Stream nope under account 123456789012 not found.")
	h.fake.putErr = &storage.Error{Kind: storage.ErrDiskFull, Reason: storage.ReasonDiskFull, Facts: storage.Facts{Detail: "ENOSPC"}}
	wantError(t, h.call("PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"k","Data":""}]}`), 500, wire.TypeInternalFailure, "Internal Service Failure: no space left on device")
}

// b64 is n zero bytes in base64.
func b64(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }

// TestRecordSizeLimits: a record's data + partition key is held to its
// stream's maximum record size (1 MiB by default, up to 10 MiB), Data alone
// to the model's 10 MiB, and a PutRecords request to 10 MiB in all.
func TestRecordSizeLimits(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	h.ok("CreateStream", `{"StreamName":"big","ShardCount":1,"MaxRecordSizeInKiB":10240}`)
	const mib = 1 << 20
	tooLarge := func(where string, size, limit int) string {
		return "Record size" + where + " (data + partition key) of " + strconv.Itoa(size) + " bytes exceeds the maximum record size of " + strconv.Itoa(limit) + " bytes."
	}
	recs := func(n, data int, last string) string { // n records of data bytes and key "k", then last
		return `[` + strings.Repeat(`{"PartitionKey":"k","Data":"`+b64(data)+`"},`, n) + last + `]`
	}
	tests := []struct {
		name, op, body string
		status         int
		typ, msg       string
	}{
		{"1 MiB exactly on a default stream", "PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"` + b64(mib-1) + `"}`, 200, "", ""},
		{"1 MiB + 1 on a default stream", "PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"` + b64(mib) + `"}`, 400,
			wire.TypeInvalidArgument, tooLarge("", mib+1, mib)},
		{"the key counts in UTF-8 bytes", "PutRecord", `{"StreamName":"s","PartitionKey":"é","Data":"` + b64(mib-1) + `"}`, 400,
			wire.TypeInvalidArgument, tooLarge("", mib+1, mib)},
		{"PutRecords names the record", "PutRecords", `{"StreamName":"s","Records":` + recs(1, 1, `{"PartitionKey":"k","Data":"`+b64(mib)+`"}`) + `}`, 400,
			wire.TypeInvalidArgument, tooLarge(" in record 1", mib+1, mib)},
		{"a missing stream is reported before the size", "PutRecord", `{"StreamName":"nope","PartitionKey":"k","Data":"` + b64(2*mib) + `"}`, 400,
			wire.TypeResourceNotFound, "Stream nope under account 123456789012 not found."},
		{"10 MiB exactly on a 10 MiB stream", "PutRecord", `{"StreamName":"big","PartitionKey":"k","Data":"` + b64(10*mib-1) + `"}`, 200, "", ""},
		{"10 MiB + 1 on a 10 MiB stream", "PutRecord", `{"StreamName":"big","PartitionKey":"k","Data":"` + b64(10*mib) + `"}`, 400,
			wire.TypeInvalidArgument, tooLarge("", 10*mib+1, 10*mib)},
		{"Data over the model's 10 MiB", "PutRecord", `{"StreamName":"big","PartitionKey":"k","Data":"` + b64(10*mib+1) + `"}`, 400,
			wire.TypeValidation, "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=10485761 cap=10485761]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 10485760"},
		{"PutRecords Data over the model's 10 MiB", "PutRecords", `{"StreamName":"big","Records":[{"PartitionKey":"k","Data":"` + b64(10*mib+1) + `"}]}`, 400,
			wire.TypeValidation, "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=10485761 cap=10485761]' at 'records.1.member.data' failed to satisfy constraint: Member must have length less than or equal to 10485760"},
		// 10 records of 1 MiB - 1 byte of data plus a 1-byte key are 10 MiB
		// exactly, on any stream; one byte more of key tips it over.
		{"PutRecords of 10 MiB", "PutRecords", `{"StreamName":"s","Records":` + recs(9, mib-1, `{"PartitionKey":"k","Data":"`+b64(mib-1)+`"}`) + `}`, 200, "", ""},
		{"PutRecords over 10 MiB", "PutRecords", `{"StreamName":"s","Records":` + recs(10, mib-1, `{"PartitionKey":"k","Data":""}`) + `}`, 400,
			wire.TypeInvalidArgument, "Records size exceeds 10 MB limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.call(tc.op, tc.body)
			if tc.status == 200 {
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				return
			}
			wantError(t, r, tc.status, tc.typ, tc.msg)
		})
	}
}

func TestGetShardIteratorArguments(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	const either = "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified "
	tests := []struct{ body, typ, msg string }{
		{`"ShardId":"0","ShardIteratorType":"LATEST","StartingSequenceNumber":"1"`, wire.TypeInvalidArgument, either + "LATEST and also a StartingSequenceNumber."},
		{`"ShardId":"0","ShardIteratorType":"AT_SEQUENCE_NUMBER"`, wire.TypeInvalidArgument, either + "AT_SEQUENCE_NUMBER and no StartingSequenceNumber."},
		{`"ShardId":"0","ShardIteratorType":"AT_TIMESTAMP"`, wire.TypeInvalidArgument, "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter."},
		{`"ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1795694401.25`, wire.TypeInvalidArgument,
			"The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: 1795694401250, currentTimestampInMillis: 1795694400000"},
		// A missing shard is reported before a bad argument combination.
		{`"ShardId":"7","ShardIteratorType":"LATEST","StartingSequenceNumber":"1"`, wire.TypeResourceNotFound, ""},
		{`"ShardId":"0","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":"1"`, wire.TypeInvalidArgument, "StartingSequenceNumber 1 used in GetShardIterator on shard 0 in stream s under account 123456789012 is invalid."},
	}
	for _, tc := range tests {
		wantError(t, h.call("GetShardIterator", `{"StreamName":"s",`+tc.body+`}`), 400, tc.typ, tc.msg)
	}
}

func TestIteratorSecurity(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	h.createStream("other", 1)
	it := h.iterator("s", "0", "TRIM_HORIZON", "")

	// Tampering with any byte breaks the MAC.
	raw, _ := base64.StdEncoding.DecodeString(it)
	for i := range raw {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0x01
		wantError(t, h.call("GetRecords", `{"ShardIterator":"`+base64.StdEncoding.EncodeToString(bad)+`"}`), 400, wire.TypeInvalidArgument, "Invalid ShardIterator.")
	}
	for _, tok := range []string{"x", "AAAA", it + "A", strings.Repeat("A", 512), it[:len(it)-4]} {
		wantError(t, h.call("GetRecords", `{"ShardIterator":"`+tok+`"}`), 400, wire.TypeInvalidArgument, "Invalid ShardIterator.")
	}
	// A token of another kind with the same key does not open as an iterator.
	forged := h.srv.keys.Seal(wire.TokenListShards, h.now.UnixMilli(), iteratorPayload(storage.Position{Stream: "other"}))
	wantError(t, h.call("GetRecords", `{"ShardIterator":"`+forged+`"}`), 400, wire.TypeInvalidArgument, "Invalid ShardIterator.")

	// StreamARN must name the iterator's stream.
	wantError(t, h.call("GetRecords", `{"ShardIterator":"`+it+`","StreamARN":"arn:aws:kinesis:eu-west-1:123456789012:stream/other"}`), 400, wire.TypeInvalidArgument, "")
	h.ok("GetRecords", `{"ShardIterator":"`+it+`","StreamARN":"arn:aws:kinesis:eu-west-1:123456789012:stream/s"}`)

	// A recreated stream does not honour iterators of the old one.
	h.ok("DeleteStream", `{"StreamName":"s"}`)
	h.advance(time.Second)
	h.createStream("s", 1)
	wantError(t, h.call("GetRecords", `{"ShardIterator":"`+it+`"}`), 400, wire.TypeResourceNotFound, "")

	// Five minutes later it has expired, with AWS's message.
	it = h.iterator("s", "0", "LATEST", "")
	h.advance(300*time.Second + time.Millisecond)
	wantError(t, h.call("GetRecords", `{"ShardIterator":"`+it+`"}`), 400, wire.TypeExpiredIterator,
		"Iterator expired. The iterator was created at time Thu Nov 26 12:00:01 UTC 2026 while right now it is Thu Nov 26 12:05:01 UTC 2026 which is further in the future than the tolerated delay of 300000 milliseconds.")
}

func TestIteratorRoundTrip(t *testing.T) {
	h := newHarness(t)
	pos := storage.Position{Stream: strings.Repeat("n", 128), StreamCreated: -5, ShardIndex: 1<<31 - 1, Ordinal: 1<<64 - 1}
	tok := h.srv.encodeIterator(pos, h.now)
	if len(tok) > 512 {
		t.Fatalf("iterator of %d chars", len(tok))
	}
	got, err := h.srv.decodeIterator(tok, h.now)
	if err != nil || got != pos {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

// TestPutRecordOutputJSON checks the hand-written encoder against
// encoding/json, with and without EncryptionType.
func TestPutRecordOutputJSON(t *testing.T) {
	for _, o := range []putRecordOutput{
		{ShardId: "shardId-000000000003", SequenceNumber: "49590338271490256608559692538361571095921575989136588850"},
		{ShardId: "shardId-000000000000", SequenceNumber: "1", EncryptionType: "KMS"},
		{},
	} {
		want, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON = %s, encoding/json %s", got, want)
		}
	}
}
