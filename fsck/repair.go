package fsck

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/vfs"
)

// Repair brings a data directory back to a state the server opens and
// serves: it rewrites damaged segments keeping every valid frame, rebases the
// segment after lost data so the chain of segments holds, moves torn
// creations aside, recreates missing shard directories, deletes *.tmp files,
// and moves index.db aside so the server rebuilds it. Every original is kept
// as <name>.broken. It then verifies the result: the returned report holds
// that verification's findings, the actions taken and the sequence ranges
// lost. Every step is planned before any is applied (repairplan.go); with
// dryRun the plan is reported and nothing changes. Where
// the repair would let the server assign seqs again, it first writes an empty
// segment that keeps the shard's sequence floor (floor.go).
//
// Repair takes the data directory's LOCK exclusively, as the server does, and
// fails with ErrInUse beside a running server. Stream and Shard are ignored:
// it repairs the whole directory. Frames are always decoded (--deep), since
// salvaged ones are re-encoded.
func Repair(opts Options, dryRun bool) (*Report, error) {
	opts.Stream, opts.Shard, opts.Deep = "", "", true
	if IsClusterDir(opts.FS, opts.Dir) {
		return nil, ErrClusterRepair // cluster.go says why
	}
	lock, err := repairLock(opts.Dir, dryRun)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	pre, err := verifyLocked(opts)
	if err != nil {
		return nil, err
	}
	defer pre.close()
	plan, err := planRepair(pre.shards, pre.rep.Problems, pre.opts.Dir, dirInspector{fs: pre.opts.FS, dec: pre.dec})
	if err != nil {
		return nil, err
	}
	if !dryRun {
		r := &repairer{v: pre, fs: pre.opts.FS}
		for _, s := range plan.steps {
			if err := s.apply(r); err != nil {
				return nil, err
			}
		}
	}
	return finish(opts, pre, plan, dryRun)
}

func repairLock(dir string, dryRun bool) (*datadir.Lock, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDataDir, dir)
	}
	if !dryRun {
		return lockExclusive(dir)
	}
	l, live, err := lockShared(dir)
	if err == nil && live {
		err = fmt.Errorf("%w: %s; stop it first", ErrInUse, dir)
	}
	return l, err
}

// verifyLocked runs a verifier under a lock the caller holds.
func verifyLocked(opts Options) (*verifier, error) {
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	v.locked = true
	if err := v.run(); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

// repairer applies a plan's steps.
type repairer struct {
	v  *verifier
	fs vfs.FS
}

// finish verifies the repaired directory (or, for a dry run, keeps the
// findings that led to the plan) and adds the actions and losses.
func finish(opts Options, pre *verifier, plan *repairPlan, dry bool) (*Report, error) {
	final := pre.rep
	if !dry {
		post, err := verifyLocked(opts)
		if err != nil {
			return nil, fmt.Errorf("fsck: verify after repair: %w", err)
		}
		post.close()
		final = post.rep
	}
	final.DryRun = dry
	final.Actions, final.Lost, final.Notes = plan.actions(), plan.lost, plan.notes
	return final, nil
}

func (s mkdirStep) apply(r *repairer) error {
	if err := r.fs.MkdirAll(s.dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if s.floor != nil {
		if err := r.placeEmpty(filepath.Join(s.dir, s.name), *s.floor); err != nil {
			return err
		}
	}
	// MkdirAll may have made the stream directory too: sync every level
	// down from streams/.
	for d := s.dir; d != filepath.Dir(filepath.Dir(filepath.Dir(s.dir))); d = filepath.Dir(d) {
		if err := r.fs.SyncDir(d); err != nil {
			return fmt.Errorf("fsck: %w", err)
		}
	}
	return nil
}

func (s removeStep) apply(r *repairer) error {
	if err := r.fs.Remove(s.path); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}

func (s segStep) apply(r *repairer) error {
	orig := s.p.sc.path
	if s.p.aside {
		return r.moveAside(s.dir, "", "", orig, s.kept)
	}
	final := filepath.Join(s.dir, s.name)
	if err := r.writeSegment(final+datadir.TmpExt, orig, s.hdr, s.p); err != nil {
		return err
	}
	return r.moveAside(s.dir, final+datadir.TmpExt, final, orig, s.kept)
}

// moveAside puts the new segment (tmp) in place, then moves the original to
// kept, then syncs the shard directory. The new file comes first: a crash
// between the renames leaves both, which the server refuses as overlapping
// segments (read-only, nothing lost) rather than a missing segment.
func (r *repairer) moveAside(dir, tmp, final, orig, kept string) error {
	if tmp != "" {
		if err := r.fs.Rename(tmp, final); err != nil {
			return fmt.Errorf("fsck: %w", err)
		}
	}
	if err := r.fs.Rename(orig, kept); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if err := r.fs.SyncDir(dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}

func (s indexStep) apply(r *repairer) error {
	// Close our read-only handle first: the server will want the file.
	if r.v.ix != nil {
		r.v.ix.Close()
		r.v.ix = nil
	}
	if err := os.Rename(s.src, s.dst); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if err := datadir.SyncDir(s.dir); err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	return nil
}
