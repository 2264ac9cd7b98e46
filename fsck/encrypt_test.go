package fsck_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// newEncryptedFixture is a data directory whose stream "sec" was encrypted
// (alias/aws/kinesis: the key the store generates in the data directory)
// after a few plaintext puts, so its shard has plaintext and encrypted
// segments.
func newEncryptedFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), fs: vfs.NewMemFS(), clk: &clock{t: epoch}, acks: map[string][]rec{}}
	s := openStore(t, f)
	ctx := context.Background()
	if err := s.CreateStream(ctx, storage.CreateStreamInput{Name: "sec", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	f.clk.advance(time.Second)
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 10 {
		f.put(t, s, "sec", i, rng)
	}
	if err := s.StartEncryption(ctx, "sec", "alias/aws/kinesis", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 70; i++ {
		f.put(t, s, "sec", i, rng)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// keys are the fixture's master keys, as `fsck --keyring` gets them.
func (f *fixture) keys(t *testing.T) segment.Keys {
	k, err := keyring.Open(keyring.Options{DataDir: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	return k.Keys()
}

// encryptedSealed is a sealed encrypted segment of the fixture with at least
// three frames, and its frames.
func encryptedSealed(t *testing.T, f *fixture) (string, []segment.FrameInfo) {
	t.Helper()
	shard := f.shardDirs()[0]
	segs := f.segments(t, shard)
	for _, n := range segs[:len(segs)-1] {
		rel := filepath.Join(shard, n)
		b, _ := f.fs.Bytes(f.abs(rel))
		h, err := segment.DecodeFileHeader(b)
		if frs := f.frames(t, rel); err == nil && h.Encrypted() && len(frs) >= 3 {
			return rel, frs
		}
	}
	t.Fatal("no sealed encrypted segment with three frames")
	return "", nil
}

// TestVerifyEncrypted: CRC checks need no key; --deep decodes encrypted
// segments with the keys and says which it could not decode without them;
// dump --records says it needs the keyring.
func TestVerifyEncrypted(t *testing.T) {
	f := newEncryptedFixture(t)
	if rep := verify(t, f.opts()); rep.ExitCode() != fsck.ExitOK {
		t.Fatalf("verify without keys:\n%s", text(t, rep))
	}
	deep := f.opts()
	deep.Deep = true
	rep := verify(t, deep)
	if rep.ExitCode() != fsck.ExitOK || !slices.Contains(codes(rep), string(fsck.INotDecoded)) {
		t.Fatalf("deep verify without keys: want I_NOT_DECODED only:\n%s", text(t, rep))
	}
	deep.Keys = f.keys(t)
	if rep := verify(t, deep); rep.ExitCode() != fsck.ExitOK || len(rep.Problems) != 0 {
		t.Fatalf("deep verify with keys:\n%s", text(t, rep))
	}

	rel, _ := encryptedSealed(t, f)
	var out strings.Builder
	if err := fsck.Dump(&out, fsck.DumpOptions{FS: f.fs, Path: f.abs(rel), Records: true}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "encrypted master_key=") || !strings.Contains(s, "pass --keyring") || strings.Contains(s, "  record ") {
		t.Fatalf("dump --records without keys:\n%s", s)
	}
	out.Reset()
	if err := fsck.Dump(&out, fsck.DumpOptions{FS: f.fs, Path: f.abs(rel), Records: true, Keys: f.keys(t)}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "  record seq=") || strings.Contains(s, "pass --keyring") {
		t.Fatalf("dump --records with keys:\n%s", s)
	}
	if fsck.DataDirOf(f.abs(rel)) != f.dir || fsck.DataDirOf(filepath.Dir(f.abs(rel))) != f.dir || fsck.DataDirOf("/tmp/x.seg") != "" {
		t.Fatalf("DataDirOf(%s) = %q", rel, fsck.DataDirOf(f.abs(rel)))
	}
}

// TestRepairEncrypted: a bit flip in the ciphertext of a middle frame of an
// encrypted segment is caught by its CRC without keys; repair with the keys
// salvages the frames after it (opened, re-sealed under the segment's data
// key, which the new segment keeps) and loses exactly the damaged frame's
// records; the server then serves the rest. Without the keys repair refuses
// rather than drop the frames it cannot re-encode.
func TestRepairEncrypted(t *testing.T) {
	f := newEncryptedFixture(t)
	rel, frs := encryptedSealed(t, f)
	bad := frs[1]
	flip(t, f, rel, bad.Offset+segment.FrameHeaderSize+5, 2)
	rep := verify(t, f.opts())
	if !slices.Contains(codes(rep), string(fsck.EFrameCRC)) {
		t.Fatalf("verify: want E_FRAME_CRC:\n%s", text(t, rep))
	}
	if _, err := fsck.Repair(f.opts(), false); err == nil || !strings.Contains(err.Error(), "--keyring") {
		t.Fatalf("repair without keys: %v", err)
	}
	o := f.opts()
	o.Keys = f.keys(t)
	rep, err := fsck.Repair(o, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode() != fsck.ExitRepaired || len(rep.Lost) != 1 || rep.Lost[0].From != bad.FirstSeq || rep.Lost[0].To != bad.LastSeq {
		t.Fatalf("repair: lost %+v, want %d..%d:\n%s", rep.Lost, bad.FirstSeq, bad.LastSeq, text(t, rep))
	}
	o.Deep = true
	if v := verify(t, o); v.ExitCode() != fsck.ExitOK {
		t.Fatalf("deep verify after repair:\n%s", text(t, v))
	}
	s := openStore(t, f)
	defer s.Close()
	shard := f.shardDirs()[0]
	served := readAll(t, s, shard)
	for _, want := range f.acks[shard] {
		got, ok := served[want.seq]
		switch lost := want.seq >= bad.FirstSeq && want.seq <= bad.LastSeq; {
		case lost && ok:
			t.Errorf("seq %d: lost but served", want.seq)
		case !lost && got != want:
			t.Errorf("seq %d: served %+v (%t), want %+v", want.seq, got, ok, want)
		}
	}
	res, err := s.Put(context.Background(), "sec", []storage.PutEntry{{PartitionKey: "k", Data: []byte("after repair")}})
	if err != nil || res[0].Err != nil || !res[0].Encrypted {
		t.Fatalf("write after repair: %+v %v", res, err)
	}
}

// TestTamperedCiphertext: ciphertext changed with its CRC recomputed passes
// every check that needs no key, and fails --deep with the key (GCM).
func TestTamperedCiphertext(t *testing.T) {
	f := newEncryptedFixture(t)
	rel, frs := encryptedSealed(t, f)
	last := frs[len(frs)-1] // no frame after it: the chain survives a new CRC
	edit(t, f, rel, func(b []byte) []byte {
		frame := b[last.Offset : last.Offset+last.Size()]
		payload := frame[segment.FrameHeaderSize : segment.FrameHeaderSize+int(last.StoredLen)]
		payload[len(payload)/2] ^= 0x40
		binary.LittleEndian.PutUint32(frame[52:], segment.FrameCRC(frame, payload))
		return b
	})
	if rep := verify(t, f.opts()); rep.ExitCode() != fsck.ExitOK {
		t.Fatalf("verify without keys:\n%s", text(t, rep))
	}
	deep := f.opts()
	deep.Deep, deep.Keys = true, f.keys(t)
	rep := verify(t, deep)
	if !slices.Contains(codes(rep), string(fsck.EFrameDecode)) || !strings.Contains(text(t, rep), "GCM") {
		t.Fatalf("deep verify with keys: want E_FRAME_DECODE naming GCM:\n%s", text(t, rep))
	}
}

// TestRepairEncryptedHeader: a damaged file header of an encrypted segment
// is rebuilt from the name with the key block kept (its own CRC holds), so
// no record is lost and the server reads them all; also when the damage
// cleared the header's encrypted flag itself.
func TestRepairEncryptedHeader(t *testing.T) {
	for _, tc := range []struct {
		name     string
		off, bit int
	}{
		{"creation time", 40, 0},
		{"encrypted flag", 12, 1}, // FlagEncrypted is bit 1 of the flags at byte 12
	} {
		t.Run(tc.name, func(t *testing.T) { repairEncryptedHeader(t, int64(tc.off), uint(tc.bit)) })
	}
}

func repairEncryptedHeader(t *testing.T, off int64, bit uint) {
	f := newEncryptedFixture(t)
	rel, _ := encryptedSealed(t, f)
	flip(t, f, rel, off, bit) // the header CRC fails
	if rep := verify(t, f.opts()); !slices.Contains(codes(rep), string(fsck.EFileHeader)) {
		t.Fatalf("verify: want E_FILE_HEADER:\n%s", text(t, rep))
	}
	o := f.opts()
	o.Keys = f.keys(t)
	rep, err := fsck.Repair(o, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode() != fsck.ExitRepaired || len(rep.Lost) != 0 {
		t.Fatalf("repair:\n%s", text(t, rep))
	}
	s := openStore(t, f)
	defer s.Close()
	shard := f.shardDirs()[0]
	served := readAll(t, s, shard)
	for _, want := range f.acks[shard] {
		if got := served[want.seq]; got != want {
			t.Errorf("seq %d: served %+v, want %+v", want.seq, got, want)
		}
	}
}
