package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/vfs"
)

// powerLossSeeds is how many seeded crashes TestPowerLoss runs: 1,000 in
// every `go test`, SHARDLOG_POWERLOSS_SEEDS for a long run.
func powerLossSeeds(t *testing.T) int {
	if v := os.Getenv("SHARDLOG_POWERLOSS_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if testing.Short() {
		return 50
	}
	return 1000
}

// TestPowerLoss: random appends across shards from concurrent writers, a
// power cut at a random moment (sometimes tearing the last write), then a
// reopen that must serve every acknowledged record exactly once, in order, at
// its sequence number, and nothing torn or never attempted. A third of the
// seeds encrypt the stream from the start and a third switch encryption on
// and off while the writers run; every record must read back in the mode its
// PutRecords result reported.
func TestPowerLoss(t *testing.T) {
	seeds := powerLossSeeds(t)
	dir := t.TempDir()
	var modes [2]int // acknowledged records stored plaintext, encrypted
	for seed := range seeds {
		if err := powerLossOnce(t, dir, uint64(seed), &modes); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	if seeds >= 10 && (modes[0] == 0 || modes[1] == 0) {
		t.Fatalf("acknowledged %d plaintext and %d encrypted records: both modes must be exercised", modes[0], modes[1])
	}
	t.Logf("%d seeded power cuts survived (%d plaintext, %d encrypted records acknowledged)", seeds, modes[0], modes[1])
}

type ack struct {
	shard string
	seq   string
	data  string
}

// encryptedSuffix marks, in the powerloss test, the data of an ack whose
// record was stored encrypted: ack stays comparable as other tests use it.
const encryptedSuffix = " [encrypted]"

func ackData(data string, encrypted bool) string {
	if encrypted {
		return data + encryptedSuffix
	}
	return data
}

func powerLossOnce(t *testing.T, parent string, seed uint64, modes *[2]int) error {
	rng := rand.New(rand.NewPCG(seed, 99))
	fs := vfs.NewMemFS()
	dir, err := os.MkdirTemp(parent, "pl")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := Options{Dir: dir, FS: fs, SegmentSize: int64(512 + rng.IntN(8<<10)), IndexInterval: time.Millisecond}
	s, err := Open(context.Background(), opts)
	if err != nil {
		return err
	}
	shards := 1 + rng.IntN(3)
	if err := s.CreateStream(context.Background(), CreateStreamInput{Name: "pl", ShardCount: shards}); err != nil {
		return err
	}
	if seed%3 == 1 {
		if err := s.StartEncryption(context.Background(), "pl", "alias/aws/kinesis", "us-east-1"); err != nil {
			return err
		}
	}
	// Writers run until the power cut; it comes after a random number of file writes.
	cutAfter := fs.Writes() + 1 + rng.IntN(60)
	stopToggling := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		if seed%3 == 2 {
			toggleEncryption(s, stopToggling)
		}
	}()
	acks, attempted := runWriters(s, fs, cutAfter, seed)
	close(stopToggling)
	<-toggled
	for _, a := range acks {
		if strings.HasSuffix(a.data, encryptedSuffix) {
			modes[1]++
		} else {
			modes[0]++
		}
	}
	fs.Crash(rng, vfs.TearMode(rng.IntN(3)))
	s.idx.Discard()
	s.Close()

	s, err = Open(context.Background(), opts)
	if err != nil {
		return fmt.Errorf("reopen after power cut: %w", err)
	}
	defer s.Close()
	if err := verifyAcked(s, acks, attempted); err != nil {
		return err
	}
	res, err := s.Put(context.Background(), "pl", []PutEntry{{PartitionKey: "after", Data: []byte("after")}})
	if err != nil || res[0].Err != nil {
		return fmt.Errorf("write after recovery: %v %v", err, res)
	}
	return nil
}

// runWriters drives 3 writers with PutRecords batches until the filesystem
// has seen cutAfter writes, and returns what was acknowledged and the set of
// every payload ever attempted.
func runWriters(s *Store, fs *vfs.MemFS, cutAfter int, seed uint64) ([]ack, map[string]bool) {
	var mu sync.Mutex
	var acks []ack
	attempted := map[string]bool{}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; fs.Writes() < cutAfter; i++ {
				n := 1 + rng.IntN(5)
				entries := make([]PutEntry, n)
				mu.Lock()
				for j := range entries {
					d := fmt.Sprintf("w%d-%d-%d-%s", w, i, j, make([]byte, rng.IntN(300)))
					entries[j] = PutEntry{PartitionKey: fmt.Sprintf("k%d", rng.IntN(50)), Data: []byte(d)}
					attempted[d] = true
				}
				mu.Unlock()
				res, err := s.Put(context.Background(), "pl", entries)
				if err != nil {
					return
				}
				mu.Lock()
				for j, r := range res {
					if r.Err == nil {
						acks = append(acks, ack{r.ShardID, r.SequenceNumber, ackData(string(entries[j].Data), r.Encrypted)})
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acks, attempted
}

func verifyAcked(s *Store, acks []ack, attempted map[string]bool) error {
	info, err := s.DescribeStream(context.Background(), "pl")
	if err != nil {
		return err
	}
	stored := map[string]ack{} // by sequence number
	for _, sh := range info.Shards {
		recs, err := readShard(s, "pl", sh.ID)
		if err != nil {
			return err
		}
		var prev seqnum.Seq
		for i, r := range recs {
			p, _ := seqnum.Parse(r.SequenceNumber)
			if i > 0 && seqnum.Compare(prev, p) >= 0 {
				return fmt.Errorf("%s: sequence %s not after %s", sh.ID, r.SequenceNumber, recs[i-1].SequenceNumber)
			}
			prev = p
			if _, dup := stored[r.SequenceNumber]; dup {
				return fmt.Errorf("sequence %s stored twice", r.SequenceNumber)
			}
			if !attempted[string(r.Data)] {
				return fmt.Errorf("%s: phantom record %q at %s", sh.ID, r.Data, r.SequenceNumber)
			}
			stored[r.SequenceNumber] = ack{sh.ID, r.SequenceNumber, ackData(string(r.Data), r.Encrypted)}
		}
	}
	for _, a := range acks {
		got, ok := stored[a.seq]
		if !ok {
			return fmt.Errorf("acknowledged record %s on %s lost (%d acked)", a.seq, a.shard, len(acks))
		}
		if got != a {
			return fmt.Errorf("acknowledged record %s: stored %+v, want %+v", a.seq, got, a)
		}
	}
	return nil
}

func readShard(s *Store, stream, id string) ([]Record, error) {
	return readShardPages(s, stream, id, 1000)
}

// readShardPages reads a shard from TRIM_HORIZON to its end in pages of limit records.
func readShardPages(s *Store, stream, id string, limit int) ([]Record, error) {
	pos, err := s.Position(context.Background(), stream, id, TrimHorizon, "", time.Time{})
	if err != nil {
		return nil, err
	}
	var out []Record
	for {
		res, err := s.Read(context.Background(), pos, limit, 10<<20)
		if err != nil {
			return nil, err
		}
		out = append(out, res.Records...)
		if len(res.Records) == 0 || res.Next == nil {
			return out, nil
		}
		pos = *res.Next
	}
}

// toggleEncryption starts and stops the stream's encryption until stop is
// closed (refusals, such as the daily limit on key changes, are ignored).
func toggleEncryption(s *Store, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(time.Millisecond):
		}
		if i%2 == 0 {
			s.StartEncryption(context.Background(), "pl", "alias/aws/kinesis", "us-east-1")
		} else {
			s.StopEncryption(context.Background(), "pl", "alias/aws/kinesis")
		}
	}
}
