package channel

import (
	"context"
	"testing"
	"time"

	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// oneEvent is a subscription whose every Next returns ev.
type oneEvent struct{ ev storage.SubscribeEvent }

func (o oneEvent) Next(context.Context, int, time.Duration) (storage.SubscribeEvent, error) {
	return o.ev, nil
}
func (oneEvent) Close() {}

// TestEmptyEventAtTheSavedPosition: an event without records whose
// continuation names the saved position (the same shard and ordinal, any
// arrival second: what a subscription opened AFTER_SEQUENCE_NUMBER the
// saved number reports in cluster mode) starts no batch, so nothing is
// saved; a continuation past it does (review 8 #2).
func TestEmptyEventAtTheSavedPosition(t *testing.T) {
	const id = "shardId-000000000001"
	saved := seqnum.Seq{ShardCreateSecs: 1_700_000_000, ShardIndex: 1, Ordinal: 41, ArrivalSecs: 1_700_000_500}
	at := func(f func(*seqnum.Seq)) string {
		s := saved
		f(&s)
		return s.String()
	}
	tests := []struct {
		name string
		cont string
		take bool
	}{
		{"the same number", saved.String(), false},
		{"another arrival second", at(func(s *seqnum.Seq) { s.ArrivalSecs = s.ShardCreateSecs }), false},
		{"the next ordinal", at(func(s *seqnum.Seq) { s.Ordinal++ }), true},
		{"another shard incarnation", at(func(s *seqnum.Seq) { s.ShardCreateSecs++ }), true},
		{"not a sequence number", "12", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &deliverer{opts: Options{MaxObjectBytes: 1 << 20, Now: time.Now},
				committed: &storage.ChannelProgress{Shards: map[string]string{id: saved.String()}},
				readers:   map[string]storage.EventSource{id: oneEvent{storage.SubscribeEvent{ContinuationSequenceNumber: tc.cont}}}}
			if _, err := d.read(context.Background()); err != nil {
				t.Fatal(err)
			}
			if took := d.batch.next != nil; took != tc.take {
				t.Fatalf("continuation %s after saved %s: batch started = %v, want %v", tc.cont, saved, took, tc.take)
			}
			if tc.take && d.batch.next.Shards[id] != tc.cont {
				t.Fatalf("the batch's progress %v", d.batch.next.Shards)
			}
		})
	}
}
