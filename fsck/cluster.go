package fsck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/vfs"
)

// A cluster node's data directory (`serve --cluster`, docs/cluster.md §2)
// holds LOCK and cluster/: the node's Raft WAL (wal-<seq>.log) and each
// Raft group's applied state, groups/<group %016x>/ with CURRENT (the live
// generation, absent: 0) and the generation's directory of segment files
// in the single-node format (the group ID as the header's shard key). The
// layout and the frame format below are package replica's; fsck restates
// them rather than import replica (whose tests use fsck).
//
// verify checks every group's live segments as it checks a shard's (CRCs,
// chain, headers, a torn tail only in the newest) and every WAL frame's CRC
// (a torn tail only in the newest file). repair refuses (ErrClusterRepair).

// ClusterDir is the subdirectory of a data directory that cluster mode uses.
const ClusterDir = "cluster"

const (
	clusterGroups    = "groups"
	clusterCurrent   = "CURRENT"
	walPrefix        = "wal-"
	walSuffix        = ".log"
	walFrameHeader   = 8  // [u32 payload length][u32 CRC-32C of the payload]
	walKindMin       = 1  // entries
	walKindMax       = 10 // 6 group created, 7 group removed, 8 tombstone, 9 replica damaged, 10 state synced
	currentPayloadSz = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClusterRepair: repair does not change a cluster node's data directory.
var ErrClusterRepair = errors.New("fsck: repair does not change a cluster node's data directory. " +
	"A torn tail (of the newest WAL file or of a group's newest segment) is cut by the node itself when it starts; " +
	"any other damage is lost data on this replica only: remove the node (shardlog cluster remove-node) " +
	"and add a new one with an empty data directory, which copies every replica from its peers")

// IsClusterDir reports whether dir is a cluster node's data directory: it
// has cluster/ and no single-node meta.db.
func IsClusterDir(fs vfs.FS, dir string) bool {
	if fs == nil {
		fs = vfs.OS{}
	}
	if _, err := fs.ReadDir(filepath.Join(dir, ClusterDir)); err != nil {
		return false
	}
	_, err := fs.Open(datadir.MetaPath(dir))
	return vfs.IsNotExist(err)
}

// verifyCluster is Verify of a cluster node's data directory.
func (v *verifier) verifyCluster() error {
	if v.filtered() {
		return errors.New("fsck: --stream and --shard do not apply to a cluster node's data directory (its groups are checked whole)")
	}
	var err error
	if v.lock, v.live, err = lockShared(v.opts.Dir); err != nil {
		return err
	}
	if v.live {
		v.rep.add(Problem{Code: WInUse, File: datadir.LockFile, Message: "the directory is in use by a running node; results may be stale"})
	}
	if err := v.checkWAL(); err != nil {
		return err
	}
	groups, err := v.clusterGroups()
	if err != nil {
		return err
	}
	for i, g := range groups {
		v.prog.shard(i+1, len(groups))
		if err := v.checkGroup(g); err != nil {
			return err
		}
	}
	v.prog.done()
	return nil
}

func (v *verifier) clusterGroups() ([]uint64, error) {
	names, err := v.opts.FS.ReadDir(filepath.Join(v.opts.Dir, ClusterDir, clusterGroups))
	if vfs.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	var out []uint64
	for _, n := range names {
		if g, ok := parseHex16(strings.TrimSuffix(n, "/")); ok && strings.HasSuffix(n, "/") {
			out = append(out, g)
			continue
		}
		rel := path.Join(ClusterDir, clusterGroups, n)
		if g, ok := parseDamaged(n); ok {
			v.rep.add(Problem{Code: WDamagedReplica, File: rel, Message: fmt.Sprintf("group %d's replica, set aside as damaged by the node "+
				"(its files as they were found; the cluster replaced the replica): inspect it, then delete it", g)})
			continue
		}
		v.stray(rel)
	}
	slices.Sort(out)
	return out, nil
}

// parseDamaged parses "<group %016x>.damaged-<time>/", a damaged replica's
// files the node moved aside (package replica, damage.go).
func parseDamaged(name string) (uint64, bool) {
	hex, rest, ok := strings.Cut(strings.TrimSuffix(name, "/"), ".damaged-")
	if !ok || rest == "" || !strings.HasSuffix(name, "/") {
		return 0, false
	}
	return parseHex16(hex)
}

func parseHex16(s string) (uint64, bool) {
	g, err := strconv.ParseUint(s, 16, 64)
	return g, err == nil && len(s) == 16
}

// checkGroup checks one group: CURRENT, leftover generations, and the live
// generation's segments as a shard's.
func (v *verifier) checkGroup(group uint64) error {
	rel := path.Join(ClusterDir, clusterGroups, fmt.Sprintf("%016x", group))
	dir := filepath.Join(v.opts.Dir, rel)
	gen, ok := v.readCurrent(dir, rel)
	if !ok {
		return nil // its live generation is unknown: nothing to check it against
	}
	names, err := v.opts.FS.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fsck: list %s: %w", dir, err)
	}
	live := fmt.Sprintf("%016x/", gen)
	for _, n := range names {
		switch {
		case n == live || n == clusterCurrent:
		case strings.HasSuffix(n, "/"):
			v.rep.add(Problem{Code: WStaleGeneration, File: path.Join(rel, n),
				Message: "a generation other than CURRENT's, left by an interrupted snapshot installation; the node removes it when it starts"})
		default:
			v.stray(path.Join(rel, n))
		}
	}
	sh := &shardCheck{ref: shardRef{key: rel, hasDir: true, shardKey: group}, rel: path.Join(rel, strings.TrimSuffix(live, "/")),
		dir: filepath.Join(dir, strings.TrimSuffix(live, "/"))}
	v.shards = append(v.shards, sh)
	if _, err := v.opts.FS.ReadDir(sh.dir); vfs.IsNotExist(err) {
		if gen != 0 {
			v.rep.add(Problem{Code: EClusterCurrent, File: path.Join(rel, clusterCurrent), Message: fmt.Sprintf("names generation %016x, which does not exist", gen)})
		}
		return nil
	}
	v.checkShardDir(sh)
	return nil
}

// readCurrent reads a group's CURRENT: one CRC-framed [gen u64][snapshot
// index u64], renamed into place only once synced, so anything else is
// damage. Absent: generation 0.
func (v *verifier) readCurrent(dir, rel string) (uint64, bool) {
	data, err := readAll(v.opts.FS, filepath.Join(dir, clusterCurrent))
	if vfs.IsNotExist(err) {
		return 0, true
	}
	p := Problem{Code: EClusterCurrent, File: path.Join(rel, clusterCurrent)}
	if err != nil {
		p.Code, p.Message = ERead, err.Error()
		v.rep.add(p)
		return 0, false
	}
	payloads, valid, _ := walFrames(data)
	if valid != int64(len(data)) || len(payloads) != 1 || len(payloads[0]) != currentPayloadSz {
		p.Message = "not one whole frame of a generation and a snapshot index; the node does not start"
		v.rep.add(p)
		return 0, false
	}
	return binary.LittleEndian.Uint64(payloads[0]), true
}

// checkShardDir checks a directory of segments as a shard's, without
// index.db (a cluster node has none).
func (v *verifier) checkShardDir(sh *shardCheck) {
	errs0, warns0 := v.rep.Errors, v.rep.Warnings
	names, err := v.opts.FS.ReadDir(sh.dir)
	if err != nil {
		v.rep.add(Problem{Code: ERead, File: sh.rel, Message: err.Error()})
		return
	}
	segs, others := dirEntries(names)
	sh.others = others
	for _, n := range others {
		v.stray(path.Join(sh.rel, n))
	}
	for i, sn := range segs {
		sh.segs = append(sh.segs, v.checkSegment(sh, sn, i == len(segs)-1, nil))
	}
	v.checkChain(sh)
	v.summarize(sh, v.rep.Errors-errs0, v.rep.Warnings-warns0)
}

// checkWAL checks every WAL file's frames: each whole, its CRC matching,
// its kind known. Only the newest file may end in a torn write (each older
// one was synced whole before the next was created).
func (v *verifier) checkWAL() error {
	cdir := filepath.Join(v.opts.Dir, ClusterDir)
	names, err := v.opts.FS.ReadDir(cdir)
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	var wals []string
	for _, n := range names {
		if hex, ok := strings.CutPrefix(n, walPrefix); ok {
			if hex, ok := strings.CutSuffix(hex, walSuffix); ok {
				if _, ok := parseHex16(hex); ok {
					wals = append(wals, n)
					continue
				}
			}
		}
		if n != clusterGroups+"/" {
			v.stray(path.Join(ClusterDir, n))
		}
	}
	slices.Sort(wals) // 16 hex digits: name order is seq order
	for i, n := range wals {
		v.checkWALFile(path.Join(ClusterDir, n), filepath.Join(cdir, n), i == len(wals)-1)
	}
	return nil
}

func (v *verifier) checkWALFile(rel, name string, newest bool) {
	data, err := readAll(v.opts.FS, name)
	if err != nil {
		v.rep.add(Problem{Code: ERead, File: rel, Message: err.Error()})
		return
	}
	payloads, valid, why := walFrames(data)
	tail := "clean"
	if valid < int64(len(data)) {
		off := valid
		switch {
		case newest:
			tail = "torn"
			v.rep.add(Problem{Code: WWALTornTail, File: rel, Offset: &off, Message: why + "; a write the node never acknowledged, cut when it starts"})
		default:
			tail = "corrupt"
			v.rep.add(Problem{Code: EWALFrame, File: rel, Offset: &off, Message: why + " in a sealed WAL file (not the newest): the frames after it are lost on this replica"})
		}
	}
	for _, p := range payloads {
		if p[0] < walKindMin || p[0] > walKindMax {
			tail = "corrupt"
			v.rep.add(Problem{Code: EWALFrame, File: rel, Message: fmt.Sprintf("a frame of unknown kind %d with a matching CRC", p[0])})
			break
		}
	}
	v.rep.WAL = append(v.rep.WAL, WALSummary{File: rel, Size: int64(len(data)), Frames: len(payloads), Tail: tail})
}

// walFrames splits data into whole frames with matching CRCs; valid is
// where the first bad one (or the end) is, and why says what is wrong there.
func walFrames(data []byte) (payloads [][]byte, valid int64, why string) {
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < walFrameHeader {
			return payloads, int64(off), "a short frame header"
		}
		n := int(binary.LittleEndian.Uint32(rest))
		switch {
		case n == 0 && allZero(rest):
			return payloads, int64(off), "zeroed bytes"
		case n == 0:
			return payloads, int64(off), "a frame of length 0"
		case n > len(rest)-walFrameHeader:
			return payloads, int64(off), fmt.Sprintf("a frame of %d bytes with %d left", n, len(rest)-walFrameHeader)
		}
		p := rest[walFrameHeader : walFrameHeader+n]
		if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
			return payloads, int64(off), "a CRC mismatch"
		}
		payloads = append(payloads, p)
		off += walFrameHeader + n
	}
	return payloads, int64(off), ""
}

func readAll(fs vfs.FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	data := make([]byte, size)
	if size > 0 {
		if _, err := f.ReadAt(data, 0); err != nil {
			return nil, err
		}
	}
	return data, nil
}
