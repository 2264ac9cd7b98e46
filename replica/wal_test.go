package replica

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/shardlog/shardlog/vfs"
)

type nopTransport struct{}

func (nopTransport) Send(Batch) {}

// solo drives a one-voter group on one host, deterministically, with a small
// WAL so that it rolls and truncates every few rounds.
type solo struct {
	t       *testing.T
	fs      *vfs.MemFS
	h       *Host
	point   string // the crash point to cut power at, once
	armed   bool
	next    int
	current *attempt
	all     []*attempt
	tweak   func(*Config)        // optional: changes the host's configuration
	records func(n int) []string // optional: the records of the n-th proposal (default one)
}

func (s *solo) open() {
	s.t.Helper()
	cfg := Config{NodeID: 1, FS: s.fs, Dir: "/d", Groups: []GroupConfig{{ID: 1, Peers: []uint64{1}}},
		Transport: nopTransport{}, Rand: rand.New(rand.NewPCG(1, 1)), WALSegmentSize: 400, CompactMinEntries: 2}
	if s.tweak != nil {
		s.tweak(&cfg)
	}
	cfg.crashAt = func(p string) bool {
		if s.armed && p == s.point {
			s.armed = false
			return true
		}
		return false
	}
	h, err := Open(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.h = h
}

// step ticks, proposes one record when idle and leading, and runs two
// rounds (a lone leader commits at the round after its append). It returns
// the error of a round.
func (s *solo) step() error {
	s.h.Tick()
	if s.current == nil {
		s.next++
		a := &attempt{group: 1, records: []string{fmt.Sprint("r", s.next)}, outcome: failed}
		if s.records != nil {
			a.records = s.records(s.next)
		}
		s.all = append(s.all, a)
		data := make([][]byte, len(a.records))
		for i, r := range a.records {
			data[i] = []byte(r)
		}
		if p, err := s.h.Propose(1, data); err == nil {
			a.proposal, a.outcome, s.current = p, pending, a
		}
	}
	for range 2 {
		if err := s.h.HandleReady(); err != nil {
			return err
		}
	}
	if a := s.current; a != nil {
		select {
		case <-a.proposal.Done():
			seqs, err := a.proposal.Result()
			a.outcome, a.seqs = acked, seqs
			if err != nil {
				a.outcome = failed
			}
			s.current = nil
		default:
		}
	}
	return nil
}

// crash cuts power: what was in flight is indeterminate.
func (s *solo) crash(mode vfs.TearMode, seed uint64) {
	if s.current != nil {
		s.current.outcome, s.current = unknown, nil
	}
	s.h = nil
	s.fs.Crash(rand.New(rand.NewPCG(seed, 3)), mode)
}

// check runs the simulation's checker on the group's records.
func (s *solo) check(when string) {
	s.t.Helper()
	sm := &sim{opt: simOptions{groups: 1}, attempts: s.all}
	if err := sm.checkLog(1, s.h.Records(1)); err != nil {
		s.t.Fatalf("%s: %v", when, err)
	}
}

func (s *solo) walFiles() int {
	names, err := s.fs.ReadDir("/d")
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if strings.HasPrefix(name, walPrefix) {
			n++
		}
	}
	return n
}

// TestWALCrashPoints cuts power at each step of a WAL roll and of a
// truncation, with each way a crash can leave unsynced bytes. After the
// restart every acknowledged record is present exactly once, in order; the
// host goes on rolling and truncating; and after a clean restart too.
func TestWALCrashPoints(t *testing.T) {
	points := []string{crashRollStateSynced, crashRollCreated, crashRollSynced, crashRollDirSynced,
		crashTruncateRemoved, crashTruncateDirSynced}
	modes := map[vfs.TearMode]string{vfs.TearNone: "unsynced lost", vfs.TearPrefix: "torn prefix", vfs.TearZeros: "zeroed tail"}
	for _, point := range points {
		for mode, modeName := range modes {
			t.Run(point+"/"+modeName, func(t *testing.T) {
				s := &solo{t: t, fs: vfs.NewMemFS(), point: point, armed: true}
				s.open()
				crashed := false
				for i := range 400 {
					err := s.step()
					if err == nil {
						continue
					}
					if crashed || !errors.Is(err, errCrashPoint) {
						t.Fatalf("step %d: %v", i, err)
					}
					crashed = true
					s.crash(mode, uint64(i))
					s.open()
					s.check("after the power cut at " + point)
				}
				if !crashed {
					t.Fatalf("the run never reached %q", point)
				}
				s.check("after the run")
				if n := s.walFiles(); n > 6 {
					t.Fatalf("%d WAL files: truncation does not keep up", n)
				}
				s.h.Close()
				s.open()
				s.check("after a clean restart")
			})
		}
	}
}

// TestSpliceLog pins the replay rule: an entries frame replaces the log from
// its first index on, also when the log starts after a compaction point.
func TestSpliceLog(t *testing.T) {
	ents := entryRange
	for _, tc := range []struct {
		name   string
		base   uint64
		frames [][]*pb.Entry
		want   string // index/term of the resulting log
		bad    bool
	}{
		{"appends", 0, [][]*pb.Entry{ents(1, 2, 1), ents(3, 3, 1)}, "1/1 2/1 3/1", false},
		{"overwrites a tail", 0, [][]*pb.Entry{ents(1, 4, 1), ents(3, 3, 2)}, "1/1 2/1 3/2", false},
		{"skips what is compacted", 5, [][]*pb.Entry{ents(3, 7, 1)}, "6/1 7/1", false},
		// A stale tail above the compaction point, cut by a frame that ends
		// below it, must not come back.
		{"a frame below the base cuts the tail", 100, [][]*pb.Entry{ents(95, 105, 2), ents(96, 100, 3)}, "", false},
		{"and later frames rebuild it", 100, [][]*pb.Entry{ents(95, 105, 2), ents(96, 100, 3), ents(101, 102, 3)}, "101/3 102/3", false},
		{"a gap is corruption", 0, [][]*pb.Entry{ents(1, 2, 1), ents(4, 4, 1)}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log []*pb.Entry
			var err error
			for _, f := range tc.frames {
				if log, err = spliceLog(log, tc.base, f); err != nil {
					break
				}
			}
			if (err != nil) != tc.bad {
				t.Fatalf("error %v, want one: %v", err, tc.bad)
			}
			if tc.bad {
				return
			}
			var got []string
			for _, e := range log {
				got = append(got, fmt.Sprintf("%d/%d", e.GetIndex(), e.GetTerm()))
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("log %v, want %s", got, tc.want)
			}
		})
	}
}

// entryRange is entries first..last of one term.
func entryRange(first, last, term uint64) []*pb.Entry {
	var out []*pb.Entry
	for i := first; i <= last; i++ {
		out = append(out, &pb.Entry{Index: new(i), Term: new(term)})
	}
	return out
}

// TestSpliceLogInPlace: a frame is spliced into the recovered log's own
// array, not into a copy of the whole log (replay was quadratic in the
// frames of the WAL).
func TestSpliceLogInPlace(t *testing.T) {
	ents := entryRange
	log, err := spliceLog(make([]*pb.Entry, 0, 64), 0, ents(1, 10, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][]*pb.Entry{ents(11, 11, 1), ents(12, 20, 1), ents(15, 16, 2)} {
		out, err := spliceLog(log, 0, f)
		if err != nil {
			t.Fatal(err)
		}
		if &out[0] != &log[0] {
			t.Fatalf("splicing entries %d-%d copied the log", f[0].GetIndex(), f[len(f)-1].GetIndex())
		}
		log = out
	}
	if len(log) != 16 || log[15].GetTerm() != 2 {
		t.Fatalf("log of %d entries, last term %d", len(log), log[len(log)-1].GetTerm())
	}
}
