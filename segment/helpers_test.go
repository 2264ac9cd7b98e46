package segment

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// newTestCompressor returns a Compressor closed at the end of the test.
func newTestCompressor(tb testing.TB) *Compressor {
	tb.Helper()
	c, err := NewCompressor()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

var (
	eventTypes = []string{"page_view", "click", "add_to_cart", "checkout", "login", "logout", "search"}
	pages      = []string{"/", "/products", "/products/shoes", "/products/hats", "/cart", "/checkout", "/account/settings"}
	agents     = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
	}
	countries = []string{"US", "DE", "FR", "JP", "BR", "IN", "GB"}
)

// jsonRecord returns a JSON event of about size bytes, shaped like clickstream
// data: repeated keys and small vocabularies, plus random IDs and numbers.
func jsonRecord(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"event_id":"%08x-%04x-%04x-%04x-%012x","type":%q,"user_id":%d,"session":"%016x",`,
		rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff,
		eventTypes[rng.IntN(len(eventTypes))], rng.IntN(1_000_000), rng.Uint64())
	fmt.Fprintf(&b, `"page":%q,"referrer":%q,"user_agent":%q,"geo":{"country":%q,"lat":%.4f,"lon":%.4f},`,
		pages[rng.IntN(len(pages))], pages[rng.IntN(len(pages))], agents[rng.IntN(len(agents))],
		countries[rng.IntN(len(countries))], rng.Float64()*180-90, rng.Float64()*360-180)
	b.WriteString(`"items":[`)
	for i := 0; b.Len() < size-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%05d","qty":%d,"price":%d.%02d}`, rng.IntN(20000), 1+rng.IntN(5), rng.IntN(500), rng.IntN(100))
	}
	b.WriteString(`],"v":1}`)
	return b.Bytes()
}

// jsonBatch returns n JSON records of about size bytes with seqs from first
// and arrival times from ts, a few milliseconds apart.
func jsonBatch(rng *rand.Rand, first uint64, ts int64, n, size int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{
			Seq:          first + uint64(i),
			ArrivalMs:    ts + int64(i/4),
			PartitionKey: fmt.Sprintf("user-%d", rng.IntN(1000)),
			Data:         jsonRecord(rng, size),
		}
	}
	return recs
}

// randomBatch returns n records of incompressible random data.
func randomBatch(rng *rand.Rand, first uint64, ts int64, n, size int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		recs[i] = Record{Seq: first + uint64(i), ArrivalMs: ts, PartitionKey: fmt.Sprint(i), Data: data}
	}
	return recs
}

// testSegment is a segment file in a MemFS and the frames written to it.
type testSegment struct {
	fs     *vfs.MemFS
	path   string
	hdr    FileHeader
	frames []FrameInfo
	recs   [][]Record // per frame
}

const testPath = "/shard/" + "00000000000000000100-000000000000002a.seg"

// buildSegment writes n synced frames with Writer: even frames hold
// compressible JSON, odd ones random bytes (so both codecs occur), and each
// frame skips one sequence number after the previous one.
func buildSegment(t testing.TB, c *Compressor, n int) *testSegment {
	t.Helper()
	fs := vfs.NewMemFS()
	if err := fs.MkdirAll("/shard"); err != nil {
		t.Fatal(err)
	}
	ts := &testSegment{fs: fs, path: testPath, hdr: FileHeader{SegmentID: 42, FirstSeq: 100, ShardKey: 7, CreatedNs: 1e18, Codec: CodecZstd}}
	w, err := Create(fs, ts.path, ts.hdr, c)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	seq, ms := uint64(100), int64(1_700_000_000_000)
	for i := 0; i < n; i++ {
		var recs []Record
		if i%2 == 0 {
			recs = jsonBatch(rng, seq, ms, 3+i, 300)
		} else {
			recs = randomBatch(rng, seq, ms, 2, 100+i)
		}
		f, err := w.Append(recs)
		if err != nil {
			t.Fatal(err)
		}
		ts.frames = append(ts.frames, f)
		ts.recs = append(ts.recs, recs)
		seq = f.LastSeq + 2
		ms = f.MaxTs + 5
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	return ts
}

func (ts *testSegment) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := ts.fs.Bytes(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (ts *testSegment) scan(t testing.TB, opts ScanOptions) (ScanResult, error) {
	t.Helper()
	b := ts.bytes(t)
	return Scan(bytes.NewReader(b), int64(len(b)), opts)
}

func recordsEqual(a, b []Record) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d records, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Seq != b[i].Seq || a[i].ArrivalMs != b[i].ArrivalMs || a[i].PartitionKey != b[i].PartitionKey || !bytes.Equal(a[i].Data, b[i].Data) {
			return fmt.Errorf("record %d: got {%d %d %q %d bytes}, want {%d %d %q %d bytes}", i,
				a[i].Seq, a[i].ArrivalMs, a[i].PartitionKey, len(a[i].Data),
				b[i].Seq, b[i].ArrivalMs, b[i].PartitionKey, len(b[i].Data))
		}
	}
	return nil
}

// collect returns an fn for DecodeFrame that copies the records into *out.
func collect(out *[]Record) func(Record) bool {
	return func(r Record) bool {
		r.Data = append([]byte(nil), r.Data...)
		*out = append(*out, r)
		return true
	}
}
