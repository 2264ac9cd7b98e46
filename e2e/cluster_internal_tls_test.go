package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/shardlog/shardlog/cluster"
)

// TestClusterInternalTLS: three `shardlog serve --cluster --tls-only`
// processes with peer TLS: the client API is HTTPS only, and the nodes'
// requests to each other go to their internal mutual-TLS listeners
// (--advertise https://...). The SDK, trusting the test CA, creates a
// stream through node 1 and writes through a node that does not lead
// shard 0 (so its records are forwarded), then reads everything through
// another node. The internal listener refuses a client without a
// certificate, and the client API refuses the internal paths; `shardlog
// cluster nodes` lists the nodes through an internal listener.
func TestClusterInternalTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	certs := t.TempDir()
	writePeerCerts(t, certs, 3)
	caPEM, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &clusterProcs{t: t, bin: buildBinary(t), dirs: map[uint64]string{}, procs: map[uint64]*process{},
		acked: map[string]string{}, attempted: map[string]bool{}}
	var parts []string
	apis, internals := map[uint64]string{}, map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		parts = append(parts, fmt.Sprintf("%d=%s", id, freeAddr(t)))
		apis[id], internals[id] = freeAddr(t), freeAddr(t)
		c.dirs[id] = filepath.Join(t.TempDir(), "data")
	}
	c.peers = strings.Join(parts, ",")
	for id := uint64(1); id <= 3; id++ {
		crt, key := filepath.Join(certs, fmt.Sprintf("%d.crt", id)), filepath.Join(certs, fmt.Sprintf("%d.key", id))
		c.procs[id] = startHTTPSProcess(t, c.bin, c.dirs[id], apis[id], pool, append(c.clusterArgs(id),
			"--tls-only", "--tls-cert", crt, "--tls-key", key, "--tls-listen", apis[id],
			"--peer-tls-cert", crt, "--peer-tls-key", key, "--peer-tls-ca", filepath.Join(certs, "ca.crt"),
			"--advertise", "https://"+internals[id], "--log-level", "info")...)
	}
	ctx := context.Background()
	if _, err := c.procs[1].client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("cl"), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream ACTIVE through node 3", func() error {
		out, err := c.procs[3].client().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("cl")})
		if err == nil && out.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
		}
		return err
	})

	// The node's internal listener, as a node: its certificate, the key.
	nodeCert, err := tls.LoadX509KeyPair(filepath.Join(certs, "1.crt"), filepath.Join(certs, "1.key"))
	if err != nil {
		t.Fatal(err)
	}
	asNode := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{nodeCert}}}}
	var leader uint64
	waitFor(t, "shard 0 has a leader", func() error {
		var st cluster.NodeStatus
		if err := getInternal(asNode, "https://"+internals[1]+"/_cluster/v1/status", &st); err != nil {
			return err
		}
		g := st.Shards["cl/shardId-000000000000"]
		if leader = st.Groups[strconv.FormatUint(g, 10)].Leader; g == 0 || leader == 0 {
			return fmt.Errorf("group %d, leader %d", g, leader)
		}
		return nil
	})
	writer := leader%3 + 1
	reader := writer%3 + 1
	for round := range 3 {
		if !c.put(writer, round, 20) {
			t.Fatalf("PutRecords round %d through node %d (shard 0 led by node %d) failed", round, writer, leader)
		}
	}
	if err := c.verify(reader); err != nil {
		t.Fatalf("read through node %d: %v", reader, err)
	}

	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if err := getInternal(noCert, "https://"+internals[2]+"/_cluster/v1/status", &cluster.NodeStatus{}); err == nil {
		t.Fatal("node 2's internal listener answered a client without a certificate")
	}
	err = getInternal(c.procs[2].tlsClient(), c.procs[2].endpoint+"/_cluster/v1/status", &cluster.NodeStatus{})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("node 2's client API served an internal path: %v", err)
	}
	// The operator's command, through an internal listener with a certificate of the CA.
	out, err := exec.Command(c.bin, "cluster", "nodes", "--endpoint", "https://"+internals[3], "--cluster-token", clusterToken,
		"--peer-tls-cert", filepath.Join(certs, "1.crt"), "--peer-tls-key", filepath.Join(certs, "1.key"),
		"--peer-tls-ca", filepath.Join(certs, "ca.crt")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "https://"+internals[2]) {
		t.Fatalf("shardlog cluster nodes over mutual TLS: %v\n%s", err, out)
	}
	for id := uint64(1); id <= 3; id++ {
		b, _ := os.ReadFile(filepath.Join(c.dirs[id], "..", "server.log"))
		if !strings.Contains(string(b), "node-to-node requests: mutual TLS") {
			t.Fatalf("node %d's log does not say node-to-node requests use mutual TLS:\n%s", id, b)
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// getInternal GETs an internal path with the cluster's forwarding key.
func getInternal(cl *http.Client, url string, out any) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set(cluster.AuthHeader, cluster.ForwardAuth(clusterToken))
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (p *process) tlsClient() *http.Client { return &http.Client{Transport: p.tr} }

// startHTTPSProcess is startProcess for a server with --tls-only on
// tlsAddr, whose certificate pool verifies.
func startHTTPSProcess(t *testing.T, bin, dir, tlsAddr string, pool *x509.CertPool, extra ...string) *process {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dir, "..", "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--data-dir", dir, "--throttle=false",
		"--create-stream-delay", "0", "--delete-stream-delay", "0", "--segment-size", "65536"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, cmd: cmd, endpoint: "https://" + tlsAddr,
		tr: &http.Transport{MaxIdleConnsPerHost: 16, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(p.kill)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := p.tlsClient().Get(p.endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			p.kill()
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("server did not become healthy:\n%s", out)
		}
	}
}
