package replica

import (
	"maps"
	"slices"
)

// Placement (docs/cluster.md §8): which nodes hold each group's replicas.
// A group's first node is its preferred leader.
type Placement map[uint64][]uint64

// Move is one replica moving between nodes (membership.go carries it out).
type Move struct {
	Group, From, To uint64
}

// Place computes a placement of groups on nodes with replicas replicas each
// (or fewer, if there are fewer nodes), starting from cur, such that:
//   - no node holds two replicas of a group;
//   - replica counts per node differ by at most one;
//   - a replica on a node still present stays where it is unless balance
//     needs it elsewhere, so adding a node moves only the replicas that the
//     new node must take and removing one moves only the replicas it held;
//   - preferred leaders are spread: no group's leader can move to one of its
//     replicas and make the leader counts more even.
//
// It is a pure function: the same input gives the same output (ties go to the
// lower node ID, groups are visited in ID order).
func Place(nodes, groups []uint64, cur Placement, replicas int) Placement {
	nodes = slices.Sorted(slices.Values(nodes))
	groups = slices.Sorted(slices.Values(groups))
	r := min(replicas, len(nodes))
	out := Placement{}
	load := map[uint64]int{}
	for _, g := range groups {
		for _, n := range cur[g] {
			if slices.Contains(nodes, n) && !slices.Contains(out[g], n) && len(out[g]) < r {
				out[g] = append(out[g], n)
				load[n]++
			}
		}
	}
	for _, g := range groups {
		for len(out[g]) < r {
			n := leastLoaded(nodes, load, out[g])
			out[g] = append(out[g], n)
			load[n]++
		}
	}
	rebalance(nodes, groups, out, load)
	spreadLeaders(nodes, groups, out)
	return out
}

// leastLoaded is the node with the fewest replicas among those not in skip.
func leastLoaded(nodes []uint64, load map[uint64]int, skip []uint64) uint64 {
	var best uint64
	for _, n := range nodes {
		if !slices.Contains(skip, n) && (best == 0 || load[n] < load[best]) {
			best = n
		}
	}
	return best
}

// rebalance moves replicas from the most loaded node to the least loaded one
// until their counts differ by at most one. Each pass moves one replica and
// lowers the spread of counts, so it ends; and only as many replicas move as
// the imbalance needs.
func rebalance(nodes, groups []uint64, p Placement, load map[uint64]int) {
	for {
		hi, lo := nodes[0], nodes[0]
		for _, n := range nodes {
			if load[n] > load[hi] {
				hi = n
			}
			if load[n] < load[lo] {
				lo = n
			}
		}
		if load[hi]-load[lo] <= 1 {
			return
		}
		moved := false
		for _, g := range groups {
			i := slices.Index(p[g], hi)
			if i >= 0 && !slices.Contains(p[g], lo) {
				p[g][i] = lo
				load[hi]--
				load[lo]++
				moved = true
				break
			}
		}
		if !moved {
			// Every group on hi is already on lo: then lo holds at least
			// as many replicas as hi, a contradiction; kept as a guard.
			return
		}
	}
}

// spreadLeaders puts each group's preferred leader first: the current first
// replica unless another of its replicas leads fewer groups by two or more,
// repeated until no such switch is left (each switch lowers the sum of
// squared leader counts, so it ends).
func spreadLeaders(nodes, groups []uint64, p Placement) {
	leads := map[uint64]int{}
	for _, g := range groups {
		leads[p[g][0]]++
	}
	for changed := true; changed; {
		changed = false
		for _, g := range groups {
			best := 0
			for i, n := range p[g] {
				if leads[n] < leads[p[g][best]] {
					best = i
				}
			}
			if leads[p[g][0]]-leads[p[g][best]] >= 2 {
				leads[p[g][0]]--
				leads[p[g][best]]++
				p[g][0], p[g][best] = p[g][best], p[g][0]
				changed = true
			}
		}
	}
}

// Moves are the replica moves that turn from into to, per group in ID
// order: each replica of from not in to moves to a node of to not in from.
// A group new in to needs no moves (its replicas are created with it).
func Moves(from, to Placement) []Move {
	var out []Move
	for _, g := range slices.Sorted(maps.Keys(to)) {
		if len(from[g]) == 0 {
			continue
		}
		var gone, added []uint64
		for _, n := range from[g] {
			if !slices.Contains(to[g], n) {
				gone = append(gone, n)
			}
		}
		for _, n := range to[g] {
			if !slices.Contains(from[g], n) {
				added = append(added, n)
			}
		}
		for i := range min(len(gone), len(added)) {
			out = append(out, Move{Group: g, From: gone[i], To: added[i]})
		}
	}
	return out
}
