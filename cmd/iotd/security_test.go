package main

// End-to-end security tests on the real binary: tls:// listeners, client
// certificates, certificate user names, the password and ACL files, the
// anonymous-access rule at startup, SIGHUP reloads and `iotd passwd`.

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/auth"
	"iotd/tlsconf/tlstest"
	"iotd/wire"
)

// secConn is a minimal MQTT client over any connection.
type secConn struct {
	t    *testing.T
	conn net.Conn
	r    *wire.Reader
}

func newSecConn(t *testing.T, conn net.Conn) *secConn {
	t.Cleanup(func() { conn.Close() })
	return &secConn{t: t, conn: conn, r: wire.NewReader(conn, 1<<20)}
}

func (c *secConn) send(p wire.Packet) error {
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(p.Append(nil))
	return err
}

func (c *secConn) read() (wire.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	fh, body, err := c.r.ReadPacket()
	if err != nil {
		return nil, err
	}
	return wire.Decode(fh, body)
}

// login sends CONNECT and returns the CONNACK code (or an error when the
// connection fails, e.g. a refused TLS handshake).
func (c *secConn) login(id, user, pass string) (byte, error) {
	cp := &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		cp.PasswordFlag, cp.Password = pass != "", []byte(pass)
	}
	if err := c.send(cp); err != nil {
		return 0, err
	}
	p, err := c.read()
	if err != nil {
		return 0, err
	}
	ack, ok := p.(*wire.Connack)
	require.True(c.t, ok, "got %#v", p)
	return ack.ReturnCode, nil
}

func (c *secConn) mustLogin(id, user, pass string) {
	c.t.Helper()
	code, err := c.login(id, user, pass)
	require.NoError(c.t, err)
	require.Equal(c.t, wire.Accepted, code)
}

func (c *secConn) subscribe(filters ...string) []byte {
	c.t.Helper()
	var subs []wire.Subscription
	for _, f := range filters {
		subs = append(subs, wire.Subscription{Filter: f})
	}
	require.NoError(c.t, c.send(&wire.Subscribe{PacketID: 1, Subscriptions: subs}))
	p, err := c.read()
	require.NoError(c.t, err)
	return p.(*wire.Suback).ReturnCodes
}

func (c *secConn) ping() error {
	if err := c.send(&wire.Pingreq{}); err != nil {
		return err
	}
	p, err := c.read()
	if err != nil {
		return err
	}
	if p.Type() != wire.PINGRESP {
		return errors.New("expected PINGRESP, got " + p.Type().String())
	}
	return nil
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*secConn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return newSecConn(t, conn), nil
}

func mustDialTLS(t *testing.T, addr string, cfg *tls.Config) *secConn {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	require.NoError(t, err)
	return c
}

func dialTCP(t *testing.T, addr string) *secConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	return newSecConn(t, conn)
}

// setPassword runs `iotd passwd --password-stdin FILE USER`.
func setPassword(t *testing.T, bin, file, user, pass string) {
	t.Helper()
	cmd := exec.Command(bin, "passwd", "--password-stdin", file, user)
	cmd.Stdin = strings.NewReader(pass + "\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
}

// replaceFile swaps path's content by rename, as a certificate tool would.
func replaceFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, content, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// A plain TCP listener on loopback and a TLS one side by side, each with
// its own settings: TLS 1.2 minimum, password logins on both, certificate
// logins on the TLS one only, and a plain client on the TLS port fails
// cleanly without hurting anyone.
func TestSecureListeners(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	dev := ca.Issue(t, "dev1", false)
	pf := filepath.Join(t.TempDir(), "passwd")
	setPassword(t, bin, pf, "alice", "wonderland")
	acl := writeFile(t, "acl", "user alice\ntopic readwrite alice/#\nuser dev1\ntopic readwrite devices/dev1/#\n")
	r := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--listen", "tls://127.0.0.1:0",
		"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--tls-client-ca", ca.CertFile, "--tls-client-auth", "optional",
		"--tls-cn-as-username", "--password-file", pf, "--acl-file", acl, "--log-level", "debug")
	require.NotEmpty(t, r.addrs["tcp"])
	require.NotEmpty(t, r.addrs["tls"])

	t.Run("TLS handshake and password login", func(t *testing.T) {
		c := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
		st := c.conn.(*tls.Conn).ConnectionState()
		require.GreaterOrEqual(t, st.Version, uint16(tls.VersionTLS12))
		require.Equal(t, "localhost", st.PeerCertificates[0].Subject.CommonName)
		c.mustLogin("a1", "alice", "wonderland")
		require.Equal(t, []byte{0, 0x80}, c.subscribe("alice/#", "devices/#"))
		c2 := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
		code, err := c2.login("a2", "alice", "wrong")
		require.NoError(t, err)
		require.Equal(t, wire.RefusedBadUsernamePassword, code) // [MQTT-3.2.2-4]
		_, err = c2.read()
		require.Error(t, err, "closed after the refusal") // [MQTT-3.2.2-5]
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		cfg := tlstest.ClientConfig(ca, nil)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		_, err := dialTLS(t, r.addrs["tls"], cfg)
		require.Error(t, err)
	})
	t.Run("certificate as user name", func(t *testing.T) {
		c := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, dev))
		c.mustLogin("d1", "", "") // no password: the certificate is the login
		require.Equal(t, []byte{0, 0x80}, c.subscribe("devices/dev1/#", "alice/#"))
	})
	t.Run("anonymous refused", func(t *testing.T) {
		c := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
		code, err := c.login("anon", "", "")
		require.NoError(t, err)
		require.Equal(t, wire.RefusedNotAuthorized, code)
	})
	t.Run("plain TCP listener has no certificate logins", func(t *testing.T) {
		c := dialTCP(t, r.addrs["tcp"])
		c.mustLogin("a3", "alice", "wonderland")
		c = dialTCP(t, r.addrs["tcp"])
		code, err := c.login("anon", "", "")
		require.NoError(t, err)
		require.Equal(t, wire.RefusedNotAuthorized, code, "a password file is set: anonymous clients are refused")
	})
	t.Run("plain MQTT on the TLS port fails cleanly", func(t *testing.T) {
		c := dialTCP(t, r.addrs["tls"])
		start := time.Now()
		_, err := c.login("plain", "alice", "wonderland")
		require.Error(t, err, "no CONNACK over a TLS port")
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the broker closes the connection rather than leaving it hanging: %v", err)
		require.Less(t, time.Since(start), 5*time.Second)
		r.log.waitFor(t, "first record does not look like a TLS handshake", 1)
		// The broker serves the next client as usual.
		ok := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
		ok.mustLogin("after", "alice", "wonderland")
	})
}

// With a client CA and the default mode (require), a client without a
// certificate, or with one from another CA, does not get through the
// handshake.
func TestTLSClientCertificateRequired(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	dev := ca.Issue(t, "dev1", false)
	stranger := other.Issue(t, "dev1", false)
	r := startIotd(t, bin, "--listen", "tls://127.0.0.1:0", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--tls-client-ca", ca.CertFile)

	c := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, dev))
	c.mustLogin("d", "", "") // loopback only, no password file: anonymous allowed
	for name, cert := range map[string]*tlstest.Cert{"no certificate": nil, "another CA": stranger} {
		t.Run(name, func(t *testing.T) {
			requireTLSRefused(t, r.addrs["tls"], tlstest.ClientConfig(ca, cert))
		})
	}
}

// requireTLSRefused expects the broker to refuse a TLS client with cfg.
func requireTLSRefused(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	if err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		_, err = c.login("x", "", "")
	}
	require.Error(t, err)
}

// In "optional" mode a client without a certificate gets in, and one with
// a certificate the CA did not sign does not.
func TestTLSClientCertificateOptional(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	dev := ca.Issue(t, "dev1", false)
	r := startIotd(t, bin, "--listen", "tls://127.0.0.1:0", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile,
		"--tls-client-ca", ca.CertFile, "--tls-client-auth", "optional")
	mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil)).mustLogin("none", "", "")
	mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, dev)).mustLogin("dev", "", "")
	requireTLSRefused(t, r.addrs["tls"], tlstest.ClientConfig(ca, other.Issue(t, "x", false)))
}

// SIGHUP re-reads the certificate, the password file and the ACL file;
// connections stay up; a file that does not load keeps the old one and the
// log says why.
func TestSIGHUPReloadsCertificatesAndFiles(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	first := ca.Issue(t, "first", true)
	second := ca.Issue(t, "second", true)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	replaceFile(t, certFile, first.CertPEM)
	replaceFile(t, keyFile, first.KeyPEM)
	pf := filepath.Join(dir, "passwd")
	setPassword(t, bin, pf, "alice", "pw")
	acl := filepath.Join(dir, "acl")
	replaceFile(t, acl, []byte("user alice\ntopic read a/#\n"))
	r := startIotd(t, bin, "--listen", "tls://127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--password-file", pf, "--acl-file", acl)
	hup := func() {
		t.Helper()
		require.NoError(t, r.cmd.Process.Signal(syscall.SIGHUP))
	}
	served := func() string {
		t.Helper()
		c := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
		defer c.conn.Close()
		return c.conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName
	}

	old := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
	old.mustLogin("old", "alice", "pw")
	require.Equal(t, []byte{0, 0x80}, old.subscribe("a/#", "b/#"))
	require.Equal(t, "first", served())

	// New certificate, new user, new rules.
	replaceFile(t, keyFile, second.KeyPEM)
	replaceFile(t, certFile, second.CertPEM)
	setPassword(t, bin, pf, "bob", "pw2")
	replaceFile(t, acl, []byte("user alice\ntopic read b/#\nuser bob\ntopic read bob/#\n"))
	hup()
	r.log.waitFor(t, "reloaded the TLS certificate", 1)
	r.log.waitFor(t, "reloaded the password and ACL files", 1)
	require.Equal(t, "second", served())
	require.NoError(t, old.ping(), "the connection made before SIGHUP is still up")
	require.Equal(t, []byte{0x80, 0}, old.subscribe("a/#", "b/#"), "the new ACL applies to it")
	bob := mustDialTLS(t, r.addrs["tls"], tlstest.ClientConfig(ca, nil))
	bob.mustLogin("bob", "bob", "pw2")

	// Broken files: the old certificate and rules stay, the log says why.
	replaceFile(t, certFile, []byte("not a certificate"))
	replaceFile(t, acl, []byte("user alice\ntopic read c/#\ntopic sideways x\n"))
	hup()
	r.log.waitFor(t, "certificate file "+certFile, 1)
	r.log.waitFor(t, acl+":3:", 1)
	require.Equal(t, "second", served())
	require.Equal(t, []byte{0x80, 0}, old.subscribe("c/#", "b/#"), "the previous ACL stays")
	require.NoError(t, old.ping())
	require.NoError(t, bob.ping())
	require.True(t, r.running(), "still running")
}

// The anonymous rule: allowed by default only when every listener is on
// loopback and there is no password file; a listener on another address
// without authentication refuses to start unless --allow-anonymous.
func TestAnonymousAccessRule(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	pf := filepath.Join(t.TempDir(), "passwd")
	setPassword(t, bin, pf, "alice", "pw")

	out, err := exec.Command(bin, "--listen", "tcp://0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 2, err.(*exec.ExitError).ExitCode())
	require.Contains(t, string(out), "listener tcp://0.0.0.0:0 accepts connections from other hosts, but no authentication is configured")
	require.Contains(t, string(out), "--password-file")
	require.Contains(t, string(out), "--allow-anonymous")

	// Loopback, no password file: anonymous clients get in.
	r := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0")
	dialTCP(t, r.addrs["tcp"]).mustLogin("anon", "", "")

	// Another address, said on purpose.
	r = startIotd(t, bin, "--listen", "tcp://0.0.0.0:0", "--allow-anonymous")
	_, port, _ := net.SplitHostPort(r.addrs["tcp"])
	dialTCP(t, "127.0.0.1:"+port).mustLogin("anon", "", "")

	// Another address with a password file: logins only.
	r = startIotd(t, bin, "--listen", "tcp://0.0.0.0:0", "--password-file", pf)
	_, port, _ = net.SplitHostPort(r.addrs["tcp"])
	c := dialTCP(t, "127.0.0.1:"+port)
	code, err := c.login("anon", "", "")
	require.NoError(t, err)
	require.Equal(t, wire.RefusedNotAuthorized, code)
	dialTCP(t, "127.0.0.1:"+port).mustLogin("alice", "alice", "pw")

	// Another address where every client must present a certificate that
	// names it: no password file needed.
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	startIotd(t, bin, "--listen", "tls://0.0.0.0:0", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile,
		"--tls-client-ca", ca.CertFile, "--tls-cn-as-username")
	// ... but not when certificates are optional.
	out, err = exec.Command(bin, "--listen", "tls://0.0.0.0:0", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile,
		"--tls-client-ca", ca.CertFile, "--tls-cn-as-username", "--tls-client-auth", "optional", "--data-dir", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "no authentication is configured")

	// Loopback with a password file: anonymous refused by default, allowed
	// with the flag.
	r = startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--password-file", pf)
	code, err = dialTCP(t, r.addrs["tcp"]).login("anon", "", "")
	require.NoError(t, err)
	require.Equal(t, wire.RefusedNotAuthorized, code)
	r = startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--password-file", pf, "--allow-anonymous")
	dialTCP(t, r.addrs["tcp"]).mustLogin("anon", "", "")
}

func TestSecurityFlagErrors(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	badPasswd := writeFile(t, "passwd", "alice:$7$101$notbase64$x\n")
	tlsArgs := []string{"--listen", "tls://127.0.0.1:0", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "tls://127.0.0.1:0"}, "needs a server certificate: set --tls-cert and --tls-key"},
		{[]string{"--tls-cert", srv.CertFile}, "--tls-cert is set but no listener uses TLS"},
		{append(tlsArgs, "--tls-client-auth", "sometimes"), `--tls-client-auth "sometimes": want require or optional`},
		{append(tlsArgs, "--tls-client-auth", "optional"), "--tls-client-auth optional needs --tls-client-ca"},
		{append(tlsArgs, "--tls-cn-as-username"), "--tls-cn-as-username needs --tls-client-ca"},
		{[]string{"--listen", "tls://127.0.0.1:0", "--tls-cert", srv.CertFile, "--tls-key", ca.CertFile}, "key file " + ca.CertFile},
		{[]string{"--password-file", badPasswd}, badPasswd + ":1:"},
		{[]string{"--acl-file", "/nonexistent/acl"}, "/nonexistent/acl"},
	} {
		out, err := exec.Command(bin, append(tc.args, "--data-dir", t.TempDir())...).CombinedOutput()
		require.Error(t, err, tc.args)
		require.Contains(t, string(out), tc.want, tc.args)
	}
}

// `iotd passwd` writes $7$ lines, keeps the other lines, and asks for a
// terminal unless told to read standard input.
func TestPasswdCommand(t *testing.T) {
	t.Parallel()
	bin := buildIotd(t)
	pf := filepath.Join(t.TempDir(), "passwd")
	setPassword(t, bin, pf, "alice", "one")
	setPassword(t, bin, pf, "bob", "two")
	setPassword(t, bin, pf, "alice", "three")
	data, err := os.ReadFile(pf)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 2)
	require.True(t, strings.HasPrefix(lines[0], "alice:$7$101$"), lines[0])
	require.True(t, strings.HasPrefix(lines[1], "bob:$7$101$"), lines[1])
	fi, err := os.Stat(pf)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	r := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--password-file", pf)
	dialTCP(t, r.addrs["tcp"]).mustLogin("a", "alice", "three")
	code, err := dialTCP(t, r.addrs["tcp"]).login("a2", "alice", "one")
	require.NoError(t, err)
	require.Equal(t, wire.RefusedBadUsernamePassword, code)

	cmd := exec.Command(bin, "passwd", pf, "carol")
	cmd.Stdin = strings.NewReader("pw\n")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "not a terminal: pipe the password in with --password-stdin")

	for _, tc := range []struct{ user, stdin, want string }{
		{"a:b", "pw\n", "must not contain ':'"},
		{"carol", "\n", "empty password"},
	} {
		cmd := exec.Command(bin, "passwd", "--password-stdin", pf, tc.user)
		cmd.Stdin = strings.NewReader(tc.stdin)
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(out), tc.want)
	}
	out, err = exec.Command(bin, "passwd", pf).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "usage: iotd passwd")
}

// Without --password-stdin, `iotd passwd` prompts twice on the terminal
// (run here under a pseudo-terminal from util-linux's script).
func TestPasswdPromptsOnTerminal(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script (util-linux) not installed: cannot give iotd passwd a terminal")
	}
	bin := buildIotd(t)
	pf := filepath.Join(t.TempDir(), "passwd")
	run := func(user, input string) (string, error) {
		cmd := exec.Command(script, "-qec", bin+" passwd "+pf+" "+user, "/dev/null")
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("alice", "typed secret\ntyped secret\n")
	require.NoError(t, err, out)
	require.Contains(t, out, "Password: ")
	require.Contains(t, out, "Reenter password: ")
	pw, err := auth.LoadPasswordFile(pf)
	require.NoError(t, err)
	require.True(t, pw.Check("alice", []byte("typed secret")))

	out, err = run("bob", "one\ntwo\n")
	require.Error(t, err)
	require.Contains(t, out, "the passwords do not match")
	pw, err = auth.LoadPasswordFile(pf)
	require.NoError(t, err)
	require.Equal(t, 1, pw.Len(), "nothing written on a mismatch")
}
