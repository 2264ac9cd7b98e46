package ratelimit

import (
	"testing"
	"time"
)

// TestRefundWrites: a refund gives back what AdmitWrites charged, and never
// more than the bursts hold.
func TestRefundWrites(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name                string
		admit, refund       int     // records of 100 bytes
		wantRecs, wantBytes float64 // bursts: 500 records, 50,000 bytes
	}{
		{"a full burst, refunded", 500, 500, 500, 50_000},
		{"part of one, refunded", 200, 200, 500, 50_000},
		{"more refunded than charged: capped", 100, 300, 500, 50_000},
		{"part of a charge refunded", 400, 100, 200, 20_000},
	} {
		s := NewShard(Limits{WriteRecords: 1000, WriteBytes: 100_000})
		sizes := func(n int) []int {
			out := make([]int, n)
			for i := range out {
				out[i] = 100
			}
			return out
		}
		s.AdmitWrites(now, sizes(tc.admit))
		s.RefundWrites(now, sizes(tc.refund))
		if got := s.records.Balance(now); got != tc.wantRecs {
			t.Errorf("%s: %v records left, want %v", tc.name, got, tc.wantRecs)
		}
		if got := s.bytes.Balance(now); got != tc.wantBytes {
			t.Errorf("%s: %v bytes left, want %v", tc.name, got, tc.wantBytes)
		}
	}
}
