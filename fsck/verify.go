package fsck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/index"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// Options configures Verify and Repair.
type Options struct {
	// Dir is the data directory. It is a real directory: it holds LOCK and the
	// bbolt files, which fsck opens read-only (except Repair).
	Dir string
	// FS holds the segment files under Dir/streams; vfs.OS{} if nil.
	FS vfs.FS
	// Stream and Shard restrict verify to one stream (by name) and/or one
	// shard ("shardId-000000000003" or "3"). Repair ignores them.
	Stream, Shard string
	// Deep also decompresses every frame and parses every record.
	Deep bool
	// Compressor decodes frames; one is made (and closed) if nil and needed.
	Compressor *segment.Compressor
	// Keys finds the master keys of encrypted segments (a keyring's Keys),
	// for --deep and for repairs that re-encode their frames; nil: none.
	Keys segment.Keys
	// Progress, if set, receives a one-line progress display (use a terminal).
	Progress io.Writer
}

// Verify checks a data directory and reports every problem it finds. The
// error is for fsck itself failing (exit code 4), never for what it found.
// It reads only: bbolt files are opened read-only, and while it runs it holds
// a shared lock on LOCK, which keeps a server from starting. Beside a running
// server it checks the segments alone and warns (W_IN_USE).
func Verify(opts Options) (*Report, error) {
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	defer v.close()
	run := v.run
	if IsClusterDir(v.opts.FS, v.opts.Dir) {
		run = v.verifyCluster // cluster.go
	}
	if err := run(); err != nil {
		return nil, err
	}
	return v.rep, nil
}

// verifier holds one run's state. Its shardChecks are what Repair works from.
type verifier struct {
	opts     Options
	rep      *Report
	shardDir string // filter: shard directory name, "" for all
	lock     *datadir.Lock
	live     bool
	meta     []datadir.StreamRecord
	metaOK   bool
	ix       *index.Index
	comp     *segment.Compressor
	ownComp  bool
	dec      *decoder
	prog     *progress
	shards   []*shardCheck
	// locked: the caller (Repair) holds LOCK exclusively already. flock
	// locks belong to open files, so a second, shared one would conflict.
	locked bool
}

func newVerifier(opts Options) (*verifier, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS{}
	}
	shardDir, err := parseShardFilter(opts.Shard)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(opts.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDataDir, opts.Dir)
	}
	v := &verifier{opts: opts, rep: &Report{}, shardDir: shardDir, prog: newProgress(opts.Progress)}
	if opts.Deep && opts.Compressor == nil {
		if v.comp, err = segment.NewCompressor(); err != nil {
			return nil, err
		}
		v.ownComp = true
	} else {
		v.comp = opts.Compressor
	}
	v.dec = &decoder{comp: v.comp, keys: opts.Keys}
	return v, nil
}

func (v *verifier) close() {
	if v.ix != nil {
		v.ix.Close()
	}
	if v.ownComp {
		v.comp.Close()
	}
	v.lock.Release()
}

func (v *verifier) filtered() bool { return v.opts.Stream != "" || v.shardDir != "" }

func (v *verifier) run() error {
	var err error
	if !v.locked {
		if v.lock, v.live, err = lockShared(v.opts.Dir); err != nil {
			return err
		}
	}
	if !v.live {
		if err := v.openBolt(); err != nil {
			return err
		}
	}
	if v.live {
		v.rep.add(Problem{Code: WInUse, File: datadir.LockFile, Message: "the directory is in use by a running server; results may be stale, and meta.db and index.db were not checked"})
	}
	refs, err := v.shardRefs()
	if err != nil {
		return err
	}
	if !v.filtered() {
		v.rootStrays()
		v.indexOrphans(refs)
	}
	for i, ref := range refs {
		v.prog.shard(i+1, len(refs))
		if err := v.checkShard(ref); err != nil {
			return err
		}
	}
	v.prog.done()
	return nil
}

// openBolt reads meta.db and opens index.db, both read-only. ErrLocked
// (another process holds them despite LOCK being free) degrades to the live
// mode rather than failing.
func (v *verifier) openBolt() error {
	metaPath := datadir.MetaPath(v.opts.Dir)
	if _, err := os.Stat(metaPath); err == nil {
		m, err := index.OpenMetaReadOnly(metaPath)
		if errors.Is(err, index.ErrLocked) {
			v.live = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("fsck: %w", err)
		}
		v.meta, err = metaStreams(m, v.rep)
		m.Close()
		if err != nil {
			return err
		}
		v.metaOK = true
	}
	return v.openIndex()
}

func (v *verifier) openIndex() error {
	p := datadir.IndexPath(v.opts.Dir)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		v.rep.add(Problem{Code: INoIndex, File: datadir.IndexFile, Message: "no index.db; the server rebuilds it from the segments on open"})
		return nil
	}
	ix, err := index.OpenReadOnly(p)
	switch {
	case errors.Is(err, index.ErrLocked):
		v.live = true
		return nil
	case err != nil:
		v.rep.add(Problem{Code: WIndexUnreadable, File: datadir.IndexFile, Message: fmt.Sprintf("%v; the server moves it aside and rebuilds it", err)})
		return nil
	}
	v.ix = ix
	for i, cerr := range ix.Check() {
		if i == 10 {
			v.rep.add(Problem{Code: EIndexCheck, File: datadir.IndexFile, Message: "more bbolt check errors not shown"})
			break
		}
		v.rep.add(Problem{Code: EIndexCheck, File: datadir.IndexFile, Message: cerr.Error()})
	}
	return nil
}

// shardRefs joins meta.db's shards with the directories under streams/,
// reporting either side without the other.
func (v *verifier) shardRefs() ([]shardRef, error) {
	byKey := map[string]*shardRef{}
	metaDirs := map[string]datadir.StreamStatus{} // stream dir -> status
	for _, sm := range v.meta {
		if v.opts.Stream != "" && sm.Name != v.opts.Stream {
			continue
		}
		sdir := sm.Dir()
		metaDirs[sdir] = sm.Status
		for _, sh := range sm.Shards {
			if v.shardDir != "" && datadir.ShardID(sh.Index) != v.shardDir {
				continue
			}
			key := datadir.IndexKey(sdir, sh.Index)
			byKey[key] = &shardRef{key: key, inMeta: true, status: sm.Status}
		}
	}
	if err := v.scanStreamsDir(byKey, metaDirs); err != nil {
		return nil, err
	}
	refs := make([]shardRef, 0, len(byKey))
	for _, r := range byKey {
		r.shardKey = datadir.ShardKey(r.key)
		refs = append(refs, *r)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].key < refs[j].key })
	for _, r := range refs {
		v.metaWithoutDir(r)
	}
	return refs, nil
}

func (v *verifier) metaWithoutDir(r shardRef) {
	if !r.inMeta || r.hasDir {
		return
	}
	code, why := EMetaNoDir, "its records are gone"
	if r.status == datadir.StatusCreating || r.status == datadir.StatusDeleting {
		code, why = WMetaNoDir, fmt.Sprintf("the stream is %s (a crash mid-way); the server finishes the job", r.status)
	}
	v.rep.add(Problem{Code: code, File: path.Join(datadir.StreamsDir, r.key), Message: "meta.db lists this shard but its directory is missing: " + why})
}

// scanStreamsDir lists streams/<stream dir>/<shard dir>/ and marks what it
// finds in byKey, adding directories meta.db does not know.
func (v *verifier) scanStreamsDir(byKey map[string]*shardRef, metaDirs map[string]datadir.StreamStatus) error {
	root := datadir.StreamsPath(v.opts.Dir)
	names, err := v.opts.FS.ReadDir(root)
	if vfs.IsNotExist(err) {
		if !v.metaOK && !v.live {
			return fmt.Errorf("%w: %s has neither %s nor %s/", ErrNotDataDir, v.opts.Dir, datadir.MetaFile, datadir.StreamsDir)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("fsck: list %s: %w", root, err)
	}
	if !v.metaOK && !v.live && len(names) > 0 {
		v.rep.add(Problem{Code: EMetaMissing, File: datadir.MetaFile, Message: "streams exist on disk but meta.db is missing: the server would not see them"})
	}
	for _, n := range names {
		if !strings.HasSuffix(n, "/") {
			v.stray(path.Join(datadir.StreamsDir, n))
			continue
		}
		sdir := strings.TrimSuffix(n, "/")
		if err := v.scanStreamDir(sdir, byKey, metaDirs); err != nil {
			return err
		}
	}
	return nil
}

func (v *verifier) scanStreamDir(sdir string, byKey map[string]*shardRef, metaDirs map[string]datadir.StreamStatus) error {
	name, _, ok := datadir.ParseStreamDir(sdir)
	if v.opts.Stream != "" && (!ok || name != v.opts.Stream) {
		return nil
	}
	_, known := metaDirs[sdir]
	if v.metaOK && !known && v.shardDir == "" {
		v.rep.add(Problem{Code: WDirNoMeta, File: path.Join(datadir.StreamsDir, sdir), Message: "stream directory not in meta.db (a deleted stream's leftovers?); the server ignores it"})
	}
	names, err := v.opts.FS.ReadDir(filepath.Join(datadir.StreamsPath(v.opts.Dir), sdir))
	if err != nil {
		return fmt.Errorf("fsck: list %s: %w", sdir, err)
	}
	for _, n := range names {
		d := strings.TrimSuffix(n, "/")
		idx, isShard := datadir.ParseShardDir(d)
		if d == n || !isShard {
			if v.shardDir == "" {
				v.stray(path.Join(datadir.StreamsDir, sdir, n))
			}
			continue
		}
		if v.shardDir != "" && d != v.shardDir {
			continue
		}
		key := datadir.IndexKey(sdir, idx)
		r := byKey[key]
		if r == nil {
			r = &shardRef{key: key}
			byKey[key] = r
			if v.metaOK && known {
				v.rep.add(Problem{Code: WDirNoMeta, File: path.Join(datadir.StreamsDir, key), Message: "shard directory not in meta.db; the server ignores it"})
			}
		}
		r.hasDir = true
	}
	return nil
}

func (v *verifier) stray(rel string) {
	code, why := strayCode(rel)
	v.rep.add(Problem{Code: code, File: rel, Message: why})
}

// rootStrays reports leftovers next to the bbolt files.
func (v *verifier) rootStrays() {
	ents, err := os.ReadDir(v.opts.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, datadir.BrokenExt), strings.HasSuffix(n, datadir.TmpExt):
			v.stray(n)
		case strings.HasSuffix(n, datadir.CorruptExt):
			v.rep.add(Problem{Code: WStrayFile, File: n, Message: "a damaged bbolt file the server moved aside"})
		}
	}
}

// indexOrphans reports index.db shards that no longer exist anywhere.
func (v *verifier) indexOrphans(refs []shardRef) {
	if v.ix == nil {
		return
	}
	keys, err := v.ix.Shards()
	if err != nil {
		v.rep.add(Problem{Code: EIndexCheck, File: datadir.IndexFile, Message: err.Error()})
		return
	}
	known := make(map[string]bool, len(refs))
	for _, r := range refs {
		known[r.key] = true
	}
	for _, k := range keys {
		if !known[k] {
			v.rep.add(Problem{Code: WIndexOrphan, File: datadir.IndexFile, Message: fmt.Sprintf("entries for shard %s, which does not exist", k)})
		}
	}
}
