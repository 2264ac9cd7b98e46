package fsck

import (
	"errors"
	"fmt"
	"io"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// writeSegment writes the new segment of plan p to tmp: hdr, then the kept
// frames of src (copied or re-encoded), synced. It then scans what it wrote
// (CRCs and records) and fails unless the file holds exactly the frames
// planned, so a bad rewrite never replaces an original.
func (r *repairer) writeSegment(tmp, src string, hdr segment.FileHeader, p segPlan) error {
	if err := r.fs.Remove(tmp); err != nil && !vfs.IsNotExist(err) { // a crashed repair's leftover
		return fmt.Errorf("fsck: %w", err)
	}
	f, err := r.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	sink := &segSink{f: f}
	b := hdr.Encode()
	sink.write(b[:])
	if src != "" {
		err = r.copyFrames(sink, src, p)
	}
	if err == nil {
		err = sink.err
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.checkWritten(tmp, p)
	}
	if err != nil {
		r.fs.Remove(tmp)
		return fmt.Errorf("fsck: write %s: %w", tmp, err)
	}
	return nil
}

// segSink appends to a new file, remembering the last frame's CRC (the next
// frame's prevCRC). The first write error sticks.
type segSink struct {
	f       vfs.File
	off     int64
	lastCRC uint32
	err     error
}

func (s *segSink) write(b []byte) {
	if s.err != nil {
		return
	}
	_, s.err = s.f.WriteAt(b, s.off)
	s.off += int64(len(b))
}

func (r *repairer) copyFrames(sink *segSink, src string, p segPlan) error {
	in, err := r.fs.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if p.whole {
		return copyRange(sink, in, p.sc.hdr.Size(), p.sc.validEnd())
	}
	var buf []byte
	for _, kf := range p.frames {
		frame := make([]byte, kf.Size())
		if _, err := in.ReadAt(frame, kf.Offset); err != nil {
			return err
		}
		if kf.verbatim {
			sink.write(frame)
			sink.lastCRC = kf.CRC
			continue
		}
		var h segment.FrameHeader
		if buf, h, err = r.reencode(buf[:0], frame, p.sc.hdr, kf, sink.lastCRC); err != nil {
			return err
		}
		sink.write(buf)
		sink.lastCRC = h.CRC
	}
	return nil
}

// reencode decodes a frame found after damage and encodes its records again
// as a frame chained to prevCRC: its own prevCRC names a frame that is gone.
// Records keep their sequences and arrival times. A frame of an encrypted
// segment (hdr, whose key block the new segment keeps) is opened and sealed
// again with the segment's data key, under a fresh nonce; that needs the
// master key.
func (r *repairer) reencode(dst, frame []byte, hdr segment.FileHeader, kf keptFrame, prevCRC uint32) ([]byte, segment.FrameHeader, error) {
	var ci *segment.Cipher
	if hdr.Encrypted() {
		var err error
		if ci, err = hdr.Key.Open(r.v.opts.Keys); err != nil {
			return nil, segment.FrameHeader{}, fmt.Errorf("re-encode the frame at %d of an encrypted segment: %w (pass --keyring)", kf.Offset, err)
		}
	}
	var recs []segment.Record
	stored := frame[segment.FrameHeaderSize : segment.FrameHeaderSize+int(kf.StoredLen)]
	if _, err := r.v.comp.DecodeFrameWith(frame[:segment.FrameHeaderSize], stored, ci, func(rec segment.Record) bool {
		recs = append(recs, rec) // Data aliases a fresh buffer: it outlives the encode
		return true
	}); err != nil {
		return nil, segment.FrameHeader{}, fmt.Errorf("decode frame at %d: %w", kf.Offset, err)
	}
	if ci != nil {
		out, h := r.v.comp.EncodeSealedFrame(dst, recs, prevCRC, ci)
		return out, h, nil
	}
	out, h := r.v.comp.EncodeFrame(dst, recs, prevCRC)
	return out, h, nil
}

// copyRange copies src bytes [from, to) into the sink.
func copyRange(sink *segSink, src io.ReaderAt, from, to int64) error {
	buf := make([]byte, 1<<20)
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := src.ReadAt(buf[:n], off); err != nil {
			return err
		}
		sink.write(buf[:n])
		off += n
	}
	return nil
}

// checkWritten scans the new file with CRCs and record decoding.
func (r *repairer) checkWritten(p string, plan segPlan) error {
	f, err := r.fs.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return err
	}
	opts := segment.ScanOptions{Deep: true, Compressor: r.v.comp, Keys: r.v.opts.Keys}
	res, err := segment.Scan(f, size, opts)
	if errors.Is(err, segment.ErrNoKey) {
		// An encrypted segment without its key: its frames were copied as
		// they were, so their CRCs (over the ciphertext) are the check.
		res, err = segment.Scan(f, size, segment.ScanOptions{VerifyCRC: true})
	}
	if err != nil {
		return err
	}
	want := int64(len(plan.frames))
	if plan.whole {
		want = plan.sc.frames()
	}
	if res.Tail != segment.TailClean || res.ValidEnd != size || int64(res.Frames) != want {
		return fmt.Errorf("self-check failed: tail %s, %d of %d bytes valid, %d frames, want %d", res.Tail, res.ValidEnd, size, res.Frames, want)
	}
	return nil
}
