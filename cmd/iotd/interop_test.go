package main

// Interoperability as an operator migrating from Mosquitto meets it: a
// password file written by Debian's mosquitto_passwd, and Debian's
// mosquitto_pub and mosquitto_sub over TLS with --cafile and -u/-P, and with
// a client certificate. Skips when the tools are missing; .ci/run installs
// them (packages mosquitto and mosquitto-clients).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/tlsconf/tlstest"
)

// mosquittoTool finds a Debian Mosquitto tool or skips the test.
func mosquittoTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/bin", "/usr/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Skipf("%s not installed: skipping the Mosquitto interop test (apt-get install %s)", name, pkg)
	}
	return p
}

// runTool runs a Mosquitto client with a deadline and returns its output.
func runTool(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func TestMosquittoClientsInterop(t *testing.T) {
	t.Parallel()
	passwd := mosquittoTool(t, "mosquitto_passwd", "mosquitto")
	pub := mosquittoTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := mosquittoTool(t, "mosquitto_sub", "mosquitto-clients")
	bin := buildIotd(t)

	// A password file as a Mosquitto operator has it.
	pf := filepath.Join(t.TempDir(), "passwd")
	out, err := runTool(t, passwd, "-c", "-b", pf, "alice", "s3cret pass")
	require.NoError(t, err, out)
	out, err = runTool(t, passwd, "-b", pf, "bob", "builder")
	require.NoError(t, err, out)
	data, err := os.ReadFile(pf)
	require.NoError(t, err)
	require.Contains(t, string(data), "alice:$7$", "Debian's mosquitto_passwd writes PBKDF2-SHA512 hashes")

	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true, "localhost")
	dev := ca.Issue(t, "dev1", false)
	acl := writeFile(t, "acl", `user alice
topic readwrite alice/#
topic read devices/#
user bob
topic read alice/#
user dev1
topic readwrite devices/dev1/#
topic read alice/#
`)
	r := startIotd(t, bin, "--listen", "tls://127.0.0.1:0",
		"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile,
		"--tls-client-ca", ca.CertFile, "--tls-client-auth", "optional", "--tls-cn-as-username",
		"--password-file", pf, "--acl-file", acl)
	port := r.addrs["tls"][strings.LastIndexByte(r.addrs["tls"], ':')+1:]
	common := []string{"-h", "localhost", "-p", port, "--cafile", ca.CertFile}
	withPassword := func(user, pass string, args ...string) []string {
		return append(append(append([]string{}, common...), "-u", user, "-P", pass), args...)
	}
	withCert := func(c *tlstest.Cert, args ...string) []string {
		return append(append(append([]string{}, common...), "--cert", c.CertFile, "--key", c.KeyFile), args...)
	}

	// alice (password over TLS) publishes; dev1 (client certificate) and
	// bob (password) read it.
	out, err = runTool(t, pub, withPassword("alice", "s3cret pass", "-i", "alice-pub", "-t", "alice/hello", "-m", "hi from alice", "-r", "-q", "1")...)
	require.NoError(t, err, "mosquitto_pub -u -P over TLS: %s", out)
	out, err = runTool(t, sub, withCert(dev, "-i", "dev1-sub", "-t", "alice/hello", "-C", "1", "-W", "10")...)
	require.NoError(t, err, "mosquitto_sub with a client certificate: %s", out)
	require.Equal(t, "hi from alice", strings.TrimSpace(out))
	out, err = runTool(t, sub, withPassword("bob", "builder", "-i", "bob-sub", "-t", "alice/#", "-C", "1", "-W", "10")...)
	require.NoError(t, err, "mosquitto_sub -u -P over TLS: %s", out)
	require.Equal(t, "hi from alice", strings.TrimSpace(out))

	// dev1 (certificate) publishes; alice (password) reads.
	out, err = runTool(t, pub, withCert(dev, "-i", "dev1-pub", "-t", "devices/dev1/temp", "-m", "21.5", "-r", "-q", "1")...)
	require.NoError(t, err, "mosquitto_pub with a client certificate: %s", out)
	out, err = runTool(t, sub, withPassword("alice", "s3cret pass", "-i", "alice-sub", "-t", "devices/#", "-C", "1", "-W", "10", "-v")...)
	require.NoError(t, err, out)
	require.Equal(t, "devices/dev1/temp 21.5", strings.TrimSpace(out))

	// A wrong password is refused with CONNACK 0x04, which the tools report.
	out, err = runTool(t, pub, withPassword("alice", "wrong", "-i", "x", "-t", "alice/x", "-m", "x")...)
	require.Error(t, err)
	require.Contains(t, strings.ToLower(out), "bad user name or password", out)

	// A subscription the ACL refuses: mosquitto_sub sees SUBACK 0x80.
	out, _ = runTool(t, sub, withPassword("bob", "builder", "-i", "bob-denied", "-t", "devices/#", "-C", "1", "-W", "3")...)
	require.Contains(t, strings.ToLower(out), "denied", out)

	// Without --cafile the tools refuse a server they cannot verify.
	out, err = runTool(t, pub, "-h", "localhost", "-p", port, "--capath", t.TempDir(), "-u", "alice", "-P", "s3cret pass", "-t", "alice/x", "-m", "x")
	require.Error(t, err, out)
}
