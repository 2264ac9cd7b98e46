package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/vfs"
)

// testMaster returns a master key made of b repeated.
func testMaster(t testing.TB, b byte) MasterKey {
	t.Helper()
	m, err := NewMasterKey(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// keysOf resolves exactly the given master keys.
func keysOf(ms ...MasterKey) Keys {
	return func(fp Fingerprint) (MasterKey, error) {
		for _, m := range ms {
			if m.ID == fp {
				return m, nil
			}
		}
		return MasterKey{}, fmt.Errorf("%w: master key %s", ErrNoKey, fp)
	}
}

// newEncWriter creates an encrypted segment in a fresh MemFS.
func newEncWriter(t *testing.T, c *Compressor, m MasterKey) (*vfs.MemFS, *Writer) {
	t.Helper()
	fs := vfs.NewMemFS()
	if err := fs.MkdirAll("/shard"); err != nil {
		t.Fatal(err)
	}
	w, err := CreateEncrypted(fs, testPath, FileHeader{SegmentID: 42, FirstSeq: 100, Codec: CodecZstd}, c, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return fs, w
}

// writeEncFrames appends and syncs frames of JSON (compressible) and random
// (stored raw) records, returning every record written and the frames.
func writeEncFrames(t *testing.T, w *Writer, frames int) ([]Record, []FrameInfo) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var all []Record
	var infos []FrameInfo
	seq := w.Header().FirstSeq
	for i := range frames {
		recs := jsonBatch(rng, seq, int64(1000+100*i), 20, 200)
		if i%2 == 1 {
			recs = randomBatch(rng, seq, int64(1000+100*i), 3, 300)
		}
		fi, err := w.Append(recs)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
		infos = append(infos, fi)
		seq = fi.LastSeq + 1
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	return all, infos
}

func scanWith(t *testing.T, fs *vfs.MemFS, opts ScanOptions) (ScanResult, error) {
	t.Helper()
	f, err := fs.Open(testPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	return Scan(f, size, opts)
}

// TestEncryptedRoundTrip: an encrypted segment reads back with its key, its
// frames are sealed and raw and compressed payloads both work, no record
// byte is in the file in clear, CRC scans need no key, and the header area
// is the fixed header (hdrlen still 64, so old builds see only the unknown
// flag) plus the key block.
func TestEncryptedRoundTrip(t *testing.T) {
	c := newTestCompressor(t)
	m := testMaster(t, 7)
	fs, w := newEncWriter(t, c, m)
	if w.Size() != MaxFileHeaderSize || !w.Header().Encrypted() || w.Header().Key.Master != m.ID {
		t.Fatalf("size %d header %+v", w.Size(), w.Header())
	}
	want, infos := writeEncFrames(t, w, 6)
	codecs := map[Codec]bool{}
	for _, fi := range infos {
		if !fi.Sealed || fi.StoredLen <= SealOverhead {
			t.Fatalf("frame %+v not sealed", fi.FrameHeader)
		}
		codecs[fi.Codec] = true
	}
	if !codecs[CodecNone] || !codecs[CodecZstd] {
		t.Fatalf("want raw and zstd frames, got %v", codecs)
	}
	b, _ := fs.Bytes(testPath)
	if binary.LittleEndian.Uint16(b[fhHdrLen:]) != FileHeaderSize || binary.LittleEndian.Uint32(b[fhFlags:]) != FlagEncrypted {
		t.Fatalf("header bytes %x", b[:FileHeaderSize])
	}
	for _, r := range want {
		if bytes.Contains(b, r.Data[:32]) || bytes.Contains(b, []byte(`"event_id"`)) {
			t.Fatalf("record seq %d is in the file in clear", r.Seq)
		}
	}

	r, err := OpenReaderWithKeys(fs, testPath, c, keysOf(testMaster(t, 1), m))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []Record
	for _, fi := range infos {
		if _, err := r.ReadFrame(fi.Offset, func(rec Record) bool { got = append(got, rec); return true }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].PartitionKey != want[i].PartitionKey || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("record %d differs", i)
		}
	}

	for _, opts := range []ScanOptions{{}, {VerifyCRC: true}, {Deep: true, Compressor: c, Keys: keysOf(m)}} {
		res, err := scanWith(t, fs, opts)
		if err != nil || res.Tail != TailClean || res.Frames != len(infos) || res.ValidEnd != w.Committed() {
			t.Fatalf("scan %+v: %v %+v", opts, err, res)
		}
	}
}

// TestEncryptedNeedsItsKey: without the master key nothing decrypts, and
// that is reported as a missing key, never as damage.
func TestEncryptedNeedsItsKey(t *testing.T) {
	c := newTestCompressor(t)
	m := testMaster(t, 7)
	fs, w := newEncWriter(t, c, m)
	writeEncFrames(t, w, 2)
	if _, err := OpenReader(fs, testPath, c); !errors.Is(err, ErrNoKey) {
		t.Fatalf("OpenReader without keys: %v", err)
	}
	if _, err := OpenReaderWithKeys(fs, testPath, c, keysOf(testMaster(t, 8))); !errors.Is(err, ErrNoKey) {
		t.Fatalf("another key: %v", err)
	}
	// A keyring that answers with the wrong key for the fingerprint.
	liar := func(Fingerprint) (MasterKey, error) { return testMaster(t, 8), nil }
	if _, err := OpenReaderWithKeys(fs, testPath, c, liar); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	res, err := scanWith(t, fs, ScanOptions{Deep: true, Compressor: c})
	if !errors.Is(err, ErrNoKey) || errors.Is(err, ErrCorrupt) || res.Tail != TailClean {
		t.Fatalf("deep scan without keys: %v %+v", err, res)
	}
}

// TestEncryptedDamage: a bit flip in ciphertext is caught by the CRC before
// any decryption (torn if last, corrupt if valid frames follow); ciphertext
// changed with its CRC recomputed passes the CRC but fails GCM
// authentication, which deep scans and readers report as corruption; a key
// block changed with its CRC recomputed no longer unwraps (ErrWrongKey).
func TestEncryptedDamage(t *testing.T) {
	c := newTestCompressor(t)
	m := testMaster(t, 7)
	tests := []struct {
		name     string
		edit     func(b []byte, fs []FrameInfo)
		crcTail  TailState // with VerifyCRC
		deepTail TailState // with Deep and the key
		readErr  string    // ReadFrame of the damaged frame
	}{
		{"flip in the last frame's ciphertext", func(b []byte, fs []FrameInfo) { b[fs[2].Offset+FrameHeaderSize+20] ^= 1 }, TailTorn, TailTorn, ""},
		{"flip in the first frame's ciphertext", func(b []byte, fs []FrameInfo) { b[fs[0].Offset+FrameHeaderSize+20] ^= 1 }, TailCorrupt, TailCorrupt, ""},
		// The last frame, so that the chain still holds after the new CRC.
		{"flip in the last frame's tag, CRC recomputed", func(b []byte, fs []FrameInfo) {
			f := fs[2]
			end := f.Offset + FrameHeaderSize + int64(f.StoredLen) // the tag ends the stored payload
			b[end-1] ^= 0x10
			recrc(b, f)
		}, TailClean, TailCorrupt, "GCM"},
		{"flip in the last frame's nonce, CRC recomputed", func(b []byte, fs []FrameInfo) {
			b[fs[2].Offset+FrameHeaderSize] ^= 1
			recrc(b, fs[2])
		}, TailClean, TailCorrupt, "GCM"},
		{"last frame's max ts changed, CRC recomputed", func(b []byte, fs []FrameInfo) {
			// The header's fields are authenticated too.
			binary.LittleEndian.PutUint64(b[fs[2].Offset+frMaxTs:], uint64(fs[2].MaxTs+1))
			recrc(b, fs[2])
		}, TailClean, TailCorrupt, "GCM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, w := newEncWriter(t, c, m)
			_, infos := writeEncFrames(t, w, 3)
			b, _ := fs.Bytes(testPath)
			tt.edit(b, infos)
			fs.SetBytes(testPath, b)
			res, err := scanWith(t, fs, ScanOptions{VerifyCRC: true})
			if err != nil || res.Tail != tt.crcTail {
				t.Fatalf("CRC scan: %v, tail %s, want %s (%v)", err, res.Tail, tt.crcTail, res.BadErr)
			}
			res, err = scanWith(t, fs, ScanOptions{Deep: true, Compressor: c, Keys: keysOf(m)})
			if err != nil || res.Tail != tt.deepTail {
				t.Fatalf("deep scan: %v, tail %s, want %s (%v)", err, res.Tail, tt.deepTail, res.BadErr)
			}
			if tt.readErr == "" {
				return
			}
			r, err := OpenReaderWithKeys(fs, testPath, c, keysOf(m))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = r.ReadFrame(infos[2].Offset, func(Record) bool { return true })
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.readErr) {
				t.Fatalf("ReadFrame: %v, want ErrCorrupt naming %s", err, tt.readErr)
			}
		})
	}
}

// recrc recomputes the CRC of frame f in file bytes b.
func recrc(b []byte, f FrameInfo) {
	hdr := b[f.Offset : f.Offset+FrameHeaderSize]
	h, err := DecodeFrameHeader(hdr)
	if err != nil {
		panic(err)
	}
	stored := b[f.Offset+FrameHeaderSize : f.Offset+FrameHeaderSize+int64(h.StoredLen)]
	binary.LittleEndian.PutUint32(hdr[frCRC:], FrameCRC(hdr, stored))
}

func TestEncryptedKeyBlockDamage(t *testing.T) {
	c := newTestCompressor(t)
	m := testMaster(t, 7)
	fs, w := newEncWriter(t, c, m)
	writeEncFrames(t, w, 1)
	b, _ := fs.Bytes(testPath)

	flipped := bytes.Clone(b)
	flipped[kbWrapped+3] ^= 1
	if _, err := DecodeFileHeader(flipped); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flip in the key block: %v", err)
	}
	binary.LittleEndian.PutUint32(flipped[kbCRC:], crc32Castagnoli(flipped[kbMaster:kbCRC]))
	fs.SetBytes(testPath, flipped)
	if _, err := OpenReaderWithKeys(fs, testPath, c, keysOf(m)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("altered wrapped key with a good CRC: %v", err)
	}
	rsvd := bytes.Clone(b)
	rsvd[kbRsvd] = 1
	binary.LittleEndian.PutUint32(rsvd[kbCRC:], crc32Castagnoli(rsvd[kbMaster:kbCRC]))
	if _, err := DecodeFileHeader(rsvd); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("nonzero reserved key block bytes: %v", err)
	}
}

// TestEncryptedTornCreate: Create's one write of an encrypted header area,
// cut short or torn, is a torn creation, as for a plaintext header.
func TestEncryptedTornCreate(t *testing.T) {
	c := newTestCompressor(t)
	fs, w := newEncWriter(t, c, testMaster(t, 7))
	full, _ := fs.Bytes(testPath)
	full = full[:w.Size()]
	badKB := bytes.Clone(full)
	badKB[kbWrapped] ^= 1
	zeroKB := bytes.Clone(full)
	clear(zeroKB[FileHeaderSize:])
	for name, b := range map[string][]byte{
		"header only":      full[:FileHeaderSize],
		"half a key block": full[:FileHeaderSize+40],
		"all zeros":        make([]byte, MaxFileHeaderSize),
		"bad key block":    badKB,
		"zeroed key block": zeroKB,
		"one byte short":   full[:MaxFileHeaderSize-1],
	} {
		fs.SetBytes(testPath, b)
		if _, err := scanWith(t, fs, ScanOptions{VerifyCRC: true}); !errors.Is(err, ErrTorn) {
			t.Errorf("%s: %v, want ErrTorn", name, err)
		}
	}
}

// TestEncryptedPowerLoss: the writer's power-loss guarantees hold for
// encrypted segments: every synced frame survives, the rest is a torn tail,
// never corruption, and what survives decrypts.
func TestEncryptedPowerLoss(t *testing.T) {
	c := newTestCompressor(t)
	m := testMaster(t, 3)
	for _, mode := range []vfs.TearMode{vfs.TearNone, vfs.TearPrefix, vfs.TearZeros} {
		for seed := uint64(0); seed < 10; seed++ {
			fs, w := newEncWriter(t, c, m)
			_, synced := writeEncFrames(t, w, 3)
			committed := w.Committed()
			rng := rand.New(rand.NewPCG(seed, 9))
			seq := synced[len(synced)-1].LastSeq + 1
			for i := 0; i < 2; i++ {
				f, err := w.Append(randomBatch(rng, seq, 5000, 2, 300))
				if err != nil {
					t.Fatal(err)
				}
				seq = f.LastSeq + 1
			}
			fs.Crash(rand.New(rand.NewPCG(seed, 10)), mode)
			res, err := scanWith(t, fs, ScanOptions{Deep: true, Compressor: c, Keys: keysOf(m)})
			switch {
			case err != nil:
				t.Fatalf("%d/%d: %v", mode, seed, err)
			case res.Tail == TailCorrupt:
				t.Fatalf("%d/%d: corrupt after a power cut: %+v", mode, seed, res)
			case res.Frames < len(synced) || res.ValidEnd < committed:
				t.Fatalf("%d/%d: lost synced frames: %+v", mode, seed, res)
			}
		}
	}
}

// TestEncryptedFrameModeMismatch: a plaintext frame in an encrypted segment
// (or a sealed one in a plaintext segment) is damage, found without keys.
func TestEncryptedFrameModeMismatch(t *testing.T) {
	c := newTestCompressor(t)
	rng := rand.New(rand.NewPCG(4, 4))
	plainFrame, _ := c.EncodeFrame(nil, jsonBatch(rng, 100, 1, 3, 50), 0)
	m := testMaster(t, 7)
	fs, w := newEncWriter(t, c, m)
	b, _ := fs.Bytes(testPath)
	fs.SetBytes(testPath, append(b[:w.Size()], plainFrame...))
	res, err := scanWith(t, fs, ScanOptions{VerifyCRC: true})
	if err != nil || res.Tail == TailClean || !strings.Contains(res.BadErr.Error(), "sealed false") {
		t.Fatalf("plaintext frame in an encrypted segment: %v %+v", err, res)
	}
	ci := mustCipher(t, m)
	sealed, _ := c.EncodeSealedFrame(nil, jsonBatch(rng, 100, 1, 3, 50), 0, ci)
	pfs, pw := newWriter(t, c)
	pb, _ := pfs.Bytes(testPath)
	pfs.SetBytes(testPath, append(pb[:pw.Size()], sealed...))
	res, err = scanWith(t, pfs, ScanOptions{VerifyCRC: true})
	if err != nil || res.Tail == TailClean || !strings.Contains(res.BadErr.Error(), "sealed true") {
		t.Fatalf("sealed frame in a plaintext segment: %v %+v", err, res)
	}
}

func mustCipher(t *testing.T, m MasterKey) *Cipher {
	t.Helper()
	_, ci, err := NewKeyBlock(m)
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// TestSealedFramesNeverRepeat: equal records sealed twice give different
// ciphertexts (fresh nonces), both of which open.
func TestSealedFramesNeverRepeat(t *testing.T) {
	c := newTestCompressor(t)
	ci := mustCipher(t, testMaster(t, 7))
	recs := []Record{{Seq: 1, ArrivalMs: 1, PartitionKey: "k", Data: []byte("same data")}}
	a, ha := c.EncodeSealedFrame(nil, recs, 0, ci)
	b, hb := c.EncodeSealedFrame(nil, recs, 0, ci)
	if bytes.Equal(a, b) || ha.CRC == hb.CRC {
		t.Fatal("two sealings of one frame are equal: a nonce was reused")
	}
	for _, f := range [][]byte{a, b} {
		h, _ := DecodeFrameHeader(f)
		stored := f[FrameHeaderSize : FrameHeaderSize+h.StoredLen]
		var got string
		if _, err := c.DecodeFrameWith(f[:FrameHeaderSize], stored, ci, func(r Record) bool { got = string(r.Data); return true }); err != nil || got != "same data" {
			t.Fatalf("%q %v", got, err)
		}
		if _, err := c.DecodeFrame(f[:FrameHeaderSize], stored, func(Record) bool { return true }); !errors.Is(err, ErrNoKey) {
			t.Fatalf("DecodeFrame of a sealed frame: %v", err)
		}
	}
}

func TestNewMasterKey(t *testing.T) {
	if _, err := NewMasterKey(make([]byte, 16)); err == nil {
		t.Fatal("accepted a 16-byte master key")
	}
	a, b := testMaster(t, 1), testMaster(t, 2)
	if a.ID == b.ID || a.ID != testMaster(t, 1).ID || len(a.ID.String()) != 32 {
		t.Fatalf("fingerprints %s %s", a.ID, b.ID)
	}
}

func crc32Castagnoli(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TestCipherSealOpen: Seal's output opens with the same data key and aad,
// into dst after what it holds; a fresh nonce each time; another aad, a
// changed byte, a truncation or another data key fails with ErrCorrupt.
func TestCipherSealOpen(t *testing.T) {
	ci := mustCipher(t, testMaster(t, 3))
	aad := []byte("header")
	a := ci.Seal([]byte("prefix"), []byte("plain text"), aad)
	b := ci.Seal(nil, []byte("plain text"), aad)
	if !bytes.HasPrefix(a, []byte("prefix")) || len(b) != len("plain text")+SealOverhead || bytes.Equal(a[6:], b) {
		t.Fatalf("sealed %x and %x", a, b)
	}
	if pt, err := ci.Open([]byte("x"), a[6:], aad); err != nil || string(pt) != "xplain text" {
		t.Fatalf("open: %q %v", pt, err)
	}
	flipped := bytes.Clone(b)
	flipped[len(flipped)/2] ^= 1
	for _, tc := range []struct {
		name        string
		c           *Cipher
		sealed, aad []byte
	}{
		{"other aad", ci, b, []byte("Header")},
		{"changed byte", ci, flipped, aad},
		{"truncated", ci, b[:SealOverhead-1], aad},
		{"other data key", mustCipher(t, testMaster(t, 3)), b, aad},
	} {
		if _, err := tc.c.Open(nil, tc.sealed, tc.aad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", tc.name, err)
		}
	}
}
