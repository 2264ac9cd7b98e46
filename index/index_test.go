package index

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIndexRoundTripAndRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, rebuilt, err := Open(path, time.Hour)
	if err != nil || rebuilt {
		t.Fatalf("open: %v rebuilt=%v", err, rebuilt)
	}
	ix.Submit(Update{Shard: "s/0", Segments: []Segment{{ID: 1, FirstSeq: 1, LastSeq: 9, End: 500, Frames: 2, Records: 9}, {ID: 2, FirstSeq: 10}},
		Seeks: []Seek{{Seq: 1, SegID: 1, Offset: 64}, {Seq: 5, SegID: 1, Offset: 300}, {Seq: 10, SegID: 2, Offset: 64}}})
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	ix.Submit(Update{Shard: "s/0", Remove: []uint64{1}})
	if err := ix.Close(); err != nil { // Close commits what is pending
		t.Fatal(err)
	}
	ix, _, err = Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	segs, seeks, err := ix.Load("s/0")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || segs[0].ID != 2 || len(seeks) != 1 || seeks[0].SegID != 2 {
		t.Fatalf("after removing segment 1: %+v %+v", segs, seeks)
	}
}

// TestUnreadableIndexIsMovedAside: index.db is derived, so a damaged one is
// set aside and a fresh one created, never a reason not to start.
func TestUnreadableIndexIsMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("this is not a bbolt file, not even close to one")},
		{"zeroed page", make([]byte, 8192)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			ix, rebuilt, err := Open(path, time.Hour)
			if err != nil || !rebuilt {
				t.Fatalf("open: %v rebuilt=%v", err, rebuilt)
			}
			defer ix.Close()
			if _, err := os.Stat(path + ".corrupt"); err != nil {
				t.Fatalf("the damaged file was not kept aside: %v", err)
			}
		})
	}
}
