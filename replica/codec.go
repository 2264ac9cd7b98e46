package replica

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// reader decodes little-endian fields, remembering the first overrun so the
// callers check once at the end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u8() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

// done reports whether everything decoded and nothing is left over.
func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }

var le = binary.LittleEndian

func encodeEntries(group uint64, ents []*pb.Entry) []byte {
	return appendEntries(nil, group, ents)
}

// appendEntries appends a kindEntries payload to b, sized in one step: an
// entry's data is copied once, from raft's entry into the WAL's buffer.
func appendEntries(b []byte, group uint64, ents []*pb.Entry) []byte {
	size := 1 + 12
	for _, e := range ents {
		size += 21 + len(e.GetData())
	}
	b = slices.Grow(b, size)
	b = append(b, kindEntries)
	b = le.AppendUint64(b, group)
	b = le.AppendUint32(b, uint32(len(ents)))
	for _, e := range ents {
		b = le.AppendUint64(b, e.GetTerm())
		b = le.AppendUint64(b, e.GetIndex())
		b = append(b, byte(e.GetType()))
		b = le.AppendUint32(b, uint32(len(e.GetData())))
		b = append(b, e.GetData()...)
	}
	return b
}

// decodeEntries decodes the payload after its kind byte.
func decodeEntries(p []byte) (uint64, []*pb.Entry, error) {
	r := reader{b: p}
	group, n := r.u64(), r.u32()
	var ents []*pb.Entry
	for i := uint32(0); i < n && !r.bad; i++ {
		term, index, typ := r.u64(), r.u64(), pb.EntryType(r.u8())
		data := r.take(int(r.u32()))
		ents = append(ents, &pb.Entry{Term: new(term), Index: new(index), Type: typ.Enum(), Data: data})
	}
	if !r.done() {
		return 0, nil, errCorrupt
	}
	return group, ents, nil
}

func encodeHardState(group uint64, hs *pb.HardState) []byte {
	b := []byte{kindHardState}
	b = le.AppendUint64(b, group)
	b = le.AppendUint64(b, hs.GetTerm())
	b = le.AppendUint64(b, hs.GetVote())
	return le.AppendUint64(b, hs.GetCommit())
}

func decodeHardState(p []byte) (uint64, *pb.HardState, error) {
	r := reader{b: p}
	group, term, vote, commit := r.u64(), r.u64(), r.u64(), r.u64()
	hs := &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
	if !r.done() {
		return 0, nil, errCorrupt
	}
	return group, hs, nil
}

func encodeCompact(group, index, term uint64, cs *pb.ConfState) []byte {
	return encodeCompactKind(kindCompact, group, index, term, cs)
}

// encodeCompactKind encodes a kindCompact or kindSnapshot frame: the
// group's log starts after index, whose term and configuration it states.
func encodeCompactKind(kind byte, group, index, term uint64, cs *pb.ConfState) []byte {
	b := le.AppendUint64([]byte{kind}, group)
	b = le.AppendUint64(b, index)
	b = le.AppendUint64(b, term)
	return encodeConfState(b, cs)
}

func decodeCompact(p []byte) (group, index, term uint64, cs *pb.ConfState, err error) {
	r := reader{b: p}
	group, index, term = r.u64(), r.u64(), r.u64()
	cs = decodeConfState(&r)
	if !r.done() {
		return 0, 0, 0, nil, errCorrupt
	}
	return group, index, term, cs, nil
}

// proposalKey names a proposal uniquely for ever: the node, its incarnation
// (one per Open, persisted) and a counter within the incarnation. An applied
// entry answers the pending proposal with the same key, and only it.
type proposalKey struct {
	node, incarnation, id uint64
}

// encodeProposal is an entry's Data: the key, the leader's arrival time of
// the records (Unix ms), then the records, each with its length. The arrival
// travels in the entry so that every replica stores the same one (the
// leader's clock, not its own).
func encodeProposal(k proposalKey, arrivalMs int64, records [][]byte) []byte {
	n := proposalHeader
	for _, r := range records {
		n += 4 + len(r)
	}
	b := make([]byte, 0, n)
	b = le.AppendUint64(b, k.node)
	b = le.AppendUint64(b, k.incarnation)
	b = le.AppendUint64(b, k.id)
	b = le.AppendUint64(b, uint64(arrivalMs))
	b = le.AppendUint32(b, uint32(len(records)))
	for _, r := range records {
		b = le.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

// proposalHeader is the size of a proposal's fixed part: key, arrival, count.
const proposalHeader = 24 + 8 + 4

// Records is a proposal's records, encoded as the proposal's entry carries
// them while they are added, so a record's bytes are copied once on their
// way to raft (the proposal's header is filled in by ProposeRecords, under
// the host's lock). The zero value is empty and usable.
type Records struct {
	b []byte
	n int
}

// NewRecords returns an empty Records with room for count records of size
// bytes in all.
func NewRecords(count, size int) *Records {
	return &Records{b: make([]byte, proposalHeader, proposalHeader+4*count+size)}
}

// Add appends one record: the bytes fill appends to the slice it is given.
func (r *Records) Add(fill func(b []byte) []byte) {
	if len(r.b) < proposalHeader {
		r.b = make([]byte, proposalHeader)
	}
	at := len(r.b)
	r.b = fill(append(r.b, 0, 0, 0, 0))
	le.PutUint32(r.b[at:], uint32(len(r.b)-at-4))
	r.n++
}

// Len is the number of records added.
func (r *Records) Len() int { return r.n }

// entryData is the proposal's entry data with its header filled in.
func (r *Records) entryData(k proposalKey, arrivalMs int64) []byte {
	le.PutUint64(r.b[0:], k.node)
	le.PutUint64(r.b[8:], k.incarnation)
	le.PutUint64(r.b[16:], k.id)
	le.PutUint64(r.b[24:], uint64(arrivalMs))
	le.PutUint32(r.b[32:], uint32(r.n))
	return r.b
}

func decodeProposal(data []byte) (proposalKey, int64, [][]byte, error) {
	r := reader{b: data}
	k := proposalKey{node: r.u64(), incarnation: r.u64(), id: r.u64()}
	arrival := int64(r.u64())
	n := r.u32()
	if n > MaxRecordsPerProposal {
		return k, 0, nil, errCorrupt
	}
	recs := make([][]byte, 0, n)
	for i := uint32(0); i < n && !r.bad; i++ {
		recs = append(recs, r.take(int(r.u32())))
	}
	if !r.done() {
		return k, 0, nil, errCorrupt
	}
	return k, arrival, recs, nil
}

// GroupMessage is one raft message of one group.
type GroupMessage struct {
	Group uint64
	Msg   *pb.Message
}

// Batch is everything one Ready round sends from one node to another: every
// group's messages to that node travel together (per node-pair coalescing).
// Heartbeats travel as Beats, the compact coalesced form (quiesce.go). A
// batch with neither is a liveness pulse: the sender is up (quiesce.go).
type Batch struct {
	From, To uint64
	Msgs     []GroupMessage
	Beats    []Beat
	Chunks   []SnapChunk // a snapshot's fetch (snapfetch.go)
}

// EncodeBatch renders b for a network transport: from, to, count, then per
// message its group and its length-prefixed protobuf encoding; then the
// beats: a count, and per beat its group, kind, term and (for a heartbeat or
// a quiesce) commit and (for a quiesce) index, each a uvarint but the kind;
// then the snapshot chunks: a count, and per chunk
// its kind, group, index, generation, first ordinal, ID, offset, the
// sender's state's life, length asked and its length-prefixed data.
func EncodeBatch(b Batch) ([]byte, error) {
	return appendBatch(nil, b)
}

// appendBatch appends EncodeBatch(b) to out, sized up front so that each
// message's entries are copied once, from raft's entries into out.
func appendBatch(out []byte, b Batch) ([]byte, error) {
	size := 20 + 4 + len(b.Beats)*maxBeatSize + 4
	for _, m := range b.Msgs {
		size += 12 + proto.Size(m.Msg)
	}
	for _, c := range b.Chunks {
		size += chunkHeader + len(c.Data)
	}
	out = slices.Grow(out, size)
	out = le.AppendUint64(out, b.From)
	out = le.AppendUint64(out, b.To)
	out = le.AppendUint32(out, uint32(len(b.Msgs)))
	for _, m := range b.Msgs {
		out = le.AppendUint64(out, m.Group)
		at := len(out)
		var err error
		if out, err = marshal.MarshalAppend(append(out, 0, 0, 0, 0), m.Msg); err != nil {
			return nil, err
		}
		le.PutUint32(out[at:], uint32(len(out)-at-4))
	}
	out = le.AppendUint32(out, uint32(len(b.Beats)))
	for _, bt := range b.Beats {
		out = appendBeat(out, bt)
	}
	out = le.AppendUint32(out, uint32(len(b.Chunks)))
	for _, c := range b.Chunks {
		out = appendChunk(out, c)
	}
	return out, nil
}

// chunkHeader is a chunk's encoding but its data.
const chunkHeader = 1 + 7*8 + 4 + 4

func appendChunk(out []byte, c SnapChunk) []byte {
	out = append(out, byte(c.Kind))
	for _, v := range []uint64{c.Group, c.Index, c.Gen, c.First, c.ID, uint64(c.Off), c.Life} {
		out = le.AppendUint64(out, v)
	}
	out = le.AppendUint32(le.AppendUint32(out, c.Len), uint32(len(c.Data)))
	return append(out, c.Data...)
}

func (r *reader) chunk() SnapChunk {
	c := SnapChunk{Kind: ChunkKind(r.u8()), Group: r.u64(), Index: r.u64(), Gen: r.u64(), First: r.u64(), ID: r.u64(),
		Off: int64(r.u64()), Life: r.u64(), Len: r.u32()}
	if d := r.take(int(r.u32())); len(d) > 0 {
		c.Data = d
	}
	if c.Kind < ChunkAsk || c.Kind > ChunkGone || c.Off < 0 {
		r.bad = true
	}
	return c
}

// marshal encodes messages with their sizes already cached by proto.Size.
var marshal = proto.MarshalOptions{UseCachedSize: true}

// maxBeatSize bounds a beat's encoding: four uvarints and the kind.
const maxBeatSize = 4*binary.MaxVarintLen64 + 1

func appendBeat(out []byte, bt Beat) []byte {
	out = binary.AppendUvarint(out, bt.Group)
	out = append(out, byte(bt.Kind))
	out = binary.AppendUvarint(out, bt.Term)
	if bt.Kind != BeatResp {
		out = binary.AppendUvarint(out, bt.Commit)
	}
	if bt.Kind == BeatQuiesce {
		out = binary.AppendUvarint(out, bt.Index)
	}
	return out
}

// DecodeBatch is EncodeBatch's inverse.
func DecodeBatch(data []byte) (Batch, error) {
	r := reader{b: data}
	b := Batch{From: r.u64(), To: r.u64()}
	n := r.u32()
	for i := uint32(0); i < n && !r.bad; i++ {
		group, p := r.u64(), r.take(int(r.u32()))
		if r.bad {
			break
		}
		m := &pb.Message{}
		if err := unmarshalMessage(p, m, len(data)); err != nil {
			return Batch{}, fmt.Errorf("replica: batch message: %w", err)
		}
		b.Msgs = append(b.Msgs, GroupMessage{Group: group, Msg: m})
	}
	n = r.u32()
	for i := uint32(0); i < n && !r.bad; i++ {
		b.Beats = append(b.Beats, r.beat())
	}
	n = r.u32()
	for i := uint32(0); i < n && !r.bad; i++ {
		b.Chunks = append(b.Chunks, r.chunk())
	}
	if !r.done() {
		return Batch{}, fmt.Errorf("replica: malformed batch")
	}
	return b, nil
}

func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) beat() Beat {
	bt := Beat{Group: r.uvarint(), Kind: BeatKind(r.u8()), Term: r.uvarint()}
	switch bt.Kind {
	case BeatHeartbeat:
		bt.Commit = r.uvarint()
	case BeatQuiesce:
		bt.Commit, bt.Index = r.uvarint(), r.uvarint()
	case BeatResp:
	default:
		r.bad = true
	}
	return bt
}

// Field numbers of raft.proto that unmarshalMessage decodes itself.
const (
	msgEntriesField = 7 // Message.entries
	entryTypeField  = 1 // Entry.Type
	entryTermField  = 2 // Entry.Term
	entryIndexField = 3 // Entry.Index
	entryDataField  = 4 // Entry.Data
)

// unmarshalMessage is proto.Unmarshal(p, m), except that each large entry's
// Data aliases p instead of being copied: proto.Unmarshal copies every bytes
// field, and on a follower that copy of every record of every MsgApp was
// the largest user-space cost after the WAL and segment writes
// (BENCHMARKS.md, "Cluster: CPU per record (h42)"). p lies in a buffer of
// frame bytes (DecodeBatch's frame) that must not change afterwards (the
// transport reads each frame into a buffer of its own, never reused), and
// each Data's capacity ends at its length, so an append to it never writes
// into p.
//
// Only an entry whose Data is at least 1/aliasShare of its frame aliases
// it; a smaller one is copied. An aliased Data keeps its whole frame alive
// for as long as raft holds the entry (a follower's MemoryStorage, until
// its own group compacts), and a frame carries every group's messages of a
// round: a quiet group's 16-byte entries aliased into frames of a busy
// group's appends (compacted long since) would keep megabytes each. So the
// frames the decoded entries keep alive are at most aliasShare times the
// bytes those entries hold themselves. The common case, a round's frame of
// a few groups' big appends, still aliases every entry.
//
// The message without its entries goes to proto.Unmarshal; each entry is
// decoded here, and one with anything this does not know (an unknown field
// or enum value, a field of another wire type) goes to proto.Unmarshal
// whole, so the result is proto.Unmarshal's in every case.
func unmarshalMessage(p []byte, m *pb.Message, frame int) error {
	// One scan finds the entries and keeps the other fields: a message
	// without entries (or a malformed one) goes to proto.Unmarshal whole.
	ents, rest, err := messageEntries(p)
	if err != nil || ents == nil {
		return proto.Unmarshal(p, m)
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return err
	}
	m.Entries = make([]*pb.Entry, 0, len(ents))
	for _, e := range ents {
		ent, err := unmarshalEntry(e, frame)
		if err != nil {
			return err
		}
		m.Entries = append(m.Entries, ent)
	}
	return nil
}

// messageEntries returns the encoded entries of the encoded Message p, in
// order, and every other field of it (rest). A malformed p is an error
// (proto.Unmarshal then says how).
func messageEntries(p []byte) (ents [][]byte, rest []byte, err error) {
	for b := p; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		v := protowire.ConsumeFieldValue(num, typ, b[n:])
		if v < 0 {
			return nil, nil, protowire.ParseError(v)
		}
		if num == msgEntriesField && typ == protowire.BytesType {
			e, _ := protowire.ConsumeBytes(b[n:])
			ents = append(ents, e)
		} else {
			rest = append(rest, b[:n+v]...)
		}
		b = b[n+v:]
	}
	return ents, rest, nil
}

// aliasShare: a decoded entry's Data aliases its frame only if it is at
// least 1/aliasShare of it (unmarshalMessage), so frames kept alive by
// decoded entries are at most aliasShare times those entries' own bytes.
// 16 leaves the cluster bench's rounds (4 groups, 2 entries each) aliased.
const aliasShare = 16

// unmarshalEntry decodes one encoded Entry from a frame of frame bytes, its
// Data aliasing p if large enough (aliasShare), else copied; one this does
// not decode exactly as proto.Unmarshal would goes to proto.Unmarshal.
func unmarshalEntry(p []byte, frame int) (*pb.Entry, error) {
	e := &pb.Entry{}
	for b := p; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == entryDataField && typ == protowire.BytesType:
			d, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			if len(d) >= frame/aliasShare {
				e.Data = d[:len(d):len(d)]
			} else {
				e.Data = bytes.Clone(d)
			}
			b = b[m:]
		case (num == entryTypeField || num == entryTermField || num == entryIndexField) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			b = b[m:]
			if !setEntryVarint(e, num, v) {
				return copyEntry(p)
			}
		default:
			return copyEntry(p)
		}
	}
	return e, nil
}

// setEntryVarint sets a varint field of e as proto.Unmarshal would, or
// reports that it would not (an EntryType raft.proto does not name: a
// closed enum's unknown value is kept among the unknown fields).
func setEntryVarint(e *pb.Entry, num protowire.Number, v uint64) bool {
	switch num {
	case entryTermField:
		e.Term = new(v)
	case entryIndexField:
		e.Index = new(v)
	default:
		t := pb.EntryType(int32(v))
		if _, ok := pb.EntryType_name[int32(t)]; !ok || uint64(int64(int32(v))) != v {
			return false
		}
		e.Type = t.Enum()
	}
	return true
}

// copyEntry is proto.Unmarshal's decoding of an entry (its Data copied).
func copyEntry(p []byte) (*pb.Entry, error) {
	e := &pb.Entry{}
	if err := proto.Unmarshal(p, e); err != nil {
		return nil, err
	}
	return e, nil
}
