package fsck

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
)

// The data directory's layout, meta.db's records and the LOCK protocol are
// package datadir's: fsck reads with the same definitions the server writes
// with. What follows is fsck's own.

// ErrInUse means a running server holds the data directory.
var ErrInUse = errors.New("fsck: data directory is in use by a running server")

// ErrNotDataDir means the directory holds neither meta.db nor streams/.
var ErrNotDataDir = errors.New("fsck: not a shardlog data directory")

// parseShardFilter turns the --shard filter, a shard ID by AWS's rule
// ("shardId-000000000003" or "3"), into the shard's directory name.
func parseShardFilter(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	i, ok := datadir.ParseShardID(s)
	if !ok {
		return "", fmt.Errorf("fsck: bad shard ID %q", s)
	}
	return datadir.ShardID(i), nil
}

// shardRef is one shard fsck looks at: known from meta.db, from a directory,
// or both.
type shardRef struct {
	key      string // index key: "<stream dir>/<shard dir>"
	inMeta   bool
	hasDir   bool
	status   datadir.StreamStatus // the stream's status in meta.db
	shardKey uint64
}

// metaStreams reads meta.db. A stream record that does not parse is a
// problem, not a failure.
func metaStreams(m *index.Meta, rep *Report) ([]datadir.StreamRecord, error) {
	recs, err := m.Streams()
	if err != nil {
		return nil, fmt.Errorf("fsck: read %s: %w", datadir.MetaFile, err)
	}
	var out []datadir.StreamRecord
	for _, r := range recs {
		var sm datadir.StreamRecord
		if err := json.Unmarshal(r.Value, &sm); err != nil || sm.Name != r.Name {
			rep.add(Problem{Code: EMetaDecode, File: datadir.MetaFile, Message: fmt.Sprintf("stream record %q does not parse: %v", r.Name, err)})
			continue
		}
		out = append(out, sm)
	}
	return out, nil
}

// lockShared takes LOCK shared if it can without waiting. Holding it keeps a
// server from starting (and changing files) while verify reads; a server
// that already runs holds LOCK exclusively, and then live is true.
func lockShared(dir string) (l *datadir.Lock, live bool, err error) {
	l, err = datadir.LockShared(dir)
	if errors.Is(err, datadir.ErrLocked) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("fsck: %w", err)
	}
	return l, false, nil
}

// lockExclusive takes LOCK as the server does, so that repair and a server
// never run at once.
func lockExclusive(dir string) (*datadir.Lock, error) {
	l, err := datadir.LockExclusive(dir)
	if errors.Is(err, datadir.ErrLocked) {
		return nil, fmt.Errorf("%w: %s; stop it first", ErrInUse, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("fsck: %w", err)
	}
	return l, nil
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
	case strings.HasSuffix(name, datadir.BrokenExt):
		return IBrokenCopy, "original kept by fsck repair; delete it once the repair is confirmed"
	case strings.HasSuffix(name, datadir.TmpExt):
		return WStrayFile, "temporary file; the server deletes it on open"
	case strings.HasSuffix(name, datadir.BadExt):
		return WStrayFile, "quarantined file"
	case strings.HasSuffix(name, "/"):
		return WStrayFile, "unexpected directory"
	}
	return WStrayFile, "not a segment file"
}
