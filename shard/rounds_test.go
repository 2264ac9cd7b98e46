package shard

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

// waitFor spins until cond holds (no timing: the scheduler decides when).
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

func (r *SyncRounds) counts() (running, waiting int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next != nil {
		waiting = r.next.size
	}
	return r.running, waiting
}

// joinAsync joins r in a goroutine; the channel is closed once the join
// returned, that is once its sync may start.
func joinAsync(r *SyncRounds) chan struct{} {
	started := make(chan struct{})
	go func() {
		r.join()
		close(started)
	}()
	return started
}

func started(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestSyncRoundsLineUp: a sync that arrives while a round runs starts only
// when every sync of that round has returned, together with every other
// that arrived meanwhile; one that finds no round starts at once.
func TestSyncRoundsLineUp(t *testing.T) {
	r := NewSyncRounds(nil)
	r.join() // A: no round running, starts at once
	b, c := joinAsync(r), joinAsync(r)
	waitFor(func() bool { _, w := r.counts(); return w == 2 })
	if started(b) || started(c) {
		t.Fatal("a sync started while the round before it was running")
	}
	r.leave() // A returns: B and C start together
	<-b
	<-c
	if run, w := r.counts(); run != 2 || w != 0 {
		t.Fatalf("after the first round: running %d, waiting %d; want 2, 0", run, w)
	}
	d := joinAsync(r)
	waitFor(func() bool { _, w := r.counts(); return w == 1 })
	r.leave() // B returns; C still syncs
	if run, w := r.counts(); run != 1 || w != 1 || started(d) {
		t.Fatalf("with C still syncing: running %d, waiting %d, D started %v", run, w, started(d))
	}
	r.leave() // C returns: D starts
	<-d
	r.leave()
	if run, w := r.counts(); run != 0 || w != 0 {
		t.Fatalf("idle: running %d, waiting %d", run, w)
	}
	r.join() // idle again: starts at once
	r.leave()

	var none *SyncRounds // nil: every sync starts at once
	none.join()
	none.join()
	none.leave()
	none.leave()
}

// TestSyncRoundsConcurrent: many syncers joining and leaving at random
// moments all get through, and rounds never overlap: when a sync starts,
// every sync still running belongs to its round.
func TestSyncRoundsConcurrent(t *testing.T) {
	r := NewSyncRounds(nil)
	var mu sync.Mutex
	syncing := map[uint64]int{} // round -> its syncs not yet returned
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				mine := r.join().n
				mu.Lock()
				for k, n := range syncing {
					if k != mine {
						t.Errorf("syncer %d/%d started in round %d while %d syncs of round %d ran", g, i, mine, n, k)
					}
				}
				syncing[mine]++
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				if syncing[mine]--; syncing[mine] == 0 {
					delete(syncing, mine)
				}
				mu.Unlock()
				r.leave()
			}
		})
	}
	wg.Wait()
	if run, w := r.counts(); run != 0 || w != 0 {
		t.Fatalf("idle: running %d, waiting %d", run, w)
	}
	if r.round < 2 {
		t.Fatalf("%d rounds", r.round)
	}
}

// fakeSyncer counts syncfs calls.
type fakeSyncer struct {
	calls int
	err   error
}

func (f *fakeSyncer) Sync() error {
	f.calls++
	return f.err
}
func (f *fakeSyncer) Close() error { return nil }

func untimed(sync func() error) error { return sync() }

// TestSharedRounds: a round of one shard fdatasyncs its own file; the shards
// that waited for it start together and share one syncfs, which begins only
// once every one of them has called sync (so it covers all their frames);
// a member whose file would not open still lets the others' syncfs run.
func TestSharedRounds(t *testing.T) {
	fs := &fakeSyncer{}
	r := NewSyncRounds(fs)
	owns := 0
	own := func() error { owns++; return nil }

	a := r.join()
	type member struct {
		rd  chan *round
		err chan error
	}
	var ms []member
	for range 3 {
		m := member{rd: make(chan *round, 1), err: make(chan error, 1)}
		go func() { m.rd <- r.join() }()
		ms = append(ms, m)
	}
	waitFor(func() bool { _, w := r.counts(); return w == 3 })
	if err := r.sync(a, own, untimed); err != nil || owns != 1 || fs.calls != 0 {
		t.Fatalf("a round of one: err %v, own fdatasyncs %d, syncfs %d; want nil, 1, 0", err, owns, fs.calls)
	}
	r.leave()
	for i, m := range ms {
		rd := <-m.rd
		if !rd.shared || rd.size != 3 {
			t.Fatalf("member %d: shared %v, size %d; want true, 3", i, rd.shared, rd.size)
		}
		var fn func() error
		if i != 1 {
			fn = func() error { t.Error("a shared round's member ran its own fdatasync"); return nil }
		}
		go func() { m.err <- r.sync(rd, fn, untimed) }()
	}
	for i, m := range ms {
		if err := <-m.err; err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		r.leave()
	}
	if fs.calls != 1 || r.shared != 1 {
		t.Fatalf("syncfs calls %d, shared rounds %d; want 1, 1", fs.calls, r.shared)
	}
}

// TestSharedRoundFailureIsSticky: a failed syncfs does not say whose pages
// were lost, so every member fails, and so does every later sync of any
// shard, without syncing.
func TestSharedRoundFailureIsSticky(t *testing.T) {
	boom := errors.New("EIO")
	fs := &fakeSyncer{err: boom}
	r := NewSyncRounds(fs)
	rd := &round{shared: true, size: 2, done: make(chan struct{})}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- r.sync(rd, nil, untimed) }()
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, boom) {
			t.Fatalf("member: %v, want %v", err, boom)
		}
	}
	solo := r.join()
	called := false
	if err := r.sync(solo, func() error { called = true; return nil }, untimed); !errors.Is(err, boom) || called {
		t.Fatalf("a later sync: %v (fdatasync called %v); want %v without a call", err, called, boom)
	}
	r.leave()
}
