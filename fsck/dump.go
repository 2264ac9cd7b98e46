package fsck

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// DumpOptions configures Dump.
type DumpOptions struct {
	FS vfs.FS // vfs.OS{} if nil
	// Path is a segment file or a shard directory (its segments in order).
	Path string
	// Records prints every record, not only frames.
	Records bool
	// FromSeq skips frames and records before this sequence.
	FromSeq uint64
	// JSON prints one JSON object per line instead of text.
	JSON bool
	// Compressor decodes records; one is made (and closed) if nil and needed.
	Compressor *segment.Compressor
	// Keys finds the master keys of encrypted segments, to print their
	// records; without the key a segment's frames are printed, and its
	// records are said to need the keyring.
	Keys segment.Keys
}

// previewLen is how many bytes of a record's data dump shows.
const previewLen = 32

// Dump prints what a segment file or shard directory holds, frame by frame
// (Kafka's DumpLogSegments): one line per valid frame, damaged regions where
// they are, and with Records every record. It only reads.
func Dump(w io.Writer, opts DumpOptions) error {
	if opts.FS == nil {
		opts.FS = vfs.OS{}
	}
	if opts.Records && opts.Compressor == nil {
		c, err := segment.NewCompressor()
		if err != nil {
			return err
		}
		defer c.Close()
		opts.Compressor = c
	}
	bw := bufio.NewWriter(w)
	d := &dumper{opts: opts, w: bw}
	err := d.path()
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

type dumper struct {
	opts DumpOptions
	w    io.Writer
	err  error // first write error
	// ci opens the current segment's frames (nil: plaintext); noKey says
	// why an encrypted one's records cannot be printed.
	ci    *segment.Cipher
	noKey error
}

func (d *dumper) path() error {
	p := filepath.Clean(d.opts.Path)
	names, err := d.opts.FS.ReadDir(p)
	if err != nil {
		// Not a directory: a single file.
		return d.segment(p, shardKeyOfPath(filepath.Dir(p)))
	}
	segs, _ := dirEntries(names)
	if len(segs) == 0 {
		return fmt.Errorf("fsck: %s holds no segment files", p)
	}
	for _, sn := range segs {
		if err := d.segment(filepath.Join(p, sn.name), shardKeyOfPath(p)); err != nil {
			return err
		}
	}
	return d.err
}

// DataDirOf is the data directory a segment file or shard directory of
// the layout ".../streams/<stream dir>/<shard dir>[/<segment>]" lies in, or
// "" for a path of another shape.
func DataDirOf(p string) string {
	p = filepath.Clean(p)
	if _, ok := datadir.ParseShardDir(filepath.Base(p)); !ok {
		p = filepath.Dir(p) // a segment file
	}
	streams := filepath.Dir(filepath.Dir(p))
	if shardKeyOfPath(p) == 0 || filepath.Base(streams) != datadir.StreamsDir {
		return ""
	}
	return filepath.Dir(streams)
}

// shardKeyOfPath derives the shard key of ".../<stream dir>/<shard dir>", or
// 0 (unchecked) for a path of another shape.
func shardKeyOfPath(dir string) uint64 {
	stream := filepath.Base(filepath.Dir(dir))
	shard, ok := datadir.ParseShardDir(filepath.Base(dir))
	if _, _, isStream := datadir.ParseStreamDir(stream); !ok || !isStream {
		return 0
	}
	return datadir.ShardKey(datadir.IndexKey(stream, shard))
}

func (d *dumper) segment(p string, shardKey uint64) error {
	name := filepath.Base(p)
	sn := segName{name: name}
	if first, id, ok := segment.ParseFileName(name); ok {
		sn.firstSeq, sn.id = first, id
	} else if first, id, ok := parseBrokenName(name); ok {
		sn.firstSeq, sn.id = first, id
	} else {
		sn.anon = true
	}
	var frames []segment.FrameInfo
	sc := analyzeSegment(d.opts.FS, p, p, sn, shardKey, false, nil, func(f segment.FrameInfo) error {
		frames = append(frames, f)
		return nil
	})
	if sc.readErr != nil {
		return fmt.Errorf("fsck: %s: %w", p, sc.readErr)
	}
	d.ci, d.noKey = nil, nil
	if sc.hdr.Encrypted() {
		d.ci, d.noKey = sc.hdr.Key.Open(d.opts.Keys)
	}
	d.header(sc)
	if err := d.body(sc, frames); err != nil {
		return err
	}
	d.end(sc)
	return d.err
}

// body prints frames and damage in file order.
func (d *dumper) body(sc *segCheck, frames []segment.FrameInfo) error {
	f, err := d.opts.FS.Open(sc.path)
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	defer f.Close()
	i := 0
	for _, reg := range sc.regions {
		for j := 0; j < reg.res.Frames; j, i = j+1, i+1 {
			if err := d.frame(f, frames[i], "ok"); err != nil {
				return err
			}
		}
		if reg.res.Tail != segment.TailClean {
			d.damage(f, sc, reg)
		}
	}
	return nil
}

// header prints a segment's file header. A sequence floor and its gap
// (floor_gap, 0: not recorded) are shown only where a floor is declared, so
// the dump of an ordinary segment reads as before.
func (d *dumper) header(sc *segCheck) {
	floor := sc.hdr.Flags&segment.FlagSeqFloor != 0
	if d.opts.JSON {
		m := map[string]any{"type": "segment", "file": sc.path, "size": sc.size, "id": sc.hdr.SegmentID, "first_seq": sc.hdr.FirstSeq,
			"shard_key": fmt.Sprintf("%016x", sc.hdr.ShardKey), "created_ns": sc.hdr.CreatedNs, "codec": sc.hdr.Codec.String(),
			"header_problem": problemText(sc)}
		if floor {
			m["seq_floor"] = true
			m["floor_gap"] = sc.hdr.FloorGap
		}
		if sc.hdr.Encrypted() {
			m["encrypted"] = true
			m["master_key"] = sc.hdr.Key.Master.String()
			if d.noKey != nil && d.opts.Records {
				m["records_error"] = d.noKeyText()
			}
		}
		d.json(m)
		return
	}
	flags := ""
	if floor {
		flags = fmt.Sprintf(" seq_floor floor_gap=%d", sc.hdr.FloorGap)
	}
	if sc.hdr.Encrypted() {
		flags += " encrypted master_key=" + sc.hdr.Key.Master.String()
	}
	d.printf("segment %s size=%d id=%016x first_seq=%d shard_key=%016x created=%s codec=%s%s\n", sc.path, sc.size,
		sc.hdr.SegmentID, sc.hdr.FirstSeq, sc.hdr.ShardKey, time.Unix(0, sc.hdr.CreatedNs).UTC().Format(time.RFC3339Nano), sc.hdr.Codec, flags)
	if t := problemText(sc); t != "" {
		d.printf("header %s\n", t)
	}
	if sc.hdr.Encrypted() && d.noKey != nil && d.opts.Records {
		d.printf("records %s\n", d.noKeyText())
	}
}

// noKeyText says why an encrypted segment's records are not printed.
func (d *dumper) noKeyText() string {
	return fmt.Sprintf("not shown: the segment is encrypted and its master key is not available (%v); pass --keyring with the key", d.noKey)
}

// problemText describes a header problem, "" if none.
func problemText(sc *segCheck) string {
	switch {
	case sc.tornCreate:
		return fmt.Sprintf("torn creation: %d bytes, no header", sc.size)
	case sc.hdrCode == EFileVersion:
		return fmt.Sprintf("%s %v", sc.hdrCode, sc.hdrErr)
	case sc.hdrCode != "":
		return fmt.Sprintf("%s %v (frames read against a header rebuilt from the name)", sc.hdrCode, sc.hdrErr)
	case sc.readErr != nil:
		return sc.readErr.Error()
	}
	return ""
}

func (d *dumper) frame(r io.ReaderAt, f segment.FrameInfo, crc string) error {
	if f.LastSeq < d.opts.FromSeq {
		return nil
	}
	if d.opts.JSON {
		d.json(map[string]any{"type": "frame", "offset": f.Offset, "size": f.Size(), "stored": f.StoredLen, "raw": f.RawLen,
			"codec": f.Codec.String(), "records": f.Count, "first_seq": f.FirstSeq, "last_seq": f.LastSeq,
			"min_ts_ms": f.MinTs, "max_ts_ms": f.MaxTs, "crc": crc})
	} else {
		d.printf("frame offset=%d size=%d stored=%d raw=%d codec=%s records=%d seq=%d..%d time=%s..%s crc=%s\n",
			f.Offset, f.Size(), f.StoredLen, f.RawLen, f.Codec, f.Count, f.FirstSeq, f.LastSeq, fmtMs(f.MinTs), fmtMs(f.MaxTs), crc)
	}
	if !d.opts.Records || crc != "ok" || d.noKey != nil {
		return nil
	}
	return d.records(r, f)
}

func (d *dumper) records(r io.ReaderAt, f segment.FrameInfo) error {
	b := make([]byte, f.Size())
	if _, err := r.ReadAt(b, f.Offset); err != nil {
		return fmt.Errorf("fsck: read frame at %d: %w", f.Offset, err)
	}
	stored := b[segment.FrameHeaderSize : segment.FrameHeaderSize+int(f.StoredLen)]
	_, err := d.opts.Compressor.DecodeFrameWith(b[:segment.FrameHeaderSize], stored, d.ci, func(rec segment.Record) bool {
		if rec.Seq >= d.opts.FromSeq {
			d.record(rec)
		}
		return true
	})
	if err != nil {
		d.printf("  undecodable: %v\n", err)
	}
	return nil
}

func (d *dumper) record(rec segment.Record) {
	preview, cut := rec.Data, false
	if len(preview) > previewLen {
		preview, cut = preview[:previewLen], true
	}
	if d.opts.JSON {
		d.json(map[string]any{"type": "record", "seq": rec.Seq, "arrival_ms": rec.ArrivalMs, "partition_key": rec.PartitionKey,
			"data_size": len(rec.Data), "preview": string(preview), "preview_truncated": cut})
		return
	}
	q := strconv.QuoteToASCII(string(preview))
	if cut {
		q += "..."
	}
	d.printf("  record seq=%d time=%s key=%s size=%d data=%s\n", rec.Seq, fmtMs(rec.ArrivalMs), strconv.QuoteToASCII(rec.PartitionKey), len(rec.Data), q)
}

// damage prints a region's damaged end, and the rejected frame itself when
// its header is readable.
func (d *dumper) damage(r io.ReaderAt, sc *segCheck, reg region) {
	res := reg.res
	if h, crc, ok := rejectedFrame(r, sc.size, res.BadOffset); ok {
		d.frame(r, segment.FrameInfo{Offset: res.BadOffset, FrameHeader: h}, crc+",rejected")
	}
	resume := "none"
	if res.ResumeOffset != 0 {
		resume = fmt.Sprintf("offset %d (seq %d)", res.ResumeOffset, res.ResumeSeq)
	}
	if d.opts.JSON {
		d.json(map[string]any{"type": "damage", "offset": res.BadOffset, "tail": res.Tail.String(), "code": reg.cause,
			"error": fmt.Sprint(res.BadErr), "resume_offset": res.ResumeOffset, "resume_seq": res.ResumeSeq})
		return
	}
	d.printf("damage offset=%d tail=%s code=%s resume=%s: %v\n", res.BadOffset, res.Tail, reg.cause, resume, res.BadErr)
}

// rejectedFrame decodes the header at off if it is sane and fits the file,
// and says whether its CRC holds.
func rejectedFrame(r io.ReaderAt, size, off int64) (segment.FrameHeader, string, bool) {
	if size-off < segment.FrameHeaderSize {
		return segment.FrameHeader{}, "", false
	}
	var hb [segment.FrameHeaderSize]byte
	if _, err := r.ReadAt(hb[:], off); err != nil {
		return segment.FrameHeader{}, "", false
	}
	h, err := segment.DecodeFrameHeader(hb[:])
	if err != nil || off+h.Size() > size {
		return segment.FrameHeader{}, "", false
	}
	b := make([]byte, segment.FrameHeaderSize+int(h.StoredLen))
	if _, err := r.ReadAt(b, off); err != nil {
		return segment.FrameHeader{}, "", false
	}
	if segment.FrameCRC(b, b[segment.FrameHeaderSize:]) != h.CRC {
		return h, "bad", true
	}
	return h, "ok", true
}

func (d *dumper) end(sc *segCheck) {
	s := sc.summary()
	if d.opts.JSON {
		d.json(map[string]any{"type": "end", "file": sc.path, "valid_end": sc.validEnd(), "tail": s.Tail, "frames": s.Frames, "records": s.Records,
			"stored_bytes": s.Stored, "raw_bytes": s.Raw})
		return
	}
	d.printf("end %s valid_end=%d tail=%s frames=%d records=%d seq=%s stored=%d raw=%d ratio=%s\n", path.Base(sc.path), sc.validEnd(), s.Tail,
		s.Frames, s.Records, seqRange(s.Frames, s.FirstSeq, s.LastSeq), s.Stored, s.Raw, ratio(s.Stored, s.Raw))
}

func (d *dumper) printf(format string, args ...any) {
	if d.err == nil {
		_, d.err = fmt.Fprintf(d.w, format, args...)
	}
}

func (d *dumper) json(v map[string]any) {
	if d.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		b = append(b, '\n')
		_, err = d.w.Write(b)
	}
	d.err = err
}
