// Package index owns shardlog's two bbolt files.
//
//   - meta.db (Meta) is authoritative: stream and shard metadata and the
//     server's secret. It is written rarely and synced on every commit.
//   - index.db (Index) is derived: per-shard segment catalogs and sparse seek
//     points. It is committed in batches by one goroutine, may lag the
//     segments, never leads them, and can be deleted: the shard rebuilds it.
//
// No other package imports bbolt.
package index

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/shardlog/shardlog/datadir"
)

var (
	bucketStreams = []byte("streams")
	bucketServer  = []byte("server")
	keySecret     = []byte("secret")
)

// ErrLocked means another process holds the database.
var ErrLocked = errors.New("index: database is locked by another process")

// Meta is the authoritative metadata store. Values are opaque to it: the
// storage package owns their schema.
type Meta struct{ db *bolt.DB }

// OpenMeta opens or creates meta.db at path. A brand-new file is initialised
// under a temporary name and renamed into place, so a crash during the very
// first initialisation never leaves a half-made database behind.
func OpenMeta(path string) (*Meta, error) {
	db, err := openBolt(path, false)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketStreams, bucketServer} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &Meta{db: db}, nil
}

// openBolt opens a bbolt file, creating it safely if missing. readOnly opens
// an existing file with a shared lock, for fsck.
func openBolt(path string, readOnly bool) (*bolt.DB, error) {
	opts := &bolt.Options{Timeout: 2 * time.Second, ReadOnly: readOnly, FreelistType: bolt.FreelistMapType}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && !readOnly {
		if err := safeInit(path, opts); err != nil {
			return nil, err
		}
	}
	db, err := boltOpen(path, opts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// ErrDamaged means a bbolt file is cut short or its pages are unreadable.
var ErrDamaged = errors.New("index: damaged database file")

// boltOpen is bolt.Open made safe against a damaged file. bbolt trusts the
// meta page: a file cut short makes it fault reading past the end of its
// mapping, or panic on a garbage freelist page, which would kill the process
// rather than fail the open; and a file shorter than the meta page's
// high-water mark would fault later, on the first read past its end. All of
// these become ErrDamaged. After a panic bbolt has no DB to close, so the
// file it opened is unlocked and closed here; its mapping of the file is
// leaked (and would hold the lock, were it not released explicitly).
func boltOpen(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	var file *os.File
	o := *opts
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				unix.Flock(int(file.Fd()), unix.LOCK_UN)
				file.Close()
			}
			db, err = nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, r)
		}
	}()
	db, err = bolt.Open(path, 0o644, &o)
	if err != nil {
		return nil, err
	}
	if err := checkSize(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// checkSize fails if the file ends before the pages its meta page counts.
// bbolt grows the file (and syncs the growth) before a commit that uses the
// new pages, so a whole file never does.
func checkSize(db *bolt.DB) error {
	st, err := os.Stat(db.Path())
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > st.Size() {
			return fmt.Errorf("%w: %s is %d bytes, its meta page counts %d", ErrDamaged, db.Path(), st.Size(), tx.Size())
		}
		return nil
	})
}

func safeInit(path string, opts *bolt.Options) error {
	tmp := path + datadir.TmpExt
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o644, opts)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := db.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return datadir.SyncDir(filepath.Dir(path))
}

// OpenMetaReadOnly opens meta.db for inspection (fsck). It fails with
// ErrLocked if a server holds it.
func OpenMetaReadOnly(path string) (*Meta, error) {
	db, err := openBolt(path, true)
	if err != nil {
		return nil, err
	}
	return &Meta{db: db}, nil
}

// Close closes the database.
func (m *Meta) Close() error { return m.db.Close() }

// PutStream stores a stream's metadata record, durably.
func (m *Meta) PutStream(name string, value []byte) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStreams).Put([]byte(name), value)
	})
}

// DeleteStream removes a stream's metadata record, durably.
func (m *Meta) DeleteStream(name string) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStreams).Delete([]byte(name))
	})
}

// StreamRecord is one stored stream metadata value.
type StreamRecord struct {
	Name  string
	Value []byte
}

// Streams returns every stream record, sorted by name. Values are copies.
func (m *Meta) Streams() ([]StreamRecord, error) {
	var out []StreamRecord
	err := m.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out = append(out, StreamRecord{string(k), append([]byte(nil), v...)})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Secret returns the server's 32-byte secret, creating it on first use. It
// signs shard iterators and pagination tokens, so it must survive restarts.
func (m *Meta) Secret() ([]byte, error) {
	var secret []byte
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketServer)
		if v := b.Get(keySecret); len(v) == 32 {
			secret = append([]byte(nil), v...)
			return nil
		}
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		return b.Put(keySecret, secret)
	})
	return secret, err
}

// Account returns the account's settings record (datadir.AccountRecord's
// JSON), nil when none was ever stored. The value is a copy.
func (m *Meta) Account() ([]byte, error) {
	var out []byte
	err := m.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketServer).Get([]byte(datadir.MetaAccountKey)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// PutAccount stores the account's settings record, durably.
func (m *Meta) PutAccount(value []byte) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketServer).Put([]byte(datadir.MetaAccountKey), value)
	})
}
