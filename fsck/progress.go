package fsck

import (
	"fmt"
	"io"
	"time"
)

// progress redraws one status line (carriage return, no newline) at most
// every progressEvery. With a nil writer every method is a no-op, which is
// what callers get when the output is not a terminal.
type progress struct {
	w             io.Writer
	last          time.Time
	shardN, of    int
	total         int64
	drewSomething bool
}

const progressEvery = 200 * time.Millisecond

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) shard(n, of int) {
	if p.w == nil {
		return
	}
	p.shardN, p.of = n, of
	p.draw(false)
}

func (p *progress) bytes(n int64) {
	if p.w == nil {
		return
	}
	p.total += n
	p.draw(false)
}

func (p *progress) draw(force bool) {
	now := time.Now()
	if !force && now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	p.drewSomething = true
	fmt.Fprintf(p.w, "\rfsck: shard %d/%d, %.1f MiB checked ", p.shardN, p.of, float64(p.total)/(1<<20))
}

// done erases the status line.
func (p *progress) done() {
	if p.w != nil && p.drewSomething {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
