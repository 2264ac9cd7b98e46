package storage

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/hashkey"
)

// The reshard planners are pure: these tests give them metadata, a clock and
// limits, and pin the plans (every shard of the new metadata, the shards
// sealed and added) and the refusals, messages included.

const (
	planAcct  = "000000000000"
	planEpoch = int64(1_700_000_000) // the stream's shards' epoch
)

var planNow = time.Unix(planEpoch+100, 5e8)

// planStream is a stream of n uniform open shards, as CreateStream lays
// them out, with shard epoch planEpoch.
func planStream(n int) *streamMeta {
	m := &streamMeta{Name: "s", Status: StatusActive, Mode: ModeProvisioned, NextShardIndex: uint32(n)}
	for i, r := range hashkey.Split(n) {
		m.Shards = append(m.Shards, shardMeta{Index: uint32(i), HashStart: r.Start.String(), HashEnd: r.End.String(), CreateSecs: planEpoch})
	}
	return m
}

func planIn(m *streamMeta) planInput {
	return planInput{meta: m, now: planNow, account: planAcct, minEpoch: planEpoch + 1,
		limits: planLimits{shardLimit: 500, openShards: openCount(m), scalingCallsPerDay: DefaultScalingCallsPerDay}}
}

// keyLabel names k by the uniform layouts the tests use: "i/n" is the start
// of range i of hashkey.Split(n), "i/n-1" the key before it; other keys are
// printed in decimal.
func keyLabel(k hashkey.Key) string {
	if k == hashkey.Max {
		return "max"
	}
	for _, n := range []int{1, 2, 3, 4, 5, 8} {
		for i, r := range hashkey.Split(n) {
			switch {
			case k == r.Start && i == 0:
				return "0"
			case k == r.Start:
				return fmt.Sprintf("%d/%d", i, n)
			case i > 0 && k.Add(1) == r.Start:
				return fmt.Sprintf("%d/%d-1", i, n)
			}
		}
	}
	return k.String()
}

// describe renders a shard as "index [start,end] <parent+adjacent e+epoch
// closed": epochs relative to planEpoch, and ClosedMs shown only when it is
// not planNow.
func describe(sm shardMeta) string {
	r := hashRangeOf(sm)
	s := fmt.Sprintf("%d [%s,%s]", sm.Index, keyLabel(r.Start), keyLabel(r.End))
	if sm.Parent != "" {
		p, _ := datadir.ParseShardID(sm.Parent)
		s += fmt.Sprintf(" <%d", p)
		if sm.AdjParent != "" {
			a, _ := datadir.ParseShardID(sm.AdjParent)
			s += fmt.Sprintf("+%d", a)
		}
	}
	s += fmt.Sprintf(" e+%d", sm.CreateSecs-planEpoch)
	if sm.Closed {
		s += " closed"
		if sm.ClosedMs != planNow.UnixMilli() {
			s += fmt.Sprintf("@%d", sm.ClosedMs)
		}
	}
	return s
}

func indexes(sms []shardMeta) []uint32 {
	out := []uint32{}
	for _, sm := range sms {
		out = append(out, sm.Index)
	}
	return out
}

// planWant is a pinned plan.
type planWant struct {
	shards []string // describe of every shard of the new metadata
	sealed []uint32
	added  []uint32
}

func checkPlan(t *testing.T, in planInput, p *reshardPlan, want planWant) {
	t.Helper()
	var got []string
	for _, sm := range p.meta.Shards {
		got = append(got, describe(sm))
	}
	if !slices.Equal(got, want.shards) {
		t.Errorf("shards:\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want.shards, "\n\t"))
	}
	if s, a := indexes(p.sealed), indexes(p.added); !slices.Equal(s, want.sealed) || !slices.Equal(a, want.added) {
		t.Errorf("sealed %v added %v, want %v and %v", s, a, want.sealed, want.added)
	}
	if n := uint32(len(in.meta.Shards) + len(want.added)); p.meta.NextShardIndex != in.meta.NextShardIndex+uint32(len(want.added)) || uint32(len(p.meta.Shards)) != n {
		t.Errorf("NextShardIndex %d, %d shards", p.meta.NextShardIndex, len(p.meta.Shards))
	}
	checkAddedMatch(t, p)
}

// checkAddedMatch checks that added holds the new shards as the metadata
// has them (closed again if the plan closed them), and sealed the closed
// parents as they were before the plan.
func checkAddedMatch(t *testing.T, p *reshardPlan) {
	t.Helper()
	byIndex := map[uint32]shardMeta{}
	for _, sm := range p.meta.Shards {
		byIndex[sm.Index] = sm
	}
	for _, sm := range p.added {
		if byIndex[sm.Index] != sm {
			t.Errorf("added %+v, metadata has %+v", sm, byIndex[sm.Index])
		}
	}
	for _, sm := range p.sealed {
		if sm.Closed || !byIndex[sm.Index].Closed {
			t.Errorf("sealed %+v: closed before the plan, or open after it", sm)
		}
	}
}

// checkRefusal checks err's kind, reason and facts.
func checkRefusal(t *testing.T, err, kind error, want *Error) {
	t.Helper()
	var e *Error
	if !errors.Is(err, kind) || !errors.As(err, &e) || e.Reason != want.Reason || e.Facts != want.Facts {
		t.Errorf("error %#v, want %v: %#v", err, kind, want)
	}
}

// splitStream is planStream(1) after a split at 1/2: shard 0 closed, its
// children 1 and 2 open, with epoch planEpoch+1.
func splitStream() *streamMeta {
	m := planStream(1)
	m.Shards[0].Closed, m.Shards[0].ClosedMs = true, planNow.UnixMilli()
	for i, r := range hashkey.Split(2) {
		m.Shards = append(m.Shards, shardMeta{Index: uint32(i + 1), Parent: shardID(0), HashStart: r.Start.String(), HashEnd: r.End.String(), CreateSecs: planEpoch + 1})
	}
	m.NextShardIndex = 3
	return m
}

// planCase is one planner call: on meta (with tweak applied to the input),
// either the plan want or the refusal kind with message msg.
type planCase struct {
	name  string
	meta  *streamMeta
	tweak func(in *planInput)
	plan  func(in planInput) (*reshardPlan, error)
	want  planWant
	kind  error
	msg   *Error // the refusal's reason and facts
}

func runPlanCases(t *testing.T, cases []planCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := planIn(c.meta)
			if c.tweak != nil {
				c.tweak(&in)
			}
			before := in.meta.Clone()
			p, err := c.plan(in)
			if !reflect.DeepEqual(in.meta.Clone(), before) {
				t.Errorf("the planner changed its input:\n%+v\nwas\n%+v", in.meta, before)
			}
			if c.kind != nil {
				if p != nil {
					t.Errorf("plan %+v with a refusal", p)
				}
				checkRefusal(t, err, c.kind, c.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkPlan(t, in, p, c.want)
		})
	}
}

func split(shard, key string) func(planInput) (*reshardPlan, error) {
	return func(in planInput) (*reshardPlan, error) { return planSplit(in, shard, key) }
}

func merge(a, b string) func(planInput) (*reshardPlan, error) {
	return func(in planInput) (*reshardPlan, error) { return planMerge(in, a, b) }
}

const (
	half      = "170141183460469231731687303715884105728" // 2^127, the start of range 1/2
	halfLess1 = "170141183460469231731687303715884105727" // the end of range 0/2
	halfLess2 = "170141183460469231731687303715884105726"
	halfLess3 = "170141183460469231731687303715884105725"
	maxKey    = "340282366920938463463374607431768211455" // 2^128-1
	maxLess1  = "340282366920938463463374607431768211454"
	maxLess2  = "340282366920938463463374607431768211453"
	overMax   = "340282366920938463463374607431768211456" // 2^128
)

var (
	msgLimit1   = &Error{Reason: ReasonShardLimit, Facts: Facts{Account: planAcct, Current: 500, Limit: 500, N: 1}}
	msgOnDemand = &Error{Reason: ReasonOnDemand, Facts: Facts{Account: planAcct, Stream: "s"}}
	msgUpdating = &Error{Reason: ReasonNotActive, Facts: Facts{Account: planAcct, Stream: "s", State: StatusUpdating}}
	msgClosed0  = &Error{Reason: ReasonMerged, Facts: Facts{Account: planAcct, Stream: "s", Shard: "shardId-000000000000"}}
)

// The refusals carry facts, not texts (api/messages.go words them; its tests
// pin the texts).

func badSplitKey(key, start, end string) *Error {
	return &Error{Reason: ReasonBadSplitKey, Facts: Facts{Account: planAcct, Stream: "s", Shard: "shardId-000000000000", Given: key, Start: start, End: end}}
}

func noSuchShard(id string) *Error {
	return &Error{Reason: ReasonNoSuchShard, Facts: Facts{Account: planAcct, Stream: "s", Shard: id}}
}

func badShardID(given string) *Error {
	return &Error{Reason: ReasonBadShardID, Facts: Facts{Account: planAcct, Stream: "s", Given: given}}
}

func scalingRefusal(r Reason, limit, cur, target int64) *Error {
	return &Error{Reason: r, Facts: Facts{Account: planAcct, Stream: "s", Limit: limit, Current: cur, Target: target}}
}

func TestPlanSplit(t *testing.T) {
	parentsOfOne := []string{"0 [0,max] e+0 closed"}
	runPlanCases(t, []planCase{
		{name: "middle", meta: planStream(1), plan: split("shardId-000000000000", half),
			want: planWant{shards: append(parentsOfOne, "1 [0,1/2-1] <0 e+100", "2 [1/2,max] <0 e+100"), sealed: []uint32{0}, added: []uint32{1, 2}}},
		{name: "StartingHashKey+2", meta: planStream(1), plan: split("shardId-000000000000", "2"),
			want: planWant{shards: append(parentsOfOne, "1 [0,1] <0 e+100", "2 [2,max] <0 e+100"), sealed: []uint32{0}, added: []uint32{1, 2}}},
		{name: "EndingHashKey-1", meta: planStream(1), plan: split("shardId-000000000000", maxLess1),
			want: planWant{shards: append(parentsOfOne, "1 [0,"+maxLess2+"] <0 e+100", "2 ["+maxLess1+",max] <0 e+100"), sealed: []uint32{0}, added: []uint32{1, 2}}},
		{name: "EndingHashKey-1 below max", meta: planStream(2), plan: split("0", halfLess2),
			want: planWant{shards: []string{"0 [0,1/2-1] e+0 closed", "1 [1/2,max] e+0", "2 [0," + halfLess3 + "] <0 e+100", "3 [" + halfLess2 + ",1/2-1] <0 e+100"},
				sealed: []uint32{0}, added: []uint32{2, 3}}},
		{name: "a child of a split", meta: splitStream(), plan: split("shardId-000000000002", "255211775190703847597530955573826158592" /* 3/4 */),
			want: planWant{shards: []string{"0 [0,max] e+0 closed", "1 [0,1/2-1] <0 e+1", "2 [1/2,max] <0 e+1 closed", "3 [1/2,3/4-1] <2 e+100", "4 [3/4,max] <2 e+100"},
				sealed: []uint32{2}, added: []uint32{3, 4}}},
		{name: "epoch above now", meta: planStream(1), plan: split("0", half), tweak: func(in *planInput) { in.minEpoch = planEpoch + 200 },
			want: planWant{shards: append(parentsOfOne, "1 [0,1/2-1] <0 e+200", "2 [1/2,max] <0 e+200"), sealed: []uint32{0}, added: []uint32{1, 2}}},
		{name: "parent newer than now", meta: planStream(1), plan: split("0", half), tweak: func(in *planInput) { in.meta.Shards[0].CreateSecs = planEpoch + 150 },
			want: planWant{shards: []string{"0 [0,max] e+150 closed", "1 [0,1/2-1] <0 e+151", "2 [1/2,max] <0 e+151"}, sealed: []uint32{0}, added: []uint32{1, 2}}},
		{name: "at the account limit", meta: planStream(1), plan: split("0", half), tweak: func(in *planInput) { in.limits.openShards = 499 },
			want: planWant{shards: append(parentsOfOne, "1 [0,1/2-1] <0 e+100", "2 [1/2,max] <0 e+100"), sealed: []uint32{0}, added: []uint32{1, 2}}},

		{name: "StartingHashKey", meta: planStream(1), plan: split("0", "0"), kind: ErrInvalidArgument, msg: badSplitKey("0", "0", maxKey)},
		{name: "StartingHashKey+1", meta: planStream(1), plan: split("0", "1"), kind: ErrInvalidArgument, msg: badSplitKey("1", "0", maxKey)},
		{name: "EndingHashKey", meta: planStream(1), plan: split("0", maxKey), kind: ErrInvalidArgument, msg: badSplitKey(maxKey, "0", maxKey)},
		{name: "EndingHashKey below max", meta: planStream(2), plan: split("0", halfLess1), kind: ErrInvalidArgument, msg: badSplitKey(halfLess1, "0", halfLess1)},
		{name: "one-key shard", meta: planStream(1), plan: split("0", maxKey), tweak: func(in *planInput) { in.meta.Shards[0].HashStart = maxKey },
			kind: ErrInvalidArgument, msg: badSplitKey(maxKey, maxKey, maxKey)},
		{name: "two-key shard", meta: planStream(1), plan: split("0", maxKey), tweak: func(in *planInput) { in.meta.Shards[0].HashStart = maxLess1 },
			kind: ErrInvalidArgument, msg: badSplitKey(maxKey, maxLess1, maxKey)},
		{name: "EndingHashKey+1", meta: planStream(2), plan: split("0", half), kind: ErrInvalidArgument, msg: badSplitKey(half, "0", halfLess1)},
		{name: "above the key space", meta: planStream(1), plan: split("0", overMax), kind: ErrInvalidArgument, msg: badSplitKey(overMax, "0", maxKey)},
		{name: "not a number", meta: planStream(1), plan: split("0", "x1"), kind: ErrInvalidArgument, msg: badSplitKey("x1", "0", maxKey)},
		{name: "closed", meta: splitStream(), plan: split("shardId-000000000000", half), kind: ErrInvalidArgument, msg: msgClosed0},
		{name: "missing", meta: planStream(1), plan: split("shardId-000000000007", half), kind: ErrShardNotFound,
			msg: noSuchShard("shardId-000000000007")},
		{name: "missing before the key", meta: planStream(1), plan: split("shardId-7", "1"), kind: ErrShardNotFound,
			msg: noSuchShard("shardId-000000000007")},
		{name: "malformed id", meta: planStream(1), plan: split("shardId-x", half), kind: ErrShardNotFound, msg: badShardID("shardId-x")},
		{name: "malformed id before status", meta: planStream(1), plan: split("2147483648", half), tweak: func(in *planInput) { in.meta.Status = StatusCreating },
			kind: ErrShardNotFound, msg: badShardID("2147483648")},
		{name: "over the account limit", meta: planStream(1), plan: split("0", half), tweak: func(in *planInput) { in.limits.openShards = 500 },
			kind: ErrLimitExceeded, msg: msgLimit1},
		{name: "bad key before the limit", meta: planStream(1), plan: split("0", "0"), tweak: func(in *planInput) { in.limits.openShards = 500 },
			kind: ErrInvalidArgument, msg: badSplitKey("0", "0", maxKey)},
		{name: "ON_DEMAND", meta: planStream(1), plan: split("0", half), tweak: func(in *planInput) { in.meta.Mode = ModeOnDemand },
			kind: ErrValidation, msg: msgOnDemand},
		{name: "ON_DEMAND before status", meta: planStream(1), plan: split("0", half),
			tweak: func(in *planInput) { in.meta.Mode, in.meta.Status = ModeOnDemand, StatusUpdating }, kind: ErrValidation, msg: msgOnDemand},
		{name: "UPDATING", meta: planStream(1), plan: split("0", half), tweak: func(in *planInput) { in.meta.Status = StatusUpdating },
			kind: ErrResourceInUse, msg: msgUpdating},
	})
}

func notAdjacent(a, b string) *Error {
	return &Error{Reason: ReasonNotAdjacent, Facts: Facts{Account: planAcct, Stream: "s", Shard: "shardId-00000000000" + a, Shard2: "shardId-00000000000" + b}}
}

func TestPlanMerge(t *testing.T) {
	three := []string{"0 [0,1/3-1] e+0 closed", "1 [1/3,2/3-1] e+0 closed", "2 [2/3,max] e+0"}
	runPlanCases(t, []planCase{
		{name: "adjacent", meta: planStream(3), plan: merge("shardId-000000000000", "shardId-000000000001"),
			want: planWant{shards: append(three, "3 [0,2/3-1] <0+1 e+100"), sealed: []uint32{0, 1}, added: []uint32{3}}},
		{name: "children of a split", meta: splitStream(), plan: merge("1", "2"),
			want: planWant{shards: []string{"0 [0,max] e+0 closed", "1 [0,1/2-1] <0 e+1 closed", "2 [1/2,max] <0 e+1 closed", "3 [0,max] <1+2 e+100"},
				sealed: []uint32{1, 2}, added: []uint32{3}}},
		{name: "newest parent's epoch", meta: planStream(2), plan: merge("0", "1"), tweak: func(in *planInput) { in.meta.Shards[1].CreateSecs = planEpoch + 300 },
			want: planWant{shards: []string{"0 [0,1/2-1] e+0 closed", "1 [1/2,max] e+300 closed", "2 [0,max] <0+1 e+301"}, sealed: []uint32{0, 1}, added: []uint32{2}}},
		{name: "over the account limit", meta: planStream(2), plan: merge("0", "1"), tweak: func(in *planInput) { in.limits.openShards = 600 },
			want: planWant{shards: []string{"0 [0,1/2-1] e+0 closed", "1 [1/2,max] e+0 closed", "2 [0,max] <0+1 e+100"}, sealed: []uint32{0, 1}, added: []uint32{2}}},

		{name: "adjacent, upper first", meta: planStream(3), plan: merge("x-1", "x-0"), kind: ErrInvalidArgument, msg: notAdjacent("1", "0")},
		{name: "children of a split, upper first", meta: splitStream(), plan: merge("2", "1"), kind: ErrInvalidArgument, msg: notAdjacent("2", "1")},
		{name: "not adjacent", meta: planStream(3), plan: merge("0", "2"), kind: ErrInvalidArgument, msg: notAdjacent("0", "2")},
		{name: "last and first", meta: planStream(3), plan: merge("2", "0"), kind: ErrInvalidArgument, msg: notAdjacent("2", "0")},
		{name: "itself", meta: planStream(3), plan: merge("1", "1"), kind: ErrInvalidArgument, msg: notAdjacent("1", "1")},
		{name: "closed first", meta: splitStream(), plan: merge("0", "1"), kind: ErrInvalidArgument, msg: msgClosed0},
		{name: "closed second", meta: splitStream(), plan: merge("1", "0"), kind: ErrInvalidArgument, msg: msgClosed0},
		{name: "missing second", meta: planStream(2), plan: merge("0", "9"), kind: ErrShardNotFound,
			msg: noSuchShard("shardId-000000000009")},
		{name: "missing first", meta: planStream(2), plan: merge("shardId-5", "0"), kind: ErrShardNotFound,
			msg: noSuchShard("shardId-000000000005")},
		{name: "malformed second before missing first", meta: planStream(2), plan: merge("9", "a-b"), kind: ErrShardNotFound, msg: badShardID("a-b")},
		{name: "malformed first before malformed second", meta: planStream(2), plan: merge("2.14E4", "x"), kind: ErrShardNotFound, msg: badShardID("2.14E4")},
		{name: "malformed before status", meta: planStream(2), plan: merge("0", "x"), tweak: func(in *planInput) { in.meta.Status = StatusCreating },
			kind: ErrShardNotFound, msg: badShardID("x")},
		{name: "ON_DEMAND", meta: planStream(2), plan: merge("0", "1"), tweak: func(in *planInput) { in.meta.Mode = ModeOnDemand },
			kind: ErrValidation, msg: msgOnDemand},
		{name: "UPDATING", meta: planStream(2), plan: merge("0", "1"), tweak: func(in *planInput) { in.meta.Status = StatusUpdating },
			kind: ErrResourceInUse, msg: msgUpdating},
	})
}

func scale(target int) func(planInput) (*reshardPlan, error) {
	return func(in planInput) (*reshardPlan, error) {
		p, _, err := planUpdateShardCount(in, target)
		return p, err
	}
}

// TestPlanUpdateShardCount pins the uniform scaling: every open shard is
// split at each new boundary inside it, then the pieces of each new range
// are merged left to right, so short-lived shards appear (created and closed
// by the same plan, as on AWS), and each new shard has at most two parents.
func TestPlanUpdateShardCount(t *testing.T) {
	runPlanCases(t, []planCase{
		{name: "1 to 2", meta: planStream(1), plan: scale(2), want: planWant{shards: []string{
			"0 [0,max] e+0 closed",
			"1 [0,1/2-1] <0 e+100",
			"2 [1/2,max] <0 e+100",
		}, sealed: []uint32{0}, added: []uint32{1, 2}}},
		{name: "2 to 1", meta: planStream(2), plan: scale(1), want: planWant{shards: []string{
			"0 [0,1/2-1] e+0 closed",
			"1 [1/2,max] e+0 closed",
			"2 [0,max] <0+1 e+100",
		}, sealed: []uint32{0, 1}, added: []uint32{2}}},
		{name: "2 to 4, double", meta: planStream(2), plan: scale(4), want: planWant{shards: []string{
			"0 [0,1/2-1] e+0 closed",
			"1 [1/2,max] e+0 closed",
			"2 [0,1/4-1] <0 e+100",
			"3 [1/4,1/2-1] <0 e+100",
			"4 [1/2,3/4-1] <1 e+100",
			"5 [3/4,max] <1 e+100",
		}, sealed: []uint32{0, 1}, added: []uint32{2, 3, 4, 5}}},
		{name: "4 to 2, half", meta: planStream(4), plan: scale(2), want: planWant{shards: []string{
			"0 [0,1/4-1] e+0 closed",
			"1 [1/4,1/2-1] e+0 closed",
			"2 [1/2,3/4-1] e+0 closed",
			"3 [3/4,max] e+0 closed",
			"4 [0,1/2-1] <0+1 e+100",
			"5 [1/2,max] <2+3 e+100",
		}, sealed: []uint32{0, 1, 2, 3}, added: []uint32{4, 5}}},
		{name: "2 to 3", meta: planStream(2), plan: scale(3), want: planWant{shards: []string{
			"0 [0,1/2-1] e+0 closed",
			"1 [1/2,max] e+0 closed",
			"2 [0,1/3-1] <0 e+100",
			"3 [1/3,1/2-1] <0 e+100 closed",
			"4 [1/2,2/3-1] <1 e+100 closed",
			"5 [2/3,max] <1 e+100",
			"6 [1/3,2/3-1] <3+4 e+101",
		}, sealed: []uint32{0, 1}, added: []uint32{2, 3, 4, 5, 6}}},
		{name: "3 to 2", meta: planStream(3), plan: scale(2), want: planWant{shards: []string{
			"0 [0,1/3-1] e+0 closed",
			"1 [1/3,2/3-1] e+0 closed",
			"2 [2/3,max] e+0 closed",
			"3 [1/3,1/2-1] <1 e+100 closed",
			"4 [1/2,2/3-1] <1 e+100 closed",
			"5 [0,1/2-1] <0+3 e+101",
			"6 [1/2,max] <4+2 e+101",
		}, sealed: []uint32{1, 0, 2}, added: []uint32{3, 4, 5, 6}}},
		{name: "4 to 3", meta: planStream(4), plan: scale(3), want: planWant{shards: []string{
			"0 [0,1/4-1] e+0 closed",
			"1 [1/4,1/2-1] e+0 closed",
			"2 [1/2,3/4-1] e+0 closed",
			"3 [3/4,max] e+0 closed",
			"4 [1/4,1/3-1] <1 e+100 closed",
			"5 [1/3,1/2-1] <1 e+100 closed",
			"6 [1/2,2/3-1] <2 e+100 closed",
			"7 [2/3,3/4-1] <2 e+100 closed",
			"8 [0,1/3-1] <0+4 e+101",
			"9 [1/3,2/3-1] <5+6 e+101",
			"10 [2/3,max] <7+3 e+101",
		}, sealed: []uint32{1, 2, 0, 3}, added: []uint32{4, 5, 6, 7, 8, 9, 10}}},
		// A piece split off a new shard, and a merge of a merged shard: the
		// epochs climb one second per generation within the plan.
		{name: "3 to 5", meta: planStream(3), plan: scale(5), want: planWant{shards: []string{
			"0 [0,1/3-1] e+0 closed",
			"1 [1/3,2/3-1] e+0 closed",
			"2 [2/3,max] e+0 closed",
			"3 [0,1/5-1] <0 e+100",
			"4 [1/5,1/3-1] <0 e+100 closed",
			"5 [1/3,2/5-1] <1 e+100 closed",
			"6 [2/5,2/3-1] <1 e+100 closed",
			"7 [2/5,3/5-1] <6 e+101",
			"8 [3/5,2/3-1] <6 e+101 closed",
			"9 [2/3,4/5-1] <2 e+100 closed",
			"10 [4/5,max] <2 e+100",
			"11 [1/5,2/5-1] <4+5 e+101",
			"12 [3/5,4/5-1] <8+9 e+102",
		}, sealed: []uint32{0, 1, 2}, added: []uint32{3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}},
		{name: "5 to 3", meta: planStream(5), plan: scale(3), want: planWant{shards: []string{
			"0 [0,1/5-1] e+0 closed",
			"1 [1/5,2/5-1] e+0 closed",
			"2 [2/5,3/5-1] e+0 closed",
			"3 [3/5,4/5-1] e+0 closed",
			"4 [4/5,max] e+0 closed",
			"5 [1/5,1/3-1] <1 e+100 closed",
			"6 [1/3,2/5-1] <1 e+100 closed",
			"7 [3/5,2/3-1] <3 e+100 closed",
			"8 [2/3,4/5-1] <3 e+100 closed",
			"9 [0,1/3-1] <0+5 e+101",
			"10 [1/3,3/5-1] <6+2 e+101 closed",
			"11 [1/3,2/3-1] <10+7 e+102",
			"12 [2/3,max] <8+4 e+101",
		}, sealed: []uint32{1, 3, 0, 2, 4}, added: []uint32{5, 6, 7, 8, 9, 10, 11, 12}}},
		{name: "open shards only", meta: splitStream(), plan: scale(1), want: planWant{shards: []string{
			"0 [0,max] e+0 closed",
			"1 [0,1/2-1] <0 e+1 closed",
			"2 [1/2,max] <0 e+1 closed",
			"3 [0,max] <1+2 e+100",
		}, sealed: []uint32{1, 2}, added: []uint32{3}}},
		{name: "to the same count", meta: planStream(2), plan: scale(2), want: planWant{shards: []string{
			"0 [0,1/2-1] e+0",
			"1 [1/2,max] e+0",
		}, sealed: []uint32{}, added: []uint32{}}},
		{name: "scale-down over the account limit", meta: planStream(2), plan: scale(1), tweak: func(in *planInput) { in.limits.openShards = 600 },
			want: planWant{shards: []string{"0 [0,1/2-1] e+0 closed", "1 [1/2,max] e+0 closed", "2 [0,max] <0+1 e+100"}, sealed: []uint32{0, 1}, added: []uint32{2}}},

		{name: "over MaxShardsPerStream", meta: planStream(1), plan: scale(10001), kind: ErrLimitExceeded,
			msg: scalingRefusal(ReasonMaxShards, 10000, 1, 10001)},
		{name: "over double", meta: planStream(2), plan: scale(5), kind: ErrLimitExceeded,
			msg: scalingRefusal(ReasonScaleUp, 0, 2, 5)},
		{name: "under half", meta: planStream(5), plan: scale(2), kind: ErrLimitExceeded,
			msg: scalingRefusal(ReasonScaleDown, 0, 5, 2)},
		{name: "over the account limit", meta: planStream(1), plan: scale(2), tweak: func(in *planInput) { in.limits.openShards = 500 },
			kind: ErrLimitExceeded, msg: msgLimit1},
		{name: "calls per day", meta: planStream(1), plan: scale(2), tweak: func(in *planInput) { in.meta.ScalingNs = callTimes(10, time.Hour) },
			kind: ErrLimitExceeded, msg: scalingRefusal(ReasonScalingCalls, 10, 1, 2)},
		{name: "calls per day before the account limit", meta: planStream(1), plan: scale(2),
			tweak: func(in *planInput) {
				in.meta.ScalingNs, in.limits.openShards = callTimes(3, time.Hour), 500
				in.limits.scalingCallsPerDay = 3
			},
			kind: ErrLimitExceeded, msg: scalingRefusal(ReasonScalingCalls, 3, 1, 2)},
		{name: "ON_DEMAND", meta: planStream(1), plan: scale(2), tweak: func(in *planInput) { in.meta.Mode = ModeOnDemand },
			kind: ErrValidation, msg: msgOnDemand},
		{name: "UPDATING", meta: planStream(1), plan: scale(2), tweak: func(in *planInput) { in.meta.Status = StatusUpdating },
			kind: ErrResourceInUse, msg: msgUpdating},
	})
}

// callTimes is n UpdateShardCount call times, the newest age before
// planNow and each earlier one a minute before the next.
func callTimes(n int, age time.Duration) []int64 {
	var out []int64
	for i := n - 1; i >= 0; i-- {
		out = append(out, planNow.Add(-age-time.Duration(i)*time.Minute).UnixNano())
	}
	return out
}

// TestPlanUpdateShardCountCalls checks the rolling 24 hours: calls older
// than that are forgotten, and the new call is recorded, even when the
// target is the current count.
func TestPlanUpdateShardCountCalls(t *testing.T) {
	now := planNow.UnixNano()
	cases := []struct {
		name   string
		before []int64
		target int
		want   []int64
	}{
		{"first call", nil, 2, []int64{now}},
		{"same count", nil, 1, []int64{now}},
		{"9 recent", callTimes(9, time.Hour), 2, append(callTimes(9, time.Hour), now)},
		{"10 exactly a day old", callTimes(10, 24*time.Hour), 2, []int64{now}},
		{"old and recent", append(callTimes(2, 25*time.Hour), callTimes(1, time.Second)...), 2, append(callTimes(1, time.Second), now)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := planStream(1)
			m.ScalingNs = c.before
			p, res, err := planUpdateShardCount(planIn(m), c.target)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.meta.ScalingNs, c.want) || res != (UpdateShardCountResult{Current: 1, Target: c.target}) {
				t.Errorf("ScalingNs %v, result %+v; want %v", p.meta.ScalingNs, res, c.want)
			}
		})
	}
}

// TestPlanUpdateShardCountResult checks that the answer carries the counts
// once the open count is known, refusals included.
func TestPlanUpdateShardCountResult(t *testing.T) {
	cases := []struct {
		name  string
		mode  StreamMode
		from  int
		to    int
		want  UpdateShardCountResult
		fails bool
	}{
		{"scaled", ModeProvisioned, 2, 3, UpdateShardCountResult{Current: 2, Target: 3}, false},
		{"over double", ModeProvisioned, 2, 5, UpdateShardCountResult{Current: 2, Target: 5}, true},
		{"ON_DEMAND", ModeOnDemand, 2, 3, UpdateShardCountResult{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := planStream(c.from)
			m.Mode = c.mode
			_, res, err := planUpdateShardCount(planIn(m), c.to)
			if res != c.want || (err != nil) != c.fails {
				t.Errorf("result %+v, error %v; want %+v", res, err, c.want)
			}
		})
	}
}

// TestPlanUpdateShardCountOneKeyPiece: where two uniform layouts round
// differently a target boundary can be a shard's EndingHashKey (3 to 6) or
// its StartingHashKey+1 (6 to 3), keys SplitShard refuses. The plan's
// internal split still cuts there, making a one-key piece that the same
// plan merges away (closed, empty); the open shards are the target layout.
func TestPlanUpdateShardCountOneKeyPiece(t *testing.T) {
	for _, c := range []struct{ from, to int }{{3, 6}, {6, 3}} {
		in := planIn(planStream(c.from))
		p, _, err := planUpdateShardCount(in, c.to)
		if err != nil {
			t.Fatal(err)
		}
		var open []hashkey.Range
		oneKey := 0
		for _, sm := range p.meta.Shards {
			r := hashRangeOf(sm)
			switch {
			case !sm.Closed:
				open = append(open, r)
			case r.Start == r.End:
				oneKey++
			}
		}
		slices.SortFunc(open, func(a, b hashkey.Range) int { return a.Start.Cmp(b.Start) })
		if oneKey != 1 || !slices.Equal(open, hashkey.Split(c.to)) {
			t.Errorf("%d to %d: %d one-key pieces, open %v", c.from, c.to, oneKey, open)
		}
	}
}
