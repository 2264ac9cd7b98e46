package replica

import (
	"context"
	"math/rand/v2"
	"path"
	"slices"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// TestWALPreallocation: with a zero-filled runway, written by a flush itself
// or by the filler goroutine, the newest file holds zeros after its frames;
// a crash (whatever it tears) recovers exactly the synced frames and cuts
// the zeros; a roll seals the old file at its last frame; Close leaves the
// newest one exact too.
func TestWALPreallocation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filler bool
		mode   vfs.TearMode
	}{
		{"inline, unsynced tail dropped", false, vfs.TearNone},
		{"inline, torn prefix", false, vfs.TearPrefix},
		{"inline, zeroed tail", false, vfs.TearZeros},
		{"filler, unsynced tail dropped", true, vfs.TearNone},
		{"filler, torn prefix", true, vfs.TearPrefix},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			w := openFilled(t, fs, tc.filler)
			var synced [][]byte
			for i := range 40 {
				p := []byte{kindStart, byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9}
				w.add(p)
				synced = append(synced, p)
				if err := w.flush(true); err != nil {
					t.Fatal(err)
				}
			}
			w.stopFiller() // no zeros written behind the test's back from here on
			if tc.filler && w.fill.filled.Load() == 0 {
				t.Fatal("the filler wrote nothing")
			}
			if !w.fillOnce() { // whatever the filler had done: a runway
				t.Fatal("fill failed")
			}
			if size := fileSize(t, fs, w.current().seq); size <= w.current().size {
				t.Fatalf("file of %d bytes for %d bytes of frames: no runway", size, w.current().size)
			}
			w.add([]byte{kindStart, 0xee})
			if err := w.flush(false); err != nil {
				t.Fatal(err)
			}
			fs.Crash(rand.New(rand.NewPCG(7, 0)), tc.mode)

			w, rec, err := openWAL(fs, "/d")
			if err != nil {
				t.Fatal(err)
			}
			got := payloadsOf(rec)
			if len(got) < len(synced) || !slices.EqualFunc(got[:len(synced)], synced, slices.Equal) {
				t.Fatalf("recovered %d frames, want the %d synced first", len(got), len(synced))
			}
			for _, p := range got[len(synced):] {
				if !slices.Equal(p, []byte{kindStart, 0xee}) {
					t.Fatalf("recovered a damaged frame %v", p)
				}
			}
			if size := fileSize(t, fs, w.current().seq); size != w.current().size {
				t.Fatalf("recovered file of %d bytes, frames end at %d: the zeros were not cut", size, w.current().size)
			}
			w.f.Close()
		})
	}
}

// TestWALPreallocationSeal: a roll leaves the old file ending at its last
// frame (openWAL refuses a sealed file with anything after it) and Close
// the newest; the frames of both come back.
func TestWALPreallocationSeal(t *testing.T) {
	for _, filler := range []bool{false, true} {
		fs := vfs.NewMemFS()
		w := openFilled(t, fs, filler)
		want := 0
		for i := range 30 {
			w.add([]byte{kindStart, byte(i), 1, 2, 3})
			want++
			if err := w.flush(true); err != nil {
				t.Fatal(err)
			}
			if i == 14 {
				old := w.current()
				if err := w.roll(appendFrame(nil, []byte{kindStart, 0xff}), func(string) error { return nil }); err != nil {
					t.Fatal(err)
				}
				want++
				if size := fileSize(t, fs, old.seq); size != old.size {
					t.Fatalf("sealed file of %d bytes, frames end at %d", size, old.size)
				}
			}
		}
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
		if size := fileSize(t, fs, w.current().seq); size != w.current().size {
			t.Fatalf("closed file of %d bytes, frames end at %d", size, w.current().size)
		}
		w, rec, err := openWAL(fs, "/d")
		if err != nil || len(rec) != want {
			t.Fatalf("filler %v: %d frames, want %d: %v", filler, len(rec), want, err)
		}
		w.f.Close()
	}
}

// openFilled opens a WAL in /d with a small runway; filler: zero-filled by
// the filler goroutine, else by the flushes.
func openFilled(t *testing.T, fs vfs.FS, filler bool) *wal {
	t.Helper()
	w, _, err := openWAL(fs, "/d")
	if err != nil {
		t.Fatal(err)
	}
	w.fill.chunk = 256
	if filler {
		w.startFiller(context.Background())
		t.Cleanup(w.stopFiller)
	}
	return w
}

func fileSize(t *testing.T, fs vfs.FS, seq uint64) int64 {
	t.Helper()
	f, err := fs.Open(path.Join("/d", walName(seq)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
