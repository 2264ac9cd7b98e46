package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// peerTLSFiles are the files of --peer-tls-cert, --peer-tls-key and
// --peer-tls-ca: mutual TLS on the Raft port (README: Security).
type peerTLSFiles struct{ cert, key, ca string }

func (f peerTLSFiles) any() bool { return f.cert != "" || f.key != "" || f.ca != "" }

func (f peerTLSFiles) check() error {
	if f.any() && (f.cert == "" || f.key == "" || f.ca == "") {
		return errors.New("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together: give all three (mutual TLS on the Raft port) or none")
	}
	return nil
}

// open loads the files; nil, nil when peer TLS is off. peerAddr is this
// node's --peers address, whose host its certificate must be valid for:
// its peers dial that host and verify the certificate against it.
func (f peerTLSFiles) open(peerAddr string, log hclog.Logger) (func() *tls.Config, error) {
	if !f.any() {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(peerAddr)
	if err != nil {
		return nil, err
	}
	cfg, err := loadPeerTLS(f, host, time.Now())
	if err != nil {
		return nil, err
	}
	s := &peerTLSSource{files: f, host: host, log: log, cur: cfg, stamp: f.stamp()}
	return s.config, nil
}

// peerTLSSource gives the peer transport its TLS configuration for each
// new connection. It re-reads the files when one of them changed (size,
// modification time or inode: a stat of three files per connection, and peers keep
// their connections open, so this is cheap). Files that fail to load leave
// the previous configuration in force, and the error is logged once per
// change. Open connections keep the certificates they were opened with.
type peerTLSSource struct {
	files peerTLSFiles
	host  string
	log   hclog.Logger
	mu    sync.Mutex
	stamp [3]fileStamp // of the files last tried
	cur   *tls.Config
}

// fileStamp tells a changed file: a file renamed into place has a new
// inode even when size and time are the same (a coarse clock).
type fileStamp struct {
	size    int64
	modTime time.Time
	inode   uint64
}

func (f peerTLSFiles) stamp() (st [3]fileStamp) {
	for i, name := range []string{f.cert, f.key, f.ca} {
		if fi, err := os.Stat(name); err == nil {
			st[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				st[i].inode = sys.Ino
			}
		}
	}
	return st
}

func (s *peerTLSSource) config() *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.files.stamp(); st != s.stamp {
		s.stamp = st
		cfg, err := loadPeerTLS(s.files, s.host, time.Now())
		if err != nil {
			s.log.Error("the peer TLS files changed but do not load; keeping the previous ones", "error", err)
		} else {
			s.cur = cfg
			s.log.Info("reloaded the peer TLS files", "cert", s.files.cert, "ca", s.files.ca)
		}
	}
	return s.cur
}

// loadPeerTLS reads the files and checks what a peer will check, so that a
// mistake is reported at start, not as refused connections: the
// certificate is valid now, chains to the CA, may serve as both server and
// client (a node is both), and names host.
func loadPeerTLS(f peerTLSFiles, host string, now time.Time) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
	}
	pemCA, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("--peer-tls-ca: no PEM certificate in %s", f.ca)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := cert.Leaf.Verify(opts); err != nil {
			return nil, fmt.Errorf("--peer-tls-cert %s does not verify against --peer-tls-ca %s for %s: %w", f.cert, f.ca, usageName(usage), err)
		}
	}
	if err := cert.Leaf.VerifyHostname(host); err != nil {
		return nil, fmt.Errorf("--peer-tls-cert %s: peers dial this node at %q (its --peers host) and would refuse it: %w", f.cert, host, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		RootCAs: pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}, nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "server auth (extendedKeyUsage serverAuth)"
	}
	return "client auth (extendedKeyUsage clientAuth)"
}

// certNames checks that the peer certificate is valid for the host of
// addr (flag's value), which the other nodes dial and verify it against.
func certNames(cfg *tls.Config, flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if err := cfg.Certificates[0].Leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("--peer-tls-cert: the other nodes reach this node's internal listener at %q (%s) and would refuse it: %w", host, flag, err)
	}
	return nil
}

// adminTLSClient is `shardlog cluster`'s client of a node's internal
// listener: it presents the certificate and verifies the node's against
// the CA. The certificate needs client auth only.
func adminTLSClient(f peerTLSFiles) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
	}
	pemCA, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("--peer-tls-ca: no PEM certificate in %s", f.ca)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}
