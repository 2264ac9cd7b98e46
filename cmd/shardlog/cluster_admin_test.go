package main

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestClusterCmdRefusesClearWithPeerTLS (review 8 #3): `shardlog cluster
// nodes` with --peer-tls-* and a plain --endpoint sends nothing and names
// the https internal endpoint to use.
func TestClusterCmdRefusesClearWithPeerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newPeerCA(t, dir, "ca")
	cert, key := ca.issue("admin", "127.0.0.1", bothUsages[1])
	var hits atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write([]byte("[]"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	for _, endpoint := range []string{ln.Addr().String(), "http://" + ln.Addr().String()} {
		cmd := newClusterCmd()
		cmd.SetArgs([]string{"nodes", "--endpoint", endpoint, "--cluster-token", "t",
			"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", ca.file()})
		cmd.SetOut(new(strings.Builder))
		cmd.SetErr(new(strings.Builder))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "https://host:port") {
			t.Fatalf("--endpoint %s: %v; want a refusal naming the https internal endpoint", endpoint, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the plain endpoint", n)
	}
}
