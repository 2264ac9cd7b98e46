package replica

import (
	"fmt"
	"slices"
	"testing"
)

func ids(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestPlace: the placement's invariants, its stability, and the number of
// moves a node's arrival or departure costs.
func TestPlace(t *testing.T) {
	balanced4x12 := Place(ids(1, 4), ids(1, 12), nil, 3)
	for _, tc := range []struct {
		name          string
		nodes, groups []uint64
		cur           Placement
		wantMoves     int
		movesFrom     uint64 // every move leaves this node (0: any)
		movesTo       uint64 // every move goes to this node (0: any)
	}{
		{"3 nodes, 3 groups, from nothing", ids(1, 3), ids(1, 3), nil, 0, 0, 0},
		{"4 nodes, 8 groups, from nothing", ids(1, 4), ids(1, 8), nil, 0, 0, 0},
		{"5 nodes, 7 groups, from nothing", ids(1, 5), ids(1, 7), nil, 0, 0, 0},
		{"2 nodes: 2 replicas", ids(1, 2), ids(1, 4), nil, 0, 0, 0},
		{"a 4th node joins 12 groups on 3", ids(1, 4), ids(1, 12), Place(ids(1, 3), ids(1, 12), nil, 3), 9, 0, 4},
		{"node 2 leaves 4", []uint64{1, 3, 4}, ids(1, 12), balanced4x12, 9, 2, 0},
		{"node 7 joins 6 (IDs not reused)", []uint64{1, 2, 3, 4, 5, 7}, ids(1, 10), Place(ids(1, 6), ids(1, 10), nil, 3), 5, 0, 7},
		{"nothing changes: no moves", ids(1, 4), ids(1, 12), balanced4x12, 0, 0, 0},
		{"a new group: no moves", ids(1, 4), ids(1, 13), balanced4x12, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Place(tc.nodes, tc.groups, tc.cur, 3)
			if err := checkPlacement(tc.nodes, tc.groups, p, 3); err != nil {
				t.Fatal(err)
			}
			if again := Place(tc.nodes, tc.groups, p, 3); len(Moves(p, again)) != 0 {
				t.Fatalf("placing a placement again moves %v", Moves(p, again))
			}
			moves := Moves(tc.cur, p)
			if len(moves) != tc.wantMoves {
				t.Fatalf("%d moves %v, want %d", len(moves), moves, tc.wantMoves)
			}
			for _, m := range moves {
				if (tc.movesFrom != 0 && m.From != tc.movesFrom) || (tc.movesTo != 0 && m.To != tc.movesTo) {
					t.Fatalf("move %+v: want every move from %d to %d (0: any)", m, tc.movesFrom, tc.movesTo)
				}
			}
		})
	}
}

// checkPlacement: every group has min(r, nodes) replicas on distinct present
// nodes; replica and preferred-leader counts per node differ by at most one.
func checkPlacement(nodes, groups []uint64, p Placement, r int) error {
	load, leads := map[uint64]int{}, map[uint64]int{}
	for _, g := range groups {
		reps := p[g]
		if len(reps) != min(r, len(nodes)) {
			return fmt.Errorf("group %d: replicas %v", g, reps)
		}
		for i, n := range reps {
			if !slices.Contains(nodes, n) || slices.Contains(reps[:i], n) {
				return fmt.Errorf("group %d: replicas %v on nodes %v", g, reps, nodes)
			}
			load[n]++
		}
		leads[reps[0]]++
	}
	spread := func(c map[uint64]int) int {
		lo, hi := c[nodes[0]], c[nodes[0]]
		for _, n := range nodes {
			lo, hi = min(lo, c[n]), max(hi, c[n])
		}
		return hi - lo
	}
	if spread(load) > 1 || spread(leads) > 1 {
		return fmt.Errorf("uneven: replicas per node %v, leaders per node %v", load, leads)
	}
	return nil
}
