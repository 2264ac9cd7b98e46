package shard

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// blockSyncFS makes the Sync of every file opened read-only (the syncer's
// descriptor) announce itself on entered and wait for release.
type blockSyncFS struct {
	*vfs.MemFS
	entered chan struct{}
	release chan struct{}
}

type blockSyncFile struct {
	vfs.File
	fs *blockSyncFS
}

func (b *blockSyncFS) Open(name string) (vfs.File, error) {
	f, err := b.MemFS.Open(name)
	if err != nil {
		return nil, err
	}
	return blockSyncFile{f, b}, nil
}

func (f blockSyncFile) Sync() error {
	f.fs.entered <- struct{}{}
	<-f.fs.release
	return f.File.Sync()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestChangedFiresOnlyAfterDurability: a record's frame wakes the waiters
// only once its fdatasync returned, and a failed fdatasync wakes nobody and
// publishes nothing.
func TestChangedFiresOnlyAfterDurability(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, r *rig, bfs *blockSyncFS)
	}{
		{"blocked sync: no wake-up and nothing readable until the sync returns", func(t *testing.T, r *rig, bfs *blockSyncFS) {
			ch := r.sh.Changed()
			tip := r.sh.Tip().Next
			done := make(chan error, 1)
			go func() {
				_, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("v")}}, 0)
				done <- err
			}()
			<-bfs.entered // the frame is written; its fdatasync has begun
			if isClosed(ch) {
				t.Fatal("Changed fired before the frame's fdatasync returned")
			}
			if got := r.sh.Tip().Next; got != tip {
				t.Fatalf("tip moved to %d before the sync, want %d", got, tip)
			}
			if res, err := r.sh.ReadShared(0, 100, 1<<20, 0); err != nil || len(res.Records) != 0 {
				t.Fatalf("ReadShared before the sync: %d records, %v", len(res.Records), err)
			}
			close(bfs.release)
			<-ch
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if res, err := r.sh.ReadShared(0, 100, 1<<20, 0); err != nil || len(res.Records) != 1 {
				t.Fatalf("ReadShared after the wake-up: %d records, %v", len(res.Records), err)
			}
		}},
		{"failed sync: no wake-up, nothing published", func(t *testing.T, r *rig, bfs *blockSyncFS) {
			close(bfs.release)
			go func() {
				for range bfs.entered {
				}
			}()
			ch := r.sh.Changed()
			r.fs.FailNextSync(nil)
			_, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("v")}}, 0)
			if !errors.Is(err, ErrReadOnly) {
				t.Fatalf("append with a failed sync: %v, want ErrReadOnly", err)
			}
			if isClosed(ch) {
				t.Fatal("Changed fired for a frame whose fdatasync failed")
			}
			if res, _ := r.sh.ReadShared(0, 100, 1<<20, 0); len(res.Records) != 0 {
				t.Fatalf("%d records readable after a failed sync", len(res.Records))
			}
		}},
		{"seal and close wake waiters; Changed stays closed after Close", func(t *testing.T, r *rig, bfs *blockSyncFS) {
			close(bfs.release)
			go func() {
				for range bfs.entered {
				}
			}()
			ch := r.sh.Changed()
			if err := r.sh.Seal(); err != nil {
				t.Fatal(err)
			}
			<-ch
			ch = r.sh.Changed()
			if isClosed(ch) {
				t.Fatal("Changed after Seal is already closed: waiters would spin")
			}
			r.sh.Close()
			<-ch
			if !isClosed(r.sh.Changed()) {
				t.Fatal("Changed after Close is open: a waiter would wait forever")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bfs := &blockSyncFS{entered: make(chan struct{}), release: make(chan struct{})}
			r := newRig(t, func(o *Options) {
				bfs.MemFS = o.FS.(*vfs.MemFS)
				o.FS = bfs
			})
			tc.run(t, r, bfs)
		})
	}
}

// TestReadSharedDecodesOnce: concurrent readers of the same frames get the
// same decoded records (one decode), equal to what Read returns.
func TestReadSharedDecodesOnce(t *testing.T) {
	r := newRig(t, nil)
	r.append(50, "a")
	r.append(50, "b")
	want, err := r.sh.Read(0, 1000, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	const readers = 8
	got := make([]ReadResult, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = r.sh.ReadShared(0, 1000, 1<<20, 0)
		}()
	}
	wg.Wait()
	for i, g := range got {
		if len(g.Records) != len(want.Records) || g.Next != want.Next {
			t.Fatalf("reader %d: %d records next %d, want %d next %d", i, len(g.Records), g.Next, len(want.Records), want.Next)
		}
		for j := range g.Records {
			if g.Records[j].Seq != want.Records[j].Seq || string(g.Records[j].Data) != string(want.Records[j].Data) {
				t.Fatalf("reader %d record %d differs from Read's", i, j)
			}
			if &g.Records[j].Data[0] != &got[0].Records[j].Data[0] {
				t.Fatalf("reader %d record %d was decoded again, not shared", i, j)
			}
		}
	}
}

// TestReadFullAtBatchEdge: a page whose byte budget is used up exactly at
// the end of a decoded batch (or overdrawn by its one record) continues
// from the next record, not from the tip.
func TestReadFullAtBatchEdge(t *testing.T) {
	r := newRig(t, nil)
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, r.append(1, "x")...) // one frame each
	}
	first, err := r.sh.Read(0, 100, 1<<20, 0)
	if err != nil || len(first.Records) != 3 {
		t.Fatalf("read: %d records, %v", len(first.Records), err)
	}
	size := len(first.Records[0].Data) + len(first.Records[0].PartitionKey)
	for _, maxBytes := range []int{1, size} {
		for name, read := range map[string]func(uint64, int, int, int64) (ReadResult, error){"Read": r.sh.Read, "ReadShared": r.sh.ReadShared} {
			res, err := read(0, 100, maxBytes, 0)
			if err != nil || len(res.Records) != 1 || res.Next != seqs[1] || res.AtTip {
				t.Fatalf("%s maxBytes %d: %d records, next %d (want %d), at tip %v, %v", name, maxBytes, len(res.Records), res.Next, seqs[1], res.AtTip, err)
			}
		}
	}
}
