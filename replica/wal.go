package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path"

	"github.com/shardlog/shardlog/vfs"
)

// walName is the node's write-ahead log inside Config.Dir.
const walName = "raft.wal"

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
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// wal is the append-only log shared by every group of a host. Frames of one
// Ready round are gathered in pending and written and synced together.
type wal struct {
	f       vfs.File
	size    int64
	pending []byte
}

// errCorrupt means the WAL holds a frame that decodes wrongly although its CRC
// matched: a bug or an undetected media error, never a torn write.
var errCorrupt = errors.New("replica: corrupt WAL frame")

// openWAL opens (or creates) the WAL, returns the valid frames' payloads in
// order, and cuts a torn tail: every frame after the first bad one was never
// synced, because frames are written in order and each round ends in a sync.
func openWAL(fs vfs.FS, dir string) (*wal, [][]byte, error) {
	if err := fs.MkdirAll(dir); err != nil {
		return nil, nil, err
	}
	name := path.Join(dir, walName)
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
		if err := f.Sync(); err != nil {
			return nil, nil, err
		}
	}
	return &wal{f: f, size: valid}, payloads, nil
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

// add queues one frame for the next flush.
func (w *wal) add(payload []byte) {
	w.pending = binary.LittleEndian.AppendUint32(w.pending, uint32(len(payload)))
	w.pending = binary.LittleEndian.AppendUint32(w.pending, crc32.Checksum(payload, castagnoli))
	w.pending = append(w.pending, payload...)
}

// flush writes the queued frames and, if sync, fdatasyncs them: the one
// fdatasync of a Ready round. Any error is final for the host (fail-stop): after
// a failed fdatasync the kernel may have dropped the pages, so no retry can
// prove them durable.
func (w *wal) flush(sync bool) error {
	if len(w.pending) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.pending, w.size); err != nil {
		return fmt.Errorf("replica: WAL write: %w", err)
	}
	w.size += int64(len(w.pending))
	w.pending = w.pending[:0]
	if !sync {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("replica: WAL fdatasync: %w", err)
	}
	return nil
}
