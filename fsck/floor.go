package fsck

import (
	"fmt"
	"strings"

	"github.com/shardlog/shardlog/segment"
)

// Sequence floor.
//
// A shard never hands out a seq twice: a consumer may hold any seq the
// server ever assigned, and a new record under it would be skipped as
// already read. On open the server starts at its newest segment's nextAfter,
// so a repair that drops the shard's newest frames would make it assign
// their seqs again. The floor cannot be kept in the rewritten files: the
// server's chain check (shard/recover.go checkChain) requires every segment,
// an empty newest one included, to start exactly where the one before it
// ends, and a frame cannot be written without records. So such a shard is
// left as it is (the server keeps it read-only if it sees the damage), and
// the report names its floor for a human to decide.

// lowersFloor says why plans must not be carried out, or "" if the server
// would start the repaired shard at or above its floor.
func lowersFloor(sh *shardCheck, plans []segPlan, lost []LostRange) string {
	floor, next := floorBefore(sh), floorAfter(plans)
	if next >= floor {
		return ""
	}
	var ranges []string
	for _, l := range lost {
		ranges = append(ranges, l.Range())
	}
	return fmt.Sprintf("repairing it would lose seqs %s and make the server assign seqs %d..%d again (sequence floor %d); "+
		"no segment the server accepts can carry a floor above the last kept frame, so the shard is left as it is",
		strings.Join(ranges, ", "), next, floor-1, floor)
}

// floorBefore is one above the highest seq the shard's files show: in a
// segment name (the server names a segment after the next seq it would
// assign), a valid frame, or an intact frame (CRC right) at corrupt damage,
// which the server wrote even if it breaks an invariant. A torn region is
// left out: it holds no intact frame the server acknowledged, and the
// server itself cuts a torn tail of the newest segment and reuses its seqs.
func floorBefore(sh *shardCheck) uint64 {
	var floor uint64
	for _, sc := range sh.segs {
		floor = max(floor, sc.firstSeq)
		for _, reg := range sc.regions {
			if reg.res.Frames > 0 {
				floor = max(floor, reg.res.LastSeq+1)
			}
			if reg.res.Tail == segment.TailCorrupt && reg.badLast > 0 {
				floor = max(floor, reg.badLast+1)
			}
		}
	}
	return floor
}

// floorAfter is the seq the server would start the repaired shard at: the
// nextAfter of the newest segment the plans leave (a torn creation moved
// aside leaves none).
func floorAfter(plans []segPlan) uint64 {
	for i := len(plans) - 1; i >= 0; i-- {
		if !plans[i].aside {
			return plans[i].nextAfter()
		}
	}
	return 0
}
