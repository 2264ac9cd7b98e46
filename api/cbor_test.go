package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/shardlog/shardlog/api/wire"
)

// cborError is an error body in CBOR. The decoder matches keys exactly when
// a field's name is exact, so each key lands in its own field.
type cborError struct {
	Type    string `cbor:"__type"`
	Message string `cbor:"message,omitempty"`
	// SerMessage is a SerializationException's text, under "Message".
	SerMessage string `cbor:"Message,omitempty"`
}

// callCBOR sends a CBOR request built from in and decodes the answer into out
// (if the status is 200) or returns the error body.
func (h *harness) callCBOR(op string, in any, out any) (int, cborError) {
	h.t.Helper()
	body, err := cbor.Marshal(in)
	if err != nil {
		h.t.Fatal(err)
	}
	req := newRequest(op, "")
	req.Body = httpBody(body)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", wire.ContentTypeCBOR11)
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	if ct := w.Header().Get("Content-Type"); ct != wire.ContentTypeCBOR11 {
		h.t.Fatalf("%s: Content-Type %q", op, ct)
	}
	var e cborError
	if w.Code != http.StatusOK {
		if err := cbor.Unmarshal(w.Body.Bytes(), &e); err != nil {
			h.t.Fatalf("%s: error body: %v", op, err)
		}
		return w.Code, e
	}
	if out != nil && w.Body.Len() > 0 {
		if err := cbor.Unmarshal(w.Body.Bytes(), out); err != nil {
			h.t.Fatalf("%s: %v", op, err)
		}
	}
	return w.Code, e
}

func TestCBORRoundTrip(t *testing.T) {
	h := newHarness(t)
	if code, e := h.callCBOR("CreateStream", map[string]any{"StreamName": "c", "ShardCount": 1}, nil); code != 200 {
		t.Fatalf("CreateStream: %d %+v", code, e)
	}
	var put struct {
		FailedRecordCount int
		Records           []wire.PutResult
	}
	recs := []map[string]any{{"PartitionKey": "k", "Data": []byte{0, 1, 2}}, {"PartitionKey": "k2", "Data": "YWJj"}}
	if code, e := h.callCBOR("PutRecords", map[string]any{"StreamName": "c", "Records": recs}, &put); code != 200 || len(put.Records) != 2 || put.Records[0].ShardId != "shardId-000000000000" {
		t.Fatalf("PutRecords: %d %+v %+v", code, e, put)
	}
	// AT_TIMESTAMP with tag 1 around epoch milliseconds, as the Java SDK sends it.
	var it struct{ ShardIterator string }
	ts := cbor.Tag{Number: 1, Content: h.now.UnixMilli()}
	if code, e := h.callCBOR("GetShardIterator", map[string]any{"StreamName": "c", "ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": ts}, &it); code != 200 {
		t.Fatalf("GetShardIterator: %d %+v", code, e)
	}
	var got struct {
		Records []struct {
			SequenceNumber              string
			ApproximateArrivalTimestamp cbor.RawTag
			Data                        []byte
			PartitionKey                string
		}
		NextShardIterator  string
		MillisBehindLatest int64
	}
	if code, e := h.callCBOR("GetRecords", map[string]any{"ShardIterator": it.ShardIterator}, &got); code != 200 {
		t.Fatalf("GetRecords: %d %+v", code, e)
	}
	if len(got.Records) != 2 || !bytes.Equal(got.Records[0].Data, []byte{0, 1, 2}) || string(got.Records[1].Data) != "abc" || got.NextShardIterator == "" {
		t.Fatalf("GetRecords: %+v", got)
	}
	var ms int64
	if tag := got.Records[0].ApproximateArrivalTimestamp; tag.Number != 1 || cbor.Unmarshal(tag.Content, &ms) != nil || ms != h.now.UnixMilli() {
		t.Fatalf("arrival: %+v", tag)
	}
	var desc struct {
		StreamDescription struct{ StreamCreationTimestamp cbor.RawTag }
	}
	if code, _ := h.callCBOR("DescribeStream", map[string]any{"StreamName": "c"}, &desc); code != 200 || desc.StreamDescription.StreamCreationTimestamp.Number != 1 {
		t.Fatalf("DescribeStream: %+v", desc)
	}
}

func TestCBORErrors(t *testing.T) {
	h := newHarness(t)
	code, e := h.callCBOR("DescribeStream", map[string]any{}, nil)
	if code != 400 || e.Type != wire.TypeInvalidArgument {
		t.Fatalf("got %d %+v", code, e)
	}
	code, e = h.callCBOR("CreateStream", map[string]any{"ShardCount": 1}, nil)
	if code != 400 || e.Message != "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null" {
		t.Fatalf("got %d %+v", code, e)
	}
	for _, tc := range []struct {
		op  string
		in  any
		msg string
	}{
		{"DescribeStream", map[string]any{"StreamName": 5}, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"},
		{"DescribeStream", map[string]any{"StreamName": []string{"a"}}, msgStartOfList},
		{"DescribeStream", map[string]any{"StreamName": "s", "Limit": "x"}, "class java.lang.String can not be converted to an Integer"},
		{"DescribeStream", []int{1}, ""},
		{"PutRecord", map[string]any{"StreamName": "s", "PartitionKey": "k", "Data": 12}, msgNumberToBlob},
		{"PutRecord", map[string]any{"StreamName": "s", "PartitionKey": "k", "Data": 3.5}, msgNumberToBlob},
		// Timestamps: tag 1 or a number, nothing else (aws-fidelity A2).
		{"GetShardIterator", map[string]any{"StreamName": "s", "ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": "23"},
			"class java.lang.String can not be converted to milliseconds since epoch"},
		{"ListShards", map[string]any{"StreamName": "s", "StreamCreationTimestamp": true}, "class java.lang.Boolean can not be converted to milliseconds since epoch"},
	} {
		code, e := h.callCBOR(tc.op, tc.in, nil)
		if code != 400 || e.Type != wire.TypeSerialization || e.SerMessage != tc.msg || e.Message != "" {
			t.Errorf("%v: got %d %+v, want %q under Message", tc.in, code, e, tc.msg)
		}
	}
}
