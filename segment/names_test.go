package segment

import (
	"math"
	"sort"
	"testing"
)

func TestFileNameRoundTrip(t *testing.T) {
	tests := []struct {
		seq, id uint64
		name    string
	}{
		{0, 0, "00000000000000000000-0000000000000000.seg"},
		{100, 42, "00000000000000000100-000000000000002a.seg"},
		{math.MaxUint64, math.MaxUint64, "18446744073709551615-ffffffffffffffff.seg"},
	}
	for _, tt := range tests {
		if got := FileName(tt.seq, tt.id); got != tt.name {
			t.Errorf("FileName(%d, %d) = %q, want %q", tt.seq, tt.id, got, tt.name)
		}
		seq, id, ok := ParseFileName(tt.name)
		if !ok || seq != tt.seq || id != tt.id {
			t.Errorf("ParseFileName(%q) = %d, %d, %v", tt.name, seq, id, ok)
		}
	}
}

func TestParseFileNameRejects(t *testing.T) {
	for _, name := range []string{
		"",
		"00000000000000000100-000000000000002a.tmp",
		"00000000000000000100-000000000000002a.seg.tmp",
		"00000000000000000100-000000000000002A.seg", // uppercase hex
		"0000000000000000100-000000000000002a.seg",  // short seq
		"00000000000000000100_000000000000002a.seg",
		"+0000000000000000100-000000000000002a.seg",
		"99999999999999999999-000000000000002a.seg", // beyond MaxUint64
		"00000000000000000100-00000000000000xa.seg",
		"00000000000000000100-000000000000002a.sex",
	} {
		if _, _, ok := ParseFileName(name); ok {
			t.Errorf("ParseFileName(%q) accepted", name)
		}
	}
}

func TestFileNamesSortBySeq(t *testing.T) {
	seqs := []uint64{5, 1000, 99, 1 << 40, 0}
	names := make([]string, len(seqs))
	for i, s := range seqs {
		names[i] = FileName(s, uint64(i))
	}
	sort.Strings(names)
	var prev uint64
	for i, n := range names {
		s, _, _ := ParseFileName(n)
		if i > 0 && s < prev {
			t.Fatalf("%v not sorted by seq", names)
		}
		prev = s
	}
}
