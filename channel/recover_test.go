package channel

import (
	"context"
	"testing"

	"github.com/shardlog/shardlog/storage"
)

// savingSource records the progress saved; delivery's other needs are not
// used by recover.
type savingSource struct {
	Source
	saved *storage.ChannelProgress
}

func (s *savingSource) SaveChannelProgress(_ context.Context, _, _ string, p *storage.ChannelProgress) error {
	s.saved = p
	return nil
}

// TestRecoverPendingBatch: a batch left pending by a crash counts as
// delivered only if all its objects exist; otherwise those that exist are
// removed and delivery resumes from before the batch.
func TestRecoverPendingBatch(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		written   []string // of the pending keys
		delivered bool
	}{
		{"all written", []string{"b/x", "b/error/x"}, true},
		{"one written", []string{"b/error/x"}, false},
		{"none written", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest := Dir(t.TempDir())
			for _, k := range tc.written {
				b, key := splitKey(k)
				if err := dest.Put(ctx, b, key, []byte("{}\n")); err != nil {
					t.Fatal(err)
				}
			}
			next := &storage.ChannelProgress{Shards: map[string]string{"shardId-000000000000": "20"}, Objects: 1}
			p := &storage.ChannelProgress{Shards: map[string]string{"shardId-000000000000": "10"},
				Pending: &storage.ChannelPending{Keys: []string{"b/error/x", "b/x"}, Next: next}}
			src := &savingSource{}
			d := &deliverer{src: src, opts: Options{Dest: dest}, info: storage.ChannelInfo{Name: "ch", ID: "id", Progress: p}}
			if err := d.recover(ctx); err != nil {
				t.Fatal(err)
			}
			want := "10"
			if tc.delivered {
				want = "20"
			}
			if src.saved == nil || src.saved.Pending != nil || src.saved.Shards["shardId-000000000000"] != want || d.committed != src.saved {
				t.Fatalf("saved %+v, want the shard at %s and nothing pending", src.saved, want)
			}
			for _, k := range []string{"b/x", "b/error/x"} {
				b, key := splitKey(k)
				ok, err := dest.Exists(ctx, b, key)
				if err != nil || ok != tc.delivered {
					t.Errorf("%s exists = %v, %v; want %v", k, ok, err, tc.delivered)
				}
			}
		})
	}
}
