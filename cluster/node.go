package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

// Node is one node of a cluster: its Raft host, transport, metadata state
// machine and front end. It implements api.Backend.
type Node struct {
	cfg    Config
	host   *replica.Host
	tr     *replica.TCPTransport
	meta   *replica.MetaMachine
	seals  *sealTracker // each shard group's first seal entry (reshard.go)
	crypt  *crypt       // encryption at rest (encrypt.go)
	reader recordReader
	client *http.Client
	// internal serves the internal paths with peer TLS (internaltls.go).
	internal     *http.Server
	internalAddr net.Addr
	mixedLogged  sync.Map // registered addresses of the other TLS kind, logged once (internaltls.go)

	txnID atomic.Uint64
	kick  chan struct{} // wakes the reconcile loop
	// keys are derived from the cluster secret, set once it is known
	// (awaitSecret); the reconcile loop forwards before that.
	keys atomic.Pointer[secretKeys]

	routes  sync.Map // stream name → *routeTable
	turns   sync.Map // stream name → *atomic.Uint64: AUTO distribution's turns (distribution.go)
	leaders sync.Map // group → the node a peer last named its leader (remote.go)
	gone    goneSet  // consumers' gone channels (consumers.go)
	// chanWatch wakes channel delivery at a channel key's change (deliver.go).
	chanWatch chanWatcher
	delay     atomic.Pointer[time.Duration] // a test's ConsumerDelay (consumers.go)
	// limiters are the per-shard admission controllers, by group (admit.go).
	limiters sync.Map
	// meter counts the writes this node admits; board is the rates the
	// metadata leader gathered (scaler.go).
	meter rateMeter
	board rateBoard
	// lease is this node's metadata freshness lease, fences the metadata
	// leader's fenced UPDATING periods (lease.go).
	lease  metaLease
	fences fences
	// recovery is how long replica.Open took (WAL replay, every replica's
	// segments); stopped is set once the Raft host failed (stats.go).
	recovery time.Duration
	stopped  atomic.Bool

	cancel context.CancelFunc
	life   context.Context // canceled by Close: ends what outlives a request (forwarded subscriptions)
	// served is canceled by EndStreams (or Close): it ends the forwarded
	// subscriptions this node serves (subforward.go).
	served    context.Context
	endServed context.CancelFunc
	wg        sync.WaitGroup
	runErr    chan error
}

// Open starts the node: it recovers its Raft WAL, starts the transport and
// the Raft loop, and returns once the cluster secret is known (from Config
// or from the metadata group, which needs a quorum on a first start).
func Open(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, kick: make(chan struct{}, 1), runErr: make(chan error, 1), seals: newSealTracker()}
	n.seals.find = n.findSeal
	n.txnID.Store(uint64(time.Now().UnixNano())) // IDs of earlier incarnations are never met again
	n.meta = replica.NewMetaMachine(cfg.NodeID, metaGroup, func(c replica.MetaChange) {
		n.wake()
		if strings.HasPrefix(c.Key, channelPrefix) {
			n.chanWatch.wake()
		}
	})
	keys := cfg.Keyring
	if keys == nil {
		var err error
		if keys, err = keyring.Open(keyring.Options{Account: cfg.AccountID}); err != nil {
			return nil, err
		}
	}
	keys.SetDefaultSource(n.defaultKeyMaterial)
	n.crypt = newCrypt(keys)
	tr, err := replica.ListenTCP(cfg.transportConfig())
	if err != nil {
		return nil, fmt.Errorf("cluster: peer listener: %w", err)
	}
	// A seed bootstraps the metadata group with the seeds as its voters; a
	// joiner creates its replica when the cluster admits it (members.go).
	var groups []replica.GroupConfig
	if cfg.Join == "" {
		groups = []replica.GroupConfig{{ID: metaGroup, Peers: cfg.nodes()}}
	}
	opened := time.Now()
	maxDamaged := 0 // the host's default: one replica set aside per start (damage.go)
	if cfg.AcceptDamage {
		maxDamaged = -1
	}
	var send replica.Transport = tr
	if cfg.sendFilter != nil {
		send = filteredTransport{tr, cfg.sendFilter}
	}
	h, err := replica.Open(replica.Config{NodeID: cfg.NodeID, FS: cfg.FS, Dir: cfg.Dir, Transport: send,
		Groups: groups, ElectionTicks: cfg.ElectionTicks, HeartbeatTicks: cfg.HeartbeatTicks, Applier: appliers{n.meta, n.seals}, Observer: cfg.Observer,
		// The host stamps entries with the cluster's clock: retention trims
		// by the entries' times and reads filter by the records' (retention.go).
		Now: cfg.Now, StateSegmentSize: cfg.StateSegmentSize, Logger: cfg.Logger,
		CriticalGroups: []uint64{metaGroup}, MaxDamagedAtOpen: maxDamaged})
	if err != nil {
		tr.Close()
		return nil, damageRefused(cfg.Dir, err)
	}
	if err := metaDamaged(h); err != nil {
		h.Close()
		tr.Close()
		return nil, err
	}
	n.tr, n.host, n.reader = tr, h, sealedReader{r: h, seals: n.seals}
	n.recovery = time.Since(opened)
	n.noteSeals()
	n.client = newPeerClient(cfg.PeerTLS)
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel, n.life = cancel, runCtx
	n.served, n.endServed = context.WithCancel(context.Background())
	ticker := time.NewTicker(cfg.Tick)
	n.wg.Go(func() {
		defer ticker.Stop()
		if err := h.Run(runCtx, ticker.C, tr.Inbox()); err != nil {
			cfg.Logger.Error("raft host stopped: restart the node", "error", err)
			n.stopped.Store(true)
			n.runErr <- err
		}
	})
	// Until a joiner has its metadata replica its reconcile rounds find no
	// metadata leader and do nothing.
	n.wg.Go(func() { n.reconcileLoop(runCtx) })
	n.wg.Go(func() { n.retentionLoop(runCtx) })
	n.wg.Go(func() { n.deliveryLoop(runCtx) })
	if cfg.OnDemand.Interval > 0 {
		n.wg.Go(func() { n.scaleLoop(runCtx) })
	}
	if err := n.startInternal(); err != nil {
		n.Close()
		return nil, err
	}
	// A joiner without the token learns the secret from its join's answer
	// (internaltls.go), or on a restart from its copy of the metadata.
	steps := []func(context.Context) error{n.awaitSecret, n.join}
	if cfg.Join != "" && cfg.Secret == "" {
		steps = []func(context.Context) error{n.join, n.awaitSecret}
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			n.Close()
			return nil, err
		}
	}
	// Best effort: a node stopped before its copy of the metadata applied
	// its removal starts, finds no replica placed on it, and forwards.
	if n.nodeRecs()[cfg.NodeID].State == stateRemoved {
		n.Close()
		return nil, fmt.Errorf("cluster: node %d was removed from its cluster; it holds no replica any more: empty its data directory and join with a new node ID", cfg.NodeID)
	}
	return n, nil
}

// Close stops the node. Nothing acknowledged is lost: every Raft round
// ended in its fdatasync.
func (n *Node) Close() error {
	n.endServed()
	n.stopInternal()
	n.cancel()
	n.wg.Wait()
	n.gone.sweep(nil)
	n.client.CloseIdleConnections()
	err := n.host.Close()
	if terr := n.tr.Close(); err == nil {
		err = terr
	}
	return err
}

// Failed delivers the error that stopped the Raft host (a failed write or
// fdatasync: fail-stop, docs/cluster.md §4); the node then acknowledges
// nothing more and must be restarted.
func (n *Node) Failed() <-chan error { return n.runErr }

func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// awaitSecret sets the keys derived from the cluster secret: the
// configured one, or the one in the metadata group (created by its first
// leader, see reconcile).
func (n *Node) awaitSecret(ctx context.Context) error {
	for n.keys.Load() == nil {
		secret := n.cfg.Secret
		if secret == "" {
			var rec secretRec
			n.getJSON(keySecret, &rec)
			secret = rec.Secret
		}
		if secret != "" {
			n.setSecret(secret)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for the metadata group (a quorum of --peers) to agree on a cluster secret: %w", ctx.Err())
		case <-time.After(n.cfg.Tick):
		}
	}
	return nil
}

// secretKeys are the keys derived from the cluster secret.
type secretKeys struct {
	iterator []byte // api's iterator and pagination tokens
	forward  string // the value of AuthHeader on forwarded requests
	secret   string // for a joiner without the token (serveJoinTLS)
}

func (n *Node) setSecret(secret string) {
	n.keys.CompareAndSwap(nil, &secretKeys{iterator: derive(secret, "shardlog iterator key"), forward: ForwardAuth(secret), secret: secret})
}

// ForwardAuth is the value of AuthHeader that internal requests of a
// cluster with this secret carry (an operator's tool, or a test, reading
// GET /_cluster/v1/status sends it too).
func ForwardAuth(secret string) string {
	return hex.EncodeToString(derive(secret, "shardlog forwarding"))
}

func derive(secret, purpose string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// transportConfig is the Raft transport's configuration; it logs which
// protection the peer port has. The token
// handshake needs the secret before the transport starts, so a cluster
// whose secret its first leader generated has none (nor can a node join it).
func (c Config) transportConfig() replica.TCPConfig {
	tc := replica.TCPConfig{NodeID: c.NodeID, Listen: c.Peers[c.NodeID], Listener: c.PeerListener, Peers: c.Peers,
		TLS: c.PeerTLS, Logger: c.Logger.Named("peers")}
	if c.Secret != "" {
		tc.AuthKey = derive(c.Secret, "shardlog raft peers")
	}
	switch {
	case c.PeerTLS != nil && c.Secret != "":
		c.Logger.Info("Raft peers: mutual TLS and the cluster token's handshake")
	case c.PeerTLS != nil:
		c.Logger.Info("Raft peers: mutual TLS")
	case c.Secret != "":
		c.Logger.Info("Raft peers: the cluster token's handshake authenticates peers; the frames after it are not encrypted or protected (--peer-tls-* does that)")
	default:
		c.Logger.Warn("the Raft peer port accepts any peer: no --peer-tls-* and no --cluster-token; keep it on a private network (README: Security)")
	}
	return tc
}

// reconcileLoop makes this node's state follow the metadata: on every
// metadata change (the MetaMachine's watch wakes it) and every few ticks.
func (n *Node) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(4 * n.cfg.Tick)
	defer t.Stop()
	for {
		n.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
	}
}

// reconcile makes this node follow the metadata: it learns new nodes'
// addresses and creates the replicas placed or moving here; on the
// metadata leader it creates the cluster secret and the seeds' record;
// every node registers its addresses and steps the membership of the
// groups it leads (driver.go); the metadata leader also drives the
// metadata group's membership, activates CREATING streams, starts moves
// and marks drained nodes removed. Every step is idempotent and re-decided
// from the metadata state, so a step lost to a crash or a leader change is
// done again by the next round.
//
// Each step that may wait has its own election-timeout budget (bounded):
// with one budget for the round, a step blocked on a black-holed peer (the
// peer calls of activateStreams and finishReshards) spent it every round
// and starved the steps after it. finishUpdates, which needs only the
// metadata group, runs before the leader's peer-bound steps as well.
func (n *Node) reconcile(ctx context.Context) {
	n.sweepGone()
	n.syncPeers()
	snap := n.meta.Snapshot()
	n.ensureReplicas(snap)
	if n.host.Status(metaGroup).Leader == 0 {
		return
	}
	n.bounded(ctx, func(ctx context.Context) {
		n.ensureSecret(ctx, snap)
		n.ensureSeeds(ctx, snap)
		n.ensureRegistered(ctx)
	})
	n.bounded(ctx, func(ctx context.Context) { n.reportDamage(ctx, snap) })
	n.bounded(ctx, func(ctx context.Context) { n.repairInPlace(ctx, snap) })
	n.bounded(ctx, n.stepGroups)
	n.bounded(ctx, n.dropReplicas)
	if n.host.Status(metaGroup).Leader == n.cfg.NodeID {
		n.driveMeta()
		n.bounded(ctx, n.finishUpdates)
		n.bounded(ctx, n.activateStreams)
		n.bounded(ctx, n.finishReshards)
		n.bounded(ctx, n.advanceConsumers)
		n.bounded(ctx, n.advanceChannels)
		n.bounded(ctx, n.drivePlacement)
		n.bounded(ctx, n.finishRemovals)
	}
}

// bounded runs one reconcile step within an election timeout.
func (n *Node) bounded(ctx context.Context, step func(context.Context)) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.electionTimeout())
	defer cancel()
	step(ctx)
}

func (n *Node) ensureSecret(ctx context.Context, snap map[string]replica.MetaValue) {
	if _, ok := snap[keySecret]; ok || n.cfg.Secret != "" || n.host.Status(metaGroup).Leader != n.cfg.NodeID {
		return
	}
	b := make([]byte, 32)
	rand.Read(b)
	rec := secretRec{Secret: hex.EncodeToString(b)}
	// Absent-only: of two leaders' attempts one wins, and the secret never changes.
	if _, err := n.txn(ctx, []replica.MetaCond{{Key: keySecret}}, []replica.MetaOp{{Key: keySecret, Value: mustJSON(rec)}}); err != nil {
		n.cfg.Logger.Debug("creating the cluster secret", "error", err)
	}
}

// ensureRegistered records this node's API and Raft addresses (node/<id>)
// unless the metadata already holds them; its membership state stays.
func (n *Node) ensureRegistered(ctx context.Context) {
	var rec nodeRec
	key := nodeKey(n.cfg.NodeID)
	v, ok := n.getJSON(key, &rec)
	peer := n.cfg.Peers[n.cfg.NodeID]
	if ok && rec.API == n.cfg.Advertise && rec.Peer == peer {
		return
	}
	rec.API, rec.Peer = n.cfg.Advertise, peer
	_, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}})
	if err != nil {
		n.cfg.Logger.Debug("registering the API address", "error", err)
	}
}

// activateStreams turns a CREATING stream ACTIVE once every one of its
// shard groups has elected a leader, as this node (the metadata leader)
// or, for groups it holds no replica of, a replica sees it. A
// group with a leader has its replicas on a quorum of nodes and takes
// writes, which is what ACTIVE promises; the flip is a compare-and-set on
// the version read, so a concurrent DeleteStream wins over it.
func (n *Node) activateStreams(ctx context.Context) {
	for _, rec := range n.streams() {
		if rec.Status != string(storage.StatusCreating) || !n.groupsLed(ctx, rec) {
			continue
		}
		_, v, ok := n.stream(rec.Name)
		if !ok {
			continue
		}
		rec.Status = string(storage.StatusActive)
		key := replica.StreamKey(rec.Name)
		if _, err := n.txn(ctx, []replica.MetaCond{{Key: key, Version: v}}, []replica.MetaOp{{Key: key, Value: mustJSON(rec)}}); err != nil {
			n.cfg.Logger.Debug("activating a stream", "stream", rec.Name, "error", err)
		}
	}
}

func (n *Node) groupsLed(ctx context.Context, rec streamRec) bool {
	for _, sh := range rec.Shards {
		if n.groupLeader(ctx, sh.Group) == 0 {
			return false
		}
	}
	return true
}

// await waits for a proposal's outcome, at most proposalTimeout. A
// proposal not decided by then (its leader lost its quorum, say) is
// indeterminate: it may still commit.
func (n *Node) await(ctx context.Context, p *replica.Proposal) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, proposalTimeout)
	defer cancel()
	seqs, err := p.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, errIndeterminate
	}
	return seqs, err
}

// proposalTimeout bounds the wait for a proposal's commit.
const proposalTimeout = 10 * time.Second

// errIndeterminate: a write was proposed but not confirmed; it may or may
// not be stored, never twice (one proposal is one entry). The client sees
// an InternalFailure, as a timeout on AWS.
var errIndeterminate = errors.New("cluster: the write was not confirmed in time; it may or may not be stored")

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
