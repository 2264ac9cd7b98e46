package replica

import (
	"context"
	"time"
)

// Run drives the host outside the simulation: a tick on each value from tick,
// each inbound batch stepped as it arrives, and a Ready round after every event
// and every Propose. It returns when ctx ends (nil) or a round fails (the
// host has stopped; restart the node).
func (h *Host) Run(ctx context.Context, tick <-chan time.Time, inbox <-chan Batch) error {
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
		if err := h.HandleReady(); err != nil {
			return err
		}
	}
}

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
