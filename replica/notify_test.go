package replica

import (
	"errors"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// TestChanged: a group's change channel closes when the group elects a
// leader and when an entry applies (not before its round ends), a fresh
// one waits for the next change, another group's change does not close it,
// and stopping the host closes every one (and refuses new ones).
func TestChanged(t *testing.T) {
	h, err := Open(Config{NodeID: 1, FS: vfs.NewMemFS(), Dir: "/d", Transport: nopTransport{},
		Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}, {ID: 2, Peers: []uint64{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	round := func() { // fewer ticks than an election timeout: group 2 stays leaderless
		t.Helper()
		h.Tick()
		if err := h.HandleReady(); err != nil {
			t.Fatal(err)
		}
	}
	round()
	ch1, _ := h.Changed(1)
	ch2, _ := h.Changed(2)
	if closed(ch1) || closed(ch2) {
		t.Fatal("closed before any change")
	}
	if err := h.Campaign(1); err != nil {
		t.Fatal(err)
	}
	round()
	if !closed(ch1) || closed(ch2) {
		t.Fatalf("after group 1's election: group 1 closed %v, group 2 closed %v", closed(ch1), closed(ch2))
	}
	for h.Status(1).Leader != 1 {
		round()
	}
	round() // settles the election's own entry
	ch1, _ = h.Changed(1)
	if closed(ch1) {
		t.Fatal("a fresh channel closed with nothing new")
	}
	p, err := h.Propose(1, [][]byte{[]byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	for !closed(p.Done()) {
		round()
	}
	if !closed(ch1) || closed(ch2) {
		t.Fatal("an applied entry did not close group 1's channel, or closed group 2's")
	}
	if recs := h.Records(1); len(recs) != 1 || string(recs[0].Data) != "x" {
		t.Fatalf("records after the change: %v", recs)
	}
	if _, err := h.Changed(9); err == nil {
		t.Fatal("Changed of an unknown group")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !closed(ch2) {
		t.Fatal("stopping the host left a change channel open")
	}
	if _, err := h.Changed(1); !errors.Is(err, ErrStopped) {
		t.Fatalf("Changed after the host stopped: %v", err)
	}
}
