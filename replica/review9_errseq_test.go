package replica

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// errseqFS models Linux's reporting of a writeback error to concurrent
// fsyncs of one open file (errseq_t, since 4.13): once armed, the first
// Sync of a WAL file fails (EIO) and makes nothing durable, and it waits
// for either a second, concurrent Sync, whose writeback it shares and
// which, its check coming after the error was reported on that file, is
// told nothing (nil) and makes nothing durable either; or for alone, the
// host's word that it waits for the first's result before any Sync of its
// own (Config.awaitingSync), so there is no concurrent one.
type errseqFS struct {
	*vfs.MemFS
	mu            sync.Mutex
	state         int // 0 off, 1 armed, 2 first waiting, 3 done
	first, second chan struct{}
}

type errseqFile struct {
	vfs.File
	fs *errseqFS
}

func (s *errseqFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.Contains(name, walPrefix) {
		return f, err
	}
	return &errseqFile{File: f, fs: s}, nil
}

func (s *errseqFS) Create(name string) (vfs.File, error) {
	f, err := s.MemFS.Create(name)
	return s.wrap(name, f, err)
}

func (s *errseqFS) OpenRW(name string) (vfs.File, error) {
	f, err := s.MemFS.OpenRW(name)
	return s.wrap(name, f, err)
}

// alone releases the first Sync with no concurrent one.
func (s *errseqFS) alone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == 2 {
		s.state = 3
		close(s.second)
	}
}

func (f *errseqFile) Sync() error {
	s := f.fs
	s.mu.Lock()
	switch s.state {
	case 1:
		s.state = 2
		s.mu.Unlock()
		close(s.first)
		<-s.second
		return syscall.EIO
	case 2:
		s.state = 3
		s.mu.Unlock()
		close(s.second)
		return nil
	}
	s.mu.Unlock()
	return f.File.Sync()
}

// Review r9 (fault: a writeback error shared by concurrent fdatasyncs):
// RemoveGroup's flush must not fdatasync the WAL while Run's pipelined
// fdatasync of the same file is in flight. If it did and the writeback
// both waited on failed, only one of them would hear of it; were it the
// pipelined one, RemoveGroup would report success and delete the
// replica's segment files (under the host's lock, so before the failure
// could stop the host), although neither its removal frame nor its
// tombstone is on disk; after the restart the failure forces, the replica
// would be back. Fixed: flushWAL first waits for the pipelined fdatasync's
// result (awaitSync) and stops the host on its failure.
func TestFaultRemoveGroupDuringFailingPipelinedSync(t *testing.T) {
	fs := &errseqFS{MemFS: vfs.NewMemFS(), first: make(chan struct{}), second: make(chan struct{})}
	obs := &failCounter{}
	cfg := Config{NodeID: 1, FS: fs, Dir: "/n", Transport: nopTransport{}, ElectionTicks: 2, awaitingSync: fs.alone,
		Observer: obs}
	h, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
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
	if st := h.Status(g); st.Leader != 1 {
		t.Fatalf("no leader: %+v", st)
	}
	// Run's pipelined rounds from here: a proposal's write, its fdatasync
	// in flight on its own goroutine.
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
	rmErr := h.RemoveGroup(g)
	h.pl.syncers.Wait()
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if !errors.Is(stopped, syscall.EIO) {
		t.Fatalf("the host did not stop on the failed fdatasync: %v", stopped)
	}
	// Review r10: the completion that runs after awaitSync stopped the
	// host must still count the failure and tell the Observer (the
	// engine's fdatasync-failure metric).
	obs.mu.Lock()
	fails := obs.fails
	obs.mu.Unlock()
	if fails == 0 {
		t.Fatalf("the host stopped on %v but Config.Observer saw no failed fdatasync", stopped)
	}
	_, dirErr := fs.MemFS.ReadDir(groupDir("/n", g))
	fs.MemFS.Crash(nil, vfs.TearNone)
	cfg.FS = fs.MemFS
	h2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if rmErr == nil && slices.Contains(h2.Groups(), g) {
		t.Fatalf("RemoveGroup returned nil (segment files deleted: %v) on an fdatasync whose writeback failed; "+
			"after the restart the replica is back: groups %v", dirErr != nil, h2.Groups())
	}
}
