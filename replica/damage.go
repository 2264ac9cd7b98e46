package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// Damaged replicas (docs/cluster.md §8, issue 17; Protocol-Aware Recovery,
// reliability.md): a group whose applied state fails recovery with
// corruption (a bad frame or header in a sealed segment, a broken chain, a
// bad CURRENT) costs this node that replica, not the node.
//
// Such a replica holds data it cannot vouch for, so it takes no part in its
// group: it is set aside at Open, out of h.groups, and every message for it
// is dropped as for an unknown group. It neither campaigns nor grants votes
// or pre-votes (so it can never lead, nor make a leader of a candidate whose
// log it cannot judge), nor acknowledges appends (so it counts toward no
// quorum), nor serves reads or snapshots. The group goes on with its other
// replicas, as if this one were down, until the cluster replaces it.
//
// What it promised stays kept: at Open the replica is buried (tomb.go) from
// its raft state, which lives in the WAL and not in the damaged files: its
// term and vote, and its log's end. A replica of the group created here
// later (AddGroup, once RemoveGroup took the damaged one away) starts from
// those promises, so no vote of this node is ever given twice in a term.
//
// Durability order: the tombstone and a kindDamaged frame are fdatasync'd
// first, then the group's directory is renamed to damaged-<time> next to it
// (kept for the operator, listed by `shardlog fsck verify`, never deleted by
// the node). A crash between the two is finished at the next Open: the
// frame says the replica is damaged, so its directory is moved aside
// without being opened. Every new WAL file restates the frame (walHeader)
// until RemoveGroup drops the replica, or AddGroup creates a new one.
//
// A torn tail of a group's newest segment is a crash's unsynced write, cut
// by recovery as before: not damage.

// kindDamaged is a WAL frame: group u64, dynamic u8, at (Unix ns) u64, then
// the reason's text: a replica of the group found damaged at Open.
const kindDamaged byte = 9

// crashDamageLogged: the kindDamaged frames are durable, the damaged
// replicas' files not moved yet (tests).
const crashDamageLogged = "damage: frame synced, files not moved"

// ErrDamaged: the group's replica on this node is damaged (Host.Damaged);
// it is neither run nor re-created until RemoveGroup drops it.
var ErrDamaged = errors.New("replica: this node's replica of the group is damaged")

// Damage is a replica set aside as damaged.
type Damage struct {
	Group uint64
	// Dynamic: the replica was made by AddGroup (RemoveGroup can drop it);
	// a group configured at Open stays damaged until the operator acts.
	Dynamic bool
	At      time.Time // when it was found
	Reason  string    // the recovery error: the file, offset and check that failed
	Dir     string    // where its files were moved, under Config.Dir
}

// isDamage reports whether a recovery error is damage to the applied state
// rather than a failure of this run (an I/O error, a closed file system):
// only corruption costs the replica; anything else still fails Open.
func isDamage(err error) bool {
	return errors.Is(err, segment.ErrCorrupt) || errors.Is(err, errCorrupt)
}

// damagedDir is where a damaged replica's files go: next to its directory,
// named by when the damage was found, so a later damage of a replica
// created again never collides with it.
func damagedDir(hostDir string, group uint64, at time.Time) string {
	return groupDir(hostDir, group) + ".damaged-" + at.UTC().Format("20060102T150405.000000000Z")
}

func encodeDamage(d Damage) []byte {
	b := le.AppendUint64([]byte{kindDamaged}, d.Group)
	dyn := byte(0)
	if d.Dynamic {
		dyn = 1
	}
	b = append(b, dyn)
	b = le.AppendUint64(b, uint64(d.At.UnixNano()))
	return append(b, d.Reason...)
}

func decodeDamage(p []byte) (Damage, error) {
	r := reader{b: p}
	d := Damage{Group: r.u64(), Dynamic: r.u8() == 1, At: time.Unix(0, int64(r.u64())).UTC()}
	if r.bad {
		return Damage{}, errCorrupt
	}
	d.Reason = string(r.b)
	return d, nil
}

// damagedGroups is the replicas the WAL says are damaged: a kindDamaged
// frame not followed by the replica's removal or re-creation.
func damagedGroups(hostDir string, payloads []walPayload) (map[uint64]Damage, error) {
	out := map[uint64]Damage{}
	for _, p := range payloads {
		switch p.p[0] {
		case kindDamaged:
			d, err := decodeDamage(p.p[1:])
			if err != nil {
				return nil, err
			}
			d.Dir = damagedDir(hostDir, d.Group, d.At)
			out[d.Group] = d
		case kindRemoveGroup, kindGroup:
			if len(p.p) >= 9 {
				delete(out, le.Uint64(p.p[1:]))
			}
		}
	}
	return out, nil
}

// DamageRefusal is Open's error when the damage it found is not set aside
// (refuseDamage); it wraps ErrDamaged. Nothing was written or moved.
type DamageRefusal struct {
	Found    map[uint64]string // group → the recovery error
	Critical []uint64          // the Config.CriticalGroups among them
	Limit    int               // Config.MaxDamagedAtOpen in force
}

func (e *DamageRefusal) Error() string {
	var b strings.Builder
	if len(e.Critical) > 0 {
		fmt.Fprintf(&b, "replica: refusing to open: the replica of critical group %v is damaged", e.Critical)
	} else {
		fmt.Fprintf(&b, "replica: refusing to open: %d replicas found damaged at once (at most %d are set aside)", len(e.Found), e.Limit)
	}
	for _, id := range slices.Sorted(maps.Keys(e.Found)) {
		fmt.Fprintf(&b, "; group %d: %s", id, strings.TrimPrefix(e.Found[id], "replica: "))
	}
	return b.String()
}

func (e *DamageRefusal) Unwrap() error { return ErrDamaged }

// refuseDamage fails Open, before anything of the damage is made durable
// or moved, when it does not look like one replica's bad luck: damage to a
// critical group (without which the node cannot serve anyway, so its files
// are better left in place for the operator), or to more groups at once
// than Config.MaxDamagedAtOpen allows. Several at once more likely share
// one cause (a failing disk, a recovery bug such as review 6's, where a
// whole-cluster power cut made replicas of a group look damaged on several
// nodes) than they are independent rot: setting them all aside costs every
// such group a replica, perhaps on several nodes at once, and cannot be
// undone by a fixed binary. The operator decides, and may raise the limit.
func (h *Host) refuseDamage(found map[uint64]error) error {
	limit := h.cfg.MaxDamagedAtOpen
	if limit == 0 {
		limit = 1
	}
	ref := &DamageRefusal{Found: map[uint64]string{}, Limit: limit}
	for id, err := range found {
		ref.Found[id] = err.Error()
		if slices.Contains(h.cfg.CriticalGroups, id) {
			ref.Critical = append(ref.Critical, id)
		}
	}
	slices.Sort(ref.Critical)
	if len(ref.Critical) == 0 && (limit < 0 || len(found) <= limit) {
		return nil
	}
	for _, g := range h.groups {
		if g.state != nil {
			g.state.close()
		}
	}
	return ref
}

// quarantine sets aside the groups whose applied state Open found damaged,
// after the WAL's replay gave them their raft state: each is buried, its
// kindDamaged frame queued (both made durable by Open's next flush, before
// finishDamage moves its files), and it leaves the host's groups.
func (h *Host) quarantine(found map[uint64]error) error {
	for _, id := range slices.Sorted(maps.Keys(found)) {
		g := h.groups[id]
		if g.state != nil {
			// Its segments opened, then the restore's read of them failed:
			// the Applier forgets the pages it was handed.
			g.state.close()
			if h.cfg.Applier != nil {
				h.cfg.Applier.Restored(id, func(func([]Record, error) bool) {})
			}
		}
		if err := h.bury(g); err != nil {
			return err
		}
		at := h.cfg.Now()
		d := Damage{Group: id, Dynamic: g.dynamic, At: at.UTC(), Reason: strings.TrimPrefix(found[id].Error(), "replica: "),
			Dir: damagedDir(h.cfg.Dir, id, at)}
		h.wal.add(encodeDamage(d))
		h.damaged[id] = d
		delete(h.groups, id)
		h.index.Delete(id)
		h.order = slices.DeleteFunc(h.order, func(x uint64) bool { return x == id })
		h.logger().Error("replica damaged: it neither votes, acknowledges nor serves until replaced",
			"group", id, "error", d.Reason, "moved_to", d.Dir)
	}
	return nil
}

// finishDamage moves each damaged replica's directory aside, once its
// kindDamaged frame is durable. Idempotent: a replica whose directory is
// gone already (moved at an earlier Open) is left as it is; any other
// failure to list it (EACCES, EIO) fails Open, since files left in place
// would be deleted by a later AddGroup (removeGroupFiles). found: this
// Open found new damage (only then is the crash point asked, so an Open
// without damage asks the tests' crash hook nothing).
func (h *Host) finishDamage(found bool) error {
	if found {
		if err := h.crash(crashDamageLogged); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(h.damaged)) {
		d := h.damaged[id]
		dir := groupDir(h.cfg.Dir, id)
		if _, err := h.cfg.FS.ReadDir(dir); vfs.IsNotExist(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("replica: listing damaged group %d: %w", id, err)
		}
		if err := h.moveTree(dir, d.Dir); err != nil {
			return fmt.Errorf("replica: moving damaged group %d aside: %w", id, err)
		}
		if err := h.cfg.FS.RemoveAll(dir); err != nil {
			return err
		}
		if err := h.cfg.FS.SyncDir(path.Dir(dir)); err != nil {
			return err
		}
	}
	return nil
}

// moveTree moves every file under src to the same place under dst, file by
// file (vfs renames files, not directories), syncing each new directory.
// A crash part-way leaves files in both; the next Open moves the rest.
func (h *Host) moveTree(src, dst string) error {
	fs := h.cfg.FS
	names, err := fs.ReadDir(src)
	if err != nil {
		return err
	}
	if err := fs.MkdirAll(dst); err != nil {
		return err
	}
	for _, n := range names {
		if sub, ok := strings.CutSuffix(n, "/"); ok {
			err = h.moveTree(path.Join(src, sub), path.Join(dst, sub))
		} else {
			err = fs.Rename(path.Join(src, n), path.Join(dst, n))
		}
		if err != nil {
			return err
		}
	}
	if err := fs.SyncDir(dst); err != nil {
		return err
	}
	return fs.SyncDir(path.Dir(dst))
}

// Damaged lists this node's damaged replicas, by group. The cluster layer
// reports them (`shardlog cluster nodes`) and replaces them.
func (h *Host) Damaged() []Damage {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Damage, 0, len(h.damaged))
	for _, id := range slices.Sorted(maps.Keys(h.damaged)) {
		out = append(out, h.damaged[id])
	}
	return out
}

// IsDamaged reports whether this node's replica of group is damaged.
func (h *Host) IsDamaged(group uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.damaged[group]
	return ok
}

// dropDamaged is RemoveGroup of a damaged replica: its removal is made
// durable, and its files stay where they were moved, for the operator.
func (h *Host) dropDamaged(d Damage) error {
	if !d.Dynamic {
		return fmt.Errorf("replica: group %d is configured at Open, not added: its damaged replica cannot be removed", d.Group)
	}
	h.wal.add(le.AppendUint64([]byte{kindRemoveGroup}, d.Group))
	if err := h.flushWAL(); err != nil {
		return err
	}
	delete(h.damaged, d.Group)
	return nil
}

// damageFrames restates the damaged replicas in a new WAL file's header.
func (h *Host) damageFrames(b []byte) []byte {
	for _, id := range slices.Sorted(maps.Keys(h.damaged)) {
		b = appendFrame(b, encodeDamage(h.damaged[id]))
	}
	return b
}

// Logger is what the host logs to (Config.Logger).
type Logger interface {
	Error(msg string, args ...any)
}

func (h *Host) logger() Logger {
	if h.cfg.Logger != nil {
		return h.cfg.Logger
	}
	return slog.Default()
}
