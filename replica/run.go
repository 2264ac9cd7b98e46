package replica

import (
	"context"
	"time"
)

// Run drives the host outside the simulation: a tick on each value from tick,
// each inbound batch stepped as it arrives, and a Ready round after every event
// and every Propose. The rounds are pipelined (pipeline.go): a round's
// fdatasync runs on its own goroutine, which completes it, while the loop
// steps batches and runs the next rounds. It returns when ctx ends (nil) or
// a round or an fdatasync fails (the host has stopped; restart the node).
func (h *Host) Run(ctx context.Context, tick <-chan time.Time, inbox <-chan Batch) error {
	h.pipelined(true)
	defer h.pipelined(false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			h.Tick()
		case b := <-inbox:
			h.Receive(b)
		case <-h.kick:
		}
		h.drain(inbox)
		if err := h.roundPipelined(); err != nil {
			return err
		}
	}
}

// drain steps every batch already waiting in inbox (at most maxDrain), so
// that one Ready round, and one WAL write, serves all of them: without it
// each batch from a peer cost a round of its own, and a busy node spent its
// rounds one message at a time (a proposal waited behind the rounds of every
// batch queued before its answer).
func (h *Host) drain(inbox <-chan Batch) {
	for range maxDrain {
		select {
		case b := <-inbox:
			h.Receive(b)
		default:
			return
		}
	}
}

// maxDrain bounds the batches one round takes, so that ticks and proposals
// are not held off by a flood.
const maxDrain = 256

// Wait blocks until the proposal is decided or ctx ends. A ctx error leaves the
// proposal indeterminate: it may still commit.
func (p *Proposal) Wait(ctx context.Context) ([]uint64, error) {
	select {
	case <-p.done:
		return p.seqs, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
