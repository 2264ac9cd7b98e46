package replica

import (
	"testing"
	"time"

	"github.com/shardlog/shardlog/vfs"
)

// TestReviewReAddedGroupResurrectsOldLife: a replica removed (RemoveGroup)
// and added again (AddGroup) must start empty, also after a restart. The
// old life's HardState, entries and compaction frames are still in the WAL
// (the current file's header restates them), and replay does not stop at
// the kindRemoveGroup frame: after a restart the new replica has the old
// term/vote/commit and compaction point, g.applied = old compaction point
// over empty segments, so records 1..compacted are a permanent hole.
//
// Of its old life the new replica keeps only the term (and vote): the
// tombstone's (tomb.go), also once the WAL files that held the removal are
// deleted and only new files' headers restate it.
func TestReviewReAddedGroupResurrectsOldLife(t *testing.T) {
	fs := vfs.NewMemFS()
	open := func() (*Host, func()) {
		return runTicking(t, Config{NodeID: 1, FS: fs, Dir: "/n", Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}},
			Transport: nopTransport{}, WALSegmentSize: 2048, CompactMinEntries: 2, ElectionTicks: 2})
	}
	propose := func(h *Host, g uint64) { proposeUntilLed(t, h, g, make([]byte, 100)) }
	h, stop := open()
	if err := h.AddGroup(5, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	// Compaction is proposed once an election timeout (ticks) passes, so
	// the loops are bounded by a generous deadline, not a count: a loaded
	// machine ticks slower.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && h.Status(5).Compacted == 0 {
		propose(h, 5)
		time.Sleep(2 * time.Millisecond)
	}
	old := h.Status(5)
	t.Logf("old life: %+v", old)
	if old.Compacted == 0 {
		t.Fatal("old life never compacted")
	}
	if err := h.RemoveGroup(5); err != nil {
		t.Fatal(err)
	}
	removedIn := walFileSeqs(h)
	// Group 1's writes roll the WAL and delete the file of the removal.
	for time.Now().Before(deadline) && walFileSeqs(h)[0] <= removedIn[len(removedIn)-1] {
		propose(h, 1)
	}
	if seqs := walFileSeqs(h); seqs[0] <= removedIn[len(removedIn)-1] {
		t.Fatalf("WAL files %v still hold the removal's (%v)", seqs, removedIn)
	}
	stop()
	h, stop = open()
	if err := h.AddGroup(5, []uint64{1}); err != nil {
		t.Fatal(err)
	}
	fresh := h.Status(5)
	t.Logf("re-added, before restart: %+v", fresh)
	stop()

	h, stop = open()
	defer stop()
	st := h.Status(5)
	recs := h.Records(5)
	t.Logf("re-added, after restart: %+v, %d records, first seq %v", st, len(recs), firstSeq(recs))
	if st.Term != old.Term || st.Commit != 0 || st.Applied != 0 || st.LastIndex != 0 || st.Compacted != 0 || len(recs) != 0 {
		t.Fatalf("the re-added replica is not its tombstone's term (%d) over an empty log: %+v and %d records (applied %d over segments holding %d)", old.Term,
			st, len(recs), st.Applied, len(recs))
	}
}

// walFileSeqs is the sequence numbers of the host's WAL files.
func walFileSeqs(h *Host) []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var seqs []uint64
	for _, f := range h.wal.files {
		seqs = append(seqs, f.seq)
	}
	return seqs
}

func firstSeq(recs []Record) any {
	if len(recs) == 0 {
		return nil
	}
	return recs[0].Seq >> 16
}
