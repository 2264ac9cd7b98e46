package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/shardlog/shardlog/vfs"
)

// TestWALRecovery: what a crash leaves of the WAL's unsynced tail is cut, the
// synced frames come back, and the log goes on after them.
func TestWALRecovery(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode vfs.TearMode
		seed uint64
	}{
		{"unsynced tail dropped", vfs.TearNone, 1},
		{"torn prefix of the tail", vfs.TearPrefix, 2},
		{"zeroed tail", vfs.TearZeros, 3},
		{"another torn prefix", vfs.TearPrefix, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			w, rec, err := openWAL(fs, "/d")
			if err != nil || len(rec) != 0 {
				t.Fatal(rec, err)
			}
			var got [][]byte
			synced := [][]byte{{kindStart, 1}, {kindStart, 2, 2}}
			for _, p := range synced {
				w.add(p)
			}
			if err := w.flush(true); err != nil {
				t.Fatal(err)
			}
			w.add([]byte{kindStart, 9, 9, 9, 9, 9, 9, 9, 9, 9})
			w.add([]byte{kindStart, 8})
			if err := w.flush(false); err != nil {
				t.Fatal(err)
			}
			fs.Crash(rand.New(rand.NewPCG(tc.seed, 0)), tc.mode)

			w, rec, err = openWAL(fs, "/d")
			if err != nil {
				t.Fatal(err)
			}
			got = payloadsOf(rec)
			if len(got) < len(synced) || !slices.EqualFunc(got[:2], synced, slices.Equal) {
				t.Fatalf("recovered %v, want the synced %v first", got, synced)
			}
			// A torn prefix may keep whole unsynced frames; never a broken one.
			for _, p := range got[2:] {
				if p[0] != kindStart || (len(p) != 10 && len(p) != 2) {
					t.Fatalf("recovered a damaged frame %v", p)
				}
			}
			w.add([]byte{kindStart, 7})
			if err := w.flush(true); err != nil {
				t.Fatal(err)
			}
			_, recAgain, err := openWAL(fs, "/d")
			again := payloadsOf(recAgain)
			if err != nil || !slices.Equal(again[len(again)-1], []byte{kindStart, 7}) || len(again) != len(got)+1 {
				t.Fatalf("after appending past the cut: %v, %v", again, err)
			}
		})
	}
}

func payloadsOf(ps []walPayload) [][]byte {
	var out [][]byte
	for _, p := range ps {
		out = append(out, p.p)
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	b := Batch{From: 1, To: 3, Msgs: []GroupMessage{
		{Group: 7, Msg: &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(3)), From: new(uint64(1)), Term: new(uint64(4)),
			Entries: []*pb.Entry{{Term: new(uint64(4)), Index: new(uint64(9)), Data: []byte("x")}}}},
		{Group: 8, Msg: &pb.Message{Type: pb.MsgHeartbeat.Enum(), To: new(uint64(3)), From: new(uint64(1))}},
	}, Chunks: []SnapChunk{
		{Kind: ChunkAsk, Group: 7, Index: 90, Gen: 2, First: 1 << 16, ID: 3, Off: 4096, Len: 1 << 20},
		{Kind: ChunkData, Group: 7, Index: 90, Gen: 2, First: 1 << 16, ID: 3, Off: 4096, Data: []byte("bytes")},
		{Kind: ChunkGone, Group: 8, Index: 91, Gen: 1, First: 5, ID: 4},
	}}
	data, err := EncodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != 1 || got.To != 3 || len(got.Msgs) != 2 || got.Msgs[0].Group != 7 ||
		string(got.Msgs[0].Msg.GetEntries()[0].GetData()) != "x" || got.Msgs[1].Msg.GetType() != pb.MsgHeartbeat ||
		!reflect.DeepEqual(got.Chunks, b.Chunks) {
		t.Fatalf("round trip: %+v", got)
	}
	for cut := range len(data) {
		if _, err := DecodeBatch(data[:cut]); err == nil && cut != 0 {
			t.Fatalf("a batch cut at %d decoded", cut)
		}
	}
}

func TestProposalCodec(t *testing.T) {
	k := proposalKey{node: 2, incarnation: 5, id: 11}
	recs := [][]byte{[]byte("a"), {}, []byte("ccc")}
	gotK, gotA, gotR, err := decodeProposal(encodeProposal(k, -7, recs))
	if err != nil || gotK != k || gotA != -7 || !slices.EqualFunc(gotR, recs, slices.Equal) {
		t.Fatalf("%v %v %v %v", gotK, gotA, gotR, err)
	}
	if Ordinal(3, 2) != 3<<16|2 || Ordinal(3, MaxRecordsPerProposal-1) >= Ordinal(4, 0) {
		t.Fatal("ordinals of consecutive entries overlap")
	}
}

// chanTransport delivers batches to the hosts' inboxes, dropping them when an
// inbox is full as a network would.
type chanTransport map[uint64]chan Batch

func (c chanTransport) Send(b Batch) {
	data, err := EncodeBatch(b)
	if err != nil {
		panic(err)
	}
	copied, err := DecodeBatch(data)
	if err != nil {
		panic(err)
	}
	select {
	case c[b.To] <- copied:
	default:
	}
}

// TestRunThreeHosts drives three hosts with Run (real goroutines, raft's own
// randomised election timers and CheckQuorum) and proposes through whichever
// leads: Propose returns after commit, with increasing sequence numbers, and
// every host applies the same records.
func TestRunThreeHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard, not a timing assertion
	defer cancel()
	tr := chanTransport{1: make(chan Batch, 1024), 2: make(chan Batch, 1024), 3: make(chan Batch, 1024)}
	groups := []GroupConfig{{ID: 1, Peers: []uint64{1, 2, 3}}, {ID: 2, Peers: []uint64{1, 2, 3}}}
	hosts := map[uint64]*Host{}
	done := make(chan error, 3)
	runCtx, stop := context.WithCancel(ctx)
	for id := uint64(1); id <= 3; id++ {
		h, err := Open(Config{NodeID: id, FS: vfs.NewMemFS(), Dir: "/d", Groups: groups, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		hosts[id] = h
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		go func() { done <- h.Run(runCtx, ticker.C, tr[id]) }()
	}
	var last uint64
	for i := range 20 {
		seqs := proposeToLeader(ctx, t, hosts, 1, fmt.Sprint("r", i))
		if seqs[0] <= last {
			t.Fatalf("sequence %d after %d", seqs[0], last)
		}
		last = seqs[0]
	}
	stop()
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Every host has applied what the leader acknowledged, or is about to:
	// compare the common prefix, and the leader's log in full.
	var logs [][]Record
	for id := uint64(1); id <= 3; id++ {
		logs = append(logs, hosts[id].Records(1))
	}
	longest := slices.MaxFunc(logs, func(a, b []Record) int { return len(a) - len(b) })
	if len(longest) != 20 {
		t.Fatalf("the leader applied %d records, want 20", len(longest))
	}
	for _, l := range logs {
		if !sameLog(l, longest[:len(l)]) {
			t.Fatalf("logs diverge: %v vs %v", l, longest)
		}
	}
}

// proposeToLeader retries, as a front end would, until some host leads group
// and commits the record.
func proposeToLeader(ctx context.Context, t *testing.T, hosts map[uint64]*Host, group uint64, rec string) []uint64 {
	for {
		for id := uint64(1); id <= 3; id++ {
			p, err := hosts[id].Propose(group, [][]byte{[]byte(rec)})
			if err != nil {
				continue
			}
			seqs, err := p.Wait(ctx)
			if err == nil {
				return seqs
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no leader committed a proposal")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
