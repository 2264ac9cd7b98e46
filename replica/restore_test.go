package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// pageCounter is an Applier that keeps what its last restore saw: every
// record (copied out, the test compares them), the number of pages, and the
// largest page's data and record count.
type pageCounter struct {
	mu        sync.Mutex
	restores  int
	recs      []Record
	pages     int
	prevPages int // the pages of the restore before the last
	maxBytes  int
	maxRecs   int
	oversized int // pages over the limit: only a lone record may make one
	failed    int // restores that ended in a read error
	limit     int
}

func (c *pageCounter) Applied(uint64, []Record) {}

func (c *pageCounter) Restored(_ uint64, pages iter.Seq2[[]Record, error]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restores++
	c.prevPages = c.pages
	c.recs, c.pages, c.maxBytes, c.maxRecs, c.oversized = nil, 0, 0, 0, 0
	for page, err := range pages {
		if err != nil {
			c.failed++
			return
		}
		c.pages++
		n := dataLen(page)
		c.maxBytes, c.maxRecs = max(c.maxBytes, n), max(c.maxRecs, len(page))
		if n > c.limit && len(page) > 1 {
			c.oversized++
		}
		c.recs = append(c.recs, page...)
	}
}

// tee hands the host's calls to each Applier in turn (as cluster's appliers
// does): each ranges over the same pages itself.
type tee []Applier

func (t tee) Applied(g uint64, recs []Record) {
	for _, a := range t {
		a.Applied(g, recs)
	}
}

func (t tee) Restored(g uint64, pages iter.Seq2[[]Record, error]) {
	for _, a := range t {
		a.Restored(g, pages)
	}
}

// TestRestoreInPages: a group whose history is many restore pages long,
// whose WAL is truncated behind it (so a restore can only come from the
// segments), restores at Open in bounded pages: the pages hold every record
// in order, the largest page is within the limit unless it is a lone larger
// record, and the metadata machine, fed the same pages, rebuilds the state
// it had built from Applied. Records are metadata transactions (key n%7, of
// varying size, every 13th one larger than a page).
func TestRestoreInPages(t *testing.T) {
	const pageBytes = 512
	counter := &pageCounter{limit: pageBytes}
	meta := NewMetaMachine(1, 1, nil)
	s := &solo{t: t, fs: vfs.NewMemFS()}
	s.records = func(n int) []string {
		out := make([]string, n%3+1)
		for i := range out {
			pad := strings.Repeat("x", n%5*40)
			if n%13 == 0 && i == 0 {
				pad = strings.Repeat("y", 2*pageBytes)
			}
			v, _ := json.Marshal(fmt.Sprintf("v%d-%d-%s", n, i, pad))
			out[i] = string(EncodeTxn(MetaTxn{Origin: 2, ID: uint64(n), Then: []MetaOp{{Key: fmt.Sprint("k", (n+i)%7), Value: v}}}))
		}
		return out
	}
	s.tweak = func(c *Config) {
		c.StateSegmentSize, c.restorePageBytes, c.Applier = 2048, pageBytes, tee{counter, meta}
	}
	s.open()
	if counter.restores != 1 || len(counter.recs) != 0 || counter.pages != 0 {
		t.Fatalf("a new group's restore: %d restores, %d records in %d pages; want one, empty", counter.restores, len(counter.recs), counter.pages)
	}
	runSolo(t, s, 5000, func() bool {
		return s.current == nil && s.h.wal.removed >= 2 && s.h.Status(1).Compacted > 0 && dataLen(s.h.Records(1)) > 20*pageBytes
	})
	want, digest := s.h.Records(1), meta.Digest()
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	meta2 := NewMetaMachine(1, 1, nil)
	s.tweak = func(c *Config) {
		c.StateSegmentSize, c.restorePageBytes, c.Applier = 2048, pageBytes, tee{counter, meta2}
	}
	s.open()
	defer s.h.Close()
	if !sameStored(counter.recs, want) {
		t.Fatalf("restored %d records, want the %d applied", len(counter.recs), len(want))
	}
	if counter.pages < 20 || counter.oversized > 0 || counter.maxRecs > restorePageRecords {
		t.Fatalf("%d pages, %d over %d bytes with more than one record, largest %d bytes, %d records",
			counter.pages, counter.oversized, pageBytes, counter.maxBytes, counter.maxRecs)
	}
	if counter.maxBytes <= pageBytes {
		t.Fatalf("the largest page is %d bytes: the records larger than a page were not restored alone", counter.maxBytes)
	}
	if got := meta2.Digest(); got != digest || digest == "" {
		t.Fatalf("the metadata restored from pages:\n%s\nwant (as applied):\n%s", got, digest)
	}
}

// TestReadPages: the pager's own contract, on a fake read: pages follow on
// from the last record returned, an early stop reads no further, a second
// range reads afresh, and a read error ends the pages and is reported.
func TestReadPages(t *testing.T) {
	all := make([]Record, 10)
	for i := range all {
		all[i] = Record{Seq: Ordinal(uint64(i+1), 0), Data: []byte("abc")}
	}
	failAt := -1
	reads := 0
	read := func(from uint64, maxRecords, maxBytes int) ([]Record, error) {
		reads++
		if reads == failAt {
			return nil, errors.New("disk on fire")
		}
		var out []Record
		for _, r := range all {
			if r.Seq >= from && len(out) < min(maxRecords, maxBytes/3) {
				out = append(out, r)
			}
		}
		return out, nil
	}
	for _, tc := range []struct {
		name      string
		failAt    int
		stopAfter int // pages taken before a break; 0: all
		wantPages int
		wantReads int
		wantErr   bool
	}{
		{"whole", -1, 0, 4, 5, false}, // pages of 3, 3, 3, 1, then an empty read
		{"break after two", -1, 2, 2, 2, false},
		{"error on the third read", 3, 0, 2, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failAt, reads = tc.failAt, 0
			var err error
			pages := readPages(read, 9, &err)
			ranges := 2 // a second range reads afresh and sees the same
			if tc.wantErr {
				ranges = 1
			}
			for range ranges {
				reads = 0
				var got []Record
				n := 0
				var yielded error // the error the pages themselves end with
				for page, perr := range pages {
					if perr != nil {
						yielded = perr
						break
					}
					n++
					got = append(got, page...)
					if n == tc.stopAfter {
						break
					}
				}
				if n != tc.wantPages || reads != tc.wantReads || (err != nil) != tc.wantErr || yielded != err {
					t.Fatalf("%d pages in %d reads, error %v; want %d pages, %d reads, error %v", n, reads, err, tc.wantPages, tc.wantReads, tc.wantErr)
				}
				if tc.stopAfter == 0 && !tc.wantErr && !sameStored(got, all) {
					t.Fatalf("pages hold %d records, want all %d in order", len(got), len(all))
				}
			}
		})
	}
}

// TestRestoreReadErrorSetsReplicaAside: a restore whose read fails
// part-way (a sealed segment damaged behind the pages already handed over;
// recovery checks only the newest segment's frames) makes the replica
// damaged (damage.go): the Applier is handed an empty state after the
// partial one, so its partial state is never served.
func TestRestoreReadErrorSetsReplicaAside(t *testing.T) {
	counter := &pageCounter{limit: 256}
	s := &solo{t: t, fs: vfs.NewMemFS()}
	s.records = func(n int) []string { return []string{fmt.Sprintf("r%d-%s", n, strings.Repeat("z", 60))} }
	s.tweak = func(c *Config) { c.StateSegmentSize, c.restorePageBytes, c.Applier = 1024, 256, counter }
	s.open()
	runSolo(t, s, 3000, func() bool { return s.current == nil && len(s.h.groups[1].state.(*segState).segs) >= 4 })
	st := s.h.groups[1].state.(*segState)
	victim := st.segs[2] // sealed, after the first pages
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := s.fs.OpenRW(victim.path)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := victim.end - 9 // inside the last frame's payload
	f.ReadAt(b, off)
	b[0] ^= 0xff
	f.WriteAt(b, off)
	f.Sync()
	f.Close()
	cfg := Config{NodeID: 1, FS: s.fs, Dir: "/d", Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}},
		Transport: nopTransport{}, StateSegmentSize: 1024, restorePageBytes: 256, Applier: counter}
	restores := counter.restores
	h, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d := h.Damaged()
	if len(d) != 1 || d[0].Group != 1 || !strings.Contains(d[0].Reason, path.Base(victim.path)) {
		t.Fatalf("Damaged() = %+v, want group 1 naming %s", d, victim.path)
	}
	if counter.restores != restores+2 || counter.prevPages == 0 || len(counter.recs) != 0 {
		t.Fatalf("%d restores (want the partial one then an empty one), %d pages before the damage, %d records left in the Applier",
			counter.restores-restores, counter.prevPages, len(counter.recs))
	}
	t.Logf("after %d pages: %s", counter.prevPages, d[0].Reason)
}
