package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// overload is how many times the limit the throttling tests offer:
// SHARDLOG_THROTTLE_OVERLOAD, default 2.
func overload(t *testing.T) float64 {
	if v := os.Getenv("SHARDLOG_THROTTLE_OVERLOAD"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	return 2
}

// TestThrottledWriteRates overdrives a stream through the SDK with retries
// off, against the real binary (so the race detector slows only the
// clients, which must offer twice the limit), and checks, on the server's own arrival clock, that the accepted rate
// is the documented per-shard limit times the shard count, within 5%; that
// every refusal was ProvisionedThroughputExceededException; and that every
// accepted record is readable afterwards.
func TestThrottledWriteRates(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 11 s per case")
	}
	tests := []struct {
		name   string
		shards int
		size   int
		limit  float64 // records/s per shard
	}{
		{"100-byte records, 1 shard: 1,000 records/s", 1, 100, 1000},
		{"8 KiB records, 1 shard: 1 MiB/s", 1, 8 << 10, float64(1<<20) / float64(8<<10+2)},
		{"100-byte records, 4 shards: 4,000 records/s", 4, 100, 1000},
		{"8 KiB records, 4 shards: 4 MiB/s", 4, 8 << 10, float64(1<<20) / float64(8<<10+2)},
	}
	bin := buildBinary(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProcess(t, bin, t.TempDir(), "--throttle=true")
			defer p.kill()
			c := p.client()
			createStream(t, c, "hot", int32(tt.shards))
			want := tt.limit * float64(tt.shards)
			res := overdrive(t, c, "hot", tt.size, want*overload(t), 11*time.Second)
			arrivals := readArrivals(t, c, "hot")
			if len(arrivals) != res.accepted {
				t.Fatalf("read back %d records, %d were accepted", len(arrivals), res.accepted)
			}
			// The first second spends the shards' burst; the rate is measured
			// over the 10 s after it, on the server's arrival clock.
			got := countBetween(arrivals, res.start.Add(time.Second), res.start.Add(11*time.Second)) / 10
			t.Logf("offered %.0f records/s (%.1fx), accepted %.1f records/s over 10 s: %.3f of the limit; %d throttled",
				want*overload(t), overload(t), got, got/want, res.throttled)
			if got < 0.95*want || got > 1.05*want {
				t.Fatalf("accepted %.1f records/s, limit %.1f", got, want)
			}
			if res.throttled == 0 {
				t.Fatal("nothing was throttled")
			}
		})
	}
}

type driveResult struct {
	start     time.Time
	accepted  int
	throttled int
}

func countBetween(ts []time.Time, from, to time.Time) float64 {
	n := 0
	for _, a := range ts {
		if !a.Before(from) && a.Before(to) {
			n++
		}
	}
	return float64(n)
}

// overdrive offers rate records/s for d from 4 paced clients.
func overdrive(t *testing.T, c *kinesis.Client, stream string, size int, rate float64, d time.Duration) driveResult {
	const clients, tick = 4, 50 * time.Millisecond
	perTick := max(1, int(rate*tick.Seconds()/clients))
	res := driveResult{start: time.Now()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries := make([]types.PutRecordsRequestEntry, min(perTick, 500))
			for i := range entries {
				entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("k-%d-%d", w, i)), Data: make([]byte, size)}
			}
			tk := time.NewTicker(tick)
			defer tk.Stop()
			for end := res.start.Add(d); time.Now().Before(end); <-tk.C {
				out, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, r := range out.Records {
					switch aws.ToString(r.ErrorCode) {
					case "":
						res.accepted++
					case "ProvisionedThroughputExceededException":
						res.throttled++
					default:
						t.Errorf("record failed with %s: %s", *r.ErrorCode, aws.ToString(r.ErrorMessage))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// readArrivals reads every shard of stream from TRIM_HORIZON to its end and
// returns the records' ApproximateArrivalTimestamps. Throttled reads wait.
func readArrivals(t *testing.T, c *kinesis.Client, stream string) []time.Time {
	t.Helper()
	shards, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, sh := range shards.Shards {
		it, err := c.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		for iter := it.ShardIterator; iter != nil; {
			page, err := c.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: iter})
			if apiErr(err) == "ProvisionedThroughputExceededException" {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Records {
				out = append(out, *r.ApproximateArrivalTimestamp)
			}
			if len(page.Records) == 0 && aws.ToInt64(page.MillisBehindLatest) == 0 {
				break
			}
			iter = page.NextShardIterator
		}
	}
	return out
}

// TestThrottledReads reads one shard at 20 calls/s for 10 s: 5 calls/s are
// admitted (plus the one-second burst), the rest get
// ProvisionedThroughputExceededException.
func TestThrottledReads(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 10 s")
	}
	p := startProcess(t, buildBinary(t), t.TempDir(), "--throttle=true")
	defer p.kill()
	c := p.client()
	createStream(t, c, "reads", 1)
	it, err := c.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String("reads"),
		ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeLatest})
	if err != nil {
		t.Fatal(err)
	}
	iter := it.ShardIterator
	ok, throttled := 0, 0
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for range 200 {
		<-tk.C
		out, err := c.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: iter})
		switch {
		case apiErr(err) == "ProvisionedThroughputExceededException":
			throttled++
		case err != nil:
			t.Fatal(err)
		default:
			ok++
			iter = out.NextShardIterator
		}
	}
	t.Logf("20 calls/s for 10 s: %d admitted, %d throttled", ok, throttled)
	if ok < 50 || ok > 56 { // 5/s for 10 s, plus a burst of up to 5
		t.Fatalf("%d of 200 reads admitted, want 5/s", ok)
	}
}
