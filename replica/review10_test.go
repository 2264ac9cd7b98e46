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
