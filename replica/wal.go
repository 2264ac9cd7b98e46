package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/shardlog/shardlog/vfs"
)

// The WAL is a sequence of files wal-<seq, 16 hex digits>.log in Config.Dir,
// written in seq order; only the newest is appended to. A file is only ever
// created complete: its header is written and fdatasync'd, then the
// directory, before any round writes to it (see Host.roll).
const (
	walPrefix = "wal-"
	walSuffix = ".log"
)

func walName(seq uint64) string { return fmt.Sprintf("%s%016x%s", walPrefix, seq, walSuffix) }

// A WAL frame is [u32 payload length][u32 CRC-32C of the payload][payload].
// The payload starts with its kind. A zero length is never written, so a
// zeroed tail (a torn write whose size reached the disk before its data) ends
// the log just as a short or corrupt frame does.
const frameHeader = 8

// Payload kinds.
const (
	kindEntries   byte = 1 // group u64, count u32, entries
	kindHardState byte = 2 // group u64, term u64, vote u64, commit u64
	kindStart     byte = 3 // incarnation u64: one per Open, so proposal IDs never repeat
	kindCompact   byte = 4 // group u64, index u64, term u64, ConfState: the group's log starts after index
	kindSnapshot  byte = 5 // as kindCompact, and the log before it is discarded: a snapshot was installed
	kindGroup     byte = 6 // group u64, bootstrap ConfState: a replica created by Host.AddGroup
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxKeptPending: a round's WAL buffer is reused by the next round unless it
// grew past this.
const maxKeptPending = 8 << 20

// walFile is one file of the WAL. maxIndex is, per group, the highest entry
// index any of its frames holds: the file may be deleted once every group's
// log is compacted up to it.
type walFile struct {
	seq      uint64
	size     int64
	maxIndex map[uint64]uint64
}

// wal is the append-only log shared by every group of a host. Frames of one
// Ready round are gathered in pending and written and synced together.
type wal struct {
	fs         vfs.FS
	dir        string
	f          vfs.File   // the newest file, the only one written
	files      []*walFile // oldest first; the last is f's
	pending    []byte
	pendingMax map[uint64]uint64
	// rolls and removed count this wal's rolls and deleted files (tests).
	rolls, removed int
	// synced, if set, is told of each fdatasync of a flush (Config.Observer).
	synced func(d time.Duration, err error)
	// syncs counts the flushes' fdatasyncs; entries the entries written
	// (Host.Stats reads them without the host's lock).
	syncs, entries atomic.Uint64
	// lastWrite is the last write's time (RoundTimes; an fdatasync's comes
	// with its syncResult).
	lastWrite time.Duration
	// unsynced: frames were written since the last fdatasync started
	// (pipeline.go: rounds that moved only commit indexes sync nothing).
	unsynced bool
}

// errCorrupt means the WAL holds a frame that decodes wrongly although its CRC
// matched, or a sealed file with a bad frame: a bug or an undetected media
// error, never a torn write.
var errCorrupt = errors.New("replica: corrupt WAL frame")

// openWAL opens (or creates) the WAL and returns every valid frame's payload,
// oldest first, each with the index of its file in w.files. Only the newest
// file can hold a torn tail (every older one was synced whole before the next
// was created), which is cut: frames after the first bad one were never
// synced, because frames are written in order and each round ends in a sync.
func openWAL(fs vfs.FS, dir string) (*wal, []walPayload, error) {
	if err := fs.MkdirAll(dir); err != nil {
		return nil, nil, err
	}
	seqs, err := walSeqs(fs, dir)
	if err != nil {
		return nil, nil, err
	}
	w := &wal{fs: fs, dir: dir, pendingMax: map[uint64]uint64{}}
	if len(seqs) == 0 {
		if w.f, err = fs.Create(path.Join(dir, walName(1))); err == nil {
			err = fs.SyncDir(dir)
		}
		if err != nil {
			return nil, nil, err
		}
		w.files = []*walFile{{seq: 1, maxIndex: map[uint64]uint64{}}}
		return w, nil, nil
	}
	var out []walPayload
	for i, seq := range seqs {
		last := i == len(seqs)-1
		f, payloads, size, err := readWALFile(fs, path.Join(dir, walName(seq)), last)
		if err != nil {
			return nil, nil, err
		}
		w.files = append(w.files, &walFile{seq: seq, size: size, maxIndex: map[uint64]uint64{}})
		for _, p := range payloads {
			out = append(out, walPayload{file: i, p: p})
		}
		if last {
			w.f = f
		}
	}
	return w, out, nil
}

// walPayload is one recovered frame and the index of its file in wal.files.
type walPayload struct {
	file int
	p    []byte
}

// walSeqs lists the WAL files' sequence numbers in order.
func walSeqs(fs vfs.FS, dir string) ([]uint64, error) {
	names, err := fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, n := range names {
		hex, ok := strings.CutPrefix(n, walPrefix)
		if hex, ok2 := strings.CutSuffix(hex, walSuffix); ok && ok2 {
			if seq, err := strconv.ParseUint(hex, 16, 64); err == nil && len(hex) == 16 {
				seqs = append(seqs, seq)
			}
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// readWALFile returns a file's valid frames and size. The newest file (last)
// stays open for appending, its torn tail cut; an older one with a bad frame
// is corruption.
func readWALFile(fs vfs.FS, name string, last bool) (vfs.File, [][]byte, int64, error) {
	f, err := fs.OpenRW(name)
	if err != nil {
		return nil, nil, 0, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, nil, 0, err
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && size > 0 {
		f.Close()
		return nil, nil, 0, err
	}
	payloads, valid := scanFrames(data)
	switch {
	case !last:
		f.Close()
		if valid < size {
			return nil, nil, 0, fmt.Errorf("%w: sealed WAL file %s has a bad frame at %d", errCorrupt, name, valid)
		}
		return nil, payloads, size, nil
	case valid < size:
		if err := f.Truncate(valid); err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, nil, 0, err
		}
	}
	return f, payloads, valid, nil
}

// scanFrames returns the payloads of the valid prefix of data and its length.
func scanFrames(data []byte) ([][]byte, int64) {
	var out [][]byte
	off := 0
	for len(data)-off >= frameHeader {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > len(data)-off-frameHeader {
			break
		}
		p := data[off+frameHeader : off+frameHeader+n]
		if crc32.Checksum(p, castagnoli) != sum {
			break
		}
		out = append(out, p)
		off += frameHeader + n
	}
	return out, int64(off)
}

func (w *wal) current() *walFile { return w.files[len(w.files)-1] }

// addEntries queues a group's entries, remembering the highest index.
func (w *wal) addEntries(group uint64, ents []*pb.Entry) {
	w.addWith(func(b []byte) []byte { return appendEntries(b, group, ents) })
	w.entries.Add(uint64(len(ents)))
	if last := ents[len(ents)-1].GetIndex(); last > w.pendingMax[group] {
		w.pendingMax[group] = last
	}
}

// add queues one frame for the next flush.
func (w *wal) add(payload []byte) {
	w.addWith(func(b []byte) []byte { return append(b, payload...) })
}

// addWith queues one frame whose payload encode appends, in place (no
// intermediate copy of a round's entries).
func (w *wal) addWith(encode func(b []byte) []byte) {
	at := len(w.pending)
	w.pending = encode(append(w.pending, make([]byte, frameHeader)...))
	payload := w.pending[at+frameHeader:]
	binary.LittleEndian.PutUint32(w.pending[at:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(w.pending[at+4:], crc32.Checksum(payload, castagnoli))
}

// flush writes the queued frames and, if sync, fdatasyncs them (Open,
// AddGroup, RemoveGroup, and the inline rounds of HandleReady). Any error is
// final for the host (fail-stop): after a failed fdatasync the kernel may have
// dropped the pages, so no retry can prove them durable.
func (w *wal) flush(sync bool) error {
	wrote, err := w.write()
	if err != nil || !wrote || !sync {
		return err
	}
	w.unsynced = false
	return w.synced1(w.syncFile(w.f))
}

// write writes the queued frames (a pwrite, no fdatasync) and reports
// whether there were any. The pipelined loop (pipeline.go) runs the
// fdatasync that covers them on another goroutine.
func (w *wal) write() (bool, error) {
	if len(w.pending) == 0 {
		return false, nil
	}
	cur := w.current()
	start := time.Now()
	if _, err := w.f.WriteAt(w.pending, cur.size); err != nil {
		return false, fmt.Errorf("replica: WAL write: %w", err)
	}
	w.lastWrite = time.Since(start)
	w.unsynced = true
	cur.size += int64(len(w.pending))
	w.pending = w.pending[:0]
	if cap(w.pending) > maxKeptPending {
		w.pending = nil // a burst's buffer is not kept for ever
	}
	for g, i := range w.pendingMax {
		cur.maxIndex[g] = max(cur.maxIndex[g], i)
	}
	clear(w.pendingMax)
	return true, nil
}

// syncResult is one fdatasync of the WAL's newest file and how long it took.
type syncResult struct {
	d   time.Duration
	err error
}

// syncFile fdatasyncs f. It touches nothing of w but reads, so the
// pipelined loop runs it without the host's lock while rounds write on.
func (w *wal) syncFile(f vfs.File) syncResult {
	start := time.Now()
	err := f.Sync()
	return syncResult{time.Since(start), err}
}

// synced1 counts a finished fdatasync (under the host's lock) and turns its
// error into the host's.
func (w *wal) synced1(r syncResult) error {
	w.syncs.Add(1)
	if w.synced != nil {
		w.synced(r.d, r.err)
	}
	if r.err != nil {
		return fmt.Errorf("replica: WAL fdatasync: %w", r.err)
	}
	return nil
}

// roll starts the next WAL file with header (frames that restate everything
// a reader of the newer files alone needs: the incarnation, every group's
// HardState and compaction point). The file is written and fdatasync'd, then
// the directory, before it becomes current, so a crash at any point leaves
// either the old newest file or the new one complete (crash names the points).
func (w *wal) roll(header []byte, crash func(string) error) error {
	seq := w.current().seq + 1
	name := path.Join(w.dir, walName(seq))
	f, err := w.fs.Create(name)
	if err != nil {
		return fmt.Errorf("replica: WAL roll: %w", err)
	}
	if err := crash(crashRollCreated); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(header, 0); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = crash(crashRollSynced)
	}
	if err == nil {
		err = w.fs.SyncDir(w.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("replica: WAL roll: %w", err)
	}
	if err := crash(crashRollDirSynced); err != nil {
		f.Close()
		return err
	}
	w.f.Close()
	w.f = f
	w.files = append(w.files, &walFile{seq: seq, size: int64(len(header)), maxIndex: map[uint64]uint64{}})
	w.rolls++
	return nil
}

// deleteCovered removes the oldest files, in order, while covered says every
// entry they hold is compacted; never the newest. Only a prefix is removed: a
// newer file's frames may overwrite an older file's uncommitted tail, so an
// older file kept after a newer one went could resurrect entries raft cut.
func (w *wal) deleteCovered(covered func(maxIndex map[uint64]uint64) bool, crash func(string) error) error {
	n := 0
	for n < len(w.files)-1 && covered(w.files[n].maxIndex) {
		if err := w.fs.Remove(path.Join(w.dir, walName(w.files[n].seq))); err != nil {
			return fmt.Errorf("replica: WAL delete: %w", err)
		}
		n++
		w.removed++
		if err := crash(crashTruncateRemoved); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	w.files = slices.Delete(w.files, 0, n)
	if err := w.fs.SyncDir(w.dir); err != nil {
		return fmt.Errorf("replica: WAL delete: %w", err)
	}
	return crash(crashTruncateDirSynced)
}

// The points of a roll and a truncation where the crash tests cut power
// (Config.crashAt).
const (
	crashRollStateSynced   = "roll: applied state synced"
	crashRollCreated       = "roll: new WAL file created"
	crashRollSynced        = "roll: new WAL file written and synced"
	crashRollDirSynced     = "roll: directory synced"
	crashTruncateRemoved   = "truncate: a WAL file removed"
	crashTruncateDirSynced = "truncate: directory synced after removal"
)

// errCrashPoint stops a host at a crash point (tests only).
var errCrashPoint = errors.New("replica: crash point")
