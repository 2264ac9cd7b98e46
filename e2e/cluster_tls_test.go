package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// writePeerCerts writes a CA (ca.crt) and, for each node, N.crt and N.key:
// a certificate for 127.0.0.1 usable as server and client, as
// --peer-tls-cert needs. Nothing is checked in: everything is made here.
func writePeerCerts(t *testing.T, dir string, nodes int) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e peer CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEMFile(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)
	for id := 1; id <= nodes; id++ {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(id + 1)), Subject: pkix.Name{CommonName: fmt.Sprintf("node%d", id)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEMFile(t, filepath.Join(dir, fmt.Sprintf("%d.crt", id)), "CERTIFICATE", der)
		writePEMFile(t, filepath.Join(dir, fmt.Sprintf("%d.key", id)), "EC PRIVATE KEY", keyDER)
	}
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestClusterPeerTLS: three `shardlog serve --cluster` processes whose Raft
// port takes mutual TLS only (and the token's handshake inside it), as do
// their internal listeners (--advertise https://...). The SDK
// creates a stream through node 1, writes through node 2, reads through
// nodes 3 and 1. A plaintext connection to node 1's Raft port is refused
// and logged; no node warns that its peer port is open.
func TestClusterPeerTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	certs := t.TempDir()
	writePeerCerts(t, certs, 3)
	c := &clusterProcs{t: t, bin: buildBinary(t), dirs: map[uint64]string{}, procs: map[uint64]*process{},
		acked: map[string]string{}, attempted: map[string]bool{}}
	var parts []string
	for id := uint64(1); id <= 3; id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%d=%s", id, ln.Addr()))
		ln.Close()
		c.dirs[id] = filepath.Join(t.TempDir(), "data")
	}
	c.peers = strings.Join(parts, ",")
	for id := uint64(1); id <= 3; id++ {
		c.procs[id] = startProcess(t, c.bin, c.dirs[id], append(c.clusterArgs(id), "--log-level", "info",
			"--peer-tls-cert", filepath.Join(certs, fmt.Sprintf("%d.crt", id)), "--peer-tls-key", filepath.Join(certs, fmt.Sprintf("%d.key", id)),
			"--peer-tls-ca", filepath.Join(certs, "ca.crt"), "--advertise", "https://"+freeAddr(t))...)
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
	for round := range 3 {
		if !c.put(2, round, 20) {
			t.Fatalf("PutRecords round %d through node 2 failed", round)
		}
	}
	for _, id := range []uint64{3, 1} {
		if err := c.verify(id); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
	}

	// An intruder without TLS: refused before any frame is read, and logged.
	peer1 := strings.TrimPrefix(parts[0], "1=")
	conn, err := net.Dial("tcp", peer1)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("shardlog-raft/2\n\x00\x00\x00\x00"))
	conn.Close()
	log1 := filepath.Join(c.dirs[1], "..", "server.log")
	waitFor(t, "node 1 logs the refusal", func() error {
		b, _ := os.ReadFile(log1)
		if !strings.Contains(string(b), "refused a Raft peer connection") {
			return fmt.Errorf("not in %s yet", log1)
		}
		return nil
	})
	for id := uint64(1); id <= 3; id++ {
		b, _ := os.ReadFile(filepath.Join(c.dirs[id], "..", "server.log"))
		if strings.Contains(string(b), "accepts any peer") || !strings.Contains(string(b), "Raft peers: mutual TLS") {
			t.Fatalf("node %d's log does not say its peer port takes mutual TLS:\n%s", id, b)
		}
	}
}
