package shard

import "time"

// Observer is told of the engine's work, for metrics. Every shard's writer
// and syncer call it concurrently, on the write path: implementations must be
// safe for concurrent use and cheap, and must neither block nor allocate.
type Observer interface {
	// Committed reports one frame written by a group commit: its records
	// and its payload bytes before (raw) and after (stored) compression.
	Committed(records, rawBytes, storedBytes int)
	// Synced reports one sync and how long it took: an fdatasync of a
	// segment, or a shared round's syncfs (reported by the one shard that
	// ran it); err is its failure, if any.
	Synced(d time.Duration, err error)
	// DroppedCache reports bytes of synced segment data dropped from the
	// OS page cache (cacheWindow).
	DroppedCache(bytes int64)
	// Trimmed reports whole segments deleted by retention and their bytes.
	Trimmed(segments int, bytes int64)
}

// nopObserver is the Observer of a shard given none.
type nopObserver struct{}

func (nopObserver) Committed(int, int, int)     {}
func (nopObserver) Synced(time.Duration, error) {}
func (nopObserver) DroppedCache(int64)          {}
func (nopObserver) Trimmed(int, int64)          {}

// timedSync runs sync and reports its duration to the Observer.
func (s *Shard) timedSync(sync func() error) error {
	start := time.Now() // the real clock: opts.Now may be a test's
	err := sync()
	s.opts.Observer.Synced(time.Since(start), err)
	return err
}
