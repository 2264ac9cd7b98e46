// Package fsck inspects, verifies and repairs a shardlog data directory from
// the outside: it is the library behind `shardlog fsck verify|dump|repair`.
//
// Layering: fsck reads segments with package segment (Scan is the single
// validator, shared with the server's recovery) and the bbolt files with
// package index. It does not import storage or shard; the layout rules it
// needs (directory names, index keys, shard keys, meta.db's records, LOCK)
// come from package datadir, which the server writes the directory with.
//
// # Verify
//
// Verify checks, per shard: every segment's file header (against its name and
// shard) and frames (lengths, CRC, padding, prevCRC chain, sequence and time
// order; --deep also decodes every record); how each segment ends (clean, torn
// or corrupt, and past corrupt damage, the frames that follow it); the chain of
// segments (each starts at the previous one's LastSeq+1, or at its FirstSeq if
// it has no frames, or above that if its header declares a sequence floor
// with that gap, reported as I_SEQ_FLOOR with the seqs it keeps from reuse;
// a floor with a shorter recorded gap is E_SEQ_GAP); index.db against
// the segments; meta.db against the directories; and stray files. Each problem
// has a stable code (codes.go).
//
// Encrypted segments (segment.FlagEncrypted) are checked without keys: CRCs
// cover the ciphertext. --deep and repairs that re-encode frames need the
// segment's master key (Options.Keys); without it --deep reports
// I_NOT_DECODED and checks the frames without decoding, and repair fails
// rather than drop a frame it cannot re-encode. A repaired encrypted segment
// keeps its key block (and so its data key); a header rebuilt from the name
// keeps the key block too when its own CRC holds.
//
// Text output is one line per problem,
//
//	SEVERITY CODE FILE OFFSET SEQ MESSAGE
//
// (OFFSET and SEQ are "-" when they do not apply), then one summary line per
// segment and per shard, then a verdict: "OK" or "N errors, M warnings". INFO
// lines (kept .broken originals, a missing index.db, declared sequence floors)
// do not count.
//
// Exit codes: 0 clean, 1 warnings only, 2 errors, 3 repaired, 4 fsck itself
// failed.
//
// # Repair
//
// Repair takes the data directory's LOCK (so it refuses to run beside a
// server) and rewrites every damaged segment as a new segment file with a new
// ID: the valid frames before the first damage are copied byte for byte, and
// valid frames after damage are decoded and re-encoded, re-chained (prevCRC)
// to the frames before them. Records keep their sequence numbers, so lost
// records leave a gap between frames of one segment, which Scan accepts (it
// requires strictly increasing sequences, not contiguous ones), while the chain
// of segments (shard/recover.go checkChain) still holds. A segment that follows
// lost data is rebased (rewritten with a lower header FirstSeq, which is only a
// lower bound) so that the chain holds across files too. Every original is kept,
// renamed to <name>.broken, and index.db is moved aside so the server rebuilds
// it. The report names the exact sequence ranges lost.
//
// Repair never makes the server assign a sequence number twice. The server
// starts a shard after its newest segment's last frame (or at the FirstSeq of
// an empty newest segment), so dropping the frames that hold a shard's
// highest seqs would hand them out again. Repair computes the shard's floor
// (floor.go): one above the highest seq in any segment name, valid frame or
// intact frame at corrupt damage. Where the repaired shard would start below
// it, repair first writes an empty segment at the floor whose header has
// segment.FlagSeqFloor and the gap's size (action "floor"), synced, renamed into place with an
// ID above every other and the directory synced, before it changes any other
// file of the shard: a crash at any later step leaves the server a shard it
// refuses (read-only) or starts above the floor. The server accepts the gap
// before a flagged segment instead of calling it a missing segment, starts at
// its FirstSeq, and sets the flag in the next segment it starts. The dropped
// seqs are reported lost. A torn tail of the newest segment does not count
// toward the floor: it was never acknowledged, and the server cuts it and
// reuses its seqs itself. A segment that declares a floor keeps its first seq
// in later repairs (it is never rebased below it), and the gap before it is
// neither repaired nor reported lost again.
package fsck
