package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/shardlog/shardlog/datadir"
)

// errNoCertificate is returned by a certificate source that has none loaded.
var errNoCertificate = errors.New("no TLS certificate loaded")

// certSource serves the certificate of a PEM certificate and key file pair
// and re-reads them on Reload. Handshakes read the current certificate
// through an atomic pointer, so a reload never blocks or tears a handshake.
// Invariant: once New returns, cur is never nil.
type certSource struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// newCertSource loads certFile and keyFile.
func newCertSource(certFile, keyFile string) (*certSource, error) {
	c := &certSource{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the files. A pair that fails to load, does not match, or
// is not yet or no longer valid leaves the previous certificate in force
// and is reported.
func (c *certSource) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	now := time.Now()
	if leaf := cert.Leaf; leaf != nil && (now.Before(leaf.NotBefore) || now.After(leaf.NotAfter)) {
		return fmt.Errorf("TLS certificate %s is valid from %s to %s, not now", c.certFile,
			leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	c.cur.Store(&cert)
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (c *certSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cur.Load(); cert != nil {
		return cert, nil
	}
	return nil, errNoCertificate
}

// tlsConfig is the server side: TLS 1.2 or later, the certificate from src.
// The ALPN protocols (h2, http/1.1) are added by http.Server.ServeTLS from
// the server's Protocols.
func tlsConfig(src *certSource) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: src.GetCertificate}
}

// selfSignedValidity is how long a generated certificate is valid, and
// selfSignedRenew how long before its end the server makes a new one.
const (
	selfSignedValidity = 397 * 24 * time.Hour
	selfSignedRenew    = 30 * 24 * time.Hour
)

// selfSignedFiles are the paths of the generated certificate in dataDir.
type selfSignedFiles struct{ ca, cert, key string }

func selfSignedPaths(dataDir string) selfSignedFiles {
	dir := filepath.Join(dataDir, datadir.TLSDir)
	return selfSignedFiles{ca: filepath.Join(dir, datadir.TLSCAFile),
		cert: filepath.Join(dir, datadir.TLSCertFile), key: filepath.Join(dir, datadir.TLSKeyFile)}
}

// ensureSelfSigned makes sure dataDir holds a development CA and a localhost
// server certificate it signed, reusing the ones there unless they are
// missing, unreadable or within selfSignedRenew of expiring, so that a CA a
// user trusted once stays trusted across restarts. It reports whether it
// generated new files.
func ensureSelfSigned(dataDir string, now time.Time) (selfSignedFiles, bool, error) {
	p := selfSignedPaths(dataDir)
	if cert, err := tls.LoadX509KeyPair(p.cert, p.key); err == nil && cert.Leaf != nil &&
		now.Add(selfSignedRenew).Before(cert.Leaf.NotAfter) && fileExists(p.ca) {
		return p, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(p.cert), 0o700); err != nil {
		return p, false, fmt.Errorf("create TLS directory: %w", err)
	}
	caDER, leafDER, keyDER, err := generateSelfSigned(now)
	if err != nil {
		return p, false, err
	}
	// The key is written first and the CA last: a crash in between leaves
	// a pair that fails to load or a missing CA, and both regenerate.
	for _, f := range []struct {
		path, typ string
		der       [][]byte
		mode      os.FileMode
	}{
		{p.key, "EC PRIVATE KEY", [][]byte{keyDER}, 0o600},
		{p.cert, "CERTIFICATE", [][]byte{leafDER, caDER}, 0o644},
		{p.ca, "CERTIFICATE", [][]byte{caDER}, 0o644},
	} {
		if err := writePEM(f.path, f.typ, f.der, f.mode); err != nil {
			return p, false, err
		}
	}
	return p, true, nil
}

// generateSelfSigned makes an ECDSA P-256 CA and a server certificate it
// signs for localhost, 127.0.0.1 and ::1. The CA's key is not kept: the
// next generation makes a new CA.
func generateSelfSigned(now time.Time) (caDER, leafDER, keyDER []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(selfSignedValidity)
	ca := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "shardlog development CA", Organization: []string{"shardlog"}},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if caDER, err = x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey); err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: notBefore, NotAfter: notAfter, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if leafDER, err = x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey); err != nil {
		return nil, nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	if keyDER, err = x509.MarshalECPrivateKey(leafKey); err != nil {
		return nil, nil, nil, err
	}
	return caDER, leafDER, keyDER, nil
}

// serial is a random 128-bit certificate serial number.
func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return new(big.Int).SetBytes(b)
}

// writePEM writes blocks to path through a temporary file renamed into
// place, so a reader (a SIGHUP reload) never sees half a file.
func writePEM(path, typ string, ders [][]byte, mode os.FileMode) error {
	tmp := path + datadir.TmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	for _, der := range ders {
		if err = pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
			break
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
