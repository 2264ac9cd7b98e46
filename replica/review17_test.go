package replica

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestProposalDroppedForSizeIsOverloaded: a leader whose group has
// MaxUncommittedBytes of entries not yet committed refuses the next
// proposal with ErrOverloaded, not ErrNotLeader (which sends the caller
// looking for a leader that is this very node); the group takes proposals
// again once its entries commit.
func TestProposalDroppedForSizeIsOverloaded(t *testing.T) {
	h, err := Open(Config{NodeID: 1, FS: vfs.NewMemFS(), Dir: "/d", Transport: nopTransport{},
		Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}}, MaxUncommittedBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	round := func() {
		t.Helper()
		h.Tick()
		if err := h.HandleReady(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Campaign(1); err != nil {
		t.Fatal(err)
	}
	for h.Status(1).Leader != 1 {
		round()
	}
	round()
	// No round runs between the proposals: none commits, and raft's
	// uncommitted size grows until it refuses one.
	var last error
	var ps []*Proposal
	for range 16 {
		p, err := h.Propose(1, [][]byte{make([]byte, 1<<10)})
		if err != nil {
			last = err
			break
		}
		ps = append(ps, p)
	}
	if !errors.Is(last, ErrOverloaded) || len(ps) == 0 {
		t.Fatalf("after %d proposals: %v, want ErrOverloaded", len(ps), last)
	}
	for _, p := range ps {
		for !closed(p.Done()) {
			round()
		}
	}
	if _, err := h.Propose(1, [][]byte{[]byte("x")}); err != nil {
		t.Fatalf("after the entries committed: %v", err)
	}
}

// TestUnknownGroupIsSentinel: every "no replica of the group here" error
// is ErrUnknownGroup, so callers can tell it from a failure.
func TestUnknownGroupIsSentinel(t *testing.T) {
	h, err := Open(Config{NodeID: 1, FS: vfs.NewMemFS(), Dir: "/d", Transport: nopTransport{},
		Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, errPropose := h.Propose(9, [][]byte{[]byte("x")})
	_, errRead := h.ReadIndex(9)
	_, errChanged := h.Changed(9)
	_, errTrim := h.Trim(9, 0)
	for i, err := range []error{errPropose, errRead, errChanged, errTrim} {
		if !errors.Is(err, ErrUnknownGroup) {
			t.Errorf("call %d: %v, want ErrUnknownGroup", i, err)
		}
	}
}

// gateFS blocks the first Remove of a file under prefix, once armed, until
// release is closed, after closing entered.
type gateFS struct {
	vfs.FS
	prefix   string
	armed    atomic.Bool
	entered  chan struct{}
	release  chan struct{}
	mu       sync.Mutex
	removeAt []string // RemoveAll calls, in order
}

func (f *gateFS) Remove(name string) error {
	if strings.HasPrefix(name, f.prefix) && f.armed.CompareAndSwap(true, false) {
		close(f.entered)
		<-f.release
	}
	return f.FS.Remove(name)
}

func (f *gateFS) RemoveAll(p string) error {
	f.mu.Lock()
	f.removeAt = append(f.removeAt, p)
	f.mu.Unlock()
	return f.FS.RemoveAll(p)
}

// TestTrimRacesReAddedGroup: a Trim that has detached a replica's expired
// segments and is unlinking them, while the replica is removed and added
// again (a move away and back) and the new replica writes segments of the
// same names, must not delete the new replica's files: RemoveGroup waits
// for the trim's unlinks.
//
// The new replica cannot write while RemoveGroup waits, so the gate is
// released either once the re-added replica has written (the race
// happened: without the fix) or after a while (with it); the wait only
// bounds the fixed case, and a loaded machine that is slower than it can
// only make the test miss the race, never fail it wrongly.
func TestTrimRacesReAddedGroup(t *testing.T) {
	fs := &gateFS{FS: vfs.NewMemFS(), prefix: groupDir("/n", 5), entered: make(chan struct{}), release: make(chan struct{})}
	h, stop := runTicking(t, Config{NodeID: 1, FS: fs, Dir: "/n", Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}},
		Transport: nopTransport{}, ElectionTicks: 2, StateSegmentSize: 400})
	defer stop()
	write := func(n int) {
		for i := range n {
			proposeUntilLed(t, h, 5, fmt.Appendf(nil, "record-%03d-%s", i, strings.Repeat("x", 80)))
		}
	}
	if err := h.AddGroup(5, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	write(20)
	if n := h.Segments(5); n < 3 {
		t.Fatalf("%d segments: the test needs several", n)
	}

	trimmed := make(chan error, 1)
	fs.armed.Store(true)
	go func() {
		_, err := h.Trim(5, time.Now().Add(time.Hour).UnixMilli())
		trimmed <- err
	}()
	<-fs.entered // the trim detached its victims and is unlinking the first
	readded := make(chan error, 1)
	go func() {
		if err := h.RemoveGroup(5); err != nil {
			readded <- err
			return
		}
		if err := h.AddGroup(5, []uint64{1}); err != nil {
			readded <- err
			return
		}
		write(20)
		readded <- nil
	}()
	var reErr error
	done := false
	select {
	case reErr = <-readded:
		done = true
	case <-time.After(2 * time.Second):
	}
	close(fs.release)
	if err := <-trimmed; err != nil {
		t.Fatal(err)
	}
	if !done {
		reErr = <-readded
	}
	if reErr != nil {
		t.Fatal(reErr)
	}
	recs, err := h.ReadApplied(5, 0, 1000, 1<<30)
	if err != nil {
		t.Fatalf("the re-added replica's records: %v", err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Data[:10]))
	}
	want := make([]string, 20)
	for i := range want {
		want[i] = fmt.Sprintf("record-%03d", i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the re-added replica reads %v, want %v (segment files: %v)", got, want, dirNames(fs, groupDir("/n", 5)))
	}
	t.Logf("re-added replica's files: %v", dirNames(fs, groupDir("/n", 5)))
}

func dirNames(fs vfs.FS, dir string) []string {
	var out []string
	names, _ := fs.ReadDir(dir)
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			sub, _ := fs.ReadDir(path.Join(dir, n))
			for _, s := range sub {
				out = append(out, n+s)
			}
			continue
		}
		out = append(out, n)
	}
	return out
}
