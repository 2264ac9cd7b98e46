package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// peerCA makes CAs and node certificates as PEM files in dir.
type peerCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPeerCA(t *testing.T, dir, name string) *peerCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", [][]byte{der}, 0o644); err != nil {
		t.Fatal(err)
	}
	return &peerCA{t: t, dir: dir, cert: cert, key: key}
}

func (ca *peerCA) file() string { return filepath.Join(ca.dir, ca.cert.Subject.CommonName+".crt") }

// issue writes name.crt and name.key: a certificate for ip with usages.
func (ca *peerCA) issue(name, ip string, usages ...x509.ExtKeyUsage) (certFile, keyFile string) {
	t := ca.t
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages, IPAddresses: []net.IP{net.ParseIP(ip)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	if err := writePEM(certFile, "CERTIFICATE", [][]byte{der}, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writePEM(keyFile, "EC PRIVATE KEY", [][]byte{keyDER}, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

var bothUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// TestPeerTLSFlags: the three flags go together, and need --cluster.
func TestPeerTLSFlags(t *testing.T) {
	all := peerTLSFiles{cert: "c", key: "k", ca: "ca"}
	for _, tc := range []struct {
		name    string
		cluster bool
		files   peerTLSFiles
		wantErr string
	}{
		{"none", true, peerTLSFiles{}, ""},
		{"all three", true, all, ""},
		{"no CA", true, peerTLSFiles{cert: "c", key: "k"}, "go together"},
		{"only the CA", true, peerTLSFiles{ca: "ca"}, "go together"},
		{"no key", true, peerTLSFiles{cert: "c", ca: "ca"}, "go together"},
		{"without --cluster", false, all, "need --cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := clusterTestOptions()
			o.cluster.enabled, o.cluster.peerTLS = tc.cluster, tc.files
			if tc.files.any() {
				o.cluster.advertise = "https://127.0.0.1:7202" // peer TLS's internal listener
			}
			if !tc.cluster {
				o.cluster.nodeID, o.cluster.peers = 0, ""
			}
			err := o.check()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("check: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestLoadPeerTLS: what a peer would refuse is refused at start, with the
// reason.
func TestLoadPeerTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newPeerCA(t, dir, "ca"), newPeerCA(t, dir, "other")
	good, goodKey := ca.issue("good", "127.0.0.1", bothUsages...)
	foreign, foreignKey := other.issue("foreign", "127.0.0.1", bothUsages...)
	serverOnly, serverOnlyKey := ca.issue("server-only", "127.0.0.1", x509.ExtKeyUsageServerAuth)
	elsewhere, elsewhereKey := ca.issue("elsewhere", "127.0.0.2", bothUsages...)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	for _, tc := range []struct {
		name    string
		files   peerTLSFiles
		wantErr string
	}{
		{"good", peerTLSFiles{good, goodKey, ca.file()}, ""},
		{"another CA's certificate", peerTLSFiles{foreign, foreignKey, ca.file()}, "does not verify against --peer-tls-ca"},
		{"server auth only", peerTLSFiles{serverOnly, serverOnlyKey, ca.file()}, "client auth"},
		{"another host", peerTLSFiles{elsewhere, elsewhereKey, ca.file()}, `at "127.0.0.1"`},
		{"key of another certificate", peerTLSFiles{good, foreignKey, ca.file()}, "--peer-tls-cert/--peer-tls-key"},
		{"CA file without a certificate", peerTLSFiles{good, goodKey, notPEM}, "no PEM certificate"},
		{"missing CA file", peerTLSFiles{good, goodKey, filepath.Join(dir, "missing")}, "--peer-tls-ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.files.open("127.0.0.1:7101", hclog.NewNullLogger())
			if tc.wantErr == "" {
				if err != nil || cfg == nil || cfg().MinVersion < 0x0304 {
					t.Fatalf("open: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("open: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestPeerTLSReload: new files apply to the next connection; files that do
// not load leave the previous ones in force.
func TestPeerTLSReload(t *testing.T) {
	dir := t.TempDir()
	ca := newPeerCA(t, dir, "ca")
	cert, key := ca.issue("node", "127.0.0.1", bothUsages...)
	get, err := peerTLSFiles{cert, key, ca.file()}.open("127.0.0.1:7101", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	serialOf := func() string { return get().Certificates[0].Leaf.SerialNumber.String() }
	first := serialOf()
	if again := serialOf(); again != first {
		t.Fatalf("unchanged files gave another certificate")
	}
	ca.issue("node", "127.0.0.1", bothUsages...) // a renewed certificate, written in place
	renewed := serialOf()
	if renewed == first {
		t.Fatal("the renewed certificate was not picked up")
	}
	if err := os.WriteFile(cert, []byte("half a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(); got != renewed {
		t.Fatal("a broken certificate file replaced the one in force")
	}
}

// TestCertNamesAdvertise: a peer certificate that does not name the
// --advertise host (the internal listener the other nodes dial) is refused
// at start; adminTLSClient loads the same files.
func TestCertNamesAdvertise(t *testing.T) {
	dir := t.TempDir()
	ca := newPeerCA(t, dir, "ca")
	crt, key := ca.issue("node", "127.0.0.1", bothUsages...)
	src, err := peerTLSFiles{crt, key, ca.file()}.open("127.0.0.1:7101", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ addr, wantErr string }{
		{"127.0.0.1:7201", ""},
		{"127.0.0.2:7201", `at "127.0.0.2"`},
		{"127.0.0.1", "--advertise"},
	} {
		err := certNames(src(), "--advertise", tc.addr)
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want %q", tc.addr, err, tc.wantErr)
		}
	}
	if _, err := adminTLSClient(peerTLSFiles{crt, key, ca.file()}); err != nil {
		t.Fatalf("adminTLSClient: %v", err)
	}
	if _, err := adminTLSClient(peerTLSFiles{crt, key, crt + ".missing"}); err == nil {
		t.Fatal("adminTLSClient accepted a missing CA file")
	}
}
