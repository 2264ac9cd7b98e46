package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/ratelimit"
)

func TestControlPlaneLimits(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewControlPlaneLimits(ratelimit.KinesisControl, "000000000000", func() time.Time { return now })
	admitted := 0
	var last error
	for range 15 {
		if last = l.Admit(context.Background(), AdmissionRequest{Operation: "DescribeStream", Stream: "s"}); last == nil {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("DescribeStream admitted %d at once, want AWS's 10", admitted)
	}
	if e, ok := last.(*wire.Error); !ok || e.Type != wire.TypeLimitExceeded || !strings.HasPrefix(e.Message, "Rate exceeded") {
		t.Fatalf("refusal: %v", last)
	}
	if err := l.Admit(context.Background(), AdmissionRequest{Operation: "PutRecords", Stream: "s"}); err != nil {
		t.Fatalf("data plane refused by the control-plane limiter: %v", err)
	}
	now = now.Add(time.Second)
	if err := l.Admit(context.Background(), AdmissionRequest{Operation: "DescribeStream", Stream: "s"}); err != nil {
		t.Fatalf("not admitted a second later: %v", err)
	}
}
