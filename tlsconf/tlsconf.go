package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Client authentication modes for Config.ClientAuth.
const (
	// ClientAuthRequire refuses a client without a certificate signed by
	// the client CA.
	ClientAuthRequire = "require"
	// ClientAuthOptional accepts a client without a certificate, but
	// verifies one that is presented, refusing it if invalid.
	ClientAuthOptional = "optional"
)

// Config names the files a TLS listener is built from.
type Config struct {
	CertFile     string // server certificate chain, PEM, leaf first
	KeyFile      string // private key of the leaf, PEM (PKCS#1, PKCS#8 or SEC 1)
	ClientCAFile string // CA certificates that sign client certificates, PEM; optional
	// ClientAuth is "require", "optional" or "": require when ClientCAFile
	// is set, no client certificates otherwise. "require" and "optional"
	// need ClientCAFile.
	ClientAuth string
	// MinVersion is tls.VersionTLS12 (the default when 0) or
	// tls.VersionTLS13; older versions are refused.
	MinVersion uint16
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange (forward
// secrecy) with an AEAD cipher only. TLS 1.3 suites are not configurable
// in Go and are all of this kind.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// material is one loaded certificate and client CA pool. It is never
// modified after loading, so handshakes may share it.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool // nil without ClientCAFile
}

// Reloader serves a certificate and client CA pool that Reload can replace
// while the listener runs. Handshakes read the current material through an
// atomic pointer; Reload serialises on a mutex. A connection keeps the
// certificate it was accepted with: Reload never touches existing
// connections.
type Reloader struct {
	cfg        Config
	clientAuth tls.ClientAuthType
	minVersion uint16

	mu  sync.Mutex // serialises Reload
	cur atomic.Pointer[material]
}

// New checks cfg, loads the certificate, key and client CA, and returns a
// Reloader serving them. Errors name the file at fault and say why.
func New(cfg Config) (*Reloader, error) {
	r := &Reloader{cfg: cfg}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tlsconf: a certificate file and a key file are both required")
	}
	switch cfg.MinVersion {
	case 0, tls.VersionTLS12:
		r.minVersion = tls.VersionTLS12
	case tls.VersionTLS13:
		r.minVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tlsconf: minimum version %s is not allowed: use TLS 1.2 or TLS 1.3", tls.VersionName(cfg.MinVersion))
	}
	switch cfg.ClientAuth {
	case "":
		r.clientAuth = tls.NoClientCert
		if cfg.ClientCAFile != "" {
			r.clientAuth = tls.RequireAndVerifyClientCert
		}
	case ClientAuthRequire:
		r.clientAuth = tls.RequireAndVerifyClientCert
	case ClientAuthOptional:
		r.clientAuth = tls.VerifyClientCertIfGiven
	default:
		return nil, fmt.Errorf("tlsconf: client auth %q: want %q, %q or empty", cfg.ClientAuth, ClientAuthRequire, ClientAuthOptional)
	}
	if r.clientAuth != tls.NoClientCert && cfg.ClientCAFile == "" {
		return nil, fmt.Errorf("tlsconf: client auth %q needs a client CA file", cfg.ClientAuth)
	}
	m, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	return r, nil
}

// Reload re-reads the certificate, key and client CA files (on SIGHUP) and
// serves them to new handshakes. If any file is missing or bad, the
// current material stays and the error names the file and the reason.
// Replace the certificate and key files before calling Reload (ideally each
// by rename): a certificate that does not match its key is refused.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.load()
	if err != nil {
		return fmt.Errorf("tlsconf: reload failed, still serving the previous certificate and client CA: %w", err)
	}
	r.cur.Store(m)
	return nil
}

// Certificate returns the leaf certificate currently served.
func (r *Reloader) Certificate() *x509.Certificate {
	return r.cur.Load().cert.Leaf
}

// TLSConfig returns a server *tls.Config for the listener. Its
// GetConfigForClient hands each handshake a copy of it holding the current
// certificate and client CA pool, so Reload takes effect for the next
// handshake. The caller may set fields such as NextProtos on the returned
// value before use (they are copied into every handshake), but must not
// weaken MinVersion, CipherSuites or ClientAuth. Each call returns a new
// value.
func (r *Reloader) TLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:   r.minVersion,
		CipherSuites: cipherSuites,
		ClientAuth:   r.clientAuth,
	}
	base.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return r.cur.Load().cert, nil
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := r.cur.Load()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.GetCertificate = nil
		c.Certificates = []tls.Certificate{*m.cert}
		c.ClientCAs = m.pool
		return c, nil
	}
	return base
}

func (r *Reloader) load() (*material, error) {
	cert, err := loadKeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	m := &material{cert: cert}
	if r.cfg.ClientCAFile != "" {
		certs, err := readCertificates(r.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: client CA file %s: %w", r.cfg.ClientCAFile, err)
		}
		m.pool = x509.NewCertPool()
		for _, c := range certs {
			m.pool.AddCert(c)
		}
	}
	return m, nil
}

// loadKeyPair reads the certificate chain and its key, attributing each
// failure to the file that causes it.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	chain, err := readCertificates(certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate file %s: %w", certFile, err)
	}
	leaf := chain[0]
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("tlsconf: certificate file %s: certificate %q expired on %s",
			certFile, leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate file %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: key file %s: %w", keyFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The certificate file parsed above, so the key file is at fault:
		// unreadable, or not the key of this certificate.
		return nil, fmt.Errorf("tlsconf: key file %s (for certificate file %s): %w", keyFile, certFile, err)
	}
	return &pair, nil
}

// readCertificates parses every PEM block of path as an X.509 certificate.
// Text between blocks is ignored, as OpenSSL does; any other PEM block type,
// or no certificate at all, is an error.
func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}
