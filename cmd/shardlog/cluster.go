package main

// This file is the only one in the command that touches cluster mode.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/cluster"
	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/vfs"
)

// clusterOptions are the cluster flags of `shardlog serve`.
type clusterOptions struct {
	enabled bool
	nodeID  uint64
	// peers is --peers: "1=host:port,2=host:port,..." (the Raft addresses
	// of every node, this one included).
	peers string
	// peerListen is where this node accepts Raft peers (default: its own
	// --peers address).
	peerListen string
	// advertise is this node's client API address as peers reach it
	// (default: --listen); with peer TLS, https://host:port of its
	// internal listener.
	advertise string
	// internalListen is where the internal listener (peer TLS only)
	// listens: default --advertise's host:port.
	internalListen string
	// join is --join: any running node's client API host:port, for a node
	// that joins the cluster instead of bootstrapping it.
	join          string
	token         string
	tick          time.Duration
	electionTicks int
	// peerTLS is --peer-tls-cert, --peer-tls-key and --peer-tls-ca
	// (peertls.go): all three or none.
	peerTLS peerTLSFiles
	// diskFullFile is the hidden test flag --debug-disk-full-file
	// (diskfull.go).
	diskFullFile string
	// acceptDamage: --cluster-accept-damage (cluster.Config.AcceptDamage).
	acceptDamage bool
}

func addClusterFlags(cmd *cobra.Command, c *clusterOptions) {
	f := cmd.Flags()
	f.BoolVar(&c.enabled, "cluster", false, "run as one node of a replicated cluster (README: Cluster); needs --node-id and --peers")
	f.Uint64Var(&c.nodeID, "node-id", 0, "with --cluster: this node's ID, one of --peers' (never reuse an ID for another disk)")
	f.StringVar(&c.peers, "peers", "", "with --cluster: the seed nodes' Raft addresses, this one's included, as ID=host:port,... (with --join: only this node's)")
	f.StringVar(&c.join, "join", "", "with --cluster: join a running cluster through any node's client API host:port (needs --cluster-token), or with --peer-tls-* its https://host:port --advertise address (README: Cluster)")
	f.StringVar(&c.peerListen, "peer-listen", "", "with --cluster: address to accept Raft peers on (default: this node's --peers address)")
	f.StringVar(&c.advertise, "advertise", "", "with --cluster: where the other nodes send this node requests: its client API host:port (default: --listen); with --peer-tls-*, https://host:port of its internal mutual-TLS listener")
	f.StringVar(&c.internalListen, "internal-listen", "", "with --cluster and --peer-tls-*: address of the internal listener, which serves node-to-node requests over mutual TLS (default: --advertise's host:port)")
	f.StringVar(&c.token, "cluster-token", "", "with --cluster: shared secret of the cluster (same on every node, or unset on every node: the first leader then generates one); also from SHARDLOG_CLUSTER_TOKEN")
	f.DurationVar(&c.tick, "raft-tick", cluster.DefaultTick, "with --cluster: Raft's tick (heartbeats every 2 ticks)")
	f.IntVar(&c.electionTicks, "election-ticks", cluster.DefaultElectionTicks, "with --cluster: Raft's election timeout in ticks (randomised up to twice that)")
	f.StringVar(&c.peerTLS.cert, "peer-tls-cert", "", "with --cluster: PEM certificate (chain) of this node on the Raft port, valid for its --peers host, for server and client auth (README: Security)")
	f.StringVar(&c.peerTLS.key, "peer-tls-key", "", "with --cluster: PEM private key of --peer-tls-cert")
	f.StringVar(&c.peerTLS.ca, "peer-tls-ca", "", "with --cluster: PEM CA certificate(s) that sign every node's peer certificate: the Raft port then takes only mutual TLS 1.3")
	f.BoolVar(&c.acceptDamage, "cluster-accept-damage", false, "with --cluster: set aside (to be replaced) however many replicas this start finds damaged; without it several at once refuse the start (README: Cluster)")
	f.StringVar(&c.diskFullFile, "debug-disk-full-file", "", "with --cluster: while this file exists, writes to the Raft state fail with ENOSPC (tests only)")
	f.MarkHidden("debug-disk-full-file")
}

func (c clusterOptions) check(o serveOptions) error {
	if !c.enabled {
		if c.nodeID != 0 || c.peers != "" || c.diskFullFile != "" || c.peerTLS.any() || c.internalListen != "" || c.acceptDamage {
			return errors.New("--node-id, --peers, --peer-tls-*, --internal-listen, --cluster-accept-damage and --debug-disk-full-file need --cluster")
		}
		return nil
	}
	if err := c.peerTLS.check(); err != nil {
		return err
	}
	peers, err := parsePeers(c.peers)
	switch {
	case err != nil:
		return err
	case c.nodeID == 0 || peers[c.nodeID] == "":
		return fmt.Errorf("--node-id must be one of the IDs in --peers, got %d", c.nodeID)
	case c.join != "" && c.token == "" && os.Getenv("SHARDLOG_CLUSTER_TOKEN") == "" && !c.peerTLS.any():
		return errors.New("--join needs the cluster's --cluster-token (or SHARDLOG_CLUSTER_TOKEN), or --peer-tls-* for a cluster started without a token")
	case c.join != "" && len(peers) != 1:
		return errors.New("with --join, --peers gives only this node's own Raft address (ID=host:port)")
	case o.injectThrottleRate != 0:
		return errors.New("--inject-throttle-rate is not supported in cluster mode yet")
	case o.tls.only && !c.peerTLS.any():
		return errors.New("--tls-only in cluster mode needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca (and --advertise https://host:port): without them the nodes send each other requests over the plain HTTP listener")
	case c.tick <= 0 || c.electionTicks < 3:
		return errors.New("--raft-tick must be positive and --election-ticks at least 3")
	}
	return c.checkInternalTLS()
}

// checkInternalTLS: with peer TLS the nodes' requests to each other go to
// their internal mutual-TLS listeners, so --advertise and --join must name
// such a listener (https://); without it, a plain client API (README:
// Security). A mixed configuration is refused here, not as failed requests.
func (c clusterOptions) checkInternalTLS() error {
	tlsOn := c.peerTLS.any()
	adv, isHTTPS := strings.CutPrefix(c.advertise, "https://")
	switch {
	case tlsOn && !isHTTPS:
		return fmt.Errorf("with --peer-tls-*, node-to-node requests use mutual TLS: give --advertise https://host:port, this node's internal listener as the other nodes reach it (it listens on --internal-listen, default that host:port), got %q", c.advertise)
	case !tlsOn && isHTTPS:
		return errors.New("--advertise https://... is the internal mutual-TLS listener, which needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca")
	case !tlsOn && c.internalListen != "":
		return errors.New("--internal-listen needs --peer-tls-*: without them node-to-node requests go to the client API")
	case c.join != "" && tlsOn != strings.HasPrefix(c.join, "https://"):
		return fmt.Errorf("--join %q: with --peer-tls-* give a node's https://host:port --advertise address, without them its client API host:port", c.join)
	}
	if isHTTPS {
		if _, _, err := net.SplitHostPort(adv); err != nil {
			return fmt.Errorf("--advertise %q: %w", c.advertise, err)
		}
	}
	return nil
}

// parsePeers reads --peers.
func parsePeers(s string) (map[uint64]string, error) {
	out := map[uint64]string{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil || n == 0 || addr == "" || out[n] != "" {
			return nil, fmt.Errorf("--peers: %q is not ID=host:port with a new ID above 0", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--peers: %q: %w", part, err)
		}
		out[n] = addr
	}
	return out, nil
}

// openCluster starts this node of the cluster: a storeOpener. Its Raft
// state lives in <data-dir>/cluster, under the data directory's LOCK. It
// returns once the node knows the cluster secret, which on a first start
// needs a quorum of --peers up.
func openCluster(ctx context.Context, o serveOptions, log hclog.Logger) (api.Backend, io.Closer, error) {
	c := o.cluster
	peers, err := parsePeers(c.peers)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return nil, nil, err
	}
	lock, err := datadir.LockExclusive(o.dataDir)
	if err != nil {
		return nil, nil, err
	}
	var ln net.Listener
	if c.peerListen != "" {
		if ln, err = net.Listen("tcp", c.peerListen); err != nil {
			lock.Release()
			return nil, nil, fmt.Errorf("--peer-listen: %w", err)
		}
	}
	advertise := c.advertise
	if advertise == "" {
		advertise = o.listen
	}
	token := c.token
	if token == "" {
		token = os.Getenv("SHARDLOG_CLUSTER_TOKEN")
	}
	peerTLS, err := c.peerTLS.open(peers[c.nodeID], log.Named("peer-tls"))
	if err == nil && peerTLS != nil {
		err = certNames(peerTLS(), "--advertise", strings.TrimPrefix(advertise, "https://"))
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		lock.Release()
		return nil, nil, err
	}
	var fs vfs.FS = vfs.OS{}
	if c.diskFullFile != "" {
		fs = fullDiskFS{FS: fs, flag: c.diskFullFile}
	}
	log.Info("starting cluster node: waiting for the metadata group", "node_id", c.nodeID, "peers", c.peers, "advertise", advertise)
	n, err := cluster.Open(ctx, cluster.Config{NodeID: c.nodeID, Peers: peers, Join: c.join, PeerListener: ln, Advertise: advertise, InternalListen: c.internalListen,
		Dir: filepath.Join(o.dataDir, "cluster"), FS: fs, Secret: token, PeerTLS: peerTLS, AccountID: o.accountID, ShardLimit: o.shardLimit,
		Tick: c.tick, ElectionTicks: c.electionTicks, Logger: log.Named("cluster"), Now: o.now, ConsumerDelay: o.consumerDelay, UpdateDelay: o.updateDelay, Observer: o.engine,
		RetentionEvery: o.retentionEvery, StateSegmentSize: o.segmentSize, AcceptDamage: c.acceptDamage,
		Throttle: o.throttle, ThrottleMultiplier: o.throttleMultiplier, RetentionObserver: o.engine,
		OnDemandStreamLimit: o.onDemand.streamLimit, OnDemand: o.onDemand.scaler(), Keyring: o.keys,
		ChannelDelay: o.channels.delay, ChannelAnyMode: o.channels.anyMode,
		Channels: channel.Options{Dest: channel.Dir(channelDir(o)), FlushEvery: o.channels.flushEvery, Logger: log.Named("channel")}})
	if err != nil {
		lock.Release()
		return nil, nil, err
	}
	return n, closers{n, lockCloser{lock}}, nil
}

// A cluster node reports its engine numbers to /metrics (cluster/stats.go),
// encrypts streams at rest (cluster/encrypt.go) and keeps channels
// (cluster/channels.go).
var (
	_ api.StatsSource  = (*cluster.Node)(nil)
	_ api.Encrypter    = (*cluster.Node)(nil)
	_ api.ChannelStore = (*cluster.Node)(nil)
)

type lockCloser struct{ l *datadir.Lock }

func (c lockCloser) Close() error { return c.l.Release() }

// newClusterCmd is `shardlog cluster`: an operator's commands against a
// running cluster, through any node's client API.
func newClusterCmd() *cobra.Command {
	var a cluster.Admin
	root := &cobra.Command{Use: "cluster", Short: "Inspect a running cluster and remove nodes from it (README: Cluster)"}
	pf := root.PersistentFlags()
	pf.StringVar(&a.Endpoint, "endpoint", "127.0.0.1:4567", "any node's client API host:port")
	pf.StringVar(&a.Token, "cluster-token", "", "the cluster's --cluster-token; also from SHARDLOG_CLUSTER_TOKEN")
	var files peerTLSFiles
	pf.StringVar(&files.cert, "peer-tls-cert", "", "with an https:// --endpoint (a node's internal listener): a client certificate signed by the cluster's --peer-tls-ca")
	pf.StringVar(&files.key, "peer-tls-key", "", "the private key of --peer-tls-cert")
	pf.StringVar(&files.ca, "peer-tls-ca", "", "the cluster's --peer-tls-ca, which the node's certificate is verified against")
	token := func() error {
		if err := files.check(); err != nil {
			return err
		}
		if files.any() {
			c, err := adminTLSClient(files)
			if err != nil {
				return err
			}
			a.Client, a.PeerTLS = c, true
		}
		if a.Token == "" {
			a.Token = os.Getenv("SHARDLOG_CLUSTER_TOKEN")
		}
		if a.Token == "" {
			return errors.New("--cluster-token (or SHARDLOG_CLUSTER_TOKEN) is needed")
		}
		return nil
	}
	nodes := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes: state (member, leaving, removed), replicas held, moves in progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := token(); err != nil {
				return err
			}
			list, err := a.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			printNodes(cmd.OutOrStdout(), list)
			return nil
		},
	}
	var id uint64
	var wait time.Duration
	remove := &cobra.Command{
		Use:   "remove-node",
		Short: "Mark a node leaving: its replicas move to the other nodes; once it holds none it is removed and can be stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := token(); err != nil {
				return err
			}
			return removeNode(cmd.Context(), cmd.OutOrStdout(), a, id, wait)
		},
	}
	remove.Flags().Uint64Var(&id, "node-id", 0, "the node to remove")
	remove.Flags().DurationVar(&wait, "wait", 10*time.Minute, "wait up to this long for the node to be removed (0: do not wait)")
	root.AddCommand(nodes, remove)
	return root
}

func printNodes(w io.Writer, list []cluster.NodeInfo) {
	fmt.Fprintf(w, "%-6s %-8s %-9s %-8s %-6s %-22s %s\n", "NODE", "STATE", "REPLICAS", "MOVING", "SEED", "API", "RAFT")
	for _, n := range list {
		fmt.Fprintf(w, "%-6d %-8s %-9d %-8d %-6t %-22s %s\n", n.ID, n.State, n.Replicas, n.Moving, n.Seed, n.API, n.Peer)
		for _, d := range n.Damaged {
			state := "being replaced"
			if d.Stuck != "" {
				state = "NOT being replaced (" + d.Stuck + ")"
			}
			fmt.Fprintf(w, "       damaged replica of group %d since %s, %s: %s (files kept in %s on node %d)\n",
				d.Group, d.At.Format(time.RFC3339), state, d.Reason, d.Dir, n.ID)
		}
	}
}

// removeNode asks for the removal, then polls its progress until the node
// is removed or wait has passed.
func removeNode(ctx context.Context, out io.Writer, a cluster.Admin, id uint64, wait time.Duration) error {
	if id == 0 {
		return errors.New("--node-id is needed")
	}
	deadline := time.Now().Add(wait)
	last := ""
	for {
		info, err := a.RemoveNode(ctx, id)
		if err != nil {
			return err
		}
		if line := fmt.Sprintf("node %d: %s, %d replicas, %d moves in progress", id, info.State, info.Replicas, info.Moving); line != last {
			fmt.Fprintln(out, line)
			last = line
		}
		if info.State == "removed" {
			fmt.Fprintf(out, "node %d holds no replica any more: it can be stopped\n", id)
			return nil
		}
		if time.Now().After(deadline) {
			if wait == 0 {
				return nil
			}
			return fmt.Errorf("node %d is still %s after %s; run the command again to follow it", id, info.State, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
