package ratelimit

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func count(ok []bool) int {
	n := 0
	for _, b := range ok {
		if b {
			n++
		}
	}
	return n
}

func TestWriteRecordLimit(t *testing.T) {
	tests := []struct {
		name  string
		steps []struct {
			at    time.Duration
			n     int
			admit int
		}
	}{
		{"an idle shard takes half a second's records at once", []struct {
			at    time.Duration
			n     int
			admit int
		}{{0, 500, 500}, {0, 1, 0}}},
		{"then 1,000 records/s", []struct {
			at    time.Duration
			n     int
			admit int
		}{{0, 500, 500}, {100 * time.Millisecond, 200, 100}, {time.Second, 1000, 500}}},
		{"only the records over the limit fail", []struct {
			at    time.Duration
			n     int
			admit int
		}{{0, 499, 499}, {0, 3, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewShard(Kinesis)
			for i, st := range tt.steps {
				sizes := make([]int, st.n)
				for j := range sizes {
					sizes[j] = 100
				}
				ok := s.AdmitWrites(at(st.at), sizes)
				if got := count(ok); got != st.admit {
					t.Fatalf("step %d: admitted %d of %d, want %d", i, got, st.n, st.admit)
				}
				for j := 1; j < len(ok); j++ {
					if ok[j] && !ok[j-1] {
						t.Fatalf("step %d: record %d admitted after record %d was refused", i, j, j-1)
					}
				}
			}
		})
	}
}

func TestWriteByteLimit(t *testing.T) {
	s := NewShard(Kinesis)
	// Half a second of bytes (512 KiB) is the burst. Spending it exactly
	// leaves a zero balance, which is not overdrawn, so one more record goes
	// in and overdraws it; the next is refused.
	ok := s.AdmitWrites(t0, []int{256 << 10, 256 << 10, 1, 1})
	if count(ok) != 3 {
		t.Fatalf("admitted %v", ok)
	}
	if s.AdmitWrites(t0, []int{1})[0] {
		t.Fatal("admitted with the byte budget spent")
	}
	// A whole 1 MiB record is admitted once the balance is not negative, and
	// then closes the shard for a second.
	if !s.AdmitWrites(at(time.Millisecond), []int{1 << 20})[0] {
		t.Fatal("1 MiB record refused with a non-negative balance")
	}
	if s.AdmitWrites(at(999*time.Millisecond), []int{1})[0] {
		t.Fatal("admitted during the overdraft")
	}
	if !s.AdmitWrites(at(1002*time.Millisecond), []int{1})[0] {
		t.Fatal("refused after the overdraft was paid back")
	}
}

func TestReadLimits(t *testing.T) {
	t.Run("5 calls a second", func(t *testing.T) {
		s := NewShard(Kinesis)
		admitted := 0
		for i := range 100 { // 20 calls/s for 5 s
			if s.AdmitRead(at(time.Duration(i) * 50 * time.Millisecond)) {
				admitted++
			}
		}
		if admitted != 5+5*5-1 && admitted != 5+5*5 { // burst plus 5/s over 4.95 s
			t.Fatalf("admitted %d of 100 calls at 20/s over 5 s", admitted)
		}
	})
	t.Run("10 MiB response throttles the next 5 s", func(t *testing.T) {
		s := NewShard(Kinesis)
		if !s.AdmitRead(t0) {
			t.Fatal("first read refused")
		}
		s.ChargeRead(t0, 10<<20)
		for _, d := range []time.Duration{time.Second, 3 * time.Second, 4999 * time.Millisecond} {
			if s.AdmitRead(at(d)) {
				t.Fatalf("read admitted %v after a 10 MiB response", d)
			}
		}
		if !s.AdmitRead(at(5 * time.Second)) {
			t.Fatal("read refused 5 s after a 10 MiB response")
		}
	})
	t.Run("GetShardIterator 5 a second", func(t *testing.T) {
		s := NewShard(Kinesis)
		n := 0
		for range 10 {
			if s.AdmitIterator(t0) {
				n++
			}
		}
		if n != 5 || !s.AdmitIterator(at(200*time.Millisecond)) {
			t.Fatalf("admitted %d at once", n)
		}
	})
}

func TestScaleAndUnlimited(t *testing.T) {
	s := NewShard(Kinesis.Scale(2))
	if got := count(s.AdmitWrites(t0, make([]int, 1500))); got != 1000 {
		t.Fatalf("2x shard admitted %d of 1500 at once, want 1000", got)
	}
	u := NewShard(Limits{})
	if got := count(u.AdmitWrites(t0, make([]int, 100000))); got != 100000 {
		t.Fatalf("unlimited shard refused records: %d", got)
	}
}

func TestControlPlane(t *testing.T) {
	c := NewControl(KinesisControl)
	n := 0
	for range 20 {
		if c.Admit(t0, "DescribeStream", "a") {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("DescribeStream admitted %d at once, want 10", n)
	}
	if !c.Admit(t0, "ListShards", "a") || !c.Admit(t0, "PutRecord", "a") {
		t.Fatal("unrelated operations refused")
	}
	var none *Control
	if !none.Admit(t0, "DescribeStream", "a") {
		t.Fatal("nil controller refused")
	}
}

// BenchmarkAdmitWrites is the per-request cost of admitting a 500-record
// PutRecords group on one shard.
func BenchmarkAdmitWrites(b *testing.B) {
	s := NewShard(Kinesis.Scale(1e9))
	sizes := make([]int, 500)
	for i := range sizes {
		sizes[i] = 1024
	}
	now := t0
	for range b.N {
		now = now.Add(time.Microsecond)
		s.AdmitWrites(now, sizes)
	}
}

// TestLargeRecordBurst: on a shard of a 10 MiB stream (LargeRecordBurst
// 9 MiB) an idle bucket takes one 10 MiB record, smaller records follow as
// it refills, and the next 10 MiB record waits until the bucket holds 9 MiB.
func TestLargeRecordBurst(t *testing.T) {
	const mib = 1 << 20
	big := Kinesis
	big.LargeRecordBurst = 9 * mib
	type step struct {
		at    time.Duration
		size  int
		admit bool
	}
	tests := []struct {
		name   string
		limits Limits
		steps  []step
	}{
		{"an idle shard takes one 10 MiB record, then 0.5 s of nothing", big, []step{
			{0, 10 * mib, true}, {0, 1, false}, {499 * time.Millisecond, 1, false}, {501 * time.Millisecond, 100 << 10, true}}},
		{"small records go on as the bucket refills", big, []step{
			{0, 10 * mib, true}, {time.Second, 768 << 10, true}, {1100 * time.Millisecond, 1, false}, {1251 * time.Millisecond, 256 << 10, true}}},
		{"the next 10 MiB record waits for 9 MiB of credit", big, []step{
			{0, 10 * mib, true}, {5 * time.Second, 10 * mib, false}, {9499 * time.Millisecond, 10 * mib, false}, {9501 * time.Millisecond, 10 * mib, true}}},
		{"two idle seconds are not enough for a 10 MiB record after one", big, []step{
			{0, 10 * mib, true}, {2 * time.Second, 10 * mib, false}, {2 * time.Second, mib, true}}},
		{"a 1 MiB record needs only a non-negative balance", big, []step{
			{0, 10 * mib, true}, {501 * time.Millisecond, mib, true}, {1400 * time.Millisecond, 1, false}, {1502 * time.Millisecond, 1, true}}},
		{"a default shard is unchanged: 0.5 MiB of credit, overdrawn by a 1 MiB record", Kinesis, []step{
			{0, mib, true}, {499 * time.Millisecond, 1, false}, {501 * time.Millisecond, 1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewShard(tt.limits)
			for i, st := range tt.steps {
				if got := s.AdmitWrites(at(st.at), []int{st.size})[0]; got != st.admit {
					t.Fatalf("step %d (%v, %d bytes): admitted %v, want %v", i, st.at, st.size, got, st.admit)
				}
			}
		})
	}
}

// TestLargeRecordRate: offered 10 MiB records back to back for a minute, a
// 10 MiB stream's shard takes its bucket plus 1 MiB/s, never more.
func TestLargeRecordRate(t *testing.T) {
	const mib = 1 << 20
	l := Kinesis
	l.LargeRecordBurst = 9 * mib
	s := NewShard(l)
	taken := 0
	for ms := 0; ms <= 60_000; ms += 10 {
		if s.AdmitWrites(at(time.Duration(ms)*time.Millisecond), []int{10 * mib})[0] {
			taken++
		}
	}
	// 9.5 MiB of credit plus 60 MiB of refill is 6.95 records' worth: one
	// at 0 s, then one every 9.5 s (when 9 MiB of credit is back).
	if taken != 7 {
		t.Fatalf("took %d 10 MiB records in 60 s, want 7", taken)
	}
}
