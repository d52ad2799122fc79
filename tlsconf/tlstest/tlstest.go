// Package tlstest creates certificate authorities and certificates for
// tests, written as PEM files into t.TempDir(), so tlsconf's tests and the
// broker's TLS listener tests share one way of making them.
//
//	ca := tlstest.NewCA(t)
//	srv := ca.Issue(t, "localhost", true)              // server: also 127.0.0.1, ::1
//	cli := ca.Issue(t, "device-1", false)              // client certificate
//	mail := ca.Issue(t, "", false, "a@example.com")    // email SAN, no CN
//	cfg := tlstest.ClientConfig(ca, cli)               // a client *tls.Config
//
// Keys are ECDSA P-256. Nothing here is fit for production use.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a self-signed certificate authority.
type CA struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertPEM  []byte
	CertFile string         // CertPEM, written to a t.TempDir()
	Pool     *x509.CertPool // holds only Cert
}

// Cert is a certificate issued by a CA, with its key.
type Cert struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertPEM  []byte // the leaf only
	KeyPEM   []byte // PKCS#8
	CertFile string // CertPEM, written to a t.TempDir()
	KeyFile  string // KeyPEM, written next to CertFile (mode 0600)
	TLS      tls.Certificate
}

// NewCA creates a CA valid from an hour ago for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "iotd test CA", Organization: []string{"iotd tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("tlstest: creating CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Key: key, CertPEM: pemEncode("CERTIFICATE", der), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.CertFile = filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca.CertFile, ca.CertPEM)
	return ca
}

// Issue creates a certificate for commonName (may be empty) valid from an
// hour ago for a day. A server certificate has the server-auth usage and
// the IP SANs 127.0.0.1 and ::1; a client certificate has the client-auth
// usage. names become SANs in the order given: an entry with '@' is an
// email address, one that parses as an IP is an IP address, anything else
// a DNS name.
func (ca *CA) Issue(t testing.TB, commonName string, isServer bool, names ...string) *Cert {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: commonName},
		NotBefore: time.Now().Add(-time.Hour),
		NotAfter:  time.Now().Add(24 * time.Hour),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	if isServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		switch ip := net.ParseIP(n); {
		case strings.Contains(n, "@"):
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, n)
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.IssueTemplate(t, tmpl)
}

// IssueTemplate signs tmpl with a new key, for certificates Issue cannot
// describe (expired, odd subjects, raw extensions). A zero SerialNumber is
// filled in.
func (ca *CA) IssueTemplate(t testing.TB, tmpl *x509.Certificate) *Cert {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = serial(t)
	}
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("tlstest: issuing %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cert{
		Cert:    cert,
		Key:     key,
		CertPEM: pemEncode("CERTIFICATE", der),
		KeyPEM:  pemEncode("PRIVATE KEY", keyDER),
	}
	c.TLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
	dir := t.TempDir()
	c.CertFile = filepath.Join(dir, "cert.pem")
	c.KeyFile = filepath.Join(dir, "key.pem")
	writeFile(t, c.CertFile, c.CertPEM)
	writeFile(t, c.KeyFile, c.KeyPEM)
	return c
}

// ClientConfig returns a client *tls.Config that trusts serverCA and, if
// clientCert is not nil, presents it. ServerName is left empty, so tls.Dial
// checks the server certificate against the host it dials (127.0.0.1 for
// certificates from Issue with isServer).
func ClientConfig(serverCA *CA, clientCert *Cert) *tls.Config {
	cfg := &tls.Config{RootCAs: serverCA.Pool, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{clientCert.TLS}
	}
	return cfg
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("tlstest: generating key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
}
