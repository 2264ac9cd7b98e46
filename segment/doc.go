// Package segment is the on-disk format of a shard's log: append-only segment
// files of CRC-checked, optionally zstd-compressed frames, one frame per group
// commit. It knows nothing of streams; a shard is just "a directory of segments"
// to it. All I/O goes through vfs.FS.
//
// # File layout
//
// A segment file is a 64-byte file header (followed, in an encrypted segment,
// by a 96-byte key block: see Encryption) followed by frames, each padded to an
// 8-byte boundary. The file ends where the data ends: there is no preallocation,
// and an all-zero frame header is also read as the end of data. All integers are
// little-endian. These layouts are part of the wire format and must not change
// without a new version number.
//
//	File header (64 bytes)
//	+--------+-------+-------+-------+--------+----------+----------+---------+-------+-------+-------+-----------+
//	| magic  |version|hdrlen | flags | seg ID | firstSeq | shardKey | created | codec | rsvd  | dict  | floor gap | CRC32C
//	|   8    |   2   |   2   |   4   |   8    |    8     |    8     |   8 ns  |   1   |   3   |   4   |     4     | 4 (bytes 0-59)
//	+--------+-------+-------+-------+--------+----------+----------+---------+-------+-------+-------+-----------+
//	  0        8       10      12      16       24         32         40        48      49      52      56          60
//
// floor gap: with FlagSeqFloor, the declared gap's size (see below); else 0,
// like the reserved bytes. dict (the dictionary ID) is 0 in version 1.
//
//	Frame header (56 bytes), then the stored payload, then zero padding to 8 bytes
//	+------+-------+-------+------+--------+--------+-------+----------+---------+-------+-------+---------+--------+
//	| type | codec | flags | rsvd | stored | raw    | count | firstSeq | lastSeq | minTs | maxTs | prevCRC | CRC32C |
//	|  1   |   1   |   1   |  1   |   4    |   4    |   4   |    8     |    8    |  8 ms |  8 ms |    4    |   4    |
//	+------+-------+-------+------+--------+--------+-------+----------+---------+-------+-------+---------+--------+
//	  0      1       2       3      4        8        12      16         24        32      40      48        52
//
// flags is a bit set; a reader rejects a file with a bit it does not know
// (ErrVersion), since each changes what the file means. Version 1 defines two
// (FlagEncrypted is described under Encryption):
//
//   - 1 (FlagSeqFloor): a sequence floor. The sequences below this segment's
//     firstSeq that no earlier segment holds were given out once and lost (a
//     repair dropped them), so they must never be given out again, and the gap
//     before this segment is intentional, not a missing file. Without the
//     flag, a segment that starts above the previous one's end (its last
//     frame's lastSeq+1, or its firstSeq if it has no frames) means a segment
//     is missing. A floor segment is usually empty: its header is its content.
//     Whoever starts a segment above the end of the last segment that holds
//     frames sets the flag again, so the floor outlives the file that
//     declared it.
//
//     floor gap (uint32, bytes 56-59) records the size of the declared gap:
//     firstSeq minus the first lost seq, which is the previous segment's end.
//     A gap of any other size is still a missing segment: a floor does not
//     excuse the loss of the segment it was declared after. 0 means not
//     recorded (a gap too large for 32 bits, or a file written before the
//     field existed, when these bytes were reserved): then any gap before
//     the segment is the declared one. Without the flag the field is 0.
//
// A file written before the flag existed has flags 0 and reads unchanged; a
// build older than the flag rejects a floor segment, which is right, since it
// could not honour the floor. A build that has the flag but not the floor gap
// reads a nonzero floor gap as corrupt reserved bytes (ErrCorrupt), so its
// fsck must not repair files this build wrote.
//
// A frame's flags byte is 0, or FrameSealed (1) in an encrypted segment; any
// other value, and a nonzero rsvd byte, is ErrCorrupt. (Before encryption the
// two bytes were one reserved field, zero in every frame, so plaintext frames
// are unchanged.)
//
// type is 1 (records); 0 means "no frame here" (end of data). codec is 0 (raw)
// or 1 (zstd); a frame is stored raw when compression does not make it smaller.
// The CRC32C (Castagnoli) covers header bytes 0-51 and the stored payload, so a
// torn header cannot pass, and a reader can validate a frame without
// decompressing it. prevCRC is the CRC of the previous frame in the file (0 for
// the first), chaining frames so that a missing or replayed frame is caught even
// where sequence numbers allow gaps.
//
// # Encryption
//
// FlagEncrypted (2) marks an encrypted segment. Its 64-byte header is as
// above (hdrlen stays 64, so a build without the flag reaches the flags check
// and refuses the file with ErrVersion instead of calling it corrupt), and a
// key block follows it; the first frame starts at 160:
//
//	Key block (96 bytes, file offsets)
//	+-------------+------------+-------------------------+----------+--------+
//	| master fp   | wrap nonce | wrapped data key + tag  | reserved | CRC32C |
//	|     16      |     12     |         32 + 16         |    16    |   4    |
//	+-------------+------------+-------------------------+----------+--------+
//	  64            80           92                        140        156
//
// Each encrypted segment has its own random 256-bit data key, drawn when the
// segment is created, sealed with AES-256-GCM under a master key (the
// stream's KMS key, from the keyring) with the master key's fingerprint as
// additional data. The fingerprint (HMAC-SHA256(master, "shardlog master key
// fingerprint v1"), first 16 bytes) says which master key unwraps it, without
// revealing it; any keyring entry with the same key bytes opens the segment,
// whatever it is called. The CRC32C covers bytes 64-155; reserved bytes are
// zero. A key block whose CRC holds but which does not unwrap is
// ErrWrongKey; a missing master key is ErrNoKey; neither is damage.
//
// Every frame of an encrypted segment has FrameSealed, and only those do (a
// mismatch is ErrCorrupt). Its stored payload is
//
//	nonce (12) | AES-256-GCM ciphertext of the codec's output | tag (16)
//
// so StoredLen is the codec's output plus SealOverhead (28), and a raw
// frame's StoredLen is RawLen+28. Compression comes first (ciphertext does
// not compress). The nonce is 12 random bytes per frame: a nonce derived from
// the frame's offset or sequence would repeat, with other plaintext, when
// recovery cuts a torn frame and the next frame is written in its place. The
// additional data is frame header bytes 0-47 (everything but prevCRC and the
// CRC), so the records' sequences, times, count and lengths cannot be altered
// without failing authentication, while a repair may re-chain frames without
// the keys.
//
// The frame CRC covers the stored payload, i.e. the ciphertext, so Scan
// without Deep, recovery and fsck verify check encrypted segments without any
// key, and a torn write or a bit flip is caught by the CRC before decryption
// is tried. A frame whose CRC holds but which fails GCM authentication was
// altered on purpose (or sealed under another data key): ErrCorrupt naming
// GCM. Deep scans and readers need the key (ScanOptions.Keys,
// OpenReaderWithKeys).
//
// # Records payload
//
// Before compression, a frame's payload is its records back to back:
//
//	uvarint(seq gap)        seq = firstSeq for the first record, prev+1+gap after
//	uvarint(arrival - minTs)
//	uvarint(len(partitionKey)) partitionKey
//	byte flags              reserved, 0
//	uvarint(len(data))      data
//
// The encoding is canonical: the first record's seq gap and arrival delta are
// 0 (its seq and arrival are the frame's firstSeq and minTs), arrival times do
// not decrease within a frame, and the last record's seq and arrival are the
// frame's lastSeq and maxTs. Decoding checks all of it, and that the records
// fill the raw payload exactly.
//
// Sequences are per-shard ordinals, strictly increasing within and across frames
// and files; they are contiguous except where a client's SequenceNumberForOrdering
// made the shard skip ahead. Arrival times never decrease within a shard, so
// frame and segment [minTs, maxTs] ranges support binary search by time.
//
// # Invariants
//
//   - A frame is written with one WriteAt and acknowledged only after Sync.
//   - Readers are bounded by the committed offset the writer publishes, never by
//     the file size.
//   - Scan is the single validator: recovery, readers and fsck all classify a
//     file's tail with it, as clean, torn (an unacknowledged last write that is
//     safe to cut) or corrupt (damage no torn write explains: valid frames
//     after it, or a complete, chained frame that breaks an invariant; never
//     cut automatically).
package segment
