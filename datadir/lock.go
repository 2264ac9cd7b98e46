package datadir

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLocked means another process holds the data directory's LOCK in a mode
// that conflicts with the one asked for.
var ErrLocked = errors.New("data directory is in use by another process")

// Lock is a flock on a data directory's LOCK file. The server and fsck
// repair hold it exclusively, so that they never run at once; fsck verify
// holds it shared, which keeps a server from starting while it reads. Locks
// are never waited for. A nil *Lock holds nothing.
type Lock struct{ f *os.File }

// LockExclusive takes LOCK in dir exclusively, creating the file if needed.
// It fails with ErrLocked if any other lock is held on it.
func LockExclusive(dir string) (*Lock, error) {
	f, err := os.OpenFile(LockPath(dir), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return flock(f, dir, unix.LOCK_EX)
}

// LockShared takes LOCK in dir shared. It fails with ErrLocked if a server
// (or repair) holds it exclusively. A missing LOCK file means no server ever
// ran in dir: LockShared then returns a nil *Lock and no error, and does not
// create the file (verify changes nothing).
func LockShared(dir string) (*Lock, error) {
	f, err := os.Open(LockPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return flock(f, dir, unix.LOCK_SH)
}

func flock(f *os.File, dir string, how int) (*Lock, error) {
	err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	if err == nil {
		return &Lock{f}, nil
	}
	f.Close()
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
	}
	return nil, fmt.Errorf("lock %s: %w", dir, err)
}

// Release drops the lock. Closing the file is what drops a flock, so a lock
// also ends with the process.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
