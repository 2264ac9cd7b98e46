package segment

import (
	"errors"
	"fmt"
	"io"

	"github.com/shardlog/shardlog/vfs"
)

// Reader reads frames of one segment with ReadAt (pread). It is safe for
// concurrent use. It trusts no offset: the caller bounds reads by the
// writer's committed offset (or a Scan's ValidEnd), and any bytes that are not
// a valid frame give an error, never a panic.
type Reader struct {
	f    vfs.File
	path string
	hdr  FileHeader
	c    *Compressor
	ci   *Cipher // an encrypted segment's; nil otherwise
}

// OpenReader opens a plaintext segment read-only and decodes its file header.
// c is needed to read compressed frames. An encrypted segment needs
// OpenReaderWithKeys.
func OpenReader(fs vfs.FS, path string, c *Compressor) (*Reader, error) {
	return OpenReaderWithKeys(fs, path, c, nil)
}

// OpenReaderWithKeys is OpenReader that opens an encrypted segment too: it
// unwraps the segment's data key with the master key keys finds, and fails
// (ErrNoKey, ErrWrongKey) if it cannot. keys may be nil for plaintext files.
func OpenReaderWithKeys(fs vfs.FS, path string, c *Compressor, keys Keys) (*Reader, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("segment: open %s: %w", path, err)
	}
	hdr, err := ReadFileHeader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &Reader{f: f, path: path, hdr: hdr, c: c}
	if hdr.Encrypted() {
		if r.ci, err = hdr.Key.Open(keys); err != nil {
			f.Close()
			return nil, fmt.Errorf("segment: %s: %w", path, err)
		}
	}
	return r, nil
}

// ReadFileHeader reads and decodes the header area at the start of r: the
// file header and, for an encrypted segment, its key block. A file too short
// for it is ErrTorn.
func ReadFileHeader(r io.ReaderAt) (FileHeader, error) {
	var b [MaxFileHeaderSize]byte
	n, err := r.ReadAt(b[:], 0)
	if n < len(b) && err != nil && err != io.EOF {
		return FileHeader{}, fmt.Errorf("segment: read file header: %w", err)
	}
	return DecodeFileHeader(b[:n])
}

// Header is the segment's file header.
func (r *Reader) Header() FileHeader { return r.hdr }

// Path is the segment file's path.
func (r *Reader) Path() string { return r.path }

// Size is the file's current size. For a segment being written it says
// nothing about what is durable; use the writer's committed offset.
func (r *Reader) Size() (int64, error) { return r.f.Size() }

// ReaderAt gives access to the file, e.g. to Scan it.
func (r *Reader) ReaderAt() io.ReaderAt { return r.f }

// FrameHeaderAt reads and sanity-checks the frame header at off, without the
// CRC (see DecodeFrameHeader). EOF exactly at off is ErrEndOfData; EOF inside
// the header is ErrTorn.
func (r *Reader) FrameHeaderAt(off int64) (FrameHeader, error) {
	var b [FrameHeaderSize]byte
	if err := r.readAt(b[:], off); err != nil {
		return FrameHeader{}, r.wrap(off, err)
	}
	h, err := DecodeFrameHeader(b[:])
	if err != nil {
		return FrameHeader{}, r.wrap(off, err)
	}
	return h, nil
}

// ReadFrame reads the frame at off, verifies its CRC and decodes its records,
// calling fn for each until it returns false (see Compressor.DecodeFrame). fn
// may keep Record.Data: every call reads into fresh memory.
func (r *Reader) ReadFrame(off int64, fn func(Record) bool) (FrameHeader, error) {
	var hb [FrameHeaderSize]byte
	if err := r.readAt(hb[:], off); err != nil {
		return FrameHeader{}, r.wrap(off, err)
	}
	h, err := DecodeFrameHeader(hb[:])
	if err != nil {
		return FrameHeader{}, r.wrap(off, err)
	}
	if h.Sealed != r.hdr.Encrypted() {
		return h, r.wrap(off, fmt.Errorf("%w: frame sealed %t in a segment encrypted %t", ErrCorrupt, h.Sealed, r.hdr.Encrypted()))
	}
	if h.Codec != CodecNone && r.c == nil {
		return h, fmt.Errorf("segment: %s: frame at %d is compressed and the Reader has no Compressor", r.path, off)
	}
	stored, release := r.payloadBuf(h)
	defer release()
	if err := r.readAt(stored, off+FrameHeaderSize); err != nil {
		if errors.Is(err, ErrEndOfData) {
			err = fmt.Errorf("%w: EOF after the frame header", ErrTorn)
		}
		return h, r.wrap(off, err)
	}
	c := r.c
	if c == nil {
		c = &Compressor{} // raw frames need no codec
	}
	// Opening in place is safe: stored is this call's own buffer, and for a
	// raw frame the records alias it, which the caller may keep.
	if _, err := c.decodeFrame(hb[:], stored, r.ci, inPlace(stored), nil, fn); err != nil {
		return h, r.wrap(off, err)
	}
	return h, nil
}

// payloadBuf returns a buffer for a frame's stored payload. A raw payload is
// what Record.Data aliases (a sealed one after opening in place), so it is
// always fresh; a compressed one is only read during decoding, so its buffer
// is pooled.
func (r *Reader) payloadBuf(h FrameHeader) ([]byte, func()) {
	if h.Codec == CodecNone {
		return make([]byte, h.StoredLen), func() {}
	}
	p := rawPool.Get().(*[]byte)
	if cap(*p) < int(h.StoredLen) {
		*p = make([]byte, h.StoredLen)
	}
	return (*p)[:h.StoredLen], func() { putRaw(p) }
}

// readAt fills b from off, an 8-aligned offset past the file header. A read
// that ends early is ErrEndOfData if it read nothing and ErrTorn otherwise.
func (r *Reader) readAt(b []byte, off int64) error {
	if off < r.hdr.Size() || off%8 != 0 {
		return errors.New("bad frame offset")
	}
	n, err := r.f.ReadAt(b, off)
	switch {
	case n == len(b):
		return nil
	case err != nil && err != io.EOF:
		return err
	case n == 0:
		return ErrEndOfData
	default:
		return fmt.Errorf("%w: EOF %d bytes into %d at %d", ErrTorn, n, len(b), off)
	}
}

// wrap adds the file and frame to an error.
func (r *Reader) wrap(off int64, err error) error {
	return fmt.Errorf("segment: %s: frame at %d: %w", r.path, off, err)
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }
