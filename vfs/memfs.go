package vfs

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// MemFS is an in-memory FS that models what a power cut does to a real one.
//
// Each file keeps what readers see now (data) and what was durable at its last
// Sync (synced). Each directory entry is durable only after SyncDir of its
// directory. Crash throws away everything that was not made durable, optionally
// keeping a torn prefix of the unsynced bytes, exactly the states a real disk can
// be left in. Directories themselves are treated as durable once made.
//
// Faults are armed with the Fail*/SetCapacity methods and fire on the next
// matching call. MemFS is safe for concurrent use.
type MemFS struct {
	mu      sync.Mutex
	files   map[string]*inode // the namespace as processes see it
	durable map[string]*inode // the namespace as it would be after power loss
	dirs    map[string]bool

	capacity  int64 // 0: unlimited
	failWrite error
	shortNext bool
	failSync  error
	writes    int // total successful WriteAt calls, for tests that crash "mid-way"
	drops     []CacheDrop
}

// CacheDrop is one DropCache call, with how many bytes of the file were
// synced at the time, so tests can check that only durable data is dropped.
type CacheDrop struct {
	Path        string
	Off, N      int64
	SyncedBytes int64
}

type inode struct {
	data   []byte
	synced []byte
	dead   bool // the inode was discarded by Crash; handles to it fail
}

// NewMemFS returns an empty in-memory filesystem.
func NewMemFS() *MemFS {
	return &MemFS{files: map[string]*inode{}, durable: map[string]*inode{}, dirs: map[string]bool{"/": true, ".": true}}
}

// ErrInjected is the default error for injected faults.
var ErrInjected = errors.New("vfs: injected fault")

// FailNextWrite makes the next WriteAt fail with err (ErrInjected if nil). If
// short is set, half of the bytes are written first, like a torn write.
func (m *MemFS) FailNextWrite(err error, short bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		err = ErrInjected
	}
	m.failWrite, m.shortNext = err, short
}

// FailNextSync makes the next file Sync fail with err (ErrInjected if nil); the
// data stays unsynced, as after a real EIO from fsync.
func (m *MemFS) FailNextSync(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		err = ErrInjected
	}
	m.failSync = err
}

// SetCapacity limits the total bytes of all files; writes that would exceed it
// fail with ENOSPC. 0 removes the limit.
func (m *MemFS) SetCapacity(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.capacity = n
}

// Used returns the total size of all live files.
func (m *MemFS) Used() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usedLocked()
}

func (m *MemFS) usedLocked() int64 {
	var n int64
	for _, ino := range m.files {
		n += int64(len(ino.data))
	}
	return n
}

// Writes returns how many WriteAt calls have succeeded so far.
func (m *MemFS) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// CacheDrops returns every DropCache call so far, oldest first.
func (m *MemFS) CacheDrops() []CacheDrop {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]CacheDrop(nil), m.drops...)
}

// TearMode says what Crash leaves of a file's unsynced bytes.
type TearMode int

const (
	// TearNone drops every unsynced byte.
	TearNone TearMode = iota
	// TearPrefix keeps a random-length prefix of the unsynced bytes.
	TearPrefix
	// TearZeros keeps the file's unsynced length but zeroes a random suffix, as when
	// the size reached the disk before the data.
	TearZeros
	// TearGap keeps the file's unsynced length and bytes but one lost block:
	// a random block (TearBlock bytes, aligned in the file, cut to the
	// unsynced range) is zeros, while every unsynced byte after it reached
	// the disk. The page cache may write a later page back before an
	// earlier one, and a device its sectors out of order, so a power cut
	// can leave a hole before data that did persist; recovery cannot take
	// such a tail for a clean torn write.
	TearGap
)

// TearBlock is what TearGap loses: a sector, the smallest unit a device
// writes, so that the simulation's small unsynced tails can have gaps too.
const TearBlock = 512

// Crash simulates power loss: every open handle dies, undurable names vanish and
// each file is cut back to its synced bytes, except that mode may keep a torn
// remnant of the unsynced ones (chosen with rng).
func (m *MemFS) Crash(rng *rand.Rand, mode TearMode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	files := make(map[string]*inode, len(m.durable))
	// In name order: tornContents draws from rng, and map order would hand
	// each file another draw on every run, so one seed would tear its
	// files differently each time (the simulation must replay a seed).
	for _, name := range slices.Sorted(maps.Keys(m.durable)) {
		ino := m.durable[name]
		data := tornContents(ino, rng, mode)
		files[name] = &inode{data: data, synced: append([]byte(nil), data...)}
	}
	for _, ino := range m.files {
		ino.dead = true
	}
	for _, ino := range m.durable {
		ino.dead = true
	}
	m.files = files
	m.durable = make(map[string]*inode, len(files))
	for name, ino := range files {
		m.durable[name] = ino
	}
	m.failWrite, m.failSync = nil, nil
}

func tornContents(ino *inode, rng *rand.Rand, mode TearMode) []byte {
	out := append([]byte(nil), ino.synced...)
	extra := len(ino.data) - len(ino.synced)
	if mode == TearNone || extra <= 0 || rng == nil || string(ino.data[:len(ino.synced)]) != string(ino.synced) {
		return out
	}
	keep := rng.IntN(extra + 1)
	switch mode {
	case TearPrefix:
		out = append(out, ino.data[len(ino.synced):len(ino.synced)+keep]...)
	case TearZeros:
		out = append(out, ino.data[len(ino.synced):len(ino.synced)+keep]...)
		out = append(out, make([]byte, extra-keep)...)
	case TearGap:
		out = append(out, ino.data[len(ino.synced):]...)
		lost := len(ino.synced) + rng.IntN(extra) // a byte of the lost block
		start := max(len(ino.synced), lost&^(TearBlock-1))
		end := min(len(out), lost&^(TearBlock-1)+TearBlock)
		clear(out[start:end])
	}
	return out
}

// FlipBit flips one bit of a file's current and durable contents, as silent
// media corruption would.
func (m *MemFS) FlipBit(name string, off int64, bit uint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[clean(name)]
	if !ok || off >= int64(len(ino.data)) {
		return fmt.Errorf("flip %s@%d: %w", name, off, os.ErrNotExist)
	}
	ino.data[off] ^= 1 << (bit % 8)
	if off < int64(len(ino.synced)) {
		ino.synced[off] ^= 1 << (bit % 8)
	}
	return nil
}

// Bytes returns a copy of a file's current contents.
func (m *MemFS) Bytes(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[clean(name)]
	if !ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: os.ErrNotExist}
	}
	return append([]byte(nil), ino.data...), nil
}

// SetBytes replaces a file's contents, durably, creating it if needed. Tests use
// it to lay down damaged files.
func (m *MemFS) SetBytes(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	ino := &inode{data: append([]byte(nil), data...)}
	ino.synced = append([]byte(nil), data...)
	m.files[name], m.durable[name] = ino, ino
}

func clean(name string) string { return path.Clean(name) }

func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	if !m.dirs[path.Dir(name)] {
		return nil, &os.PathError{Op: "create", Path: name, Err: os.ErrNotExist}
	}
	if _, ok := m.files[name]; ok {
		return nil, &os.PathError{Op: "create", Path: name, Err: os.ErrExist}
	}
	ino := &inode{}
	m.files[name] = ino
	return &memFile{fs: m, ino: ino, name: name}, nil
}

func (m *MemFS) open(name string, ro bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	ino, ok := m.files[name]
	if !ok {
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	}
	return &memFile{fs: m, ino: ino, name: name, ro: ro}, nil
}

func (m *MemFS) OpenRW(name string) (File, error) { return m.open(name, false) }
func (m *MemFS) Open(name string) (File, error)   { return m.open(name, true) }

func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	if _, ok := m.files[name]; !ok {
		if m.dirs[name] && !m.hasChildrenLocked(name) {
			// The removal is durable at once, as directories are, so the
			// unlinks that emptied it must be too: a file cannot outlive
			// its directory in the post-crash namespace.
			delete(m.dirs, name)
			for n := range m.durable {
				if strings.HasPrefix(n, name+"/") {
					delete(m.durable, n)
				}
			}
			return nil
		}
		return &os.PathError{Op: "remove", Path: name, Err: os.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

func (m *MemFS) hasChildrenLocked(dir string) bool {
	for n := range m.files {
		if strings.HasPrefix(n, dir+"/") {
			return true
		}
	}
	for d := range m.dirs {
		if strings.HasPrefix(d, dir+"/") {
			return true
		}
	}
	return false
}

// RemoveAll removes dir and everything below it, durably at once: MemFS treats
// directories as durable (see MemFS), and a file's name cannot outlive its
// directory, so SyncDir does not govern a RemoveAll here. Real filesystems need
// the SyncDir of the parent (see FS.RemoveAll); TestMemFSSyncDir pins this.
func (m *MemFS) RemoveAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	for n := range m.files {
		if n == dir || strings.HasPrefix(n, dir+"/") {
			delete(m.files, n)
			delete(m.durable, n)
		}
	}
	for d := range m.dirs {
		if d == dir || strings.HasPrefix(d, dir+"/") {
			delete(m.dirs, d)
		}
	}
	return nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldname, newname = clean(oldname), clean(newname)
	ino, ok := m.files[oldname]
	if !ok {
		return &os.PathError{Op: "rename", Path: oldname, Err: os.ErrNotExist}
	}
	if !m.dirs[path.Dir(newname)] {
		return &os.PathError{Op: "rename", Path: newname, Err: os.ErrNotExist}
	}
	delete(m.files, oldname)
	m.files[newname] = ino
	return nil
}

func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := clean(dir); !m.dirs[d]; d = path.Dir(d) {
		m.dirs[d] = true
	}
	return nil
}

func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	if !m.dirs[dir] {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: os.ErrNotExist}
	}
	var names []string
	for n := range m.files {
		if path.Dir(n) == dir {
			names = append(names, path.Base(n))
		}
	}
	for d := range m.dirs {
		if d != dir && path.Dir(d) == dir {
			names = append(names, path.Base(d)+"/")
		}
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir makes the current entries of dir durable: new names appear and removed
// ones disappear in the post-crash namespace.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	if !m.dirs[dir] {
		return &os.PathError{Op: "fsync dir", Path: dir, Err: os.ErrNotExist}
	}
	for n := range m.durable {
		if path.Dir(n) == dir {
			delete(m.durable, n)
		}
	}
	for n, ino := range m.files {
		if path.Dir(n) == dir {
			m.durable[n] = ino
		}
	}
	return nil
}

type memFile struct {
	fs   *MemFS
	ino  *inode
	name string
	ro   bool
}

var errDead = errors.New("vfs: file handle lost in simulated crash")

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.ino.dead {
		return 0, errDead
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case f.ino.dead:
		return 0, errDead
	case f.ro:
		return 0, &os.PathError{Op: "write", Path: f.name, Err: syscall.EBADF}
	}
	if err := m.failWrite; err != nil {
		m.failWrite = nil
		n := 0
		if m.shortNext {
			n = len(p) / 2
			f.ino.writeLocked(p[:n], off)
		}
		return n, &os.PathError{Op: "write", Path: f.name, Err: err}
	}
	if grow := off + int64(len(p)) - int64(len(f.ino.data)); m.capacity > 0 && grow > 0 && m.usedLocked()+grow > m.capacity {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	f.ino.writeLocked(p, off)
	m.writes++
	return len(p), nil
}

func (ino *inode) writeLocked(p []byte, off int64) {
	if end := off + int64(len(p)); end > int64(len(ino.data)) {
		ino.data = append(ino.data, make([]byte, end-int64(len(ino.data)))...)
	}
	copy(ino.data[off:], p)
}

func (f *memFile) Sync() error {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.ino.dead {
		return errDead
	}
	if err := m.failSync; err != nil {
		m.failSync = nil
		return &os.PathError{Op: "fdatasync", Path: f.name, Err: err}
	}
	f.ino.synced = append(f.ino.synced[:0], f.ino.data...)
	return nil
}

// SyncTo makes the first n bytes of the named file durable, as an
// fdatasync that started when the file was n bytes long and has just
// returned: what was written after it started stays unsynced (the
// simulation's pipelined fdatasyncs). An armed sync fault fails it.
func (m *MemFS) SyncTo(name string, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := m.files[clean(name)]
	if ino == nil {
		return &os.PathError{Op: "fdatasync", Path: name, Err: os.ErrNotExist}
	}
	if err := m.failSync; err != nil {
		m.failSync = nil
		return &os.PathError{Op: "fdatasync", Path: name, Err: err}
	}
	n = min(n, int64(len(ino.data)))
	if n > int64(len(ino.synced)) {
		ino.synced = append(ino.synced[:0], ino.data[:n]...)
	}
	return nil
}

// OpenSyncer returns a Syncer whose Sync makes every file's data durable, as
// syncfs does. Directory entries stay as they are: syncfs commits them too on
// a real filesystem, but shardlog never relies on that (it calls SyncDir), so
// the model keeps the weaker promise. An armed sync fault (FailNextSync)
// fails it with nothing synced.
func (m *MemFS) OpenSyncer(dir string) (Syncer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[clean(dir)] {
		return nil, &os.PathError{Op: "open", Path: dir, Err: os.ErrNotExist}
	}
	return memSyncer{m}, nil
}

type memSyncer struct{ m *MemFS }

func (s memSyncer) Sync() error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failSync; err != nil {
		m.failSync = nil
		return &os.PathError{Op: "syncfs", Path: "/", Err: err}
	}
	for _, ino := range m.files {
		ino.synced = append(ino.synced[:0], ino.data...)
	}
	return nil
}

func (memSyncer) Close() error { return nil }

// Truncate changes the size at once; like any metadata change it is only sure to
// survive a crash after Sync.
func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.ino.dead {
		return errDead
	}
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.ino.dead {
		return 0, errDead
	}
	return int64(len(f.ino.data)), nil
}

// DropCache only records the call: MemFS has no page cache.
func (f *memFile) DropCache(off, n int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.ino.dead {
		return errDead
	}
	f.fs.drops = append(f.fs.drops, CacheDrop{Path: f.name, Off: off, N: n, SyncedBytes: int64(len(f.ino.synced))})
	return nil
}

func (f *memFile) Close() error { return nil }
