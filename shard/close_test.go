package shard

import (
	"context"
	"errors"
	"testing"
)

// TestAppendRacingCloseAlwaysReturns: an append whose checks pass just before
// the shard closes must get ErrClosed (or be stored), never wait forever.
// The hook closes the shard at exactly that point; before the fix the append
// could be queued after the writer's final drain and hang half of the time,
// so 20 rounds would all but surely catch it (the test would time out).
func TestAppendRacingCloseAlwaysReturns(t *testing.T) {
	for range 20 {
		r := newRig(t, nil)
		r.sh.beforeEnqueue = func() { r.sh.Close() }
		_, err := r.sh.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}, 0)
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("append racing Close: %v, want ErrClosed", err)
		}
		r.idx.Close()
		r.sh = nil
	}
}
