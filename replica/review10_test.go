package replica

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// failCounter is a SyncObserver that counts failed fdatasyncs.
type failCounter struct {
	mu    sync.Mutex
	fails int
}

func (c *failCounter) Synced(_ time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.fails++
	}
}

// TestFaultFailedPipelinedSyncReachesObserver (review r10): Run's
// fdatasync fails with EIO; RemoveGroup's flush reads that result first
// (awaitSync) and stops the host. The completion that runs after must
// still count the failure and tell the Observer (the engine's
// fdatasync-failure metric): it returned on the stopped host before it.
func TestFaultFailedPipelinedSyncReachesObserver(t *testing.T) {
	fs := &errseqFS{MemFS: vfs.NewMemFS(), first: make(chan struct{}), second: make(chan struct{})}
	obs := &failCounter{}
	cfg := Config{NodeID: 1, FS: fs, Dir: "/n", Transport: nopTransport{}, ElectionTicks: 2,
		awaitingSync: fs.alone, Observer: obs}
	h, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const g = 5
	if err := h.AddGroup(g, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	if err := h.Campaign(g); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := h.HandleReady(); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	h.pl.async = true
	h.mu.Unlock()
	fs.mu.Lock()
	fs.state = 1
	fs.mu.Unlock()
	if _, err := h.Propose(g, [][]byte{[]byte("r")}); err != nil {
		t.Fatal(err)
	}
	if err := h.roundPipelined(); err != nil {
		t.Fatal(err)
	}
	<-fs.first
	_ = h.RemoveGroup(g)
	h.pl.syncers.Wait()
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if stopped == nil {
		t.Fatal("the host did not stop on a failed WAL fdatasync")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.fails == 0 {
		t.Fatalf("the host stopped on %v but Config.Observer saw no failed fdatasync", stopped)
	}
}

// TestCrashDowngradeRefusesNewerWALKind (review r10): a WAL frame of a kind
// this version does not know, its checksum intact, is a newer version's
// record: Open refuses with errUnknownKind, not as corruption (whose advice
// is to wipe the node), and sets no replica aside.
func TestCrashDowngradeRefusesNewerWALKind(t *testing.T) {
	fs := vfs.NewMemFS()
	cfg := Config{NodeID: 1, FS: fs, Dir: "/n", Transport: nopTransport{}, ElectionTicks: 2}
	h, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.wal.add([]byte{200, 1, 2, 3})
	err = h.wal.flush(true)
	h.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	_, err = Open(cfg)
	if !errors.Is(err, errUnknownKind) || errors.Is(err, errCorrupt) || isDamage(err) {
		t.Fatalf("Open over a newer version's WAL frame: %v, want errUnknownKind and no damage", err)
	}
}
