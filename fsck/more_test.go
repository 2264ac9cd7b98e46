package fsck_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// TestDeepFindsUndecodableFrame: a frame whose CRC holds but whose records
// do not parse passes a plain verify (CRCs only) and fails --deep; repair
// (always deep) drops exactly that frame.
func TestDeepFindsUndecodableFrame(t *testing.T) {
	f := newFixture(t, defaultStreams)
	// The last frame of a sealed segment, stored raw: rewriting its CRC
	// breaks no prevCRC chain, since no frame follows it in the file.
	var seg string
	var fr segment.FrameInfo
	for _, shard := range f.shardDirs() {
		segs := f.segments(t, shard)
		for _, n := range segs[:len(segs)-1] {
			frs := f.frames(t, filepath.Join(shard, n))
			if last := frs[len(frs)-1]; last.Codec == segment.CodecNone && seg == "" {
				seg, fr = filepath.Join(shard, n), last
			}
		}
	}
	if seg == "" {
		t.Fatal("no raw last frame to damage")
	}
	edit(t, f, seg, func(b []byte) []byte {
		frame := b[fr.Offset : fr.Offset+fr.Size()]
		payload := frame[segment.FrameHeaderSize : segment.FrameHeaderSize+int(fr.StoredLen)]
		payload[3+int(payload[2])] = 1 // the first record's flags byte (after seq gap, arrival delta and key)
		binary.LittleEndian.PutUint32(frame[52:], segment.FrameCRC(frame, payload))
		return b
	})
	if rep := verify(t, f.opts()); rep.ExitCode() != fsck.ExitOK {
		t.Fatalf("plain verify should pass a frame with a good CRC:\n%s", text(t, rep))
	}
	deep := f.opts()
	deep.Deep = true
	if rep := verify(t, deep); !slices.Contains(codes(rep), string(fsck.EFrameDecode)) || rep.ExitCode() != fsck.ExitErrors {
		t.Fatalf("deep verify: want E_FRAME_DECODE:\n%s", text(t, rep))
	}
	rep, err := fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Lost) != 1 || rep.Lost[0].From != fr.FirstSeq || rep.Lost[0].To != fr.LastSeq {
		t.Fatalf("lost %+v, want %d..%d", rep.Lost, fr.FirstSeq, fr.LastSeq)
	}
	checkServed(t, f, rep.Lost, nil)
}

// TestStraysAndOrphans: leftovers are warnings; repair deletes *.tmp (as the
// server would) and leaves what it cannot judge.
func TestStraysAndOrphans(t *testing.T) {
	f := newFixture(t, defaultStreams)
	tg := pick(t, f)
	f.fs.SetBytes(f.abs(tg.sealed)+".tmp", []byte("half a segment"))
	f.fs.SetBytes(f.abs(filepath.Join(tg.shard, "notes.bad")), []byte("?"))
	if err := f.fs.MkdirAll(f.abs("streams/ghost-0000000000000001/shardId-000000000000")); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f.opts())
	got := codes(rep)
	for _, want := range []fsck.Code{fsck.WStrayFile, fsck.WDirNoMeta} {
		if !slices.Contains(got, string(want)) {
			t.Errorf("verify: want %s", want)
		}
	}
	if rep.ExitCode() != fsck.ExitWarnings {
		t.Fatalf("verify: want exit 1:\n%s", text(t, rep))
	}
	rep, err := fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode() != fsck.ExitRepaired || rep.Errors != 0 || rep.Warnings != 2 { // notes.bad and ghost remain
		t.Fatalf("repair:\n%s", text(t, rep))
	}
	if _, err := f.fs.Open(f.abs(tg.sealed) + ".tmp"); !vfs.IsNotExist(err) {
		t.Fatalf("the .tmp file survived repair: %v", err)
	}
}

// TestFilters: --stream and --shard restrict what is checked.
func TestFilters(t *testing.T) {
	f := newFixture(t, defaultStreams)
	o := f.opts()
	o.Stream, o.Shard = "orders", "1"
	rep := verify(t, o)
	if len(rep.Shards) != 1 || !strings.HasSuffix(rep.Shards[0].Dir, "/shardId-000000000001") || !strings.Contains(rep.Shards[0].Dir, "orders-") {
		t.Fatalf("filtered verify checked %+v", rep.Shards)
	}
	o.Shard = "shardId-x"
	if _, err := fsck.Verify(o); err == nil {
		t.Fatal("a bad shard ID should fail")
	}
	if _, err := fsck.Verify(fsck.Options{Dir: t.TempDir()}); err == nil {
		t.Fatal("an empty directory is not a data directory")
	}
}

// TestJSONReport: the JSON document carries the problems, the verdict and
// the exit code.
func TestJSONReport(t *testing.T) {
	f := damagedFixture(t)
	var b strings.Builder
	if err := verify(t, f.opts()).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Problems []struct{ Code, Severity, File string }
		Verdict  string
		ExitCode int `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatal(err)
	}
	if got.ExitCode != fsck.ExitErrors || got.Verdict != "3 errors, 1 warning" || len(got.Problems) != 4 || got.Problems[1].Severity != "ERROR" {
		t.Fatalf("%+v", got)
	}
}

// TestDumpFromSeq: --from-seq drops earlier frames and records.
func TestDumpFromSeq(t *testing.T) {
	f := newFixture(t, defaultStreams)
	tg := pick(t, f)
	out := dump(t, f, fsck.DumpOptions{Path: tg.shard, Records: true, FromSeq: 60})
	for _, l := range strings.Split(out, "\n") {
		var seq uint64
		if _, err := fmt.Sscanf(l, "  record seq=%d ", &seq); err == nil && seq < 60 {
			t.Fatalf("record before seq 60: %s", l)
		}
	}
	if !strings.Contains(out, "record seq=60 ") || strings.Contains(out, "record seq=59 ") {
		t.Fatalf("from-seq 60:\n%s", out)
	}
	if err := fsck.Dump(&strings.Builder{}, fsck.DumpOptions{FS: f.fs, Path: f.abs("nope.seg")}); err == nil {
		t.Fatal("dump of a missing file should fail")
	}
}

// BenchmarkVerify measures verify (CRCs, no --deep) over real files in the
// page cache, in MB/s of stored segment data.
func BenchmarkVerify(b *testing.B) {
	dir, stored := benchStore(b, 64<<20)
	b.SetBytes(stored)
	b.ResetTimer()
	for b.Loop() {
		rep, err := fsck.Verify(fsck.Options{Dir: dir, FS: vfs.OS{}})
		if err != nil || rep.ExitCode() != fsck.ExitOK {
			b.Fatalf("%v %+v", err, rep)
		}
	}
}

// benchStore writes about size bytes of incompressible records (so stored
// equals raw) through storage on a MemFS, then copies the segments to the
// real directory beside the bbolt files.
func benchStore(b *testing.B, size int) (string, int64) {
	f := &fixture{dir: b.TempDir(), fs: vfs.NewMemFS(), clk: &clock{t: epoch}, acks: map[string][]rec{}}
	o := f.storeOpts()
	o.SegmentSize = 8 << 20
	s, err := storage.Open(b.Context(), o)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.CreateStream(b.Context(), storage.CreateStreamInput{Name: "bench", ShardCount: 2}); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for written := 0; written < size; {
		entries := make([]storage.PutEntry, 100)
		for i := range entries {
			d := make([]byte, 1000)
			for j := 0; j < len(d); j += 8 {
				binary.LittleEndian.PutUint64(d[j:], rng.Uint64())
			}
			entries[i] = storage.PutEntry{PartitionKey: "k" + string(rune('a'+i%26)), Data: d}
			written += len(d)
		}
		if _, err := s.Put(b.Context(), "bench", entries); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return f.dir, copyToOS(b, f, filepath.Join(f.dir, "streams"))
}

func copyToOS(b *testing.B, f *fixture, dir string) int64 {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	names, err := f.fs.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, n := range names {
		p := filepath.Join(dir, strings.TrimSuffix(n, "/"))
		if strings.HasSuffix(n, "/") {
			total += copyToOS(b, f, p)
			continue
		}
		data, err := f.fs.Bytes(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	return total
}
