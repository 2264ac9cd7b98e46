package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func clusterTestOptions() serveOptions {
	o := testOptions()
	o.cluster = clusterOptions{enabled: true, nodeID: 2, peers: "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103",
		tick: 50 * time.Millisecond, electionTicks: 16}
	return o
}

// TestClusterOptionsCheck: the cluster flags' rules.
func TestClusterOptionsCheck(t *testing.T) {
	if err := clusterTestOptions().check(); err != nil {
		t.Fatal(err)
	}
	join := clusterTestOptions()
	join.cluster.nodeID, join.cluster.peers, join.cluster.join, join.cluster.token = 4, "4=127.0.0.1:7104", "127.0.0.1:4567", "t"
	if err := join.check(); err != nil {
		t.Fatalf("a joining node's flags: %v", err)
	}
	for name, mut := range map[string]func(*serveOptions){
		"node id not a peer":        func(o *serveOptions) { o.cluster.nodeID = 4 },
		"no node id":                func(o *serveOptions) { o.cluster.nodeID = 0 },
		"peer without address":      func(o *serveOptions) { o.cluster.peers = "1=127.0.0.1:7101,2=" },
		"peer ID 0":                 func(o *serveOptions) { o.cluster.peers = "0=127.0.0.1:7101,2=127.0.0.1:7102" },
		"peer ID twice":             func(o *serveOptions) { o.cluster.peers = "2=127.0.0.1:7101,2=127.0.0.1:7102" },
		"address without port":      func(o *serveOptions) { o.cluster.peers = "1=127.0.0.1,2=127.0.0.1:7102" },
		"tls only":                  func(o *serveOptions) { o.tls.only, o.tls.selfSigned = true, true },
		"tiny election timeout":     func(o *serveOptions) { o.cluster.electionTicks = 1 },
		"inject throttle rate":      func(o *serveOptions) { o.injectThrottleRate = 0.1 },
		"node id without --cluster": func(o *serveOptions) { o.cluster.enabled = false },
		"zero tick":                 func(o *serveOptions) { o.cluster.tick = 0 },
		"join without a token":      func(o *serveOptions) { o.cluster.join, o.cluster.peers = "127.0.0.1:4567", "2=127.0.0.1:7102" },
		"join with other peers":     func(o *serveOptions) { o.cluster.join, o.cluster.token = "127.0.0.1:4567", "t" },
		"disk-full file without --cluster": func(o *serveOptions) {
			o.cluster = clusterOptions{diskFullFile: "full", tick: o.cluster.tick, electionTicks: o.cluster.electionTicks}
		},
	} {
		o := clusterTestOptions()
		mut(&o)
		if o.check() == nil {
			t.Errorf("%s: accepted %+v", name, o.cluster)
		}
	}
}

// TestClusterInternalTLSOptions: with --peer-tls-* the nodes talk over
// mutual TLS, so --tls-only is allowed, --advertise and --join must name
// internal https:// listeners, and a join needs no token; any other mix
// is refused at start, saying what to change.
func TestClusterInternalTLSOptions(t *testing.T) {
	withTLS := func(o *serveOptions) {
		o.cluster.peerTLS = peerTLSFiles{cert: "c", key: "k", ca: "ca"}
		o.cluster.advertise = "https://127.0.0.1:7202"
	}
	joiner := func(o *serveOptions) {
		o.cluster.nodeID, o.cluster.peers, o.cluster.join = 4, "4=127.0.0.1:7104", "https://127.0.0.1:7201"
	}
	for _, tc := range []struct {
		name    string
		mut     func(*serveOptions)
		wantErr string
	}{
		{"peer TLS", withTLS, ""},
		{"peer TLS, --tls-only", func(o *serveOptions) { withTLS(o); o.tls.only, o.tls.selfSigned = true, true }, ""},
		{"peer TLS, --internal-listen", func(o *serveOptions) { withTLS(o); o.cluster.internalListen = "0.0.0.0:7202" }, ""},
		{"peer TLS, join without a token", func(o *serveOptions) { withTLS(o); joiner(o) }, ""},
		{"--tls-only without peer TLS", func(o *serveOptions) { o.tls.only, o.tls.selfSigned = true, true }, "needs --peer-tls-cert"},
		{"peer TLS, plain --advertise", func(o *serveOptions) { withTLS(o); o.cluster.advertise = "127.0.0.1:7202" }, "give --advertise https://"},
		{"peer TLS, no --advertise", func(o *serveOptions) { withTLS(o); o.cluster.advertise = "" }, "give --advertise https://"},
		{"https --advertise without peer TLS", func(o *serveOptions) { o.cluster.advertise = "https://127.0.0.1:7202" }, "needs --peer-tls-cert"},
		{"--internal-listen without peer TLS", func(o *serveOptions) { o.cluster.internalListen = "127.0.0.1:7202" }, "needs --peer-tls-*"},
		{"peer TLS, plain --join", func(o *serveOptions) { withTLS(o); joiner(o); o.cluster.join = "127.0.0.1:4567" }, "--join"},
		{"https --join without peer TLS", func(o *serveOptions) { joiner(o); o.cluster.token = "t" }, "--join"},
		{"peer TLS, --advertise without a port", func(o *serveOptions) { withTLS(o); o.cluster.advertise = "https://127.0.0.1" }, "--advertise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := clusterTestOptions()
			tc.mut(&o)
			err := o.check()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("check: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	got, err := parsePeers("1=127.0.0.1:7101, 3=node3:7103")
	want := map[uint64]string{1: "127.0.0.1:7101", 3: "node3:7103"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parsePeers = %v, %v", got, err)
	}
}

// TestClusterFlags: the flags exist with the documented defaults.
func TestClusterFlags(t *testing.T) {
	cmd := newServeCmd(nil)
	for name, def := range map[string]string{"cluster": "false", "node-id": "0", "peers": "", "peer-listen": "", "advertise": "",
		"cluster-token": "", "raft-tick": "50ms", "election-ticks": "16", "join": "", "internal-listen": ""} {
		if f := cmd.Flags().Lookup(name); f == nil || f.DefValue != def {
			t.Errorf("--%s: %+v, want default %q", name, f, def)
		}
	}
}
