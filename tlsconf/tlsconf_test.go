package tlsconf_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"iotd/tlsconf"
	"iotd/tlsconf/tlstest"
)

// server is a TLS echo server on 127.0.0.1 that reports each handshake.
type server struct {
	addr    string
	results chan handshake
}

type handshake struct {
	state tls.ConnectionState
	err   error
}

func startServer(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), results: make(chan handshake, 64)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		tl := tls.NewListener(ln, cfg)
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				err := tc.Handshake()
				s.results <- handshake{tc.ConnectionState(), err}
				if err == nil {
					io.Copy(tc, tc)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// next returns the server side of the next handshake.
func (s *server) next(t *testing.T) handshake {
	t.Helper()
	select {
	case h := <-s.results:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake on the server")
		return handshake{}
	}
}

// dial connects and does one echo round trip, so that a client certificate
// the server refuses surfaces here also under TLS 1.3 (where the client's
// handshake completes before the server has checked its certificate).
func (s *server) dial(t *testing.T, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := echo(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func echo(c *tls.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch")
	}
	return nil
}

func mustNew(t *testing.T, cfg tlsconf.Config) *tlsconf.Reloader {
	t.Helper()
	r, err := tlsconf.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// copyFiles makes private copies of a certificate's files, so a test can
// overwrite them and Reload.
func copyFiles(t *testing.T, c *tlstest.Cert) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = dir+"/server.crt", dir+"/server.key"
	install(t, c, certFile, keyFile)
	return certFile, keyFile
}

func install(t *testing.T, c *tlstest.Cert, certFile, keyFile string) {
	t.Helper()
	if err := os.WriteFile(certFile, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	ok := tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile}
	cases := []struct {
		name   string
		mod    func(*tlsconf.Config)
		reason string
	}{
		{"no cert", func(c *tlsconf.Config) { c.CertFile = "" }, "both required"},
		{"no key", func(c *tlsconf.Config) { c.KeyFile = "" }, "both required"},
		{"TLS 1.1", func(c *tlsconf.Config) { c.MinVersion = tls.VersionTLS11 }, "TLS 1.1 is not allowed"},
		{"TLS 1.0", func(c *tlsconf.Config) { c.MinVersion = tls.VersionTLS10 }, "TLS 1.0 is not allowed"},
		{"bad client auth", func(c *tlsconf.Config) { c.ClientAuth = "always" }, `client auth "always"`},
		{"require without CA", func(c *tlsconf.Config) { c.ClientAuth = "require" }, "needs a client CA file"},
		{"optional without CA", func(c *tlsconf.Config) { c.ClientAuth = "optional" }, "needs a client CA file"},
		{"missing cert file", func(c *tlsconf.Config) { c.CertFile += ".nope" }, "certificate file " + srv.CertFile + ".nope"},
		{"missing key file", func(c *tlsconf.Config) { c.KeyFile += ".nope" }, "key file " + srv.KeyFile + ".nope"},
		{"missing CA file", func(c *tlsconf.Config) { c.ClientCAFile = "/nonexistent/ca.pem" }, "client CA file /nonexistent/ca.pem"},
		{"key as cert", func(c *tlsconf.Config) { c.CertFile = srv.KeyFile }, `certificate file ` + srv.KeyFile + `: PEM block 1 is "PRIVATE KEY"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.mod(&cfg)
			_, err := tlsconf.New(cfg)
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("got %v, want an error containing %q", err, c.reason)
			}
		})
	}
	if _, err := tlsconf.New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	noCA := mustNew(t, tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile}).TLSConfig()
	withCA := mustNew(t, tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile}).TLSConfig()
	tls13 := mustNew(t, tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile, MinVersion: tls.VersionTLS13}).TLSConfig()
	if noCA.MinVersion != tls.VersionTLS12 || tls13.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion = %x / %x, want TLS 1.2 by default and TLS 1.3 when asked", noCA.MinVersion, tls13.MinVersion)
	}
	if noCA.ClientAuth != tls.NoClientCert || withCA.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("default ClientAuth = %v without CA, %v with CA; want none and require", noCA.ClientAuth, withCA.ClientAuth)
	}
	insecure := map[uint16]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.ID] = true
	}
	for _, id := range noCA.CipherSuites {
		name := tls.CipherSuiteName(id)
		if insecure[id] || !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("cipher suite %s is not ECDHE with an AEAD", name)
		}
	}

	s := startServer(t, noCA)
	// Old protocol versions and CBC suites are refused.
	old := tlstest.ClientConfig(ca, nil)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := s.dial(t, old); err == nil {
		t.Error("TLS 1.1 client accepted")
	}
	if h := s.next(t); h.err == nil {
		t.Error("server accepted TLS 1.1")
	}
	cbc := tlstest.ClientConfig(ca, nil)
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	if _, err := s.dial(t, cbc); err == nil {
		t.Error("CBC-only TLS 1.2 client accepted")
	}
	s.next(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := tlstest.ClientConfig(ca, nil)
		cfg.MinVersion, cfg.MaxVersion = v, v
		if _, err := s.dial(t, cfg); err != nil {
			t.Errorf("%s client refused: %v", tls.VersionName(v), err)
		}
		if h := s.next(t); h.err != nil || h.state.Version != v {
			t.Errorf("%s: server state %v, err %v", tls.VersionName(v), tls.VersionName(h.state.Version), h.err)
		}
	}
}

func TestClientAuth(t *testing.T) {
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	good := ca.Issue(t, "device-1", false)
	stranger := other.Issue(t, "device-1", false)
	serverCert := ca.Issue(t, "not-a-client", true) // lacks the client-auth usage

	for _, mode := range []string{"require", "optional", ""} {
		t.Run("mode="+mode, func(t *testing.T) {
			r := mustNew(t, tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, ClientAuth: mode})
			s := startServer(t, r.TLSConfig())
			optional := mode == "optional"

			// No client certificate: refused under require (and the default
			// with a CA), accepted under optional, with no user name.
			_, err := s.dial(t, tlstest.ClientConfig(ca, nil))
			h := s.next(t)
			if optional {
				if err != nil || h.err != nil {
					t.Fatalf("optional: client without certificate refused: client %v, server %v", err, h.err)
				}
				if u, ok := tlsconf.UsernameFromCert(h.state); ok {
					t.Fatalf("no certificate, yet user name %q", u)
				}
			} else if err == nil || h.err == nil {
				t.Fatalf("require: client without certificate accepted (client err %v, server err %v)", err, h.err)
			}

			// A certificate from the CA: accepted, CN is the user name.
			if _, err := s.dial(t, tlstest.ClientConfig(ca, good)); err != nil {
				t.Fatalf("good client refused: %v", err)
			}
			h = s.next(t)
			if u, ok := tlsconf.UsernameFromCert(h.state); !ok || u != "device-1" {
				t.Fatalf("UsernameFromCert = %q, %v; want device-1", u, ok)
			}

			// A certificate from another CA, or without the client-auth
			// usage, is refused in every mode.
			for name, c := range map[string]*tlstest.Cert{"other CA": stranger, "server usage": serverCert} {
				if _, err := s.dial(t, tlstest.ClientConfig(ca, c)); err == nil {
					t.Errorf("client certificate from %s accepted", name)
				}
				if h := s.next(t); h.err == nil {
					t.Errorf("server accepted client certificate from %s", name)
				}
			}
		})
	}
}

func TestReloadSwapsCertificateKeepingConnections(t *testing.T) {
	ca := tlstest.NewCA(t)
	a := ca.Issue(t, "server-a", true)
	b := ca.Issue(t, "server-b", true)
	certFile, keyFile := copyFiles(t, a)
	r := mustNew(t, tlsconf.Config{CertFile: certFile, KeyFile: keyFile})
	s := startServer(t, r.TLSConfig())

	conn1, err := s.dial(t, tlstest.ClientConfig(ca, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.next(t)
	if cn := conn1.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "server-a" {
		t.Fatalf("first connection got %q, want server-a", cn)
	}

	install(t, b, certFile, keyFile)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := r.Certificate().Subject.CommonName; got != "server-b" {
		t.Fatalf("Certificate() = %q after reload, want server-b", got)
	}
	conn2, err := s.dial(t, tlstest.ClientConfig(ca, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.next(t)
	if cn := conn2.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "server-b" {
		t.Fatalf("connection after reload got %q, want server-b", cn)
	}
	// The connection made before the reload is untouched.
	for i := range 3 {
		if err := echo(conn1, "still here"); err != nil {
			t.Fatalf("old connection broken after reload (round %d): %v", i, err)
		}
	}
	if cn := conn1.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "server-a" {
		t.Fatalf("old connection now reports %q", cn)
	}
}

func TestReloadBadFilesKeepOldMaterial(t *testing.T) {
	ca := tlstest.NewCA(t)
	a := ca.Issue(t, "server-a", true)
	b := ca.Issue(t, "server-b", true)
	client := ca.Issue(t, "device-1", false)
	expired := ca.IssueTemplate(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "server-expired"},
		NotBefore:   time.Now().Add(-48 * time.Hour),
		NotAfter:    time.Now().Add(-24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	certFile, keyFile := copyFiles(t, a)
	caFile := t.TempDir() + "/ca.pem"
	os.WriteFile(caFile, ca.CertPEM, 0o600)
	r := mustNew(t, tlsconf.Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	s := startServer(t, r.TLSConfig())

	stillA := func(when string) {
		t.Helper()
		c, err := s.dial(t, tlstest.ClientConfig(ca, client))
		if err != nil {
			t.Fatalf("%s: client refused: %v", when, err)
		}
		s.next(t)
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "server-a" {
			t.Fatalf("%s: served %q, want the old server-a", when, cn)
		}
	}
	stillA("initially")

	cases := []struct {
		name  string
		setup func()
		want  string
	}{
		{"garbage certificate", func() { os.WriteFile(certFile, []byte("not PEM\n"), 0o600) },
			"certificate file " + certFile + ": no PEM certificate found"},
		{"truncated certificate", func() { os.WriteFile(certFile, b.CertPEM[:len(b.CertPEM)/2], 0o600) },
			"certificate file " + certFile},
		{"key of another certificate", func() {
			os.WriteFile(certFile, b.CertPEM, 0o600)
			os.WriteFile(keyFile, a.KeyPEM, 0o600)
		}, "key file " + keyFile + " (for certificate file " + certFile + "): tls: private key does not match public key"},
		{"missing key", func() { install(t, b, certFile, keyFile); os.Remove(keyFile) },
			"key file " + keyFile + ": open"},
		{"expired certificate", func() { install(t, expired, certFile, keyFile) },
			"certificate file " + certFile + `: certificate "server-expired" expired on`},
		{"garbage client CA", func() {
			install(t, b, certFile, keyFile)
			os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
		}, "client CA file " + caFile + ": PEM block 1:"},
	}
	for _, c := range cases {
		c.setup()
		err := r.Reload()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "still serving the previous") {
			t.Fatalf("%s: Reload = %v, want an error containing %q", c.name, err, c.want)
		}
		stillA("after " + c.name)
		// Restore a good state for the next case's partial changes.
		install(t, a, certFile, keyFile)
		os.WriteFile(caFile, ca.CertPEM, 0o600)
	}
	// And a good reload still works afterwards.
	install(t, b, certFile, keyFile)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := r.Certificate().Subject.CommonName; got != "server-b" {
		t.Fatalf("after a good reload: %q", got)
	}
}

func TestReloadClientCA(t *testing.T) {
	ca1, ca2 := tlstest.NewCA(t), tlstest.NewCA(t)
	srv := ca1.Issue(t, "localhost", true)
	c1 := ca1.Issue(t, "old-device", false)
	c2 := ca2.Issue(t, "new-device", false)
	caFile := t.TempDir() + "/clients.pem"
	os.WriteFile(caFile, ca1.CertPEM, 0o600)
	r := mustNew(t, tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: caFile, ClientAuth: "require"})
	s := startServer(t, r.TLSConfig())

	// The old device connects and gets a session ticket it could resume.
	cache := tls.NewLRUClientSessionCache(4)
	oldCfg := tlstest.ClientConfig(ca1, c1)
	oldCfg.ClientSessionCache = cache
	if _, err := s.dial(t, oldCfg); err != nil {
		t.Fatal(err)
	}
	s.next(t)
	if _, err := s.dial(t, oldCfg); err != nil {
		t.Fatal(err)
	}
	if h := s.next(t); !h.state.DidResume {
		t.Log("second connection did not resume; the resumption check below is weaker")
	}
	if _, err := s.dial(t, tlstest.ClientConfig(ca1, c2)); err == nil {
		t.Fatal("device of the second CA accepted before the reload")
	}
	s.next(t)

	os.WriteFile(caFile, ca2.CertPEM, 0o600)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.dial(t, tlstest.ClientConfig(ca1, c2)); err != nil {
		t.Fatalf("device of the new CA refused after the reload: %v", err)
	}
	s.next(t)
	// Neither a full handshake nor a resumed session of the old CA's
	// device gets in any more.
	if _, err := s.dial(t, oldCfg); err == nil {
		t.Fatal("device of the removed CA accepted after the reload (resumed session?)")
	}
	if h := s.next(t); h.err == nil && h.state.DidResume {
		t.Fatal("session of the removed CA resumed")
	}
}

func TestConcurrentHandshakesDuringReload(t *testing.T) {
	ca := tlstest.NewCA(t)
	a := ca.Issue(t, "server-a", true)
	b := ca.Issue(t, "server-b", true)
	certFile, keyFile := copyFiles(t, a)
	r := mustNew(t, tlsconf.Config{CertFile: certFile, KeyFile: keyFile})
	s := startServer(t, r.TLSConfig())
	go func() {
		for range s.results {
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		wg.Go(func() {
			for range 10 {
				c, err := tls.Dial("tcp", s.addr, tlstest.ClientConfig(ca, nil))
				if err != nil {
					errs <- err
					return
				}
				if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "server-a" && cn != "server-b" {
					errs <- errors.New("served " + cn)
				}
				c.Close()
			}
		})
	}
	for i := range 20 {
		next := a
		if i%2 == 0 {
			next = b
		}
		// Write each file by rename, as an operator's tooling should.
		for _, f := range []struct {
			path string
			data []byte
		}{{certFile, next.CertPEM}, {keyFile, next.KeyPEM}} {
			os.WriteFile(f.path+".new", f.data, 0o600)
			os.Rename(f.path+".new", f.path)
		}
		if err := r.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUsernameFromCert(t *testing.T) {
	ca := tlstest.NewCA(t)
	verified := func(c *tlstest.Cert) tls.ConnectionState {
		return tls.ConnectionState{
			PeerCertificates: []*x509.Certificate{c.Cert},
			VerifiedChains:   [][]*x509.Certificate{{c.Cert, ca.Cert}},
		}
	}
	// The SAN extension written by hand, to control the order of names
	// (x509.CreateCertificate writes DNS names before emails).
	rawSAN := func(names ...asn1.RawValue) pkix.Extension {
		v, err := asn1.Marshal(names)
		if err != nil {
			t.Fatal(err)
		}
		return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: v}
	}
	gn := func(tag int, s string) asn1.RawValue {
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(s)}
	}
	clientTmpl := func(subject pkix.Name, ext ...pkix.Extension) *x509.Certificate {
		return &x509.Certificate{
			Subject:         subject,
			NotBefore:       time.Now().Add(-time.Hour),
			NotAfter:        time.Now().Add(time.Hour),
			ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			ExtraExtensions: ext,
		}
	}
	cases := []struct {
		name string
		cert *tlstest.Cert
		want string
		ok   bool
	}{
		{"CN", ca.Issue(t, "device-7", false, "dns.example", "mail@example.com"), "device-7", true},
		{"CN with spaces and UTF-8", ca.Issue(t, "Gerät 7 – Küche", false), "Gerät 7 – Küche", true},
		{"no CN: DNS SAN", ca.Issue(t, "", false, "dev.example", "second.example"), "dev.example", true},
		{"no CN: email SAN", ca.Issue(t, "", false, "ops@example.com"), "ops@example.com", true},
		{"no CN: first SAN in certificate order", ca.IssueTemplate(t, clientTmpl(pkix.Name{},
			rawSAN(gn(6, "urn:x"), gn(1, "first@example.com"), gn(2, "second.example")))), "first@example.com", true},
		{"no CN: only an IP SAN", ca.Issue(t, "", false, "10.0.0.1"), "", false},
		{"no CN, no SAN", ca.Issue(t, "", false), "", false},
		{"two CNs", ca.IssueTemplate(t, clientTmpl(pkix.Name{
			ExtraNames: []pkix.AttributeTypeAndValue{
				{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "mallory"},
				{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "alice"},
			},
		})), "", false},
	}
	for _, c := range cases {
		got, ok := tlsconf.UsernameFromCert(verified(c.cert))
		if got != c.want || ok != c.ok {
			t.Errorf("%s: UsernameFromCert = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	// A certificate the handshake did not verify is never an identity.
	c := ca.Issue(t, "device-7", false)
	if u, ok := tlsconf.UsernameFromCert(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Cert}}); ok {
		t.Errorf("unverified certificate gave user name %q", u)
	}
	if u, ok := tlsconf.UsernameFromCert(tls.ConnectionState{}); ok {
		t.Errorf("no certificate gave user name %q", u)
	}
}

func TestTLSTestHelpers(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true, "localhost", "10.1.2.3")
	for _, f := range []string{ca.CertFile, srv.CertFile, srv.KeyFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Contains(srv.Cert.DNSNames, "localhost") || len(srv.Cert.IPAddresses) != 3 {
		t.Fatalf("server SANs: DNS %v IP %v", srv.Cert.DNSNames, srv.Cert.IPAddresses)
	}
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("server certificate does not verify for 127.0.0.1: %v", err)
	}
	pemCA, _ := os.ReadFile(ca.CertFile)
	if !bytes.Equal(pemCA, ca.CertPEM) {
		t.Fatal("CA file differs from CertPEM")
	}
}
