package fsck_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/segment"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// golden compares got with testdata/<name>.golden, or rewrites the file with
// -update. The output is deterministic: the fixture uses a fixed clock and
// fixed names, and reports print only the records' own times.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n%s", p, lineDiff(string(want), got))
	}
}

// lineDiff shows the first differing lines.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i, shown := 0, 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

// damagedFixture has three faults, one per shard: a flipped payload bit in a
// sealed segment, a segment missing from the middle, and a torn newest
// segment.
func damagedFixture(t *testing.T) *fixture {
	f := newFixture(t, defaultStreams)
	shards := f.shardDirs() // events/0, orders/0, orders/1
	tg := pick(t, f)
	fr := f.frames(t, tg.sealed)[1]
	flip(t, f, tg.sealed, fr.Offset+segment.FrameHeaderSize+3, 2)
	segs := f.segments(t, shards[2])
	if err := f.fs.Remove(f.abs(filepath.Join(shards[2], segs[3]))); err != nil {
		t.Fatal(err)
	}
	segs = f.segments(t, shards[0])
	newest := filepath.Join(shards[0], segs[len(segs)-1])
	edit(t, f, newest, func(b []byte) []byte { return b[:len(b)-9] })
	return f
}

func TestGoldenVerify(t *testing.T) {
	golden(t, "verify_clean", text(t, verify(t, newFixture(t, defaultStreams).opts())))
	f := damagedFixture(t)
	golden(t, "verify_damaged", text(t, verify(t, f.opts())))
	var js bytes.Buffer
	if err := verify(t, f.opts()).WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	golden(t, "verify_damaged_json", js.String())
	rep, err := fsck.Repair(f.opts(), false)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "repair", text(t, rep))
}

func dump(t *testing.T, f *fixture, o fsck.DumpOptions) string {
	t.Helper()
	o.FS = f.fs
	o.Path = f.abs(o.Path)
	var b strings.Builder
	if err := fsck.Dump(&b, o); err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(b.String(), f.dir, "$DIR")
}

func TestGoldenDump(t *testing.T) {
	f := damagedFixture(t)
	tg := pick(t, f)
	golden(t, "dump_shard", dump(t, f, fsck.DumpOptions{Path: tg.shard}))
	golden(t, "dump_records", dump(t, f, fsck.DumpOptions{Path: tg.sealed, Records: true}))
	golden(t, "dump_json", dump(t, f, fsck.DumpOptions{Path: tg.sealed, Records: true, JSON: true, FromSeq: 36}))
}
