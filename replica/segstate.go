package replica

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// segState is a group's applied state in the project's own segment files
// (docs/cluster.md §2): the appliedState the host writes committed entries
// to, and the store ReadApplied reads.
//
// Why the segment package's Writer directly, and not a shard.Shard:
//   - the host applies entries inside its Ready round, with its lock held,
//     from one goroutine, and the simulation replays a seed exactly. A Shard
//     has its own writer goroutine (an Append is a hand-off and a wait, per
//     entry, under the host's lock), a wall-clock ticker, and assigns
//     ordinals and arrival times itself; here both come from the entry;
//   - a Shard's catalog is index.db, a bbolt file on the real file system,
//     not on vfs: it cannot live on the MemFS whose power cuts the tests
//     simulate, and a host dropped at a power cut (as the simulation drops
//     it) would keep bbolt's lock;
//   - a snapshot's installation replaces the whole state; a Shard trusts
//     catalog entries that match a file's ID, first sequence and size,
//     which a replaced segment can match by accident.
//
// The files are laid out as a Shard lays out its own (segment.FileName, each
// segment starting at the ordinal after the previous one's last record, only
// the newest one ever torn), so `shardlog fsck dump` reads them, and a
// read-only Shard could serve them later.
//
// Layout: <Dir>/groups/<group %016x>/ holds CURRENT and one generation
// directory <gen %016x>/ of segments. CURRENT (absent: generation 0) names
// the live generation and the index of the snapshot it was installed from;
// an installation writes a new generation whole, syncs it, then renames a
// new CURRENT into place: the one atomic step (install).
//
// Records are stored opaque, as the entry carried them: the record's bytes
// are the segment record's Data, with an empty partition key, its ordinal
// Ordinal(index, position) and the entry's arrival time (the leader's),
// raised to the previous entry's if the leader's clock was behind, since
// arrival times never decrease within a segment chain. That raise depends
// only on the log, so every replica stores the same times.
//
// Durability: frames are written without an fdatasync (the WAL holds the
// entries durably); sync makes them durable, and runs before the WAL behind
// them is deleted. A roll syncs the segment it leaves, so only the newest
// segment can have an unsynced, torn tail, which recovery cuts; the WAL
// re-applies what was cut. A power cut may persist a later page of that
// tail and lose an earlier one: a tail that looks corrupt but holds only
// entries the WAL still holds is cut too (floorCovers). Segments only ever hold committed entries, so
// whatever prefix of them survives is true.
//
// Concurrency: the host calls every method but read with its own lock held;
// read runs without it (ReadApplied), so mu orders reads against writes,
// rolls and installations.
type segState struct {
	fs    vfs.FS
	comp  *segment.Compressor
	dir   string // the group's directory
	group uint64
	size  int64              // a segment rolls once it would pass this
	now   func() int64       // Unix ns, for segment headers
	crash func(string) error // the host's crash points (tests)
	// synced, if set, is told of each fdatasync of a written segment (the
	// host counts them: Stats, Config.Observer).
	synced func(d time.Duration, err error)

	// floor is the group's compaction point in the WAL at Open: the WAL
	// holds every entry above it, and the segments were synced up to it
	// before it was taken (Host.maybeRoll). recover cuts a corrupt tail of
	// the newest segment that holds only entries above it, or only records
	// at or above floorNext (floorCovers).
	floor uint64
	// floorNext is the ordinal after the newest record the segments held
	// when they were synced at the WAL roll that took floor (its header's
	// kindStateSynced frame), if floorNextKnown (the WAL may not say). Every
	// record at or above it was written after that fdatasync, to an entry
	// above floor, so the WAL holds it (floorCovers). A known 0 is a group
	// none of whose entries up to floor held records (simulation seed 36
	// once h44 changed its schedule: taking 0 for unknown set a young
	// group's replica aside as damaged for a torn first block).
	floorNext      uint64
	floorNextKnown bool
	// cutCorrupt, set by recover, is the corrupt tail it cut (for the log).
	cutCorrupt error

	// life names this opening of the state (snapManifest): random, drawn
	// when the host opens it; an installation keeps it (its generation
	// changes).
	life uint64

	mu      sync.RWMutex
	gen     uint64 // the live generation
	mark    uint64 // the snapshot index it was installed at; 0: none
	segs    []*stateSeg
	w       *segment.Writer // the newest segment's, nil until written after an open
	wnext   uint64          // the ordinal after the newest record written
	durable uint64          // the ordinal after the newest record fdatasync'd (durableNext)
	lastTs  int64           // the newest arrival stored or queued
	last    uint64          // the highest index held: written, queued or marked
	nextID  uint64          // the next segment ID
	pending []segment.Record
	dirty   bool // written since the last sync
	closed  bool
	// trimMu serializes trims: each unlinks the oldest segment left, and
	// two at once could make a newer unlink durable before an older one.
	trimMu sync.Mutex
	// brokenTrimOrder is a deliberately broken mode for the trim's crash
	// test: expired segments are unlinked newest first. Never set outside
	// tests.
	brokenTrimOrder bool
}

var _ appliedState = (*segState)(nil)

// stateSeg is one segment file of the live generation.
type stateSeg struct {
	firstSeq, id uint64
	path         string
	start        int64  // where the first frame starts (the header's size)
	lastSeq      uint64 // meaningful when frames > 0
	frames       int
	end          int64 // just past the last frame written
	seeks        []seekPoint
	sinceSeek    int64
	maxTs        int64 // the newest arrival in it (arrivals never decrease along the chain)
}

// seekPoint: the frame at offset starts with seq. Every segment's first frame
// has one, then one every seekInterval stored bytes, so a read starts at
// most seekInterval bytes before its record.
type seekPoint struct {
	seq uint64
	off int64
}

const (
	seekInterval = 64 << 10
	// maxFrameRaw caps the raw records of one frame; a round's records for
	// a group are one frame up to it.
	maxFrameRaw = 4 << 20
	// DefaultStateSegmentSize is Config.StateSegmentSize's default.
	DefaultStateSegmentSize = 64 << 20
	currentName             = "CURRENT"
)

// errStateClosed: the host closed (ReadApplied after Close).
var errStateClosed = errors.New("replica: applied state closed")

func groupDir(hostDir string, group uint64) string {
	return path.Join(hostDir, "groups", fmt.Sprintf("%016x", group))
}

func (s *segState) genDir(gen uint64) string { return path.Join(s.dir, fmt.Sprintf("%016x", gen)) }

// openSegState opens (creating it durably if new) a group's applied state:
// the live generation's segments are recovered (a torn tail cut) and every
// other generation, the leftover of an interrupted installation, is removed.
func openSegState(s *segState) (*segState, error) {
	if err := s.makeDir(); err != nil {
		return nil, err
	}
	if err := s.readCurrent(); err != nil {
		return nil, err
	}
	if err := s.removeOtherGens(); err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("replica: group %d applied state: %w", s.group, err)
	}
	return s, nil
}

// makeDir creates the group's directory durably: each new directory's name
// is synced in its parent.
func (s *segState) makeDir() error {
	if _, err := s.fs.ReadDir(s.dir); err == nil {
		return nil
	}
	if err := s.fs.MkdirAll(s.dir); err != nil {
		return err
	}
	if err := s.fs.SyncDir(path.Dir(path.Dir(s.dir))); err != nil {
		return err
	}
	return s.fs.SyncDir(path.Dir(s.dir))
}

// readCurrent reads CURRENT: the live generation and its snapshot index.
func (s *segState) readCurrent() error {
	if err := s.fs.Remove(path.Join(s.dir, currentName+".tmp")); err != nil && !vfs.IsNotExist(err) {
		return err
	}
	f, err := s.fs.Open(path.Join(s.dir, currentName))
	if vfs.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return err
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && size > 0 {
		return err
	}
	// CURRENT is renamed into place only once synced, so anything but one
	// whole frame is damage, not a crash.
	payloads, valid := scanFrames(data)
	if valid != size || len(payloads) != 1 {
		return fmt.Errorf("%w: group %d %s", errCorrupt, s.group, currentName)
	}
	r := reader{b: payloads[0]}
	s.gen, s.mark = r.u64(), r.u64()
	if !r.done() {
		return fmt.Errorf("%w: group %d %s", errCorrupt, s.group, currentName)
	}
	return nil
}

func (s *segState) removeOtherGens() error {
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return err
	}
	live := fmt.Sprintf("%016x/", s.gen)
	removed := false
	for _, n := range names {
		if n == live || n == currentName {
			continue
		}
		if err := s.fs.RemoveAll(path.Join(s.dir, n)); err != nil {
			return err
		}
		removed = true
	}
	if err := s.fs.MkdirAll(s.genDir(s.gen)); err != nil {
		return err
	}
	if removed || !slices.Contains(names, live) {
		return s.fs.SyncDir(s.dir)
	}
	return nil
}

// recover reads the live generation's segments, oldest first: each sealed
// one's frame headers, and every byte of the newest with CRCs, cutting its
// torn tail (an unsynced write a crash interrupted), or a corrupt one the
// WAL still covers (floorCovers). Damage anywhere else is
// corruption: the host opens without this replica (damage.go), and
// `shardlog fsck dump` of its moved-aside files shows it.
func (s *segState) recover() error {
	dir := s.genDir(s.gen)
	names, err := s.fs.ReadDir(dir)
	if err != nil {
		return err
	}
	type file struct{ first, id uint64 }
	var files []file
	for _, n := range names {
		if first, id, ok := segment.ParseFileName(n); ok {
			files = append(files, file{first, id})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].first != files[j].first {
			return files[i].first < files[j].first
		}
		return files[i].id < files[j].id
	})
	for i, f := range files {
		s.nextID = max(s.nextID, f.id+1)
		sg := &stateSeg{firstSeq: f.first, id: f.id, path: path.Join(dir, segment.FileName(f.first, f.id))}
		keep, err := s.recoverSeg(sg, i == len(files)-1)
		if err != nil {
			return err
		}
		if keep {
			s.segs = append(s.segs, sg)
		}
	}
	// What recovery kept is durable: sealed segments were synced when they
	// rolled, the newest one when its tail was cut (recoverSeg).
	s.durable = s.wnext
	return s.checkChain()
}

// recoverSeg scans one segment; it reports whether the segment stays (a
// torn creation, or a segment without frames, is removed: it holds nothing
// and the next segment starts where it did).
func (s *segState) recoverSeg(sg *stateSeg, newest bool) (bool, error) {
	f, err := s.fs.Open(sg.path)
	if err != nil {
		return false, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return false, err
	}
	res, err := segment.Scan(f, size, segment.ScanOptions{VerifyCRC: newest, Visit: func(fi segment.FrameInfo) error {
		sg.addSeek(fi)
		return nil
	}})
	f.Close()
	switch {
	case newest && errors.Is(err, segment.ErrTorn):
		return false, s.removeSeg(sg) // the crash hit its creation: nothing was in it
	case err != nil:
		return false, fmt.Errorf("segment %s: %w", sg.path, err)
	case res.Header.FirstSeq != sg.firstSeq || res.Header.SegmentID != sg.id || res.Header.ShardKey != s.group:
		return false, fmt.Errorf("%w: segment %s: its header does not match its name or group", segment.ErrCorrupt, sg.path)
	case newest && res.Tail == segment.TailCorrupt && s.floorCovers(sg, res):
		// Not damage: see floorCovers. Cut below, as a torn tail.
		s.cutCorrupt = fmt.Errorf("segment %s: %s at offset %d: %v", sg.path, res.Tail, res.BadOffset, res.BadErr)
	case res.Tail == segment.TailCorrupt || !newest && res.Tail != segment.TailClean:
		return false, fmt.Errorf("%w: segment %s: %s at offset %d: %v", segment.ErrCorrupt, sg.path, res.Tail, res.BadOffset, res.BadErr)
	}
	sg.start, sg.frames, sg.lastSeq, sg.end = res.Header.Size(), res.Frames, res.LastSeq, res.ValidEnd
	if newest {
		// A torn tail, or zeros (the size reached the disk, the data did
		// not), is cut. And what is left is synced either way: after a
		// clean close or a process crash its unsynced frames are still
		// readable, but the next segment will be created after it and the
		// WAL truncated behind both, and a later power cut must not take
		// them from what is then a sealed segment.
		if err := s.truncate(sg.path, min(size, res.ValidEnd)); err != nil {
			return false, err
		}
	}
	if sg.frames == 0 {
		s.wnext = max(s.wnext, sg.firstSeq)
		if sg.firstSeq > 0 {
			// Everything before it was in the segments before it, synced when
			// they rolled, even if retention has since deleted them all
			// (segtrim.go): the WAL must not apply those entries again.
			s.last = max(s.last, (sg.firstSeq-1)>>16)
		}
		return false, s.removeSeg(sg)
	}
	s.wnext = sg.lastSeq + 1
	s.lastTs = max(s.lastTs, res.MaxTs)
	s.last = max(s.last, sg.lastSeq>>16)
	return true, nil
}

// floorCovers reports whether a corrupt tail of the newest segment holds
// only entries the WAL still has, so that cutting it, as a torn tail, loses
// nothing: the WAL's replay applies them again. Either every entry cut is
// above the floor, or every record cut is at or above floorNext: written
// after the fdatasync that preceded the floor's compaction, so of an entry
// above the floor too.
//
// The newest segment is fdatasync'd only when the WAL rolls (or it rolls
// itself), so a power cut can persist a later page of its unsynced bytes
// and lose an earlier one: segment.Scan then finds a valid frame after a
// gap and calls the tail corrupt, though it is a crash's doing. Bytes above
// the floor cannot be told apart from bit rot, but need not be: the WAL
// covers them either way. Below the floor (entries whose WAL frames may be
// gone), or at or below an installed snapshot's mark (a generation synced
// whole), damage is damage.
//
// Frames end only between entries, so every entry cut has its first
// record at or after the cut's first ordinal. Raft's log starts at index 1,
// so no entry has ordinal 0: a group's first segment starts at ordinal 0,
// and when the cut starts there its lowest entry is 1, not 0 (taking it for
// 0 made a lost first block of a young group's only segment, with floor 0,
// look like damage to entries the WAL had lost, which it had not).
//
// The entry bound alone is not enough: entries without records (a lull's
// compaction commands, configuration changes, a new leader's empty entry)
// write no frames, so after a lull the last record synced can be many
// entries below the floor, and a power cut that loses the first page of
// what was written after the lull looked like damage to the entries in
// between, which held nothing (simulation seeds 338 and 394: the replica
// was set aside as damaged, and its group never got it back). floorNext
// tells the two apart: rot of synced bytes cuts below it.
func (s *segState) floorCovers(sg *stateSeg, res segment.ScanResult) bool {
	from := sg.firstSeq // the lowest ordinal cut
	if res.Frames > 0 {
		from = res.LastSeq + 1
	}
	lowest := max((from+0xffff)>>16, 1) // the lowest entry index cut
	if lowest <= s.mark {
		return false // a snapshot's generation, synced whole
	}
	return lowest > s.floor || s.floorNextKnown && from >= s.floorNext
}

func (s *segState) removeSeg(sg *stateSeg) error {
	if err := s.fs.Remove(sg.path); err != nil {
		return err
	}
	return s.fs.SyncDir(path.Dir(sg.path))
}

// truncate cuts a file to size (if longer) and syncs it.
func (s *segState) truncate(name string, size int64) error {
	f, err := s.fs.OpenRW(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if cur, err := f.Size(); err != nil {
		return err
	} else if cur > size {
		if err := f.Truncate(size); err != nil {
			return err
		}
	}
	return f.Sync()
}

// checkChain: each segment starts at the ordinal after the previous one's
// last record, as the writer creates them; anything else is a missing
// segment.
func (s *segState) checkChain() error {
	s.last = max(s.last, s.mark)
	for i := 1; i < len(s.segs); i++ {
		if prev, cur := s.segs[i-1], s.segs[i]; cur.firstSeq != prev.lastSeq+1 {
			return fmt.Errorf("%w: segment %s starts at %d, the one before it ends at %d: a segment is missing",
				segment.ErrCorrupt, cur.path, cur.firstSeq, prev.lastSeq)
		}
	}
	return nil
}

func (sg *stateSeg) addSeek(fi segment.FrameInfo) {
	sg.maxTs = max(sg.maxTs, fi.MaxTs)
	if len(sg.seeks) == 0 || sg.sinceSeek >= seekInterval {
		sg.seeks = append(sg.seeks, seekPoint{seq: fi.FirstSeq, off: fi.Offset})
		sg.sinceSeek = 0
	}
	sg.sinceSeek += fi.Size()
}

// add queues the records of the entry at index, which the leader received at
// arrivalMs, and returns them as they are stored.
func (s *segState) add(index uint64, arrivalMs int64, recs [][]byte) []Record {
	s.lastTs = max(s.lastTs, arrivalMs)
	out := make([]Record, len(recs))
	for i, data := range recs {
		out[i] = Record{Seq: Ordinal(index, i), ArrivalMs: s.lastTs, Data: data}
		s.pending = append(s.pending, segment.Record{Seq: out[i].Seq, ArrivalMs: s.lastTs, Data: data})
	}
	s.last = max(s.last, index)
	return out
}

// held is the highest index whose records the state holds (written or
// queued), or the snapshot it was installed from if higher.
func (s *segState) held() uint64 { return s.last }

// write writes the queued records, as few frames as maxFrameRaw allows,
// without an fdatasync. A frame ends only between entries, even when one
// entry alone passes maxFrameRaw (a PutRecords of up to 10 MiB, well within
// the segment's 16 MiB frame limit): recovery takes the last record's entry
// as held, so a power cut that kept the first frame of a split entry and
// lost the second would make the WAL's replay skip the lost records.
func (s *segState) write() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) > 0 {
		n, raw := 0, 0
		for n < len(s.pending) {
			end, size := entryEnd(s.pending, n)
			if n > 0 && raw+size > maxFrameRaw {
				break
			}
			n, raw = end, raw+size
		}
		if err := s.appendFrame(s.pending[:n], int64(raw)); err != nil {
			return fmt.Errorf("replica: group %d applied state: %w", s.group, err)
		}
		s.pending = s.pending[n:]
	}
	s.pending = nil
	return nil
}

// entryEnd returns the end of the entry whose records start at recs[i] and
// their raw size, as write counts it.
func entryEnd(recs []segment.Record, i int) (int, int) {
	entry, size := recs[i].Seq>>16, 0
	for ; i < len(recs) && recs[i].Seq>>16 == entry; i++ {
		size += len(recs[i].Data) + 32
	}
	return i, size
}

func (s *segState) appendFrame(recs []segment.Record, raw int64) error {
	if s.w != nil {
		if sg := s.active(); sg.frames > 0 && sg.end+raw+segment.FrameHeaderSize > s.size {
			if err := s.roll(); err != nil {
				return err
			}
		}
	}
	if s.w == nil {
		if err := s.startSegment(); err != nil {
			return err
		}
	}
	fi, err := s.w.Append(recs)
	if err != nil {
		return err
	}
	sg := s.active()
	sg.addSeek(fi)
	sg.frames++
	sg.lastSeq, sg.end = fi.LastSeq, fi.End()
	s.wnext, s.dirty = fi.LastSeq+1, true
	return nil
}

func (s *segState) active() *stateSeg { return s.segs[len(s.segs)-1] }

// roll leaves the active segment synced, so that only the newest segment can
// ever have an unsynced tail.
func (s *segState) roll() error {
	if err := s.syncWriter(); err != nil {
		return err
	}
	err := s.w.Close()
	s.w = nil
	return err
}

// startSegment creates a new segment at the ordinal after the last record
// written (durably: segment.Create syncs its header and directory).
func (s *segState) startSegment() error {
	id := s.nextID
	s.nextID++
	sg := &stateSeg{firstSeq: s.wnext, id: id, path: path.Join(s.genDir(s.gen), segment.FileName(s.wnext, id))}
	hdr := segment.FileHeader{SegmentID: id, FirstSeq: s.wnext, ShardKey: s.group, CreatedNs: s.now(), Codec: segment.CodecZstd}
	w, err := segment.Create(s.fs, sg.path, hdr, s.comp)
	if err != nil {
		return err
	}
	sg.start, sg.end = w.Header().Size(), w.Header().Size()
	s.w = w
	s.segs = append(s.segs, sg)
	return nil
}

// sync makes every written frame durable. Sealed segments were synced when
// they rolled.
func (s *segState) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty || s.w == nil {
		return nil
	}
	if err := s.syncWriter(); err != nil {
		return fmt.Errorf("replica: group %d applied state: %w", s.group, err)
	}
	s.dirty = false
	return nil
}

func (s *segState) syncWriter() error {
	start := time.Now()
	err := s.w.Sync()
	if s.synced != nil {
		s.synced(time.Since(start), err)
	}
	if err == nil {
		s.durable = s.wnext // the writer's segment is the newest; older ones were synced as they rolled
	}
	return err
}

// durableNext is the ordinal after the newest record made durable: every
// record below it is synced, every one at or above it was written since.
func (s *segState) durableNext() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.durable
}

func (s *segState) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	return err
}
