package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/fxamacker/cbor/v2"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// subscribeRig is the api over a real store with stream "s" (one record on
// its shard) and an ACTIVE consumer "c".
func subscribeRig(t *testing.T) (*Server, string) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Dir: t.TempDir(), FS: vfs.NewMemFS()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "s", []storage.PutEntry{{PartitionKey: "pk", Data: []byte("hello")}}); err != nil {
		t.Fatal(err)
	}
	c, err := st.RegisterConsumer(ctx, "s", "c", nil)
	if err != nil {
		t.Fatal(err)
	}
	arn := wire.FormatConsumerARN("us-east-1", st.AccountID(), "s", "c", c.Created.Unix())
	return New(Config{SubscriptionLifetime: 50 * time.Millisecond}, StoreBackend(st)), arn
}

// TestSubscribeToShardEventStream: in both protocols the answer is an event
// stream whose first message is the initial-response and whose next carries
// the record, each payload in the request's protocol; the stream ends at
// the lifetime.
func TestSubscribeToShardEventStream(t *testing.T) {
	tests := []struct {
		name   string
		ctype  string
		encode func(map[string]any) []byte
		decode func([]byte, any) error
	}{
		{"JSON", wire.ContentTypeJSON11, func(m map[string]any) []byte {
			b, _ := json.Marshal(m)
			return b
		}, json.Unmarshal},
		{"CBOR", wire.ContentTypeCBOR11, func(m map[string]any) []byte {
			b, _ := cbor.Marshal(m)
			return b
		}, cbor.Unmarshal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, arn := subscribeRig(t)
			body := tc.encode(map[string]any{"ConsumerARN": arn, "ShardId": "shardId-000000000000",
				"StartingPosition": map[string]any{"Type": "TRIM_HORIZON"}})
			req := newRequest("SubscribeToShard", "")
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			req.Header.Set("Content-Type", tc.ctype)
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req) // returns at the end of the lifetime
			if w.Code != http.StatusOK || w.Header().Get("Content-Type") != wire.ContentTypeEventStream {
				t.Fatalf("status %d, Content-Type %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body.Bytes())
			}
			dec := eventstream.NewDecoder()
			r := bytes.NewReader(w.Body.Bytes())
			var types []string
			var event struct {
				Records []struct {
					Data         []byte
					PartitionKey string
				}
				ContinuationSequenceNumber *string
			}
			for {
				msg, err := dec.Decode(r, nil)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				types = append(types, msg.Headers.Get(":event-type").String())
				if len(types) == 2 {
					if err := tc.decode(msg.Payload, &event); err != nil {
						t.Fatalf("event payload: %v", err)
					}
				}
			}
			if len(types) < 2 || types[0] != "initial-response" || types[1] != "SubscribeToShardEvent" {
				t.Fatalf("event types %v", types)
			}
			if len(event.Records) != 1 || string(event.Records[0].Data) != "hello" || event.ContinuationSequenceNumber == nil {
				t.Fatalf("first event %+v", event)
			}
		})
	}
}

// TestSubscribeToShardRequestErrors: bad requests are ordinary HTTP errors.
func TestSubscribeToShardRequestErrors(t *testing.T) {
	srv, arn := subscribeRig(t)
	other := strings.Replace(arn, "consumer/c:", "consumer/d:", 1)
	tests := []struct {
		name, body, typ string
	}{
		{"no starting position", `{"ConsumerARN":"` + arn + `","ShardId":"shardId-000000000000"}`, wire.TypeValidation},
		{"bad type", `{"ConsumerARN":"` + arn + `","ShardId":"shardId-000000000000","StartingPosition":{"Type":"OLDEST"}}`, wire.TypeValidation},
		{"AT_SEQUENCE_NUMBER without a number", `{"ConsumerARN":"` + arn + `","ShardId":"shardId-000000000000","StartingPosition":{"Type":"AT_SEQUENCE_NUMBER"}}`, wire.TypeInvalidArgument},
		{"unknown consumer", `{"ConsumerARN":"` + other + `","ShardId":"shardId-000000000000","StartingPosition":{"Type":"LATEST"}}`, wire.TypeResourceNotFound},
		{"unknown shard", `{"ConsumerARN":"` + arn + `","ShardId":"shardId-000000000009","StartingPosition":{"Type":"LATEST"}}`, wire.TypeResourceNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, newRequest("SubscribeToShard", tc.body))
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"__type":"`+tc.typ+`"`) {
				t.Fatalf("status %d body %s, want %s", w.Code, w.Body.String(), tc.typ)
			}
		})
	}
}
