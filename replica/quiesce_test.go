package replica

import (
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// raftHeartbeats makes a real raft leader (node 1 of three) and a follower
// (node 2) and returns the leader's heartbeat to 2, a ReadIndex heartbeat to
// 2, and the follower's answers to both: the messages beats stand for.
func raftHeartbeats(t *testing.T) (hb, readHB, resp, readResp *pb.Message) {
	node := func(id uint64) *raft.RawNode {
		ms := raft.NewMemoryStorage()
		if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1)),
			ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}); err != nil {
			t.Fatal(err)
		}
		rn, err := raft.NewRawNode(&raft.Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: ms,
			MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		return rn
	}
	drain := func(rn *raft.RawNode) []*pb.Message {
		var out []*pb.Message
		for rn.HasReady() {
			rd := rn.Ready()
			out = append(out, rd.Messages...)
			rn.Advance(rd)
		}
		return out
	}
	to2 := func(ms []*pb.Message, ctx bool) *pb.Message {
		for _, m := range ms {
			if m.GetType() == pb.MsgHeartbeat && m.GetTo() == 2 && (len(m.GetContext()) > 0) == ctx {
				return m
			}
		}
		t.Fatal("no heartbeat to node 2")
		return nil
	}
	leader, follower := node(1), node(2)
	if err := leader.Campaign(); err != nil {
		t.Fatal(err)
	}
	drain(leader)
	term := leader.BasicStatus().GetTerm()
	if err := leader.Step(&pb.Message{Type: pb.MsgVoteResp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(term)}); err != nil {
		t.Fatal(err)
	}
	drain(leader)
	if leader.BasicStatus().RaftState != raft.StateLeader {
		t.Fatal("node 1 did not become leader")
	}
	leader.Tick()
	hb = to2(drain(leader), false)
	// The leader's own entry of its term must commit before it serves reads.
	for _, id := range []uint64{2, 3} {
		_ = leader.Step(&pb.Message{Type: pb.MsgAppResp.Enum(), From: new(id), To: new(uint64(1)), Term: new(term), Index: new(uint64(2))})
	}
	drain(leader)
	leader.ReadIndex([]byte("read"))
	readHB = to2(drain(leader), true)
	answer := func(m *pb.Message) *pb.Message {
		if err := follower.Step(proto.CloneOf(m)); err != nil {
			t.Fatal(err)
		}
		for _, r := range drain(follower) {
			if r.GetType() == pb.MsgHeartbeatResp {
				return r
			}
		}
		t.Fatal("no heartbeat answer")
		return nil
	}
	return hb, readHB, answer(hb), answer(readHB)
}

// TestBeatsStandForRaftMessages: a heartbeat and its answer, turned into
// beats, sent and expanded, are exactly the messages raft made; those with a
// ReadIndex context stay whole messages.
func TestBeatsStandForRaftMessages(t *testing.T) {
	hb, readHB, resp, readResp := raftHeartbeats(t)
	for _, tc := range []struct {
		name     string
		m        *pb.Message
		coalesce bool
	}{
		{"heartbeat", hb, true},
		{"heartbeat answer", resp, true},
		{"ReadIndex heartbeat", readHB, false},
		{"ReadIndex heartbeat answer", readResp, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bt, ok := beatOf(7, tc.m)
			if ok != tc.coalesce {
				t.Fatalf("coalesced %v, want %v", ok, tc.coalesce)
			}
			if !ok {
				return
			}
			data, err := EncodeBatch(Batch{From: tc.m.GetFrom(), To: tc.m.GetTo(), Beats: []Beat{bt}})
			if err != nil {
				t.Fatal(err)
			}
			b, err := DecodeBatch(data)
			if err != nil || len(b.Beats) != 1 || b.Beats[0].Group != 7 {
				t.Fatalf("decoded %+v, %v", b, err)
			}
			if got := b.Beats[0].message(b.From, b.To); !proto.Equal(got, tc.m) {
				t.Fatalf("expanded to %v, raft made %v", got, tc.m)
			}
		})
	}
}

// TestBatchBeatsCodec: beats of each kind round-trip; a bad kind or a cut
// varint is a malformed batch.
func TestBatchBeatsCodec(t *testing.T) {
	beats := []Beat{
		{Group: 1, Kind: BeatHeartbeat, Term: 3, Commit: 1 << 40},
		{Group: 1 << 50, Kind: BeatResp, Term: 9},
		{Group: 300, Kind: BeatQuiesce, Term: 4, Commit: 77, Index: 78},
	}
	good, err := EncodeBatch(Batch{From: 1, To: 2, Msgs: sampleBatch().Msgs, Beats: beats})
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeBatch(good)
	if err != nil || len(b.Msgs) != 2 || len(b.Beats) != 3 {
		t.Fatalf("decoded %+v, %v", b, err)
	}
	for i, bt := range beats {
		if b.Beats[i] != bt {
			t.Fatalf("beat %d: %+v, want %+v", i, b.Beats[i], bt)
		}
	}
	oneBeat := func(bt Beat) []byte {
		data, err := EncodeBatch(Batch{From: 1, To: 2, Beats: []Beat{bt}})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	badKind := oneBeat(Beat{Group: 1, Kind: 9, Term: 1})
	cut := oneBeat(Beat{Group: 1, Kind: BeatQuiesce, Term: 1, Commit: 1 << 20, Index: 1 << 20})
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"unknown kind", badKind},
		{"cut inside a varint", cut[:len(cut)-1]},
		{"trailing byte", append(oneBeat(Beat{Group: 1, Kind: BeatResp, Term: 1}), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeBatch(tc.data); err == nil {
				t.Fatal("decoded a malformed batch")
			}
		})
	}
}

// TestQuiescence drives a calm three-node simulation (no faults): once idle,
// every replica of every group quiesces and the nodes exchange nothing but
// pulses; each kind of wake-up brings the group back, and it quiesces again.
func TestQuiescence(t *testing.T) {
	for _, tc := range []struct {
		name string
		wake func(t *testing.T, s *sim, lead, follower *Host) (done func() bool)
	}{
		{"a proposal on the leader", func(t *testing.T, s *sim, lead, _ *Host) func() bool {
			p, err := lead.Propose(1, [][]byte{[]byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			return func() bool { return isDone(p.Done()) }
		}},
		{"a ReadIndex on a follower", func(t *testing.T, s *sim, _, follower *Host) func() bool {
			r, err := follower.ReadIndex(1)
			if err != nil {
				t.Fatal(err)
			}
			return func() bool { return isDone(r.Done()) }
		}},
		{"a leadership transfer", func(t *testing.T, s *sim, lead, follower *Host) func() bool {
			if err := lead.TransferLeader(1, follower.cfg.NodeID); err != nil {
				t.Fatal(err)
			}
			return func() bool { return follower.Status(1).Leader == follower.cfg.NodeID }
		}},
		{"a stray message to a follower", func(t *testing.T, s *sim, lead, follower *Host) func() bool {
			// A delayed duplicate of an old heartbeat answer wakes the
			// leader: it heartbeats its followers, which wake, then all
			// quiesce again, without an election.
			term := lead.Status(1).Term
			lead.Receive(Batch{From: follower.cfg.NodeID, To: lead.cfg.NodeID, Beats: []Beat{{Group: 1, Kind: BeatResp, Term: term}}})
			return func() bool { return !lead.Quiesced(1) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSim(1, simOptions{nodes: 3, groups: 2, calm: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.settleAndCheck("at the start"); err != nil {
				t.Fatal(err)
			}
			assertOnlyPulses(t, s, 30)
			leadNode, _ := s.leaderOf(1)
			lead := leadNode.host
			follower := s.nodes[leadNode.id%3].host
			term := lead.Status(1).Term
			woken := s.woken()
			done := tc.wake(t, s, lead, follower)
			for i := 0; !done(); i++ {
				if i == 100 {
					t.Fatalf("not done within 100 steps: %s", s.describe())
				}
				if err := s.step(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.awaitQuiescence("after the wake-up"); err != nil {
				t.Fatal(err)
			}
			if s.woken() == woken {
				t.Fatal("nothing was woken")
			}
			if l, _ := s.leaderOf(1); tc.name != "a leadership transfer" && (l.host != lead || lead.Status(1).Term != term) {
				t.Fatalf("the wake-up caused an election: leader %d term %d, was %d term %d", l.id, l.host.Status(1).Term, leadNode.id, term)
			}
			assertOnlyPulses(t, s, 30)
		})
	}
}

func (s *sim) woken() (n uint64) {
	for _, nd := range s.nodes {
		n += nd.host.QuiesceStats().Woken
	}
	return n
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// assertOnlyPulses waits until every group is quiesced and nothing but
// pulses is in flight (a late answer may wake a leader, which quiesces
// again), then runs steps and fails if a node sends anything but pulses:
// quiesced groups cost their nodes nothing per group.
func assertOnlyPulses(t *testing.T, s *sim, steps int) {
	t.Helper()
	for i := 0; !s.allQuiesced() || !onlyPulses(t, s, 0); i++ {
		if i == 200 {
			t.Fatalf("not quiesced and silent within 200 steps: %s", s.describe())
		}
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
	}
	pulses := 0
	for range steps {
		before := s.order
		if err := s.step(); err != nil {
			t.Fatal(err)
		}
		if !onlyPulses(t, s, before) {
			t.Fatalf("a quiesced node sent more than pulses: %s", s.describe())
		}
		for _, m := range s.net {
			if m.order > before {
				pulses++
			}
		}
	}
	if pulses == 0 {
		t.Fatal("no pulses: a follower could not tell its leader's node is live")
	}
}

// onlyPulses reports whether every batch in flight sent after order is empty.
func onlyPulses(t *testing.T, s *sim, after uint64) bool {
	for _, m := range s.net {
		b, err := DecodeBatch(m.data)
		if err != nil {
			t.Fatal(err)
		}
		if m.order > after && (len(b.Msgs) > 0 || len(b.Beats) > 0) {
			return false
		}
	}
	return true
}

// BenchmarkHeartbeatBatch: one round's heartbeats from a node leading 333
// groups to one follower node, encoded and decoded, as whole raft messages
// and as beats (go test -run '^$' -bench HeartbeatBatch ./replica/).
func BenchmarkHeartbeatBatch(b *testing.B) {
	for _, coalesce := range []bool{false, true} {
		name := map[bool]string{false: "raft messages", true: "beats"}[coalesce]
		b.Run(name, func(b *testing.B) {
			batch := Batch{From: 1, To: 2}
			for g := range uint64(333) {
				m := &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(7)), Commit: new(5000 + g)}
				if bt, _ := beatOf(g+1, m); coalesce {
					batch.Beats = append(batch.Beats, bt)
				} else {
					batch.Msgs = append(batch.Msgs, GroupMessage{Group: g + 1, Msg: m})
				}
			}
			var size int
			for b.Loop() {
				data, err := EncodeBatch(batch)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodeBatch(data); err != nil {
					b.Fatal(err)
				}
				size = len(data)
			}
			b.ReportMetric(float64(size)/333, "bytes/heartbeat")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/333, "ns/heartbeat")
		})
	}
}
