package hashkey

import "testing"

func TestFromPartitionKeyKnownAnswers(t *testing.T) {
	tests := []struct{ pk, want string }{
		// MD5("") = d41d8cd98f00b204e9800998ecf8427e
		{"", "281949768489412648962353822266799178366"},
		// MD5("a") = 0cc175b9c0f1b6a831c399e269772661
		{"a", "16955237001963240173058271559858726497"},
	}
	for _, tt := range tests {
		if got := FromPartitionKey(tt.pk).String(); got != tt.want {
			t.Errorf("FromPartitionKey(%q) = %s, want %s", tt.pk, got, tt.want)
		}
	}
}

func TestSplitMatchesAWS(t *testing.T) {
	tests := []struct {
		n    int
		want []Range
	}{
		{1, []Range{{Key{}, Max}}},
		{3, []Range{
			{mustParse("0"), mustParse("113427455640312821154458202477256070484")},
			{mustParse("113427455640312821154458202477256070485"), mustParse("226854911280625642308916404954512140969")},
			{mustParse("226854911280625642308916404954512140970"), Max},
		}},
		{2, []Range{
			{mustParse("0"), mustParse("170141183460469231731687303715884105727")},
			{mustParse("170141183460469231731687303715884105728"), Max},
		}},
	}
	for _, tt := range tests {
		got := Split(tt.n)
		if len(got) != len(tt.want) {
			t.Fatalf("Split(%d): %d ranges", tt.n, len(got))
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("Split(%d)[%d] = %v..%v, want %v..%v", tt.n, i, got[i].Start, got[i].End, tt.want[i].Start, tt.want[i].End)
			}
		}
	}
}

func TestSplitCoversSpaceWithoutGaps(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 64, 500} {
		r := Split(n)
		if r[0].Start != (Key{}) || r[n-1].End != Max {
			t.Fatalf("Split(%d) does not span the space", n)
		}
		for i := 1; i < n; i++ {
			if r[i-1].End.Add(1) != r[i].Start {
				t.Fatalf("Split(%d): gap or overlap between %d and %d", n, i-1, i)
			}
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want Key
	}{
		{"0", true, Key{}},
		{"340282366920938463463374607431768211455", true, Max},
		{"340282366920938463463374607431768211456", false, Key{}},
		{"18446744073709551616", true, Key{1, 0}},
		{"", false, Key{}},
		{"-1", false, Key{}},
		{"1e5", false, Key{}},
		{" 1", false, Key{}},
		{"0000000000000000000000000000000000000001", false, Key{}},
		{"01", false, Key{}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want ok=%v %v", tt.in, got, err, tt.ok, tt.want)
		}
	}
}

func TestRangeContainsBoundaries(t *testing.T) {
	r := Split(3)
	for i, rg := range r {
		for _, k := range []Key{rg.Start, rg.End} {
			for j, other := range r {
				if other.Contains(k) != (i == j) {
					t.Errorf("key %v: range %d contains=%v", k, j, other.Contains(k))
				}
			}
		}
	}
}

func mustParse(s string) Key {
	k, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return k
}

// FuzzParse: any string either fails or parses to a key that renders back to
// the same string, and a parsed key never exceeds 2^128-1.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1", "340282366920938463463374607431768211455", "340282366920938463463374607431768211456", "01", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)
		if err != nil {
			return
		}
		if k.String() != s {
			t.Fatalf("Parse(%q) renders as %s", s, k)
		}
	})
}
