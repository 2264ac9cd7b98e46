package cluster

import "testing"

// TestCampaignsAtCreation: a new group's preferred leader campaigns as it
// creates its replica; a move's target never does, even when the group's
// bootstrap voters name it first (a replica moved away and back, issue 17).
func TestCampaignsAtCreation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		self    uint64
		boot    []uint64
		joining bool
		want    bool
	}{
		{"new group, preferred leader", 1, []uint64{1, 2, 3}, false, true},
		{"new group, other replica", 2, []uint64{1, 2, 3}, false, false},
		{"moved back to the first boot voter", 1, []uint64{1, 2, 3}, true, false},
		{"move target outside boot", 4, []uint64{1, 2, 3}, true, false},
		{"no boot record", 1, nil, false, false},
	} {
		if got := campaignsAtCreation(tc.self, tc.boot, tc.joining); got != tc.want {
			t.Errorf("%s: campaigns %v, want %v", tc.name, got, tc.want)
		}
	}
}
