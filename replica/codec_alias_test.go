package replica

import (
	"bytes"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// entryBytes encodes e and appends extra (raw fields) to it.
func entryBytes(t testing.TB, e *pb.Entry, extra []byte) []byte {
	b, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, extra...)
}

// messageWith encodes m with the encoded entries ents appended as field 7.
func messageWith(t testing.TB, m *pb.Message, ents ...[]byte) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b = protowire.AppendTag(b, msgEntriesField, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

func TestUnmarshalMessageMatchesProto(t *testing.T) {
	app := &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(5)),
		LogTerm: new(uint64(4)), Index: new(uint64(7)), Commit: new(uint64(6))}
	plain := entryBytes(t, &pb.Entry{Term: new(uint64(5)), Index: new(uint64(8)), Data: []byte("rec")}, nil)
	conf := entryBytes(t, &pb.Entry{Term: new(uint64(5)), Index: new(uint64(9)), Type: pb.EntryConfChangeV2.Enum(), Data: []byte{1, 2}}, nil)
	empty := entryBytes(t, &pb.Entry{Term: new(uint64(5)), Index: new(uint64(10)), Data: []byte{}}, nil)
	unknownField := entryBytes(t, &pb.Entry{Index: new(uint64(11)), Data: []byte("x")}, protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	unknownType := protowire.AppendVarint(protowire.AppendTag(entryBytes(t, &pb.Entry{Data: []byte("y")}, nil), entryTypeField, protowire.VarintType), 7)
	dataTwice := append(bytes.Clone(plain), entryBytes(t, &pb.Entry{Data: []byte("second")}, nil)...)
	wrongWire := protowire.AppendBytes(protowire.AppendTag(nil, entryTermField, protowire.BytesType), []byte("z"))
	snap := &pb.Message{Type: pb.MsgSnap.Enum(), To: new(uint64(2)), Snapshot: &pb.Snapshot{Data: []byte("manifest"),
		Metadata: &pb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(2)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}}
	withCommitAfter := append(messageWith(t, &pb.Message{Type: pb.MsgApp.Enum()}, plain, conf),
		protowire.AppendVarint(protowire.AppendTag(nil, 8, protowire.VarintType), 42)...)
	for _, tc := range []struct {
		name   string
		p      []byte
		copied bool // an entry went to proto.Unmarshal (its Data copied)
	}{
		{"append", messageWith(t, app, plain, conf, empty), false},
		{"append without entries", messageWith(t, app), false},
		{"heartbeat", messageWith(t, &pb.Message{Type: pb.MsgHeartbeat.Enum(), Commit: new(uint64(3))}), false},
		{"snapshot", messageWith(t, snap), false},
		{"entry with an unknown field", messageWith(t, app, plain, unknownField), true},
		{"entry with an unknown type", messageWith(t, app, unknownType), true},
		{"entry with Data twice", messageWith(t, app, dataTwice), false},
		{"entry field of another wire type", messageWith(t, app, wrongWire), true},
		{"a field after the entries", withCommitAfter, false},
		{"empty entry", messageWith(t, app, nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := &pb.Message{}
			if err := proto.Unmarshal(tc.p, want); err != nil {
				t.Fatal(err)
			}
			got := &pb.Message{}
			if err := unmarshalMessage(tc.p, got, len(tc.p)); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			for i, e := range got.Entries {
				if !tc.copied && e.Data != nil && cap(e.Data) != len(e.Data) {
					t.Errorf("entry %d: Data's capacity %d passes its length %d", i, cap(e.Data), len(e.Data))
				}
			}
		})
	}
}

// TestUnmarshalMessageAliases: a decoded entry's Data is the frame's bytes,
// not a copy (the point of unmarshalMessage), if it is a large enough part
// of the frame (aliasShare); a small one is copied, so that it does not
// keep a big frame alive.
func TestUnmarshalMessageAliases(t *testing.T) {
	p := messageWith(t, &pb.Message{Type: pb.MsgApp.Enum()}, entryBytes(t, &pb.Entry{Index: new(uint64(1)), Data: []byte("abc")}, nil))
	for _, tc := range []struct {
		name  string
		frame int
		alias bool
	}{
		{"the whole frame", len(p), true},
		{"1/aliasShare of its frame", 3 * aliasShare, true},
		{"less than 1/aliasShare of its frame", 3*aliasShare + aliasShare, false},
		{"16 bytes of 1 MiB", 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := bytes.Clone(p)
			m := &pb.Message{}
			if err := unmarshalMessage(q, m, tc.frame); err != nil {
				t.Fatal(err)
			}
			q[bytes.Index(q, []byte("abc"))] = 'X'
			want := map[bool]string{true: "Xbc", false: "abc"}[tc.alias]
			if got := string(m.Entries[0].Data); got != want {
				t.Fatalf("Data %q, want %q (aliased: %v)", got, want, tc.alias)
			}
		})
	}
}

// TestUnmarshalMessageMalformed: whatever proto.Unmarshal refuses,
// unmarshalMessage refuses, and what it takes decodes the same: random
// corruptions of a valid message.
func TestUnmarshalMessageMalformed(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	good, err := EncodeBatch(sampleBatch())
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeBatch(good)
	if err != nil {
		t.Fatal(err)
	}
	base, err := proto.Marshal(b.Msgs[0].Msg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		p := bytes.Clone(base)
		for range 1 + rng.IntN(3) {
			p[rng.IntN(len(p))] = byte(rng.Uint32())
		}
		if i%3 == 0 {
			p = p[:rng.IntN(len(p)+1)]
		}
		want, got := &pb.Message{}, &pb.Message{}
		werr, gerr := proto.Unmarshal(p, want), unmarshalMessage(bytes.Clone(p), got, len(p))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%x: proto.Unmarshal: %v, unmarshalMessage: %v", p, werr, gerr)
		}
		if werr == nil && !proto.Equal(got, want) {
			t.Fatalf("%x: got %v, want %v", p, got, want)
		}
	}
}

// appendBatchOf is a round's batch to one follower: n groups, each one
// MsgApp of entries records of size bytes.
func appendBatchOf(groups, entries, records, size int) Batch {
	b := Batch{From: 1, To: 2}
	for g := range groups {
		m := &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(3)),
			LogTerm: new(uint64(3)), Index: new(uint64(100)), Commit: new(uint64(99))}
		for i := range entries {
			recs := make([][]byte, records)
			for r := range recs {
				recs[r] = bytes.Repeat([]byte{byte(r)}, size)
			}
			data := encodeProposal(proposalKey{node: 1, incarnation: 1, id: uint64(i)}, 1, recs)
			m.Entries = append(m.Entries, &pb.Entry{Term: new(uint64(3)), Index: new(uint64(101 + i)), Data: data})
		}
		b.Msgs = append(b.Msgs, GroupMessage{Group: uint64(g + 1), Msg: m})
	}
	return b
}

// BenchmarkDecodeBatch: a follower's decoding of one round's appends (4
// groups, 2 entries each of 500 records of 1 KiB: the cluster bench's load).
func BenchmarkDecodeBatch(b *testing.B) {
	p, err := EncodeBatch(appendBatchOf(4, 2, 500, 1024))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeFrame: the leader's encoding of one round's appends to one
// follower into a transport frame, as Send does (its buffer from the pool,
// given back once written).
func BenchmarkEncodeFrame(b *testing.B) {
	batch := appendBatchOf(4, 2, 500, 1024)
	t := &TCPTransport{}
	b.ReportAllocs()
	for b.Loop() {
		frame, err := appendBatch(t.frameBuf(), batch)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(frame)))
		t.recycle(frame)
	}
}
