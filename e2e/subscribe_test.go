package e2e

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
)

// efo is a server with stream "efo" and ACTIVE consumers on it.
type efo struct {
	srv  *server
	c    *kinesis.Client
	arns map[string]string // consumer name -> ARN
}

func startEFO(t *testing.T, cfg api.Config, opts storage.Options, shards int32, consumers ...string) *efo {
	t.Helper()
	srv := &server{t: t, dir: t.TempDir(), now: time.Now, opts: opts, cfg: cfg}
	srv.start()
	t.Cleanup(srv.stop)
	e := &efo{srv: srv, c: srv.client(1), arns: map[string]string{}}
	createStream(t, e.c, "efo", shards)
	for _, name := range consumers {
		e.arns[name] = *registerConsumer(t, e.c, name).ConsumerARN
	}
	for _, arn := range e.arns {
		waitConsumer(t, e.c, arn, types.ConsumerStatusActive)
	}
	return e
}

// put stores records with these data on shard 0 and returns their numbers.
func (e *efo) put(t *testing.T, datas ...string) []string {
	t.Helper()
	var seqs []string
	for _, d := range datas {
		out, err := e.c.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String("efo"), PartitionKey: aws.String("k"),
			ExplicitHashKey: aws.String("0"), Data: []byte(d)})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, *out.SequenceNumber)
	}
	return seqs
}

// subscribe calls SubscribeToShard through a copy of c with its own
// protocol: the SDK's JSON protocol keeps one event-stream decoding buffer
// per client (smithy-go internal/eventstream.Codec.payloadBuf), so two
// streams of one client race on it; the race detector reports it as the
// SDK's, not the server's.
func (e *efo) subscribe(c *kinesis.Client, consumer, shard string, pos types.StartingPosition) (*kinesis.SubscribeToShardOutput, error) {
	c = kinesis.New(c.Options()) // New always makes a new protocol
	return c.SubscribeToShard(context.Background(), &kinesis.SubscribeToShardInput{
		ConsumerARN: aws.String(e.arns[consumer]), ShardId: aws.String(shard), StartingPosition: &pos})
}

// mustSubscribe subscribes, waiting out the 5 s after a previous
// subscription of the same consumer and shard (ResourceInUseException).
func (e *efo) mustSubscribe(t *testing.T, consumer, shard string, pos types.StartingPosition) *kinesis.SubscribeToShardEventStream {
	t.Helper()
	for {
		out, err := e.subscribe(e.c, consumer, shard, pos)
		if apiErr(err) == "ResourceInUseException" {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("subscribe %s %s %+v: %v", consumer, shard, pos, err)
		}
		t.Cleanup(func() { out.GetStream().Close() })
		return out.GetStream()
	}
}

// received is what a subscription delivered.
type received struct {
	datas    []string
	cont     *string // the last event's ContinuationSequenceNumber
	children []types.ChildShard
	events   int
}

// read takes events until n records arrived, or the stream ended (n < 0:
// until the end).
func read(t *testing.T, st *kinesis.SubscribeToShardEventStream, n int) received {
	t.Helper()
	var r received
	for n < 0 || len(r.datas) < n {
		ev, ok := <-st.Events()
		if !ok {
			if err := st.Err(); err != nil {
				t.Fatalf("stream failed: %v", err)
			}
			return r
		}
		v := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value
		r.events++
		for _, rec := range v.Records {
			r.datas = append(r.datas, string(rec.Data))
		}
		r.cont, r.children = v.ContinuationSequenceNumber, v.ChildShards
		if v.MillisBehindLatest == nil {
			t.Fatal("event without MillisBehindLatest")
		}
	}
	return r
}

const shard0 = "shardId-000000000000"

// TestSubscribeToShardStartingPositions: with the SDK (over HTTP/1.1 and
// cleartext HTTP/2), the initial response is read (SubscribeToShard returns)
// and every starting position delivers exactly the records from it.
func TestSubscribeToShardStartingPositions(t *testing.T) {
	e := startEFO(t, api.Config{}, storage.Options{}, 1, "th", "at", "after", "ts", "latest")
	seqs := e.put(t, "r0", "r1")
	// Arrival times and the request's timestamp are both whole milliseconds
	// on the wire: mid must fall in a later millisecond than r1's arrival and
	// an earlier one than r2's, so it is taken between two pauses.
	time.Sleep(2 * time.Millisecond)
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	e.put(t, "r2")
	h2 := kinesis.New(e.c.Options(), func(o *kinesis.Options) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		o.HTTPClient = newHTTPClient(tr)
	})
	tests := []struct {
		consumer string
		client   *kinesis.Client
		pos      types.StartingPosition
		want     []string
	}{
		{"th", e.c, types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}, []string{"r0", "r1", "r2"}},
		{"at", h2, types.StartingPosition{Type: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: &seqs[1]}, []string{"r1", "r2"}},
		{"after", e.c, types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: &seqs[1]}, []string{"r2"}},
		{"ts", h2, types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: &mid}, []string{"r2"}},
	}
	for _, tc := range tests {
		t.Run(string(tc.pos.Type), func(t *testing.T) {
			out, err := e.subscribe(tc.client, tc.consumer, shard0, tc.pos)
			if err != nil {
				t.Fatal(err)
			}
			defer out.GetStream().Close()
			if got := read(t, out.GetStream(), len(tc.want)).datas; !slices.Equal(got, tc.want) {
				t.Fatalf("records %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("LATEST", func(t *testing.T) {
		st := e.mustSubscribe(t, "latest", shard0, types.StartingPosition{Type: types.ShardIteratorTypeLatest})
		e.put(t, "r3")
		if got := read(t, st, 1).datas; !slices.Equal(got, []string{"r3"}) {
			t.Fatalf("records %v, want [r3]", got)
		}
	})
}

// TestSubscribeToShardResume: subscriptions end cleanly at their lifetime
// (short here), and resubscribing AFTER each ContinuationSequenceNumber
// while records keep coming loses and repeats nothing.
func TestSubscribeToShardResume(t *testing.T) {
	e := startEFO(t, api.Config{SubscriptionLifetime: 300 * time.Millisecond}, storage.Options{}, 1, "app")
	const total = 30
	var want []string
	for i := range total {
		want = append(want, fmt.Sprintf("r%02d", i))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, d := range want {
			e.put(t, d)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var got []string
	pos := types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
	rounds := 0
	for len(got) < total {
		r := read(t, e.mustSubscribe(t, "app", shard0, pos), -1) // until the lifetime ends it
		rounds++
		got = append(got, r.datas...)
		if r.cont == nil {
			t.Fatal("an open shard's event has no ContinuationSequenceNumber")
		}
		pos = types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: r.cont}
	}
	<-done
	if !slices.Equal(got, want) {
		t.Fatalf("over %d subscriptions got %v, want %v", rounds, got, want)
	}
}

// TestSubscribeToShardChildShards: a split ends the parent's subscription
// with an event carrying ChildShards and no ContinuationSequenceNumber.
func TestSubscribeToShardChildShards(t *testing.T) {
	e := startEFO(t, api.Config{}, storage.Options{UpdateDelay: 0}, 1, "app")
	e.put(t, "before")
	st := e.mustSubscribe(t, "app", shard0, types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
	if got := read(t, st, 1).datas; !slices.Equal(got, []string{"before"}) {
		t.Fatalf("records %v", got)
	}
	half := hashkey.Split(2)[1].Start.String()
	if _, err := e.c.SplitShard(context.Background(), &kinesis.SplitShardInput{StreamName: aws.String("efo"),
		ShardToSplit: aws.String(shard0), NewStartingHashKey: aws.String(half)}); err != nil {
		t.Fatal(err)
	}
	r := read(t, st, -1)
	if r.cont != nil || len(r.children) != 2 {
		t.Fatalf("last event: continuation %v, children %+v", r.cont, r.children)
	}
	for _, c := range r.children {
		if !slices.Equal(c.ParentShards, []string{shard0}) {
			t.Fatalf("child %+v", c)
		}
	}
}

// TestSubscribeToShardInUseAndDeregister: a second subscription of a
// consumer and shard while one runs, or within 5 s, is
// ResourceInUseException; deregistering the consumer ends the running one
// with a ResourceNotFoundException event.
func TestSubscribeToShardInUseAndDeregister(t *testing.T) {
	e := startEFO(t, api.Config{}, storage.Options{ConsumerDelay: 50 * time.Millisecond}, 2, "app")
	st := e.mustSubscribe(t, "app", shard0, types.StartingPosition{Type: types.ShardIteratorTypeLatest})
	if _, err := e.subscribe(e.c, "app", shard0, types.StartingPosition{Type: types.ShardIteratorTypeLatest}); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("second subscription: %v, want ResourceInUseException", err)
	}
	other := e.mustSubscribe(t, "app", "shardId-000000000001", types.StartingPosition{Type: types.ShardIteratorTypeLatest})
	other.Close()
	if _, err := e.subscribe(e.c, "app", "shardId-000000000001", types.StartingPosition{Type: types.ShardIteratorTypeLatest}); apiErr(err) != "ResourceInUseException" {
		t.Fatalf("subscription right after the last one: %v, want ResourceInUseException", err)
	}
	if _, err := e.c.DeregisterStreamConsumer(context.Background(), &kinesis.DeregisterStreamConsumerInput{ConsumerARN: aws.String(e.arns["app"])}); err != nil {
		t.Fatal(err)
	}
	for range st.Events() {
	}
	if err := st.Err(); apiErr(err) != "ResourceNotFoundException" {
		t.Fatalf("after deregistration the stream ended with %v, want ResourceNotFoundException", err)
	}
}

// TestSubscribeToShardShutdown: the server's graceful shutdown ends running
// subscriptions cleanly instead of waiting out their lifetime.
func TestSubscribeToShardShutdown(t *testing.T) {
	e := startEFO(t, api.Config{}, storage.Options{}, 1, "app")
	st := e.mustSubscribe(t, "app", shard0, types.StartingPosition{Type: types.ShardIteratorTypeLatest})
	e.srv.stop()
	read(t, st, -1) // fails on an error; returns at the clean end
}

// TestSubscribeToShardNoLeak: clients that disconnect mid-stream leave no
// goroutine behind in the server (nor in the client's closed connections).
func TestSubscribeToShardNoLeak(t *testing.T) {
	const shards = 4
	e := startEFO(t, api.Config{}, storage.Options{}, shards, "app")
	tr := &http.Transport{}
	subs := kinesis.New(e.c.Options(), func(o *kinesis.Options) { o.HTTPClient = newHTTPClient(tr) })
	e.put(t, "x")
	runtime.GC()
	base := runtime.NumGoroutine()
	for i := range shards {
		out, err := e.subscribe(subs, "app", fmt.Sprintf("shardId-%012d", i), types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			read(t, out.GetStream(), 1)
		}
		out.GetStream().Close() // the client goes away mid-stream
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second) // for a useful failure, not a timing assertion
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines, %d before the subscriptions:\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
