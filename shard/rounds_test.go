package shard

import (
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
	return r.running, r.waiting
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
	r := NewSyncRounds()
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
	r := NewSyncRounds()
	var mu sync.Mutex
	syncing := map[uint64]int{} // round -> its syncs not yet returned
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				mine := r.join()
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
