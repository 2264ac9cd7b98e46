package loadgen

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// fakeSubscribe answers SubscribeToShard as AWS does over JSON: an event
// stream with the initial response, then one SubscribeToShardEvent per
// batch of record counters, then the end of the stream. Later calls get
// the initial response only, and are held open until the client leaves.
func fakeSubscribe(t *testing.T, sent time.Time, batches [][]uint64) http.Handler {
	var calls atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".SubscribeToShard") {
			http.Error(w, "unexpected "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
		enc := eventstream.NewEncoder()
		send := func(eventType, payload string) {
			var h eventstream.Headers
			h.Set(":message-type", eventstream.StringValue("event"))
			h.Set(":event-type", eventstream.StringValue(eventType))
			h.Set(":content-type", eventstream.StringValue("application/x-amz-json-1.1"))
			if err := enc.Encode(w, eventstream.Message{Headers: h, Payload: []byte(payload)}); err != nil {
				t.Error(err)
			}
			w.(http.Flusher).Flush()
		}
		send("initial-response", "{}")
		if calls.Add(1) > 1 {
			<-r.Context().Done()
			return
		}
		for _, batch := range batches {
			var recs []string
			for _, n := range batch {
				b := make([]byte, stampSize)
				stamp(b, sent, n)
				recs = append(recs, fmt.Sprintf(`{"SequenceNumber":"%d","Data":"%s","PartitionKey":"k","ApproximateArrivalTimestamp":%d}`,
					n, base64.StdEncoding.EncodeToString(b), sent.Unix()))
			}
			send("SubscribeToShardEvent", fmt.Sprintf(`{"Records":[%s],"ContinuationSequenceNumber":"%d","MillisBehindLatest":0}`,
				strings.Join(recs, ","), batch[len(batch)-1]))
		}
	})
}

// TestReadEvents checks that a subscription's records are counted and that
// the position to resubscribe from is AFTER_SEQUENCE_NUMBER of the last
// event's ContinuationSequenceNumber, through the SDK's event stream reader.
func TestReadEvents(t *testing.T) {
	sent := time.Now().Add(-time.Millisecond)
	srv := httptest.NewServer(fakeSubscribe(t, sent, [][]uint64{{1, 2}, {3}, {3, 4}}))
	defer srv.Close()
	o := validConfig()
	o.Endpoint = srv.URL
	c := newClient(o)
	sh := &benchShard{id: "shardId-000000000000"}
	sh.acked.Store(4)
	r := &reader{shard: sh}
	ready := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.subscribe(ctx, c, "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1", ready)
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	for !r.keptUp() {
		time.Sleep(time.Millisecond) // bounded by the test timeout
	}
	cancel()
	<-done
	if r.disorder != 1 || r.hist.n != 4 || r.errs != 0 || r.calls < 1 {
		t.Fatalf("reader: disorder %d latencies %d errors %d (%s) calls %d", r.disorder, r.hist.n, r.errs, r.firstErr, r.calls)
	}
}

// TestReadEventsPosition checks the resubscription position directly.
func TestReadEventsPosition(t *testing.T) {
	srv := httptest.NewServer(fakeSubscribe(t, time.Now(), [][]uint64{{7, 9}}))
	defer srv.Close()
	o := validConfig()
	o.Endpoint = srv.URL
	c := newClient(o)
	r := &reader{shard: &benchShard{id: "shardId-000000000000"}}
	out, err := c.SubscribeToShard(context.Background(), subscribeInput("arn", r.shard.id, &types.StartingPosition{Type: types.ShardIteratorTypeLatest}))
	if err != nil {
		t.Fatal(err)
	}
	pos, err := r.readEvents(context.Background(), out.GetStream(), nil)
	if err != nil || pos == nil || pos.Type != types.ShardIteratorTypeAfterSequenceNumber || *pos.SequenceNumber != "9" {
		t.Fatalf("position %+v, %v", pos, err)
	}
}
