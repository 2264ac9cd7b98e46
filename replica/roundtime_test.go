package replica

import (
	"testing"
)

// TestRoundTimes: the stage timers count every round that had a Ready and
// every proposal answered here, and their parts add up to no more than the
// whole (the timers are cumulative durations, so only their relations are
// checked, never their values).
func TestRoundTimes(t *testing.T) {
	n := newStepNet(t, 2)
	leader := n.hosts[1]
	before := leader.Stats().Times
	const proposals = 6
	var ps []*Proposal
	for i := range proposals {
		p, err := leader.Propose(uint64(1+i%2), [][]byte{[]byte("r")})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	n.pump(t)
	for _, p := range ps {
		if _, err := p.Result(); !isDone(p.Done()) || err != nil {
			t.Fatalf("proposal not committed: %v", err)
		}
	}
	for id, h := range n.hosts {
		tm := h.Stats().Times
		if id == 1 {
			tm = sub(tm, before)
		}
		parts := tm.Collect + tm.Early + tm.WALWrite + tm.WALSync + tm.After
		switch {
		case tm.Rounds == 0:
			t.Errorf("node %d: no round counted", id)
		case parts > tm.Round:
			t.Errorf("node %d: stages %v add up to more than the rounds' %v", id, parts, tm.Round)
		case id == 1 && (tm.Answered != proposals || tm.Latency <= 0 || tm.Queued != 0):
			t.Errorf("leader: %d answered (want %d), latency %v, queued %v (nothing was queued)", tm.Answered, proposals, tm.Latency, tm.Queued)
		case id != 1 && tm.Answered != 0:
			t.Errorf("follower %d answered %d proposals", id, tm.Answered)
		}
	}
}

func sub(a, b RoundTimes) RoundTimes {
	return RoundTimes{Rounds: a.Rounds - b.Rounds, Round: a.Round - b.Round, Collect: a.Collect - b.Collect,
		Early: a.Early - b.Early, WALWrite: a.WALWrite - b.WALWrite, WALSync: a.WALSync - b.WALSync,
		After: a.After - b.After, Answered: a.Answered - b.Answered, Latency: a.Latency - b.Latency, Queued: a.Queued - b.Queued}
}
