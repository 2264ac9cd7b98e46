package shard

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

func TestCounterTake(t *testing.T) {
	c := NewCounter(1)
	steps := []struct {
		floor uint64
		n     int
		want  uint64
	}{
		{0, 3, 1},   // 1..3
		{0, 1, 4},   // another shard: 4
		{2, 2, 5},   // a floor below the counter does not matter: 5..6
		{10, 1, 10}, // a floor above it skips ahead: 10
		{0, 1, 11},
	}
	for i, st := range steps {
		if got := c.Take(st.floor, st.n); got != st.want {
			t.Fatalf("step %d: Take(%d, %d) = %d, want %d", i, st.floor, st.n, got, st.want)
		}
	}
	c.Raise(5) // never lowers it
	if c.Next() != 12 {
		t.Fatalf("Raise(5) moved the counter to %d", c.Next())
	}
	c.Raise(20)
	if c.Next() != 20 {
		t.Fatalf("Raise(20): %d", c.Next())
	}
}

// TestCounterTakeConcurrent: concurrent takers get disjoint runs that
// together cover every value, with no gap and no repeat.
func TestCounterTakeConcurrent(t *testing.T) {
	c := NewCounter(1)
	var mu sync.Mutex
	var got []uint64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := 1 + (g+i)%3
				first := c.Take(0, n)
				mu.Lock()
				for j := range n {
					got = append(got, first+uint64(j))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(got)
	for i, v := range got {
		if v != uint64(i)+1 {
			t.Fatalf("value %d is %d: a gap or a repeat", i, v)
		}
	}
}

// TestSharedCounterSurvivesPowerLoss: a shard whose group's other shards take
// ordinals between its appends keeps strictly increasing ordinals with gaps,
// reads them all back across segment rolls, and after a power cut (with a
// counter rebuilt from nothing) never gives out an acknowledged ordinal again.
func TestSharedCounterSurvivesPowerLoss(t *testing.T) {
	for _, mode := range []vfs.TearMode{vfs.TearNone, vfs.TearPrefix, vfs.TearZeros} {
		rng := rand.New(rand.NewPCG(7, uint64(mode)))
		c := NewCounter(1)
		r := newRig(t, func(o *Options) { o.Counter = c; o.SegmentSize = 2 << 10 })
		var acked []uint64
		for i := range 40 {
			acked = append(acked, r.append(1+i%3, "a")...)
			c.Take(0, rng.IntN(4)) // the group's other shards
		}
		gaps := 0
		for i := 1; i < len(acked); i++ {
			if acked[i] <= acked[i-1] {
				t.Fatalf("ordinals not strictly increasing: %v", acked)
			}
			if acked[i] > acked[i-1]+1 {
				gaps++
			}
		}
		if gaps == 0 {
			t.Fatal("the test meant the other shards to leave gaps")
		}
		if len(r.segFiles()) < 2 {
			t.Fatal("the test meant to roll segments")
		}
		if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
			t.Fatalf("read %v, appended %v", got, acked)
		}
		r.crash(rng, mode)
		c = NewCounter(1) // the counter is not stored: a restart starts it over
		r.opts.Counter = c
		r.boot()
		if c.Next() <= acked[len(acked)-1] {
			t.Fatalf("after recovery the counter is at %d, below acknowledged ordinal %d", c.Next(), acked[len(acked)-1])
		}
		if got := seqsOf(r.readAll()); !slices.Equal(got, acked) {
			t.Fatalf("after the crash read %v, acknowledged %v", got, acked)
		}
		if next := r.append(1, "b")[0]; next <= acked[len(acked)-1] {
			t.Fatalf("ordinal %d given again after the crash (last acknowledged %d)", next, acked[len(acked)-1])
		}
	}
}
