package e2e

import (
	"context"
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestDurabilityAcrossRestart: 8 concurrent writers put 100,000 records with
// PutRecords across 4 shards; the server restarts; every shard read from
// TRIM_HORIZON to its end holds every acknowledged record exactly once, in
// per-shard sequence order, with its partition key and data.
func TestDurabilityAcrossRestart(t *testing.T) {
	total, writers := 100_000, 8
	if testing.Short() {
		total = 16_000
	}
	srv := startServer(t, t.TempDir())
	c := srv.client(3)
	createStream(t, c, "durable", 4)

	type rec struct{ pk, data string }
	acked := map[string]rec{} // sequence number -> record
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < total/writers/500; b++ {
				entries := make([]types.PutRecordsRequestEntry, 500)
				for i := range entries {
					entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("pk-%d-%d", w, i%37)),
						Data: []byte(fmt.Sprintf("w%d-b%d-i%d", w, b, i))}
				}
				out, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String("durable"), Records: entries})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i, r := range out.Records {
					if r.ErrorCode == nil {
						acked[*r.SequenceNumber] = rec{*entries[i].PartitionKey, string(entries[i].Data)}
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(acked) != total {
		t.Fatalf("%d of %d records acknowledged", len(acked), total)
	}
	srv.restart()
	c = srv.client(3)

	seen := 0
	shards, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("durable")})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards.Shards {
		it, err := c.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String("durable"),
			ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter, prev := it.ShardIterator, new(big.Int)
		for iter != nil {
			out, err := c.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range out.Records {
				n, _ := new(big.Int).SetString(*r.SequenceNumber, 10)
				if n.Cmp(prev) <= 0 {
					t.Fatalf("%s: %s out of order", *sh.ShardId, *r.SequenceNumber)
				}
				prev = n
				want, ok := acked[*r.SequenceNumber]
				if !ok {
					t.Fatalf("record %s read twice or never acknowledged", *r.SequenceNumber)
				}
				if want.pk != *r.PartitionKey || want.data != string(r.Data) {
					t.Fatalf("record %s: got %s/%q want %s/%q", *r.SequenceNumber, *r.PartitionKey, r.Data, want.pk, want.data)
				}
				delete(acked, *r.SequenceNumber)
				seen++
			}
			if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	if len(acked) != 0 {
		t.Fatalf("%d acknowledged records missing after restart (read %d)", len(acked), seen)
	}
	t.Logf("%d records acknowledged, all read back exactly once after restart", seen)
}
