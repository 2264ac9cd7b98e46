package seqnum

import (
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestRenderIs56DigitsAndRoundTrips(t *testing.T) {
	tests := []struct {
		name string
		s    Seq
	}{
		{"first record of shard 0", Seq{ShardCreateSecs: 1732600000, ShardIndex: 0, Ordinal: 0, ArrivalSecs: 1732600000}},
		{"shard 17, late ordinal", Seq{ShardCreateSecs: 1732600000, ShardIndex: 17, Ordinal: 1 << 40, ArrivalSecs: 1800000000}},
		{"shard end marker", Seq{ShardCreateSecs: 1732600000, ShardIndex: 3, Ordinal: MaxOrdinal, ArrivalSecs: 1732600100}},
		{"max shard index", Seq{ShardCreateSecs: 1, ShardIndex: 2147483647, Ordinal: 5, ArrivalSecs: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			str := tt.s.String()
			if len(str) != 56 {
				t.Fatalf("%s has %d digits", str, len(str))
			}
			got, err := Parse(str)
			if err != nil || got != tt.s {
				t.Fatalf("Parse(%s) = %+v, %v; want %+v", str, got, err, tt.s)
			}
		})
	}
}

func TestParsesRealAWSNumber(t *testing.T) {
	// Seen from real Kinesis (mhart/kinesalite#79).
	s, err := Parse("49589238005775633934916144566022322418012108603250442258")
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "49589238005775633934916144566022322418012108603250442258" {
		t.Fatalf("round trip: %s", s)
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"", "0", "1", "abc", "-4958923800577563393491614456602232241801210860325044225",
		"4958923800577563393491614456602232241801210860325044225x", "99999999999999999999999999999999999999999999999999999999999"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

func TestOrderFollowsOrdinalThenShardCreation(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		a := Seq{ShardCreateSecs: 1700000000, ShardIndex: uint32(rng.IntN(100)), Ordinal: rng.Uint64() & MaxOrdinal, ArrivalSecs: 1700000000 + rng.Int64N(1e6)}
		b := a
		b.Ordinal = a.Ordinal + 1 + uint64(rng.IntN(1000))
		b.ArrivalSecs = a.ArrivalSecs + rng.Int64N(5)
		if b.Ordinal > MaxOrdinal {
			continue
		}
		if Compare(a, b) >= 0 || !lessDecimal(a.String(), b.String()) {
			t.Fatalf("%+v should sort before %+v", a, b)
		}
		child := Seq{ShardCreateSecs: a.ShardCreateSecs + 1, ShardIndex: uint32(rng.IntN(100)), Ordinal: 0}
		if Compare(a, child) >= 0 || !lessDecimal(a.String(), child.String()) {
			t.Fatalf("child %+v should sort after parent record %+v", child, a)
		}
	}
}

func lessDecimal(a, b string) bool { return len(a) < len(b) || (len(a) == len(b) && a < b) }

func FuzzParse(f *testing.F) {
	f.Add("49589238005775633934916144566022322418012108603250442258")
	f.Add(Seq{ShardCreateSecs: 5, ShardIndex: 3, Ordinal: 9}.String())
	f.Add("0")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		if s.String() != in {
			t.Fatalf("Parse(%q) = %+v renders as %s", in, s, s.String())
		}
	})
}

func TestDecimalMatchesBigInt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		v := u192{rng.Uint64() >> rng.UintN(64), rng.Uint64(), rng.Uint64()}
		if rng.IntN(4) == 0 {
			v[0], v[1] = 0, v[1]>>rng.UintN(64)
		}
		want := new(big.Int).SetBits([]big.Word{big.Word(v[2]), big.Word(v[1]), big.Word(v[0])}).String()
		if got := v.decimal(); got != want {
			t.Fatalf("%v: got %s want %s", v, got, want)
		}
	}
	if (u192{}).decimal() != "0" {
		t.Fatal("zero")
	}
}

func BenchmarkString(b *testing.B) {
	s := Seq{ShardCreateSecs: 1732600000, ShardIndex: 3, Ordinal: 123456789, ArrivalSecs: 1732600100}
	for range b.N {
		_ = s.String()
	}
}

func TestParseLegacy(t *testing.T) {
	hex := func(h string) string {
		b, _ := new(big.Int).SetString(h, 16)
		return b.String()
	}
	tests := []struct {
		name string
		in   string
		want Legacy
		ok   bool
	}{
		{"zero is version 0 of shard 0", "0", Legacy{Version: 0, ShardIndex: 0}, true},
		{"5 names shard 5", "5", Legacy{Version: 0, ShardIndex: 5}, true},
		{"only the low 16 bits name the shard", "65541", Legacy{Version: 0, ShardIndex: 5}, true},
		{"just below 2^124", hex("f" + strings.Repeat("f", 30)), Legacy{Version: 0, ShardIndex: 0xffff}, true},
		{"2^124 is not version 0", hex("1" + strings.Repeat("0", 31)), Legacy{}, false},
		{"version 1", "49039857307708443467467104868809893875799651909875269633", Legacy{Version: 1}, true},
		{"version 1 with fields", hex("2" + strings.Repeat("3", 45) + "1"), Legacy{Version: 1}, true},
		{"version 2 is Parse's", Seq{ShardCreateSecs: 5, ShardIndex: 3, Ordinal: 9}.String(), Legacy{}, false},
		{"version 3", hex("2" + strings.Repeat("0", 45) + "3"), Legacy{}, false},
		{"version 4", hex("2" + strings.Repeat("0", 45) + "4"), Legacy{}, false},
		{"47 digits starting 3", hex("3" + strings.Repeat("0", 45) + "1"), Legacy{}, false},
		{"48 digits", hex("2" + strings.Repeat("0", 46) + "1"), Legacy{}, false},
		{"leading zero", "05", Legacy{}, false},
		{"not a number", "x", Legacy{}, false},
		{"empty", "", Legacy{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseLegacy(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseLegacy(%s) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}
