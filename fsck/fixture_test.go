package fsck_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// clock is a fixed test clock that moves only when told, so fixtures (file
// names, header times, record arrivals) are byte-for-byte reproducible.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// epoch is the fixture clock's start. It is in the past, so the stream
// status timers (real time) fire at once.
var epoch = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// rec is a record the fixture wrote and the store acknowledged.
type rec struct {
	seq  uint64
	pk   string
	data string
}

// fixture is a closed data directory: bbolt files in a real directory,
// segments in a MemFS.
type fixture struct {
	dir  string
	fs   *vfs.MemFS
	clk  *clock
	acks map[string][]rec // by shard dir, relative to dir: "streams/<stream dir>/<shard>"
}

func (f *fixture) opts() fsck.Options { return fsck.Options{Dir: f.dir, FS: f.fs} }

func (f *fixture) storeOpts() storage.Options {
	// One sequence counter per shard: shared ones would interleave the
	// fixture's concurrent puts at random, and the goldens need fixed ordinals.
	return storage.Options{Dir: f.dir, FS: f.fs, Now: f.clk.now, SegmentSize: 2 << 10, IndexInterval: time.Millisecond, SeqGroupSize: 1}
}

func openStore(t testing.TB, f *fixture) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), f.storeOpts())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// streamSpec is a stream to create and how many Put calls to make to it.
type streamSpec struct {
	name   string
	shards int
	puts   int
}

var defaultStreams = []streamSpec{{"orders", 2, 90}, {"events", 1, 40}}

// newFixture builds a data directory with storage itself: small segments so
// every shard has several, deterministic records, a clean close.
func newFixture(t testing.TB, specs []streamSpec) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), fs: vfs.NewMemFS(), clk: &clock{t: epoch}, acks: map[string][]rec{}}
	s := openStore(t, f)
	rng := rand.New(rand.NewPCG(7, 11))
	for _, sp := range specs {
		if err := s.CreateStream(context.Background(), storage.CreateStreamInput{Name: sp.name, ShardCount: sp.shards}); err != nil {
			t.Fatal(err)
		}
		f.clk.advance(time.Second)
	}
	for _, sp := range specs {
		for i := range sp.puts {
			f.put(t, s, sp.name, i, rng)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// put writes 1-3 records (one frame per shard they land on).
func (f *fixture) put(t testing.TB, s *storage.Store, stream string, i int, rng *rand.Rand) {
	t.Helper()
	n := 1 + rng.IntN(3)
	entries := make([]storage.PutEntry, n)
	for j := range entries {
		entries[j] = storage.PutEntry{PartitionKey: fmt.Sprintf("pk-%d", rng.IntN(9)), Data: recordData(rng, i, j)}
	}
	f.putEntries(t, s, stream, entries)
	f.clk.advance(7 * time.Millisecond)
}

func (f *fixture) putEntries(t testing.TB, s *storage.Store, stream string, entries []storage.PutEntry) {
	t.Helper()
	res, err := s.Put(context.Background(), stream, entries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.DescribeStream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	for j, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		p, err := seqnum.Parse(r.SequenceNumber)
		if err != nil {
			t.Fatal(err)
		}
		key := shardRel(stream, info.Created.UnixNano(), r.ShardID)
		f.acks[key] = append(f.acks[key], rec{p.Ordinal, entries[j].PartitionKey, string(entries[j].Data)})
	}
}

// recordData is JSON-like text (compressible) or, one time in four, random
// bytes (stored raw).
func recordData(rng *rand.Rand, i, j int) []byte {
	if rng.IntN(4) == 0 {
		b := make([]byte, 20+rng.IntN(200))
		for k := range b {
			b[k] = byte(rng.Uint32())
		}
		return b
	}
	return fmt.Appendf(nil, `{"order":%d,"line":%d,"item":"widget-%d","qty":%d,"note":"%s"}`,
		i, j, rng.IntN(50), 1+rng.IntN(9), strings.Repeat("fragile ", rng.IntN(20)))
}

func shardRel(stream string, createdNs int64, shardID string) string {
	return path.Join("streams", fmt.Sprintf("%s-%016x", stream, createdNs), shardID)
}

// shardDirs lists the fixture's shard directories (relative), sorted.
func (f *fixture) shardDirs() []string {
	var out []string
	for k := range f.acks {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// segments lists a shard's segment names in chain order.
func (f *fixture) segments(t testing.TB, shard string) []string {
	t.Helper()
	names, err := f.fs.ReadDir(filepath.Join(f.dir, shard))
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, n := range names {
		if _, _, ok := segment.ParseFileName(n); ok {
			segs = append(segs, n)
		}
	}
	return segs
}

func (f *fixture) abs(rel string) string { return filepath.Join(f.dir, rel) }

// frames lists a segment's frames.
func (f *fixture) frames(t testing.TB, rel string) []segment.FrameInfo {
	t.Helper()
	b, err := f.fs.Bytes(f.abs(rel))
	if err != nil {
		t.Fatal(err)
	}
	var out []segment.FrameInfo
	_, err = segment.Scan(readerAt(b), int64(len(b)), segment.ScanOptions{VerifyCRC: true, Visit: func(fi segment.FrameInfo) error {
		out = append(out, fi)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type readerAt []byte

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		return 0, io.EOF
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// clone copies the fixture (MemFS files and the real directory's files) so
// each test case damages its own copy.
func (f *fixture) clone(t testing.TB) *fixture {
	t.Helper()
	c := &fixture{dir: t.TempDir(), fs: vfs.NewMemFS(), clk: &clock{t: f.clk.now()}, acks: f.acks}
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(f.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.copyTree(t, c, f.abs("streams"))
	return c
}

func (f *fixture) copyTree(t testing.TB, c *fixture, dir string) {
	t.Helper()
	rel, _ := filepath.Rel(f.dir, dir)
	if err := c.fs.MkdirAll(c.abs(rel)); err != nil {
		t.Fatal(err)
	}
	names, err := f.fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			f.copyTree(t, c, filepath.Join(dir, strings.TrimSuffix(n, "/")))
			continue
		}
		b, err := f.fs.Bytes(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		c.fs.SetBytes(c.abs(filepath.Join(rel, n)), b)
	}
}

// readAll reads every record the store serves for a shard directory.
func readAll(t testing.TB, s *storage.Store, shard string) map[uint64]rec {
	t.Helper()
	parts := strings.Split(shard, "/")
	stream := parts[1][:len(parts[1])-17]
	pos, err := s.Position(context.Background(), stream, parts[2], storage.TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]rec{}
	for {
		res, err := s.Read(context.Background(), pos, 10000, 10<<20)
		if err != nil {
			t.Fatalf("read %s: %v", shard, err)
		}
		for _, r := range res.Records {
			p, err := seqnum.Parse(r.SequenceNumber)
			if err != nil {
				t.Fatal(err)
			}
			out[p.Ordinal] = rec{p.Ordinal, r.PartitionKey, string(r.Data)}
		}
		if len(res.Records) == 0 || res.Next == nil {
			return out
		}
		pos = *res.Next
	}
}

func verify(t testing.TB, o fsck.Options) *fsck.Report {
	t.Helper()
	rep, err := fsck.Verify(o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func text(t testing.TB, rep *fsck.Report) string {
	t.Helper()
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func codes(rep *fsck.Report) []string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, string(p.Code))
	}
	return out
}
