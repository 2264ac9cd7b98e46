package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/fxamacker/cbor/v2"
)

type recordList []Record

func (l recordList) Len() int        { return len(l) }
func (l recordList) At(i int) Record { return l[i] }

// decodeAll reads every message of an event stream with the AWS SDK's
// decoder, which checks the prelude and message CRCs.
func decodeAll(t *testing.T, b []byte) []eventstream.Message {
	t.Helper()
	dec := eventstream.NewDecoder()
	r := bytes.NewReader(b)
	var out []eventstream.Message
	for {
		msg, err := dec.Decode(r, nil)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode message %d: %v", len(out), err)
		}
		out = append(out, msg.Clone())
	}
}

func header(m eventstream.Message, name string) string {
	if v := m.Headers.Get(name); v != nil {
		return v.String()
	}
	return ""
}

// TestEventStreamBytes: the initial response, events (with and without a
// continuation, with ChildShards) and exceptions, in JSON and CBOR, decode
// with the SDK's decoder into the headers and payloads AWS sends.
func TestEventStreamBytes(t *testing.T) {
	cont := "49590338271490256608559692538361571095921575989136588898"
	arrival := time.UnixMilli(1_700_000_000_123)
	rec := Record{SequenceNumber: cont, ApproximateArrivalTimestamp: EpochTime(arrival), Data: []byte("hi"), PartitionKey: "pk"}
	child := ChildShard{ShardId: "shardId-000000000001", ParentShards: []string{"shardId-000000000000"},
		HashKeyRange: HashKeyRange{StartingHashKey: "0", EndingHashKey: "9"}}
	tests := []struct {
		name  string
		codec Codec
		ctype string
		// decode turns a payload into a generic map.
		decode func([]byte) (map[string]any, error)
	}{
		{"JSON", JSON11, "application/json", func(b []byte) (map[string]any, error) {
			var m map[string]any
			return m, json.Unmarshal(b, &m)
		}},
		{"CBOR", cborAmz, ContentTypeCBOR11, func(b []byte) (map[string]any, error) {
			dm, err := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any{})}.DecMode()
			if err != nil {
				return nil, err
			}
			var m map[string]any
			return m, dm.Unmarshal(b, &m)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewEventWriter(&buf, tc.codec)
			must := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			must(w.InitialResponse())
			must(w.Event(SubscribeToShardEvent{Records: recordList{rec}, ContinuationSequenceNumber: &cont, MillisBehindLatest: 7}))
			must(w.Event(SubscribeToShardEvent{Records: recordList{}, MillisBehindLatest: 0, ChildShards: []ChildShard{child}}))
			must(w.Exception(ClientError(TypeResourceNotFound, "gone")))
			msgs := decodeAll(t, buf.Bytes())
			if len(msgs) != 4 {
				t.Fatalf("%d messages, want 4", len(msgs))
			}
			wantHeaders := []map[string]string{
				{":message-type": "event", ":event-type": "initial-response", ":content-type": tc.ctype},
				{":message-type": "event", ":event-type": "SubscribeToShardEvent", ":content-type": tc.ctype},
				{":message-type": "event", ":event-type": "SubscribeToShardEvent", ":content-type": tc.ctype},
				{":message-type": "exception", ":exception-type": "ResourceNotFoundException", ":content-type": tc.ctype},
			}
			payloads := make([]map[string]any, len(msgs))
			for i, m := range msgs {
				for k, v := range wantHeaders[i] {
					if got := header(m, k); got != v {
						t.Fatalf("message %d header %s = %q, want %q", i, k, got, v)
					}
				}
				var err error
				if payloads[i], err = tc.decode(m.Payload); err != nil {
					t.Fatalf("message %d payload %q: %v", i, m.Payload, err)
				}
			}
			if len(payloads[0]) != 0 {
				t.Fatalf("initial-response payload %v, want {}", payloads[0])
			}
			ev := payloads[1]
			if ev["ContinuationSequenceNumber"] != cont || len(ev["Records"].([]any)) != 1 {
				t.Fatalf("event payload %v", ev)
			}
			r := ev["Records"].([]any)[0].(map[string]any)
			if r["PartitionKey"] != "pk" || r["SequenceNumber"] != cont {
				t.Fatalf("record %v", r)
			}
			end := payloads[2]
			if _, ok := end["ContinuationSequenceNumber"]; ok {
				t.Fatalf("end event has a continuation: %v", end)
			}
			if len(end["ChildShards"].([]any)) != 1 {
				t.Fatalf("end event ChildShards %v", end["ChildShards"])
			}
			if payloads[3]["message"] != "gone" {
				t.Fatalf("exception payload %v", payloads[3])
			}
		})
	}
}

// TestEventRecordEncoding pins the JSON of a record inside an event: the
// same as GetRecords' (base64 data, epoch-seconds arrival).
func TestEventRecordEncoding(t *testing.T) {
	cont := "1"
	rec := Record{SequenceNumber: "1", ApproximateArrivalTimestamp: EpochTime(time.UnixMilli(1_700_000_000_123)), Data: []byte("hi"), PartitionKey: "pk"}
	got := string(SubscribeToShardEvent{Records: recordList{rec}, ContinuationSequenceNumber: &cont, MillisBehindLatest: 3}.AppendJSON(nil))
	want := `{"Records":[{"SequenceNumber":"1","ApproximateArrivalTimestamp":1700000000.123,"Data":"aGk=","PartitionKey":"pk"}],"ContinuationSequenceNumber":"1","MillisBehindLatest":3}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestKeylessRecordEncoding: a record written without a partition key (AUTO
// record distribution) has no PartitionKey member in GetRecords' output or
// in an event, in JSON and in CBOR, as AWS documents.
func TestKeylessRecordEncoding(t *testing.T) {
	recs := recordList{{SequenceNumber: "1", Data: []byte("a")}, {SequenceNumber: "2", Data: []byte("b"), PartitionKey: "k"}}
	outputs := map[string]interface {
		AppendJSON([]byte) []byte
		CBORValue() any
	}{
		"GetRecords":            GetRecordsOutput{Records: recs},
		"SubscribeToShardEvent": SubscribeToShardEvent{Records: recs},
	}
	for name, out := range outputs {
		var fromJSON, fromCBOR map[string]any
		if err := json.Unmarshal(out.AppendJSON(nil), &fromJSON); err != nil {
			t.Fatalf("%s JSON: %v", name, err)
		}
		b, err := cborEnc.Marshal(out.CBORValue())
		if err != nil {
			t.Fatal(err)
		}
		dm, _ := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any{})}.DecMode()
		if err := dm.Unmarshal(b, &fromCBOR); err != nil {
			t.Fatalf("%s CBOR: %v", name, err)
		}
		for codec, m := range map[string]map[string]any{"JSON": fromJSON, "CBOR": fromCBOR} {
			rs := m["Records"].([]any)
			if _, has := rs[0].(map[string]any)["PartitionKey"]; has {
				t.Errorf("%s %s: a keyless record has a PartitionKey: %v", name, codec, rs[0])
			}
			if k := rs[1].(map[string]any)["PartitionKey"]; k != "k" {
				t.Errorf("%s %s: PartitionKey %v, want k", name, codec, k)
			}
		}
	}
}
