package replica

import (
	"fmt"
	"path"

	"github.com/shardlog/shardlog/vfs"
)

// stateLog is a group's applied state on disk: one frame (the WAL's framing)
// per applied entry that holds records, [index u64][the entry's data]. It
// stands in for the shard's segment files, which are to become the state
// machine (docs/cluster.md §2), with the same contract:
//   - entries are written as they apply, without an fdatasync of their own
//     (the WAL holds them durably until then);
//   - it is fdatasync'd before the WAL files behind it are deleted (Host.roll),
//     which makes the group's durable-applied index the applied index;
//   - applying is idempotent by index: recovery replays the WAL from the
//     compaction point and skips the entries the state already holds.
//
// Only committed entries are ever written here, so whatever a crash leaves of
// it (a prefix of its frames) is true.
type stateLog struct {
	f       vfs.File
	size    int64
	pending []byte
	dirty   bool // written since the last sync
}

func stateName(group uint64) string { return fmt.Sprintf("group-%016x.state", group) }

// stateFrame is one recovered applied entry.
type stateFrame struct {
	index uint64
	data  []byte
}

// openState opens (or creates, durably) a group's state and returns its
// frames; a torn tail is cut.
func openState(fs vfs.FS, dir string, group uint64) (*stateLog, []stateFrame, error) {
	name := path.Join(dir, stateName(group))
	f, err := fs.OpenRW(name)
	if vfs.IsNotExist(err) {
		if f, err = fs.Create(name); err == nil {
			err = fs.SyncDir(dir)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	size, err := f.Size()
	if err != nil {
		return nil, nil, err
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && size > 0 {
		return nil, nil, err
	}
	payloads, valid := scanFrames(data)
	if valid < size {
		if err := f.Truncate(valid); err != nil {
			return nil, nil, err
		}
	}
	var out []stateFrame
	for _, p := range payloads {
		r := reader{b: p}
		idx := r.u64()
		if r.bad {
			return nil, nil, fmt.Errorf("%w: group %d state", errCorrupt, group)
		}
		out = append(out, stateFrame{index: idx, data: r.b})
	}
	return &stateLog{f: f, size: valid}, out, nil
}

// add queues an applied entry for the next write.
func (s *stateLog) add(index uint64, data []byte) {
	p := le.AppendUint64(make([]byte, 0, 8+len(data)), index)
	s.pending = appendFrame(s.pending, append(p, data...))
}

// write writes the queued frames, without an fdatasync.
func (s *stateLog) write() error {
	if len(s.pending) == 0 {
		return nil
	}
	if _, err := s.f.WriteAt(s.pending, s.size); err != nil {
		return fmt.Errorf("replica: state write: %w", err)
	}
	s.size += int64(len(s.pending))
	s.pending, s.dirty = s.pending[:0], true
	return nil
}

// sync makes every written frame durable.
func (s *stateLog) sync() error {
	if !s.dirty {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("replica: state fdatasync: %w", err)
	}
	s.dirty = false
	return nil
}
