package replica

import (
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/shardlog/shardlog/vfs"
)

// Review r9, finding 1: a follower's MemoryStorage that holds only a light
// group's small entries must not keep alive the transport frames they
// arrived in, whose other bytes (a busy group's appends, long compacted) it
// does not hold. unmarshalMessage aliased every entry's Data into the
// frame, so one small entry pinned its whole frame until the light group
// compacted (CompactMinEntries entries later); now a small part of a frame
// is copied (aliasShare).
func TestReview9SmallEntryDoesNotPinItsFrame(t *testing.T) {
	const frames, big, small = 64, 1 << 20, 16
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	light := raft.NewMemoryStorage()
	for i := range frames {
		idx := uint64(i + 1)
		b := Batch{From: 2, To: 1, Msgs: []GroupMessage{
			{Group: 1, Msg: &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(1)), From: new(uint64(2)),
				Entries: []*pb.Entry{{Term: new(uint64(1)), Index: new(idx), Data: make([]byte, big)}}}},
			{Group: 2, Msg: &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(1)), From: new(uint64(2)),
				Entries: []*pb.Entry{{Term: new(uint64(1)), Index: new(idx), Data: make([]byte, small)}}}},
		}}
		p, err := EncodeBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBatch(p)
		if err != nil {
			t.Fatal(err)
		}
		// The busy group's entry is compacted away; the light group's kept.
		if err := light.Append(got.Msgs[1].Msg.GetEntries()); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(light)
	// A copying decoder keeps 64 x 16 bytes (plus overhead); aliasing keeps
	// 64 frames of 1 MiB.
	if grown := int64(ms.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Fatalf("holding %d entries of %d bytes keeps %d MiB more heap alive: each pins its %d MiB frame",
			frames, small, grown>>20, big>>20)
	}
}

// Review r9, finding 2 (fault: the MsgApps of a leader's unsynced entry
// lost): canQuiesce's "nothing unpersisted" read the MemoryStorage, which
// under the pipelined loop holds only durable entries: a leader whose own
// entry (a configuration change: no pending proposal holds the group awake)
// was written but not yet fdatasync'd saw commit == applied == last ==
// every Match, and quiesced. With the entry's MsgApps lost, nothing ever
// sent it again: the leader did not tick (no heartbeat, no probe), its
// followers agreed with its quiesce beat (whose Index is the durable last
// index), and the change never committed until something else woke the
// group. Now a group with a written unit awaiting its fdatasync does not
// quiesce.
func TestFaultLeaderDoesNotQuiesceOverItsUnsyncedEntry(t *testing.T) {
	const A, B, C, g = 1, 2, 3, 7
	n, a := leaderWritingConfChange(t, A, B, C, g)
	a.mu.Lock()
	syncing := a.pl.syncing
	a.mu.Unlock()
	if !syncing {
		t.Fatal("the configuration change's write is not in flight")
	}
	n.queue = nil // its MsgApps are lost
	a.Tick()
	if a.Quiesced(g) {
		last := a.Status(g).LastIndex
		t.Fatalf("the leader quiesced with its own entry %d written but not durable and replicated nowhere", last+1)
	}
}

// Review r9, finding 2, carried on: the leader's fdatasync completes, every
// batch from then on is delivered, every node ticks; the learner's
// addition must commit (it never did when the leader quiesced over it;
// before h41 the leader's own write was in its storage at the end of the
// round, so its followers' Match fell short of it and it did not quiesce).
func TestFaultLostConfChangeMsgAppsAreResent(t *testing.T) {
	const A, B, C, g = 1, 2, 3, 7
	n, a := leaderWritingConfChange(t, A, B, C, g)
	n.queue = nil // the change's MsgApps are lost
	for range 200 {
		a.Tick()
		n.hosts[B].Tick()
		n.hosts[C].Tick()
		if err := a.completeDeferred(n.fss[A].(*vfs.MemFS)); err != nil {
			t.Fatal(err)
		}
		if err := a.roundPipelined(); err != nil {
			t.Fatal(err)
		}
		for _, id := range []uint64{B, C} {
			if err := n.hosts[id].HandleReady(); err != nil {
				t.Fatal(err)
			}
		}
		q := n.queue
		n.queue = nil
		for _, b := range q {
			if h := n.hosts[b.To]; h != nil { // node 4 does not exist
				h.Receive(b)
			}
		}
	}
	if m, _ := a.Membership(g); !slices.Contains(m.Learners, 4) {
		t.Fatalf("200 ticks later the learner is not added (learners %v, commit %d, match %v, leader quiesced %v)",
			m.Learners, m.Commit, m.Match, a.Quiesced(g))
	}
}

// Review r9, the transport (fault: a big frame after an idle spell):
// writeLoop set the write deadline only before its Flush, but a frame
// bigger than its buffer is written through at once, under the previous
// Flush's deadline, which an idle spell longer than WriteTimeout leaves in
// the past: the frame was dropped and the connection closed. (The sleep
// only makes that deadline stale; nothing here is timed.)
func TestFaultBigFrameAfterIdleSpell(t *testing.T) {
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ListenTCP(TCPConfig{NodeID: 2, Listener: lnB})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const timeout = 50 * time.Millisecond
	a, err := ListenTCP(TCPConfig{NodeID: 1, Listen: "127.0.0.1:0", Peers: map[uint64]string{2: b.Addr()}, WriteTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	batch := func(size int) Batch {
		return Batch{From: 1, To: 2, Msgs: []GroupMessage{{Group: 3, Msg: &pb.Message{Type: pb.MsgApp.Enum(),
			To: new(uint64(2)), From: new(uint64(1)), Entries: []*pb.Entry{{Index: new(uint64(1)), Data: make([]byte, size)}}}}}}
	}
	receive := func(size int) {
		t.Helper()
		poll := time.NewTicker(10 * time.Millisecond)
		defer poll.Stop()
		for give := time.After(30 * time.Second); ; { // a lost frame, not a slow one
			select {
			case got := <-b.Inbox():
				if n := len(got.Msgs[0].Msg.Entries[0].Data); n != size {
					t.Fatalf("received an entry of %d bytes, want %d", n, size)
				}
				return
			case <-poll.C:
				if d := a.Dropped(); d != 0 {
					t.Fatalf("the %d-byte frame was dropped (%d frames dropped)", size, d)
				}
			case <-give:
				t.Fatalf("the %d-byte frame never arrived", size)
			}
		}
	}
	a.Send(batch(16)) // connects and flushes: the deadline is now+timeout
	receive(16)
	time.Sleep(3 * timeout)
	const big = 256 << 10 // beyond writeLoop's 64 KiB buffer
	a.Send(batch(big))
	receive(big)
}

// leaderWritingConfChange starts group g on nodes a, b and c, led by a,
// with one record committed; then a, in Run's pipelined form with its
// fdatasyncs deferred, proposes adding node 4 as a learner and writes that
// entry in a round whose fdatasync is left in flight.
func leaderWritingConfChange(t *testing.T, a, b, c, g uint64) (*partNet, *Host) {
	t.Helper()
	boot := []uint64{a, b, c}
	n := newPartNet(t, boot, false)
	for _, id := range boot {
		n.addGroup(id, g, boot)
	}
	if err := n.hosts[a].Campaign(g); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if _, ok := n.put(a, g, "x"); !ok {
		t.Fatal("no write with every node up")
	}
	h := n.hosts[a]
	h.mu.Lock()
	h.pl.deferred = true
	h.mu.Unlock()
	if err := h.ChangeMembership(g, ChangeLearner, 4); err != nil {
		t.Fatal(err)
	}
	if err := h.roundPipelined(); err != nil {
		t.Fatal(err)
	}
	return n, h
}
