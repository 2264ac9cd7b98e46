package replica

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"testing"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// copyFiles fetches m's files from the sender into the receiver's fetch
// directory in chunks of n bytes, as a fetch does, and lets damage change
// what is written (the file's index, its bytes); it returns the first
// error of the files' checks (checkFetched).
func copyFiles(t *testing.T, from, to *segState, m snapManifest, n int, damage func(i int, b []byte) []byte) error {
	t.Helper()
	dir, err := to.fetchDir()
	if err != nil {
		t.Fatal(err)
	}
	for i, sf := range m.files {
		var b []byte
		for off := int64(0); off < sf.size; {
			c, err := from.chunk(m.life, m.gen, sf.first, sf.id, off, n)
			if err != nil {
				t.Fatalf("file %d at %d: %v", i, off, err)
			}
			if len(c) > n {
				t.Fatalf("a chunk of %d bytes, asked for %d", len(c), n)
			}
			b, off = append(b, c...), off+int64(len(c))
		}
		if damage != nil {
			if b = damage(i, b); b == nil {
				continue
			}
		}
		f, err := to.fs.Create(path.Join(dir, segment.FileName(sf.first, sf.id)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		err = to.checkFetched(f, sf)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestSnapshotFilesFetchedAndChecked: a snapshot's manifest lists the
// sender's files; fetched in chunks smaller than a frame they become the
// receiver's state, whole, durable across a reopen. Fetched bytes that are
// not the listed ones (a byte flipped, a file missing or cut short) are
// refused before anything is installed. The sender answers errSnapGone for
// a file retention trimmed, another generation, or an offset past the end.
func TestSnapshotFilesFetchedAndChecked(t *testing.T) {
	sender := openTestState(t, vfs.NewMemFS()) // 300-byte segments
	for idx := uint64(1); idx <= 40; idx++ {
		sender.add(idx, int64(idx*10), [][]byte{[]byte(fmt.Sprint("record-", idx)), []byte("second")})
		if err := sender.write(); err != nil {
			t.Fatal(err)
		}
	}
	data, err := sender.snapshot(40)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest(data)
	if err != nil || m.index != 40 || len(m.files) < 4 {
		t.Fatalf("manifest %+v, %v: want index 40 and several files", m, err)
	}
	for cut := range len(data) {
		if _, err := decodeManifest(data[:cut]); err == nil {
			t.Fatalf("a manifest cut at %d decoded", cut)
		}
	}
	// review5: a listing with a gap between two files is refused.
	gap := m
	gap.files = slices.Clone(m.files)
	gap.files[2].first++
	if _, err := decodeManifest(gap.encode()); err == nil {
		t.Fatal("a manifest whose files are not contiguous decoded")
	}
	want, _ := sender.read(0, 1<<30, 1<<30)
	for _, tc := range []struct {
		name   string
		damage func(i int, b []byte) []byte
		ok     bool
	}{
		{"a byte flipped", func(i int, b []byte) []byte {
			if i == 1 {
				b[len(b)-5] ^= 0x40
			}
			return b
		}, false},
		{"a file missing", func(i int, b []byte) []byte {
			if i == 2 {
				return nil
			}
			return b
		}, false},
		{"the newest cut short", func(i int, b []byte) []byte {
			if i == len(m.files)-1 {
				return b[:len(b)-3]
			}
			return b
		}, false},
		{"whole", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			recv := openTestState(t, fs)
			err := copyFiles(t, sender, recv, m, 37, tc.damage)
			var ns *segState
			if err == nil {
				ns, err = recv.prepared(m)
			}
			if !tc.ok {
				t.Logf("refused: %v", err)
				if err == nil {
					t.Fatal("damaged files were accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := recv.install(m.index, ns, func(string) error { return nil }); err != nil {
				t.Fatal(err)
			}
			got, err := recv.read(0, 1<<30, 1<<30)
			if err != nil || !sameStored(got, want) || recv.held() != 40 {
				t.Fatalf("installed: %d records (%v), held %d; want the sender's %d, held 40", len(got), err, recv.held(), len(want))
			}
			recv.close()
			fs.Crash(nil, vfs.TearNone) // only what was synced survives
			again := openTestState(t, fs)
			if got, err := again.read(0, 1<<30, 1<<30); err != nil || !sameStored(got, want) || again.held() != 40 {
				t.Fatalf("reopened: %d records (%v), held %d", len(got), err, again.held())
			}
		})
	}
	first := m.files[0]
	for _, tc := range []struct {
		name string
		life uint64
		gen  uint64
		off  int64
		trim bool
	}{
		{"another generation", m.life, m.gen + 1, 0, false},
		{"another life (review5)", m.life + 1, m.gen, 0, false},
		{"past the end", m.life, m.gen, first.size, false},
		{"trimmed", m.life, m.gen, 0, true},
	} {
		if tc.trim {
			if n, _, err := sender.trim(1 << 40); err != nil || n == 0 {
				t.Fatalf("trim: %d segments, %v", n, err)
			}
		}
		if _, err := sender.chunk(tc.life, tc.gen, first.first, first.id, tc.off, 100); !errors.Is(err, errSnapGone) {
			t.Fatalf("%s: %v, want errSnapGone", tc.name, err)
		}
	}
}
