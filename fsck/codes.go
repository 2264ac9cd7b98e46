package fsck

// Code names one kind of problem. Codes are stable: scripts match on them.
// The prefix is the severity: E_ errors, W_ warnings, I_ information.
type Code string

// Segment files.
const (
	// EFileHeader: a segment's file header is unreadable (bad magic, CRC,
	// reserved bytes), or a sealed segment's header is torn.
	EFileHeader Code = "E_FILE_HEADER"
	// EFileVersion: a segment of a format version this build cannot read; its
	// frames are not checked.
	EFileVersion Code = "E_FILE_VERSION"
	// EHeaderMismatch: the header's first sequence, segment ID or shard key
	// disagrees with the file's name or the shard it lies in.
	EHeaderMismatch Code = "E_HEADER_MISMATCH"
	// ERead: a file could not be read (I/O error).
	ERead Code = "E_READ"
)

// Frames. Each damaged region of a segment gets one line, named by its cause.
const (
	EFrameHeader  Code = "E_FRAME_HEADER"  // insane frame header (lengths, type, codec, reserved bytes)
	EFrameCRC     Code = "E_FRAME_CRC"     // CRC32C mismatch
	EFramePadding Code = "E_FRAME_PADDING" // nonzero padding after a payload
	EFrameChain   Code = "E_FRAME_CHAIN"   // prevCRC does not match the previous frame: a frame is missing or replayed
	EFrameDecode  Code = "E_FRAME_DECODE"  // --deep: the payload does not decompress or its records do not parse
	ESeqOrder     Code = "E_SEQ_ORDER"     // sequences do not increase (within a segment, or overlapping segments)
	ETsOrder      Code = "E_TS_ORDER"      // arrival time goes backwards between frames of a segment
	EZeroRange    Code = "E_ZERO_RANGE"    // zeroed bytes with data after them
	ECorruptTail  Code = "E_CORRUPT_TAIL"  // damage of no more specific kind with valid frames after it
	// ETornSealed: a sealed segment (not the newest of its shard) ends in bytes
	// that are not a frame. Only the newest segment can have an unacknowledged
	// last write; here the lost bytes were acknowledged.
	ETornSealed Code = "E_TORN_SEALED"
	// WTornTail: the newest segment ends in a torn write, which was never
	// acknowledged; the server cuts it on open.
	WTornTail Code = "W_TORN_TAIL"
)

// Segments of a shard.
const (
	// ESeqGap: a segment does not start where the previous one ended, and
	// its header declares no sequence floor, or one with a shorter gap: a
	// segment is missing from the middle of the shard.
	ESeqGap Code = "E_SEQ_GAP"
	// WTsOrder: a segment's first arrival time is before the previous
	// segment's last. Reads by timestamp may start late.
	WTsOrder Code = "W_TS_ORDER"
	// WStrayFile: a file that is neither a segment nor a kept original: *.tmp
	// (the server deletes these on open), *.bad, or unknown names.
	WStrayFile Code = "W_STRAY_FILE"
	// IBrokenCopy: an original kept by `fsck repair`; delete it once the
	// repair is confirmed.
	IBrokenCopy Code = "I_BROKEN_COPY"
	// ISeqFloor: a segment starts above the previous one's end and its header
	// declares the gap a sequence floor (segment.FlagSeqFloor): the seqs in
	// the gap were lost earlier, and the server never assigns them again.
	ISeqFloor Code = "I_SEQ_FLOOR"
	// INotDecoded: --deep could not decode an encrypted segment's records,
	// for want of its master key (pass --keyring); its frames were checked
	// without decoding (CRCs cover the ciphertext).
	INotDecoded Code = "I_NOT_DECODED"
)

// index.db (derived: the server rebuilds it, but trusts its catalog entry
// for any segment whose size and header match, the newest one included).
const (
	EIndexPastEnd        Code = "E_INDEX_PAST_END"        // a catalog End or seek point beyond a segment's valid data
	EIndexMissingSegment Code = "E_INDEX_MISSING_SEGMENT" // an entry for a segment that is gone, not by retention
	EIndexMismatch       Code = "E_INDEX_MISMATCH"        // a catalog entry whose End matches but whose ranges or counts do not
	EIndexBadSeek        Code = "E_INDEX_BAD_SEEK"        // a seek point not at a frame start, or naming the wrong sequence
	EIndexCheck          Code = "E_INDEX_CHECK"           // bbolt's own consistency check failed
	WIndexStale          Code = "W_INDEX_STALE"           // entries for segments removed by retention or as empty (a crash before the index commit)
	WIndexUnreadable     Code = "W_INDEX_UNREADABLE"      // index.db cannot be opened; the server moves it aside and rebuilds
	WIndexOrphan         Code = "W_INDEX_ORPHAN"          // entries for a shard that does not exist
	INoIndex             Code = "I_NO_INDEX"              // no index.db; the server rebuilds it on open
)

// meta.db and the directory tree.
const (
	EMetaNoDir   Code = "E_META_NO_DIR"  // meta.db lists a shard whose directory is gone
	EMetaMissing Code = "E_META_MISSING" // streams on disk but no meta.db: the server would not see them
	EMetaDecode  Code = "E_META_DECODE"  // a stream record in meta.db does not parse
	WMetaNoDir   Code = "W_META_NO_DIR"  // as E_META_NO_DIR, for a stream still CREATING or DELETING (a crash mid-way)
	WDirNoMeta   Code = "W_DIR_NO_META"  // a stream or shard directory that meta.db does not know
	WInUse       Code = "W_IN_USE"       // a running server holds the directory: results may be stale
)

// Severity is how bad a problem is.
type Severity int

const (
	// Info does not count toward the verdict.
	Info Severity = iota
	// Warning: nothing acknowledged is damaged, or the server fixes it itself.
	Warning
	// Error: acknowledged data is damaged or unreachable, or the server would
	// refuse the shard.
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "ERROR"
	case Warning:
		return "WARNING"
	}
	return "INFO"
}

// MarshalText makes a Severity its name in JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Severity is read off the code's prefix, so a code cannot change severity by
// accident at one call site.
func (c Code) Severity() Severity {
	switch {
	case len(c) > 0 && c[0] == 'E':
		return Error
	case len(c) > 0 && c[0] == 'W':
		return Warning
	}
	return Info
}

// A cluster node's data directory (cluster.go).
const (
	// EClusterCurrent: a group's CURRENT is not one whole frame, or names a
	// generation that does not exist; the node does not start.
	EClusterCurrent Code = "E_CLUSTER_CURRENT"
	// EWALFrame: a sealed WAL file (not the newest) has a bad frame, or a
	// frame of an unknown kind has a matching CRC.
	EWALFrame Code = "E_WAL_FRAME"
	// WWALTornTail: the newest WAL file ends in a torn write, never
	// acknowledged; the node cuts it when it starts.
	WWALTornTail Code = "W_WAL_TORN_TAIL"
	// WDamagedReplica: a directory cluster/groups/<group>.damaged-<time>/:
	// a replica whose files failed recovery with corruption, moved aside
	// by the node (which went on without it) and kept for the operator.
	WDamagedReplica Code = "W_DAMAGED_REPLICA"
	// WStaleGeneration: a group directory holds a generation other than
	// CURRENT's (an interrupted snapshot installation); the node removes it.
	WStaleGeneration Code = "W_STALE_GENERATION"
)
