package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// opNames lists the implemented operations in a fixed order, so a fuzz input
// byte can pick one.
func opNames() []string {
	names := make([]string, 0, len(operations))
	for n := range operations {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// FuzzDecodeRequest sends arbitrary bodies to every operation. The fake never
// fails, so a 500 can only come from a recovered panic in the api itself.
// Every answer must be well-formed: 200, or an AWS error body with __type.
func FuzzDecodeRequest(f *testing.F) {
	seeds := []string{
		`{}`, ``, `null`, `[]`, `{"StreamName":"s"}`, `{"StreamName":"s","ShardCount":2}`,
		`{"StreamName":"s","Records":[{"PartitionKey":"k","Data":"YWJj","ExplicitHashKey":"12"}]}`,
		`{"StreamName":"s","PartitionKey":"k","Data":"YWJj","SequenceNumberForOrdering":"1"}`,
		`{"StreamName":"s","ShardId":"shardId-0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1.5e9}`,
		`{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":"0"}`,
		`{"ShardIterator":"AAAAAAAAAAE=","Limit":1}`, `{"StreamName":"s","ShardFilter":{"Type":"AT_TIMESTAMP","Timestamp":"2020-01-01T00:00:00Z"}}`,
		`{"NextToken":"AAAAAAAAAAEC","MaxResults":1}`, `{"StreamName":"s","Tags":{"a":"b"}}`, `{"StreamName":"s","TagKeys":["a"]}`,
		`{"StreamName":"s","RetentionPeriodHours":48}`, `{"StreamARN":"arn:aws:kinesis:r:123456789012:stream/s"}`,
		`{"Limit":-1e400,"StreamName":"\u0000"}`, `{"StreamName":"s","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`,
	}
	ops := opNames()
	for i, s := range seeds {
		f.Add(byte(i), []byte(s))
	}
	h := newHarness(f)
	h.createStream("s", 2)
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		req := newRequest(ops[int(op)%len(ops)], string(body))
		r := h.do(req)
		if r.status == http.StatusInternalServerError {
			t.Fatalf("%s %q: %s", ops[int(op)%len(ops)], body, r.raw)
		}
		if r.status != http.StatusOK && r.errType() == "" {
			t.Fatalf("%s %q: status %d without __type: %s", ops[int(op)%len(ops)], body, r.status, r.raw)
		}
		if r.raw != "" && !json.Valid([]byte(r.raw)) {
			t.Fatalf("invalid JSON answer: %s", r.raw)
		}
	})
}

// FuzzIterator decodes arbitrary strings as shard iterators: it must never
// panic, and whatever decodes must re-encode to the very same text.
func FuzzIterator(f *testing.F) {
	h := newHarness(f)
	for _, pos := range []storage.Position{
		{Stream: "s", StreamCreated: 1, ShardIndex: 0, Ordinal: 0},
		{Stream: "a.b-c_d", StreamCreated: time.Now().UnixNano(), ShardIndex: 7, Ordinal: 1 << 40},
	} {
		f.Add(h.srv.encodeIterator(pos, h.now))
	}
	f.Add("")
	f.Add("AAAAAAAAAAE=")
	f.Add("AAAAAAAAAAEBAAABk3Y3cAA=\n")
	f.Fuzz(func(t *testing.T, tok string) {
		pos, issued, ok := h.srv.openIterator(tok)
		_, _ = h.srv.decodeIterator(tok, h.now)
		if !ok {
			return
		}
		if again := h.srv.encodeIterator(pos, time.UnixMilli(issued)); again != tok {
			t.Fatalf("re-encoded %q as %q", tok, again)
		}
	})
}

// FuzzDecodeCBORRequest is FuzzDecodeRequest for CBOR bodies.
func FuzzDecodeCBORRequest(f *testing.F) {
	for i, s := range []string{
		"\xa0", "\xa1\x6aStreamName\x61s",
		"\xa2\x6aStreamName\x61s\x67Records\x81\xa2\x6cPartitionKey\x61k\x64Data\x43abc",
		"\xa1\x69Timestamp\xc1\x1b\x00\x00\x01\xa0\x13\xac\xcc\x38", "\xbf\xff", "\xa1\x65Limit\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",
	} {
		f.Add(byte(i), []byte(s))
	}
	ops := opNames()
	h := newHarness(f)
	h.createStream("s", 2)
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		req := newRequest(ops[int(op)%len(ops)], "")
		req.Body = httpBody(body)
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", wire.ContentTypeCBOR11)
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, req)
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("%s %x: %x", ops[int(op)%len(ops)], body, w.Body.Bytes())
		}
		var e cborError
		if w.Code != http.StatusOK && (cbor.Unmarshal(w.Body.Bytes(), &e) != nil || e.Type == "") {
			t.Fatalf("status %d without a CBOR error body: %x", w.Code, w.Body.Bytes())
		}
	})
}
