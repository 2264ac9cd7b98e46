package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/hashicorp/go-hclog"
)

func selfSignedOptions(t *testing.T) serveOptions {
	o := fastOptions()
	o.dataDir = t.TempDir()
	o.tls = tlsOptions{selfSigned: true, listen: "127.0.0.1:0"}
	return o
}

// TestTLSSDK: the Go SDK over HTTPS, offering only h2 and only http/1.1 by
// ALPN, trusting the generated CA, drives a stream end to end; plain HTTP
// stays on --listen.
func TestTLSSDK(t *testing.T) {
	o := selfSignedOptions(t)
	ep := serveFor(t, o, nil)
	if ep.plain == nil || ep.tls == nil || ep.caFile == "" {
		t.Fatalf("endpoints %+v", ep)
	}
	tc := trusting(t, ep.caFile)
	for _, tt := range []struct {
		name, host string
		tr         *http.Transport
		want       string
	}{
		{"h2", "127.0.0.1", h2Transport(tc), "tls:h2"},
		{"http1.1", "127.0.0.1", h1Transport(tc), "tls:http/1.1"},
		{"h2 localhost", "localhost", h2Transport(tc), "tls:h2"},
		{"plain", "", h1Transport(nil), "HTTP/1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := "http://" + ep.plain.String()
			if tt.host != "" {
				endpoint = "https://" + net.JoinHostPort(tt.host, portOf(ep.tls))
			}
			c, pt := sdkClient(endpoint, tt.tr)
			name := strings.ReplaceAll(tt.name, " ", "-")
			createActiveStream(t, c, name)
			if n := putAndCount(t, c, name, "x"); n != 1 {
				t.Fatalf("read %d records, want 1", n)
			}
			if got := pt.protocols(); got != tt.want {
				t.Fatalf("protocols %q, want %q", got, tt.want)
			}
		})
	}
}

func portOf(a net.Addr) string { return strconv.Itoa(a.(*net.TCPAddr).Port) }

// TestTLSOnly: --tls-only serves no plain HTTP.
func TestTLSOnly(t *testing.T) {
	o := selfSignedOptions(t)
	o.tls.only = true
	ep := serveFor(t, o, nil)
	if ep.plain != nil || ep.tls == nil {
		t.Fatalf("endpoints %+v", ep)
	}
}

// TestSelfSignedCertificate: the generated certificate is ECDSA P-256 for
// localhost, 127.0.0.1 and ::1, chains to the CA file, and is reused by the
// next start (a CA the user trusted stays trusted).
func TestSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	files, made, err := ensureSelfSigned(dir, time.Now())
	if err != nil || !made {
		t.Fatalf("ensureSelfSigned: %v %v", made, err)
	}
	cert, err := tls.LoadX509KeyPair(files.cert, files.key)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := cert.Leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("key %T", cert.Leaf.PublicKey)
	}
	pool := trusting(t, files.ca).RootCAs
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := cert.Leaf.VerifyHostname(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("does not chain to the CA: %v", err)
	}
	before, _ := os.ReadFile(files.ca)
	if _, made, err := ensureSelfSigned(dir, time.Now()); err != nil || made {
		t.Fatalf("second start regenerated: %v %v", made, err)
	}
	if _, made, err := ensureSelfSigned(dir, time.Now().Add(selfSignedValidity)); err != nil || !made {
		t.Fatalf("an expiring certificate was kept: %v %v", made, err)
	}
	after, _ := os.ReadFile(files.ca)
	if string(before) == string(after) {
		t.Fatal("renewal kept the CA")
	}
}

// TestTLSReloadOnSIGHUP: after SIGHUP new handshakes get the certificate
// now in the files; files that do not load leave it in force.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	first := writeTestPair(t, certFile, keyFile)
	o := fastOptions()
	o.tls = tlsOptions{cert: certFile, key: keyFile, listen: "127.0.0.1:0"}
	logs := &syncBuffer{}
	ep := serveFor(t, o, hclog.New(&hclog.LoggerOptions{Output: logs}))
	if got := servedSerial(t, ep.tls); got.Cmp(first) != 0 {
		t.Fatalf("serial %v, want %v", got, first)
	}
	second := writeTestPair(t, certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new certificate", func() bool { return servedSerial(t, ep.tls).Cmp(second) == 0 })

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if got := servedSerial(t, ep.tls); got.Cmp(second) != 0 {
		t.Fatalf("after a bad file: serial %v, want the previous %v", got, second)
	}
}

// writeTestPair writes a fresh self-signed pair and returns its serial.
func writeTestPair(t *testing.T, certFile, keyFile string) *big.Int {
	t.Helper()
	caDER, leafDER, keyDER, err := generateSelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := writePEM(keyFile, "EC PRIVATE KEY", [][]byte{keyDER}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writePEM(certFile, "CERTIFICATE", [][]byte{leafDER, caDER}, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber
}

// servedSerial handshakes with addr and returns the server certificate's
// serial number.
func servedSerial(t *testing.T, addr net.Addr) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestSubscribeToShardSurvivesTimeouts: a SubscribeToShard stream, over
// h2 with TLS (ALPN), HTTP/1.1 with TLS and cleartext h2, keeps delivering
// after the read and idle timeouts have passed many times over.
func TestSubscribeToShardSurvivesTimeouts(t *testing.T) {
	o := selfSignedOptions(t)
	o.hardening.readTimeout, o.hardening.idleTimeout, o.hardening.readHeaderTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	o.throttle = false
	ep := serveFor(t, o, nil)
	tc := trusting(t, ep.caFile)
	tlsEndpoint := "https://" + ep.tls.String()
	admin, _ := sdkClient(tlsEndpoint, h2Transport(tc))
	createActiveStream(t, admin, "efo")
	ctx := context.Background()
	for _, tt := range []struct {
		name, endpoint string
		tr             *http.Transport
		want           string
	}{
		{"h2 TLS", tlsEndpoint, h2Transport(tc), "tls:h2"},
		{"http1.1 TLS", tlsEndpoint, h1Transport(tc), "tls:http/1.1"},
		{"h2c", "http://" + ep.plain.String(), h2Transport(nil), "HTTP/2.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := admin.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{
				StreamARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/efo"), ConsumerName: aws.String(strings.ReplaceAll(tt.name, " ", "-"))})
			if err != nil {
				t.Fatal(err)
			}
			c, pt := sdkClient(tt.endpoint, tt.tr)
			out, err := c.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: reg.Consumer.ConsumerARN,
				ShardId: aws.String("shardId-000000000000"), StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest}})
			if err != nil {
				t.Fatal(err)
			}
			st := out.GetStream()
			defer st.Close()
			// Wait out the timeouts several times over, then put a record.
			time.Sleep(10 * o.hardening.readTimeout)
			if _, err := admin.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("efo"), PartitionKey: aws.String("k"), Data: []byte(tt.name)}); err != nil {
				t.Fatal(err)
			}
			for got := false; !got; {
				ev, ok := <-st.Events()
				if !ok {
					t.Fatalf("stream ended: %v", st.Err())
				}
				for _, r := range ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value.Records {
					got = got || string(r.Data) == tt.name
				}
			}
			if p := pt.protocols(); p != tt.want {
				t.Fatalf("protocol %q, want %q", p, tt.want)
			}
		})
	}
}

// TestTLSAWSCLI: the AWS CLI v2 reaches the HTTPS endpoint trusting the
// generated CA with --ca-bundle, and is refused without it.
func TestTLSAWSCLI(t *testing.T) {
	const awsCLI = "/usr/bin/aws"
	if _, err := os.Stat(awsCLI); err != nil {
		t.Skipf("%s not installed: %v", awsCLI, err)
	}
	if testing.Short() {
		t.Skip("the AWS CLI starts a Python interpreter per call; skipped with -short")
	}
	ep := serveFor(t, selfSignedOptions(t), nil)
	endpoint := "https://localhost:" + portOf(ep.tls)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(awsCLI, append([]string{"--endpoint-url", endpoint, "--region", "us-east-1", "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("--ca-bundle", ep.caFile, "kinesis", "create-stream", "--stream-name", "cli", "--shard-count", "1"); err != nil {
		t.Fatalf("create-stream: %v\n%s", err, out)
	}
	out, err := run("--ca-bundle", ep.caFile, "kinesis", "list-streams")
	if err != nil || !strings.Contains(out, `"cli"`) {
		t.Fatalf("list-streams: %v\n%s", err, out)
	}
	if out, err := run("kinesis", "list-streams"); err == nil || !strings.Contains(strings.ToLower(out), "certificate") {
		t.Fatalf("list-streams without --ca-bundle: %v\n%s", err, out)
	}
}
