// Package keyring holds the master keys of encryption at rest: the keys that
// StartStreamEncryption's KeyIds name, read from the --keyring file, and
// the key shardlog generates for alias/aws/kinesis. It resolves KeyIds as
// KMS does (key IDs, key ARNs, alias names, alias ARNs) and master keys by
// their fingerprint, for opening segments (segment.Keys).
//
// The file (YAML, so JSON works too):
//
//	keys:
//	  - key_id: 1234abcd-12ab-34cd-56ef-1234567890ab  # the KeyId; its key ARN resolves too
//	    aliases: [alias/orders]                       # optional; their alias ARNs resolve too
//	    material: 3q2+7w...                           # base64 of 32 random bytes (openssl rand -base64 32)
//	    state: Enabled                                # optional: Enabled, Disabled or PendingDeletion
//
// ARNs resolve only in the request's region and the server's account: a key
// of another account is not found, as it is on AWS without a grant. Without a keyring
// entry for alias/aws/kinesis, that alias (AWS's Kinesis-owned key) uses a
// key shardlog generates once in the data directory (datadir.DefaultKeyFile,
// mode 0600, fsynced before it is used), or, in cluster mode, from where
// SetDefaultSource says (the cluster's metadata, the same on every node).
package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/yaml"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/segment"
)

// DefaultAlias is the alias of the Kinesis-owned key.
const DefaultAlias = "alias/aws/kinesis"

var (
	// ErrNotFound means no key answers to a KeyId (KMSNotFoundException).
	ErrNotFound = errors.New("keyring: key not found")
	// ErrDisabled means the key is disabled (KMSDisabledException).
	ErrDisabled = errors.New("keyring: key disabled")
	// ErrInvalidState means the key is pending deletion
	// (KMSInvalidStateException).
	ErrInvalidState = errors.New("keyring: key pending deletion")
	// ErrFile is wrapped by every error about the keyring file's contents.
	ErrFile = errors.New("invalid keyring file")
	// ErrNoDefault means the generated alias/aws/kinesis key comes from a
	// DefaultSource that does not hold it yet: its owner makes it (cluster
	// mode: once, in the metadata group) and resolves again.
	ErrNoDefault = errors.New("keyring: the generated alias/aws/kinesis key is not made yet")
)

// Key states, as KMS names them.
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
)

// Options configures a Keyring.
type Options struct {
	// File is the keyring file; "" means none (only alias/aws/kinesis).
	File string
	// DataDir holds the generated alias/aws/kinesis key.
	DataDir string
	// Account qualifies ARNs: only ARNs of this account (and of the
	// request's region) resolve.
	Account string
}

// Keyring is safe for concurrent use. Reload swaps the file's keys in
// atomically; the generated default key never changes.
type Keyring struct {
	opts Options
	ring atomic.Pointer[ring]

	defMu  sync.Mutex
	def    *segment.MasterKey // the generated key, once loaded or made
	defSrc DefaultSource      // if set, where the generated key is, instead of DataDir
}

// DefaultSource returns the generated alias/aws/kinesis key's material
// where it is kept outside the data directory (cluster mode keeps it in the
// metadata group, the same on every node); ok is false while there is none.
type DefaultSource func() (material []byte, ok bool)

// SetDefaultSource makes the generated alias/aws/kinesis key come from src
// rather than the data directory: the keyring then never makes a key file,
// and Resolve answers ErrNoDefault until src has one.
func (k *Keyring) SetDefaultSource(src DefaultSource) {
	k.defMu.Lock()
	defer k.defMu.Unlock()
	k.defSrc, k.def = src, nil
}

// ring is one reading of the keyring file; never modified once built.
type ring struct {
	byName map[string]*entry // key IDs and alias names
	byFP   map[segment.Fingerprint]segment.MasterKey
	// states are the file's keys' states by fingerprint, for Usable.
	states map[segment.Fingerprint]string
}

type entry struct {
	state string
	key   segment.MasterKey
}

// Open reads the keyring file, if any.
func Open(opts Options) (*Keyring, error) {
	k := &Keyring{opts: opts}
	r := &ring{byName: map[string]*entry{}, byFP: map[segment.Fingerprint]segment.MasterKey{}}
	if opts.File != "" {
		var err error
		if r, err = load(opts.File); err != nil {
			return nil, err
		}
	}
	k.ring.Store(r)
	return k, nil
}

// Reload reads the keyring file again. On any error the keys in use stay.
func (k *Keyring) Reload() error {
	if k.opts.File == "" {
		return nil
	}
	r, err := load(k.opts.File)
	if err != nil {
		return err
	}
	k.ring.Store(r)
	return nil
}

// Resolve finds the master key a StartStreamEncryption KeyId names, for a
// request to region. It fails with ErrNotFound, ErrDisabled or
// ErrInvalidState, or an I/O error making the default key.
func (k *Keyring) Resolve(keyID, region string) (segment.MasterKey, error) {
	name, ok := k.normalize(keyID, region)
	if !ok {
		return segment.MasterKey{}, fmt.Errorf("%w: %s", ErrNotFound, keyID)
	}
	if e := k.ring.Load().byName[name]; e != nil {
		switch e.state {
		case StateDisabled:
			return segment.MasterKey{}, fmt.Errorf("%w: %s", ErrDisabled, keyID)
		case StatePendingDeletion:
			return segment.MasterKey{}, fmt.Errorf("%w: %s", ErrInvalidState, keyID)
		}
		return e.key, nil
	}
	if name == DefaultAlias {
		return k.defaultKey(true)
	}
	return segment.MasterKey{}, fmt.Errorf("%w: %s", ErrNotFound, keyID)
}

// Keys resolves master keys by fingerprint, for opening segments: any key of
// the file, whatever its state (records written under a key stay readable
// after it is disabled), and the generated default key.
func (k *Keyring) Keys() segment.Keys {
	return func(fp segment.Fingerprint) (segment.MasterKey, error) {
		if m, ok := k.ring.Load().byFP[fp]; ok {
			return m, nil
		}
		if m, err := k.defaultKey(false); err == nil && m.ID == fp {
			return m, nil
		}
		return segment.MasterKey{}, fmt.Errorf("%w: master key %s is not in the keyring", segment.ErrNoKey, fp)
	}
}

// Usable reports whether new records may be encrypted under the master key
// fp: ErrDisabled or ErrInvalidState for a key of the file in that state,
// nil otherwise (whether the key is there at all is Keys' question). Reads
// do not ask: what a disabled key encrypted stays readable.
func (k *Keyring) Usable(fp segment.Fingerprint) error {
	switch k.ring.Load().states[fp] {
	case StateDisabled:
		return fmt.Errorf("%w: master key %s", ErrDisabled, fp)
	case StatePendingDeletion:
		return fmt.Errorf("%w: master key %s", ErrInvalidState, fp)
	}
	return nil
}

// normalize turns a KeyId into a key ID or an alias name: ARNs of region
// and the account lose their prefix. ok is false for an ARN elsewhere.
func (k *Keyring) normalize(keyID, region string) (string, bool) {
	if !strings.HasPrefix(keyID, "arn:") {
		return keyID, true
	}
	parts := strings.SplitN(keyID, ":", 6)
	if len(parts) != 6 || parts[1] != "aws" || parts[2] != "kms" || parts[3] != region || parts[4] != k.opts.Account {
		return "", false
	}
	res := parts[5]
	switch {
	case strings.HasPrefix(res, "key/"):
		return strings.TrimPrefix(res, "key/"), true
	case strings.HasPrefix(res, "alias/"):
		return res, true
	}
	return "", false
}

// defaultKey returns the generated alias/aws/kinesis key, reading it from
// the data directory or, if create and there is none, making it.
func (k *Keyring) defaultKey(create bool) (segment.MasterKey, error) {
	k.defMu.Lock()
	defer k.defMu.Unlock()
	if k.def != nil {
		return *k.def, nil
	}
	if k.defSrc != nil {
		return k.sourcedDefault()
	}
	if k.opts.DataDir == "" {
		return segment.MasterKey{}, fmt.Errorf("%w: no data directory for the generated %s key", ErrNotFound, DefaultAlias)
	}
	path := datadir.DefaultKeyPath(k.opts.DataDir)
	m, err := readKeyFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		m, err = makeKeyFile(path)
	}
	if err != nil {
		return segment.MasterKey{}, err
	}
	k.def = &m
	return m, nil
}

// sourcedDefault is defaultKey from a DefaultSource, under defMu. A key,
// once found, is kept: the source's owner never changes it.
func (k *Keyring) sourcedDefault() (segment.MasterKey, error) {
	raw, ok := k.defSrc()
	if !ok {
		return segment.MasterKey{}, ErrNoDefault
	}
	m, err := segment.NewMasterKey(raw)
	if err != nil {
		return segment.MasterKey{}, fmt.Errorf("keyring: the generated %s key: %w", DefaultAlias, err)
	}
	k.def = &m
	return m, nil
}

func readKeyFile(path string) (segment.MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return segment.MasterKey{}, err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return segment.MasterKey{}, fmt.Errorf("%s: %w", path, err)
	}
	m, err := segment.NewMasterKey(raw)
	if err != nil {
		return segment.MasterKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// makeKeyFile writes a new random key to path: to a temporary file, synced,
// renamed into place, the directory synced, so that the key is durable before
// any segment is encrypted under it, and a crash leaves either no key or the
// whole key.
func makeKeyFile(path string) (segment.MasterKey, error) {
	raw := make([]byte, segment.KeySize)
	rand.Read(raw)
	m, err := segment.NewMasterKey(raw)
	if err != nil {
		return m, err
	}
	tmp := path + datadir.TmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return m, err
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = datadir.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return m, fmt.Errorf("keyring: write %s: %w", path, err)
	}
	return m, nil
}

// fileShape is the keyring file.
type fileShape struct {
	Keys []fileKey `json:"keys"`
}

type fileKey struct {
	KeyID    string   `json:"key_id"`
	Aliases  []string `json:"aliases"`
	Material string   `json:"material"`
	State    string   `json:"state"`
}

func load(path string) (*ring, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	return parse(raw)
}

// parse checks a keyring file: every key has a key ID, 32 bytes of base64
// material and a known state; no name (key ID or alias) appears twice; aliases
// start with "alias/" and key IDs do not.
func parse(raw []byte) (*ring, error) {
	var f fileShape
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	r := &ring{byName: map[string]*entry{}, byFP: map[segment.Fingerprint]segment.MasterKey{}, states: map[segment.Fingerprint]string{}}
	for i, fk := range f.Keys {
		e, err := fk.entry()
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %w", ErrFile, i, err)
		}
		for _, name := range append([]string{fk.KeyID}, fk.Aliases...) {
			if _, dup := r.byName[name]; dup {
				return nil, fmt.Errorf("%w: keys[%d]: %q names two keys", ErrFile, i, name)
			}
			r.byName[name] = e
		}
		r.byFP[e.key.ID] = e.key
		r.states[e.key.ID] = e.state
	}
	return r, nil
}

func (fk fileKey) entry() (*entry, error) {
	switch {
	case fk.KeyID == "" || strings.HasPrefix(fk.KeyID, "alias/") || strings.HasPrefix(fk.KeyID, "arn:"):
		return nil, fmt.Errorf("key_id %q must be a key ID (a UUID, not an alias or ARN)", fk.KeyID)
	case fk.State != "" && fk.State != StateEnabled && fk.State != StateDisabled && fk.State != StatePendingDeletion:
		return nil, fmt.Errorf("state %q (want %s, %s or %s)", fk.State, StateEnabled, StateDisabled, StatePendingDeletion)
	}
	for _, a := range fk.Aliases {
		if !strings.HasPrefix(a, "alias/") || len(a) == len("alias/") {
			return nil, fmt.Errorf("alias %q must be alias/NAME", a)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(fk.Material)
	if err != nil {
		return nil, fmt.Errorf("material of %s is not base64: %w", fk.KeyID, err)
	}
	m, err := segment.NewMasterKey(raw)
	if err != nil {
		return nil, fmt.Errorf("material of %s: %w", fk.KeyID, err)
	}
	state := fk.State
	if state == "" {
		state = StateEnabled
	}
	return &entry{state: state, key: m}, nil
}
