package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shardlog/shardlog/replica"
)

// notLeaderError is a peer's answer that it does not lead the group; hint
// is the leader it knows of (0: none). Nothing was proposed.
type notLeaderError struct{ hint uint64 }

func (e *notLeaderError) Error() string {
	return fmt.Sprintf("cluster: peer does not lead the group (leader hint %d)", e.hint)
}

// maxForwards bounds the "not the leader" answers one request follows: the
// first forward, then retries at a new leader hint (docs/cluster.md §6). A
// peer that cannot be dialled (a dead leader not yet replaced) is retried
// until the election timeout instead: the election is what ends it.
const maxForwards = 3

// onLeader runs a write on the group's leader: local when this node leads,
// else remote at the leader's client API address (forward.go). Only
// definite failures are retried (the leader moved before anything was
// proposed, or a proposal was replaced by another leader's entry, or the
// leader could not be dialled), until an election timeout has passed: then
// errNoLeader. Any other error, indeterminate ones included, is returned
// at once, so nothing is ever proposed twice by one request.
func (n *Node) onLeader(ctx context.Context, group uint64, local func(context.Context) error, remote func(context.Context, string) error) error {
	deadline := time.Now().Add(n.cfg.electionTimeout())
	forwards := 0
	var hint uint64 // a peer's answer outranks this node's possibly stale view, once
	for attempt := 0; ; attempt++ {
		lead := hint
		if hint = 0; lead == 0 {
			lead = n.leaderGuess(group, attempt)
		}
		var err error
		switch addr := n.apiAddr(lead); {
		case lead == 0 || addr == "":
			err = errNoLeader
		case lead == n.cfg.NodeID:
			err = local(ctx)
		default:
			if err = remote(ctx, addr); err == nil {
				n.noteLeader(group, lead)
			}
		}
		var nl *notLeaderError
		switch {
		case errors.As(err, &nl):
			// A replica that knows no leader (hint 0) sends the next
			// attempt to the next candidate; only named leaders count
			// as forwards.
			if hint = nl.hint; hint != 0 {
				n.noteLeader(group, hint)
				forwards++
			}
		case notHere(err), errors.Is(err, errNoLeader), errors.Is(err, errUnreachable):
		default:
			return err
		}
		if forwards >= maxForwards || time.Now().After(deadline) {
			return errNoLeader
		}
		if hint != 0 {
			continue // a named leader is tried at once
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.cfg.Tick):
		}
	}
}

// notHere reports a definite "not on this node" from the replica layer:
// this node does not lead the group, the proposal was replaced by another
// leader's entry, or this node holds no replica of the group any more (it
// was moved away between the routing decision and the call). Nothing was
// proposed or read; the request goes to the group's replicas elsewhere.
func notHere(err error) bool {
	return errors.Is(err, replica.ErrNotLeader) || errors.Is(err, replica.ErrDropped) || errors.Is(err, replica.ErrUnknownGroup)
}

// leaderOf is the group's leader as this node's replica knew it at its
// last round (0: none known, or no replica here). It takes no host lock, so
// a request does not wait for a round's fdatasync to learn where to go.
func (n *Node) leaderOf(group uint64) uint64 {
	return n.host.Leader(group)
}
