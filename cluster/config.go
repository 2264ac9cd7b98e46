package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// Config configures a Node.
type Config struct {
	// NodeID is this node's ID: never 0, never reused for another disk.
	NodeID uint64
	// Peers maps the cluster's seed nodes (this one included) to their
	// Raft transport addresses: the nodes that bootstrap the cluster, and
	// the voters of its metadata group. With Join set, Peers holds only
	// this node's own address; the rest is learned from the cluster.
	Peers map[uint64]string
	// Join, if set, is the client API address (host:port) of any node of
	// a running cluster (with PeerTLS: its internal https://host:port):
	// this node joins it (members.go) instead of bootstrapping with Peers.
	// It needs Secret (the cluster's token), or PeerTLS for a cluster
	// started without one (internaltls.go).
	Join string
	// PeerListener, if set, is this node's Raft listener (tests reserve
	// ports with it); otherwise the node listens on Peers[NodeID].
	PeerListener net.Listener
	// Advertise is where peers send this node internal requests: the
	// host:port of its client API (plain HTTP), or, with PeerTLS, the
	// https://host:port of its internal listener (internaltls.go).
	Advertise string
	// InternalListen is the internal listener's address with PeerTLS
	// (default: Advertise's host:port); InternalListener, if set, is that
	// listener (tests reserve ports with it).
	InternalListen   string
	InternalListener net.Listener
	// internalHandshakes overrides maxInternalHandshakes (tests).
	internalHandshakes int
	// Dir holds the node's Raft WAL and state files.
	Dir string
	FS  vfs.FS
	// Secret, if set, is the cluster secret (--cluster-token): it keys
	// iterators and authenticates forwarded requests, and must be the same
	// on every node. Empty: the first metadata leader generates one and
	// stores it in the metadata group.
	Secret string
	// PeerTLS, if set, secures the Raft transport with mutual TLS 1.3
	// (replica.TCPConfig.TLS), and the node-to-node HTTP requests the same
	// way (internaltls.go): called for each new connection.
	PeerTLS func() *tls.Config
	// AccountID and ShardLimit are the account's, as in single-node mode.
	AccountID  string
	ShardLimit int
	// Tick is the Raft tick; ElectionTicks and HeartbeatTicks are raft's
	// (an election timeout is ElectionTicks to 2*ElectionTicks ticks).
	Tick                          time.Duration
	ElectionTicks, HeartbeatTicks int
	// Replicas per shard (default 3; all nodes if there are fewer).
	Replicas int
	// ConsumerDelay is how long a registered consumer stays CREATING, and a
	// deregistered one DELETING (serve's --consumer-delay); 0: no wait.
	ConsumerDelay time.Duration
	// UpdateDelay is how long a stream stays UPDATING after
	// UpdateMaxRecordSize or Enable/DisableEnhancedMonitoring (serve's
	// --update-stream-delay); 0: no UPDATING, but for the metadata fence of
	// the changes shard leaders enforce (lease.go). Resharding is not timed
	// by it.
	UpdateDelay time.Duration
	// ChannelDelay is how long a channel stays CREATING, UPDATING and
	// DELETING (serve's --channel-delay); 0: no wait. ChannelAnyMode lets
	// channels read PROVISIONED streams (--channel-any-mode).
	ChannelDelay   time.Duration
	ChannelAnyMode bool
	// Channels configures channel delivery, which the metadata leader runs
	// (deliver.go); a nil Dest delivers nothing. Nil Logger and Now take
	// the node's.
	Channels channel.Options
	Logger   hclog.Logger
	// Now is the clock (arrival times, stream creation); nil: time.Now.
	Now func() time.Time
	// Observer, if set, is told of every fdatasync of the node's Raft WAL
	// and segments (replica.Config.Observer): serve passes its engine
	// metrics, so /metrics counts them (shardlog_fdatasync_duration_seconds).
	Observer replica.SyncObserver
	// RetentionEvery is how often the node trims its replicas' expired
	// segments (retention.go); default DefaultRetentionEvery.
	RetentionEvery time.Duration
	// Throttle enforces Kinesis's per-shard rates (serve's --throttle;
	// admit.go), each times ThrottleMultiplier (--throttle-multiplier; 0:
	// 1) and the stream's storage.MultiplierTag. Off by default here, as
	// in storage.Options; serve turns it on unless --throttle=false.
	Throttle           bool
	ThrottleMultiplier float64
	// RetentionObserver, if set, is told what each retention pass deleted
	// (serve passes its engine metrics: shardlog_retention_deleted_*).
	RetentionObserver interface {
		Trimmed(segments int, bytes int64)
	}
	// StateSegmentSize is the size at which a replica's segment file rolls
	// (replica.Config.StateSegmentSize; 0: its default). Retention deletes
	// whole sealed segments, so tests make them small.
	StateSegmentSize int64
	// AcceptDamage sets aside however many replicas the node's start finds
	// damaged (serve's --cluster-accept-damage); without it more than one
	// at once fails the start, changing nothing (replica.DamageRefusal).
	// A damaged metadata replica fails it either way.
	AcceptDamage bool
	// Keyring holds the master keys of StartStreamEncryption (serve's
	// --keyring; encrypt.go); every node needs the same keys. nil: a
	// keyring without a file (only alias/aws/kinesis). Open makes it take
	// the generated alias/aws/kinesis key from the metadata group
	// (keyring.SetDefaultSource), not the data directory.
	Keyring *keyring.Keyring
	// OnDemandStreamLimit is the account's limit of ON_DEMAND streams
	// (--on-demand-stream-limit); 0: storage.DefaultOnDemandStreamLimit.
	OnDemandStreamLimit int
	// OnDemand configures the on-demand scaler (scaler.go), as
	// storage.Options.OnDemand does: zero fields take storage's defaults, a
	// negative Interval turns the scaler's loop off (tests run its passes).
	OnDemand storage.ScalerOptions
	// sendFilter, a test's network fault, sees every batch of Raft messages
	// this node sends and returns what is sent of it (nil: all).
	sendFilter func(replica.Batch) replica.Batch
}

// Defaults of zero Config fields. A 50 ms tick with 16 election ticks
// gives an election timeout of 0.8-1.6 s: a killed leader is replaced
// within about 2 s on a LAN, and a loaded machine's fdatasync stalls do
// not depose leaders at every hiccup.
const (
	DefaultTick           = 50 * time.Millisecond
	DefaultElectionTicks  = 16
	DefaultHeartbeatTicks = 2
	DefaultReplicas       = 3
)

func (c Config) withDefaults() Config {
	if c.Tick <= 0 {
		c.Tick = DefaultTick
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.Replicas <= 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if !(c.ThrottleMultiplier > 0) {
		c.ThrottleMultiplier = 1
	}
	if c.OnDemandStreamLimit <= 0 {
		c.OnDemandStreamLimit = storage.DefaultOnDemandStreamLimit
	}
	c.OnDemand = c.OnDemand.WithDefaults()
	if c.RetentionEvery <= 0 {
		c.RetentionEvery = DefaultRetentionEvery
	}
	return c
}

func (c Config) check() error {
	switch {
	case c.NodeID == 0:
		return errors.New("cluster: node ID 0")
	case c.Peers[c.NodeID] == "":
		return fmt.Errorf("cluster: node %d is not among the peers", c.NodeID)
	case c.Advertise == "":
		return errors.New("cluster: no advertised client API address")
	case c.FS == nil || c.Dir == "":
		return errors.New("cluster: no data directory")
	}
	return c.checkTLS()
}

// electionTimeout is the longest a healthy group goes without a leader
// after losing one: raft's randomised timeout tops out at twice the base.
func (c Config) electionTimeout() time.Duration {
	return 2 * time.Duration(c.ElectionTicks) * c.Tick
}

// nodes is the configured node IDs (the seeds), sorted.
func (c Config) nodes() []uint64 {
	var out []uint64
	for id := range c.Peers {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
