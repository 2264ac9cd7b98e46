package storage

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// jsonRecord is a 1 KiB JSON-like record, the shape of typical Kinesis data.
func jsonRecord(rng *rand.Rand) []byte {
	b := fmt.Appendf(nil, `{"event_id":"%016x","user":"user-%d","type":"page_view","ts":%d,"path":"/products/%d","ua":"Mozilla/5.0 (X11; Linux x86_64)","tags":[`,
		rng.Uint64(), rng.IntN(10000), 1700000000000+rng.IntN(1e9), rng.IntN(5000))
	for len(b) < 1000 {
		b = fmt.Appendf(b, `"t%d",`, rng.IntN(1000))
	}
	b = append(b[:1000], `"x"]}`...)
	for len(b) < 1024 {
		b = append(b, ' ')
	}
	return b[:1024]
}

func benchStore(b *testing.B, shards int) *Store {
	b.Helper()
	s, err := Open(context.Background(), Options{Dir: b.TempDir(), FS: vfs.OS{}, ShardLimit: 1000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "b", ShardCount: shards}); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAppend measures durable (fdatasync before ack) append throughput of
// 1 KiB records from many concurrent writers. batch is records per Put call.
func BenchmarkAppend(b *testing.B) {
	for _, shards := range []int{1, 16, 256} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("shards=%d/batch=%d", shards, batch), func(b *testing.B) {
				s := benchStore(b, shards)
				var seed atomic.Uint64
				b.SetBytes(int64(1024 * batch))
				b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 writers however many Ps
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(seed.Add(1), 1))
					entries := make([]PutEntry, batch)
					for i := range entries {
						entries[i] = PutEntry{Data: jsonRecord(rng)}
					}
					for pb.Next() {
						for i := range entries {
							entries[i].PartitionKey = fmt.Sprint(rng.Uint64())
						}
						res, err := s.Put(context.Background(), "b", entries)
						if err != nil || res[0].Err != nil {
							b.Error(err, res[0].Err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
				reportFrames(b, s)
			})
		}
	}
}

// BenchmarkAppendEncryption is BenchmarkAppend's durable path with and
// without encryption at rest (StartEncryption with the generated
// alias/aws/kinesis key), for the cost of sealing every frame.
func BenchmarkAppendEncryption(b *testing.B) {
	for _, c := range []struct{ shards, batch int }{{1, 100}, {16, 1}, {16, 100}} {
		for _, enc := range []bool{false, true} {
			b.Run(fmt.Sprintf("shards=%d/batch=%d/encrypted=%t", c.shards, c.batch, enc), func(b *testing.B) {
				s := benchStore(b, c.shards)
				if enc {
					if err := s.StartEncryption(context.Background(), "b", "alias/aws/kinesis", "us-east-1"); err != nil {
						b.Fatal(err)
					}
				}
				var seed atomic.Uint64
				b.SetBytes(int64(1024 * c.batch))
				b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(seed.Add(1), 1))
					entries := make([]PutEntry, c.batch)
					for i := range entries {
						entries[i] = PutEntry{Data: jsonRecord(rng)}
					}
					for pb.Next() {
						for i := range entries {
							entries[i].PartitionKey = fmt.Sprint(rng.Uint64())
						}
						res, err := s.Put(context.Background(), "b", entries)
						if err != nil || res[0].Err != nil || res[0].Encrypted != enc {
							b.Error(err, res[0].Err, res[0].Encrypted)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N*c.batch)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// reportFrames reports what the disk saw: stored (compressed) bytes per
// second and the mean stored frame, the write size to compare with dd.
func reportFrames(b *testing.B, s *Store) {
	var frames, stored int64
	s.mu.RLock()
	for _, st := range s.streams {
		for _, sh := range st.shards {
			for _, sg := range sh.Segments() {
				frames += sg.Frames
				stored += sg.End - segment.FileHeaderSize
			}
		}
	}
	s.mu.RUnlock()
	if frames > 0 {
		b.ReportMetric(float64(stored)/b.Elapsed().Seconds()/1e6, "disk-MB/s")
		b.ReportMetric(float64(stored)/float64(frames)/1024, "frame-KiB")
	}
}

func fill(b *testing.B, s *Store, records int, data func(*rand.Rand) []byte) int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	var total int64
	for done := 0; done < records; {
		entries := make([]PutEntry, min(500, records-done))
		for i := range entries {
			entries[i] = PutEntry{PartitionKey: fmt.Sprint(rng.Uint64()), Data: data(rng)}
			total += int64(len(entries[i].Data))
		}
		if _, err := s.Put(context.Background(), "b", entries); err != nil {
			b.Fatal(err)
		}
		done += len(entries)
	}
	return total
}

// BenchmarkReadShard reads a whole 64 MiB (raw) shard from TRIM_HORIZON in
// pages of GetRecords' default 10,000 records; the rate is decompressed
// record bytes per second.
func BenchmarkReadShard(b *testing.B) {
	s := benchStore(b, 1)
	total := fill(b, s, 64<<10, jsonRecord)
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		recs, err := readShardPages(s, "b", "shardId-000000000000", 10000)
		if err != nil || len(recs) != 64<<10 {
			b.Fatal(len(recs), err)
		}
	}
}

// BenchmarkReadShardCold is BenchmarkReadShard for a consumer further behind
// than the page-cache window: before each pass every segment's pages are
// dropped (timer stopped), so the pass reads from disk.
func BenchmarkReadShardCold(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, FS: vfs.OS{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "b", ShardCount: 1}); err != nil {
		b.Fatal(err)
	}
	total := fill(b, s, 64<<10, jsonRecord)
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dropSegmentPages(b, dir)
		b.StartTimer()
		recs, err := readShardPages(s, "b", "shardId-000000000000", 10000)
		if err != nil || len(recs) != 64<<10 {
			b.Fatal(len(recs), err)
		}
	}
}

func dropSegmentPages(b *testing.B, dir string) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".seg") {
			return err
		}
		f, err := vfs.OS{}.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.DropCache(0, 0) // 0 length: to the end of the file
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpen1GiB measures opening (recovering) a store holding 1 GiB of
// segment data in 4 shards after a clean shutdown, and with index.db deleted.
func BenchmarkOpen1GiB(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, FS: vfs.OS{}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "b", ShardCount: 4}); err != nil {
		b.Fatal(err)
	}
	random := func(rng *rand.Rand) []byte { // incompressible: stored bytes = raw bytes
		p := make([]byte, 8<<10)
		for i := 0; i < len(p); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		return p
	}
	fill(b, s, (1<<30)/(8<<10), random)
	s.Close()
	for _, mode := range []string{"clean", "no-index"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				if mode == "no-index" {
					removeIndex(b, dir)
				}
				start := time.Now()
				s, err := Open(context.Background(), Options{Dir: dir, FS: vfs.OS{}})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/open")
				s.Close()
			}
		})
	}
}

// BenchmarkPutAdmission compares the durable PutRecords path with admission
// control off and on (with a multiplier so large that nothing is refused):
// the difference is the cost of admission.
func BenchmarkPutAdmission(b *testing.B) {
	for _, throttle := range []bool{false, true} {
		b.Run(fmt.Sprintf("throttle=%v", throttle), func(b *testing.B) {
			s, err := Open(context.Background(), Options{Dir: b.TempDir(), FS: vfs.OS{}, Throttle: throttle, ThrottleMultiplier: 1e9})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "b", ShardCount: 4}); err != nil {
				b.Fatal(err)
			}
			var seed atomic.Uint64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 1))
				entries := make([]PutEntry, 500)
				for i := range entries {
					entries[i] = PutEntry{PartitionKey: fmt.Sprint(rng.Uint64()), Data: jsonRecord(rng)}
				}
				for pb.Next() {
					if _, err := s.Put(context.Background(), "b", entries); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkAppendIncompressible measures durable bandwidth with incompressible
// 8 KiB records in 500-record Puts on one shard (frames of about 4 MiB), the
// case comparable with `dd oflag=dsync bs=4M`. The records are generated
// before the timer starts.
func BenchmarkAppendIncompressible(b *testing.B) {
	s := benchStore(b, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	pool := make([][]byte, 2000)
	for i := range pool {
		p := make([]byte, 8<<10)
		for j := 0; j < len(p); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				p[j+k] = byte(v >> (8 * k))
			}
		}
		pool[i] = p
	}
	var seed atomic.Uint64
	b.SetBytes(500 * 8 << 10)
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := int(seed.Add(1))
		entries := make([]PutEntry, 500)
		for pb.Next() {
			for i := range entries {
				n++
				entries[i] = PutEntry{PartitionKey: "k", Data: pool[n%len(pool)]}
			}
			if _, err := s.Put(context.Background(), "b", entries); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportFrames(b, s)
}

// BenchmarkReshardStall measures UpdateShardCount 128 -> 256 on a stream
// whose shards hold about 1 MiB each, and the longest Put to another stream
// while it runs (one writer putting back to back).
func BenchmarkReshardStall(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		s, err := Open(ctx, Options{Dir: b.TempDir(), FS: vfs.OS{}, ShardLimit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []CreateStreamInput{{Name: "busy", ShardCount: 1}, {Name: "b", ShardCount: 128}} {
			if err := s.CreateStream(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
		fill(b, s, 128<<10, jsonRecord)
		var worst atomic.Int64
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				s.Put(ctx, "busy", []PutEntry{{PartitionKey: "a", Data: []byte("x")}})
				if d := int64(time.Since(t0)); d > worst.Load() {
					worst.Store(d)
				}
			}
		}()
		time.Sleep(50 * time.Millisecond)
		worst.Store(0)
		b.StartTimer()
		t0 := time.Now()
		if _, err := s.UpdateShardCount(ctx, "b", 256); err != nil {
			b.Fatal(err)
		}
		reshard := time.Since(t0)
		b.StopTimer()
		close(stop)
		<-done
		b.ReportMetric(float64(reshard.Microseconds())/1e3, "ms/reshard")
		b.ReportMetric(float64(worst.Load())/1e6, "max-other-put-ms")
		s.Close()
	}
}
