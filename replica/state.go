package replica

import (
	"fmt"
	"path"

	"github.com/shardlog/shardlog/vfs"
)

// appliedState is the contract between the host and a group's applied state
// (docs/cluster.md §2). The state file (stateLog) implements it today; the
// shard's segment files are to replace it with the same contract:
//   - add/write: applied entries are written as they apply, without an
//     fdatasync of their own (the WAL holds them durably until then);
//   - sync makes everything written durable: it runs before the WAL files
//     behind the state are deleted (Host.maybeRoll), which makes the group's
//     durable-applied index its applied index;
//   - snapshot renders the whole state up to the applied index, and install
//     replaces the whole state with such a rendering durably and atomically
//     (a crash leaves the old state or the new one, never a mix);
//   - applying is idempotent by index: recovery replays the WAL from the
//     compaction point and skips the entries the state already holds.
type appliedState interface {
	add(index uint64, data []byte)
	write() error
	sync() error
	snapshot(applied uint64) ([]byte, error)
	install(index uint64, data []byte, crash func(string) error) ([]stateFrame, error)
	close() error
}

// stateLog is a group's applied state on disk: one frame (the WAL's framing)
// per applied entry that holds records, [index u64][the entry's data]. A frame
// with no data after its index is a marker: everything up to that index is
// applied (a snapshot's last index, whose entry may hold no records).
//
// Only committed entries are ever written here, so whatever a crash leaves of
// it (a prefix of its frames) is true.
type stateLog struct {
	fs      vfs.FS
	dir     string
	group   uint64
	f       vfs.File
	size    int64
	pending []byte
	dirty   bool // written since the last sync
}

var _ appliedState = (*stateLog)(nil)

func stateName(group uint64) string { return fmt.Sprintf("group-%016x.state", group) }

// stateTemp is where install writes a snapshot's state before renaming it over
// the state file; a crash may leave it behind, and openState removes it.
func stateTemp(group uint64) string { return stateName(group) + ".tmp" }

// stateFrame is one recovered applied entry (data empty for a marker).
type stateFrame struct {
	index uint64
	data  []byte
}

// openState opens (or creates, durably) a group's state and returns its
// frames; a torn tail is cut.
func openState(fs vfs.FS, dir string, group uint64) (*stateLog, []stateFrame, error) {
	if err := fs.Remove(path.Join(dir, stateTemp(group))); err != nil && !vfs.IsNotExist(err) {
		return nil, nil, err
	}
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
	out, err := stateFrames(payloads, group)
	if err != nil {
		return nil, nil, err
	}
	return &stateLog{fs: fs, dir: dir, group: group, f: f, size: valid}, out, nil
}

func stateFrames(payloads [][]byte, group uint64) ([]stateFrame, error) {
	var out []stateFrame
	for _, p := range payloads {
		r := reader{b: p}
		idx := r.u64()
		if r.bad {
			return nil, fmt.Errorf("%w: group %d state", errCorrupt, group)
		}
		out = append(out, stateFrame{index: idx, data: r.b})
	}
	return out, nil
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

// snapshot is the state up to applied: every frame written or queued (raft
// may ask for a snapshot between a round's apply and its write), then a
// marker for applied. It holds only committed entries, durable or not: a
// snapshot's receiver makes it durable itself.
func (s *stateLog) snapshot(applied uint64) ([]byte, error) {
	data := make([]byte, s.size, s.size+int64(len(s.pending))+frameHeader+8)
	if _, err := s.f.ReadAt(data, 0); err != nil && s.size > 0 {
		return nil, fmt.Errorf("replica: state read: %w", err)
	}
	data = append(data, s.pending...)
	return appendFrame(data, le.AppendUint64(nil, applied)), nil
}

// install replaces the state with a snapshot's (from snapshot), durably and
// atomically: written to a temporary file, fdatasync'd, renamed over the
// state file, then the directory synced. A crash before the rename leaves
// the old state; after it, the new one (whole, since it was synced first).
// The snapshot must be whole frames ending in index's marker.
func (s *stateLog) install(index uint64, data []byte, crash func(string) error) ([]stateFrame, error) {
	payloads, valid := scanFrames(data)
	frames, err := stateFrames(payloads, s.group)
	if err != nil || valid != int64(len(data)) || len(frames) == 0 || frames[len(frames)-1].index != index {
		return nil, fmt.Errorf("%w: group %d snapshot at %d", errCorrupt, s.group, index)
	}
	tmp, name := path.Join(s.dir, stateTemp(s.group)), path.Join(s.dir, stateName(s.group))
	f, err := s.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("replica: snapshot install: %w", err)
	}
	if _, err = f.WriteAt(data, 0); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = crash(crashSnapTempSynced)
	}
	if err == nil {
		err = s.fs.Rename(tmp, name)
	}
	if err == nil {
		err = crash(crashSnapRenamed)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("replica: snapshot install: %w", err)
	}
	s.f.Close()
	s.f, s.size, s.pending, s.dirty = f, int64(len(data)), s.pending[:0], false
	return frames, crash(crashSnapDirSynced)
}

func (s *stateLog) close() error { return s.f.Close() }

// The points of a snapshot's installation where the crash tests cut power.
const (
	crashSnapTempSynced = "snapshot: temporary state written and synced"
	crashSnapRenamed    = "snapshot: state renamed into place"
	crashSnapDirSynced  = "snapshot: directory synced"
)
