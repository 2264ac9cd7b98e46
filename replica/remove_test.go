package replica

import (
	"context"
	"errors"
	"path"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestRemoveGroup: a replica added by AddGroup, holding records, is
// removed: its files are gone, it stays gone after a restart, and the
// group added again starts empty, also over files a crash left behind.
// A configured group cannot be removed.
func TestRemoveGroup(t *testing.T) {
	fs := vfs.NewMemFS()
	open := func() (*Host, func()) {
		return runTicking(t, Config{NodeID: 1, FS: fs, Dir: "/n", Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}}, Transport: nopTransport{}})
	}
	h, stop := open()
	if err := h.AddGroup(5, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	propose := func(h *Host, g uint64) { proposeUntilLed(t, h, g, []byte("x")) }
	propose(h, 5)
	dir := groupDir("/n", 5)
	if _, err := fs.ReadDir(dir); err != nil {
		t.Fatalf("no files for the group: %v", err)
	}
	if err := h.RemoveGroup(1); err == nil {
		t.Fatal("removed a configured group")
	}
	if err := h.RemoveGroup(5); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadDir(dir); err == nil || h.HasGroup(5) {
		t.Fatalf("group 5 left behind: files %v, held %v", err, h.HasGroup(5))
	}
	stop()

	h, stop = open()
	defer func() { stop() }()
	if h.HasGroup(5) {
		t.Fatal("a removed group came back after a restart")
	}
	// Leftovers of a removal cut short are not taken for the new replica's.
	if err := fs.MkdirAll(path.Join(dir, "0000000000000000")); err != nil {
		t.Fatal(err)
	}
	if err := h.AddGroup(5, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	if recs, err := h.ReadApplied(5, 0, 10, 1<<20); err != nil || len(recs) != 0 {
		t.Fatalf("the group added again holds %v, %v", recs, err)
	}
	propose(h, 5)
	stop()
	h, stop = open()
	if recs, err := h.ReadApplied(5, 0, 10, 1<<20); err != nil || len(recs) != 1 {
		t.Fatalf("after a restart the group added again holds %d records, %v", len(recs), err)
	}
}

// runTicking opens a host and runs it with a tick every millisecond or so;
// the returned function stops and closes it.
func runTicking(t *testing.T, cfg Config) (*Host, func()) {
	t.Helper()
	h, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx, tick, nil) }()
	go func() {
		for ctx.Err() == nil {
			select {
			case tick <- time.Now():
			case <-ctx.Done():
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return h, func() { cancel(); <-done; h.Close() }
}

// proposeUntilLed makes h (a group's only voter) campaign until it leads g,
// then commits one record there.
func proposeUntilLed(t *testing.T, h *Host, g uint64, rec []byte) {
	t.Helper()
	for {
		_ = h.Campaign(g)
		p, err := h.Propose(g, [][]byte{rec})
		if err == nil {
			// A proposal queued behind a round (inbox.go) learns there
			// that this node does not lead yet: nothing was appended.
			if _, err = p.Wait(context.Background()); err == nil {
				return
			}
			if !errors.Is(err, ErrNotLeader) {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
