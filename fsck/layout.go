package fsck

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
)

// The data directory layout, restated from storage/store.go's package doc:
//
//	LOCK, meta.db, index.db
//	streams/<name>-<createdNs %016x>/shardId-%012d/<firstSeq>-<segId>.seg
//
// A shard's index key is "<stream dir>/<shard dir>" and the shard key written
// into its segment headers is the FNV-64a of that key (storage/stream.go).
const (
	lockFile    = "LOCK"
	metaFile    = "meta.db"
	indexFile   = "index.db"
	streamsDir  = "streams"
	brokenExt   = ".broken"
	tmpExt      = ".tmp"
	badExt      = ".bad"
	shardPrefix = "shardId-"
)

// ErrInUse means a running server holds the data directory.
var ErrInUse = errors.New("fsck: data directory is in use by a running server")

// ErrNotDataDir means the directory holds neither meta.db nor streams/.
var ErrNotDataDir = errors.New("fsck: not a shardlog data directory")

// streamMeta is the part of storage's streamMeta (storage/stream.go) that
// fsck reads. Unknown fields are ignored, so the schema may grow.
type streamMeta struct {
	Name      string      `json:"name"`
	CreatedNs int64       `json:"created_ns"`
	Status    string      `json:"status"`
	Shards    []shardMeta `json:"shards"`
}

type shardMeta struct {
	Index uint32 `json:"index"`
}

func streamDirName(name string, createdNs int64) string {
	return fmt.Sprintf("%s-%016x", name, createdNs)
}

func shardDirName(i uint32) string { return fmt.Sprintf("%s%012d", shardPrefix, i) }

// shardKeyOf is the segment header's ShardKey for an index key.
func shardKeyOf(indexKey string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(indexKey))
	return h.Sum64()
}

// streamNameOf strips "-<16 hex>" from a stream directory name.
func streamNameOf(dir string) (string, bool) {
	i := len(dir) - 17
	if i < 1 || dir[i] != '-' {
		return "", false
	}
	if _, err := strconv.ParseUint(dir[i+1:], 16, 64); err != nil {
		return "", false
	}
	return dir[:i], true
}

// parseShardFilter accepts "shardId-000000000003" or "3".
func parseShardFilter(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, shardPrefix), 10, 32)
	if err != nil {
		return "", fmt.Errorf("fsck: bad shard ID %q", s)
	}
	return shardDirName(uint32(n)), nil
}

// shardRef is one shard fsck looks at: known from meta.db, from a directory,
// or both.
type shardRef struct {
	key      string // index key: "<stream dir>/<shard dir>"
	inMeta   bool
	hasDir   bool
	status   string // the stream's status in meta.db
	shardKey uint64
}

// metaStreams reads meta.db. A stream record that does not parse is a
// problem, not a failure.
func metaStreams(m *index.Meta, rep *Report) ([]streamMeta, error) {
	recs, err := m.Streams()
	if err != nil {
		return nil, fmt.Errorf("fsck: read %s: %w", metaFile, err)
	}
	var out []streamMeta
	for _, r := range recs {
		var sm streamMeta
		if err := json.Unmarshal(r.Value, &sm); err != nil || sm.Name != r.Name {
			rep.add(Problem{Code: EMetaDecode, File: metaFile, Message: fmt.Sprintf("stream record %q does not parse: %v", r.Name, err)})
			continue
		}
		out = append(out, sm)
	}
	return out, nil
}

// dirLock is a flock on the data directory's LOCK file.
type dirLock struct{ f *os.File }

// lockShared takes a shared lock if it can without waiting. Holding it keeps
// a server from starting (and changing files) while verify reads; a server
// that already runs holds LOCK exclusively, and then live is true. A missing
// LOCK file means no server ever ran here.
func lockShared(dir string) (l dirLock, live bool, err error) {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if errors.Is(err, os.ErrNotExist) {
		return dirLock{}, false, nil
	}
	if err != nil {
		return dirLock{}, false, fmt.Errorf("fsck: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return dirLock{}, true, nil
		}
		return dirLock{}, false, fmt.Errorf("fsck: lock %s: %w", dir, err)
	}
	return dirLock{f}, false, nil
}

// lockExclusive takes the lock the server takes (storage.lockDir), so that
// repair and a server never run at once.
func lockExclusive(dir string) (dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return dirLock{}, fmt.Errorf("fsck: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return dirLock{}, fmt.Errorf("%w: %s; stop it first", ErrInUse, dir)
		}
		return dirLock{}, fmt.Errorf("fsck: lock %s: %w", dir, err)
	}
	return dirLock{f}, nil
}

func (l dirLock) release() {
	if l.f != nil {
		l.f.Close() // closing drops the flock
	}
}

// segName is a parsed segment file name.
type segName struct {
	name         string
	firstSeq, id uint64
	// anon: the name does not parse (dump of a renamed copy), so the header
	// cannot be checked against it.
	anon bool
}

// dirEntries sorts a shard directory listing: segments in recovery order
// (shard/recover.go listSegments: by first seq, then ID) and the rest.
func dirEntries(names []string) (segs []segName, other []string) {
	for _, n := range names {
		if first, id, ok := segment.ParseFileName(n); ok {
			segs = append(segs, segName{name: n, firstSeq: first, id: id})
		} else {
			other = append(other, n)
		}
	}
	sort.Slice(segs, func(i, j int) bool {
		if segs[i].firstSeq != segs[j].firstSeq {
			return segs[i].firstSeq < segs[j].firstSeq
		}
		return segs[i].id < segs[j].id
	})
	return segs, other
}

// strayCode classifies a file in a shard directory that is not a segment.
func strayCode(name string) (Code, string) {
	switch {
	case strings.HasSuffix(name, brokenExt):
		return IBrokenCopy, "original kept by fsck repair; delete it once the repair is confirmed"
	case strings.HasSuffix(name, tmpExt):
		return WStrayFile, "temporary file; the server deletes it on open"
	case strings.HasSuffix(name, badExt):
		return WStrayFile, "quarantined file"
	case strings.HasSuffix(name, "/"):
		return WStrayFile, "unexpected directory"
	}
	return WStrayFile, "not a segment file"
}
