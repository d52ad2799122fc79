package shard

// Authentication and ACL tests (authz.go): CONNACK 0x04/0x05 (§3.2.2.3),
// SUBACK 0x80 (§3.9.3), denied PUBLISH (§3.3.5), per-delivery read checks,
// retained messages, wills, reload, and certificate user names. Each
// assertion that a statement of the spec governs names it.

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/auth"
	"iotd/tlsconf"
	"iotd/tlsconf/tlstest"
	"iotd/wire"
	"iotd/wire/wiretest"
)

// writeTemp writes content to a new file in a test directory.
func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// passwdFile writes a password file with a $7$ hash per user ("user",
// "password", ...).
func passwdFile(t testing.TB, userPass ...string) string {
	t.Helper()
	var sb strings.Builder
	for i := 0; i < len(userPass); i += 2 {
		h, err := auth.HashPassword([]byte(userPass[i+1]))
		require.NoError(t, err)
		sb.WriteString(userPass[i] + ":" + h + "\n")
	}
	return writeTemp(t, "passwd", sb.String())
}

// authBroker runs a broker with a password file and an ACL (either may be
// empty).
func authBroker(t testing.TB, passwd, acl string, denyAnonymous bool) *testBroker {
	t.Helper()
	var pf, af string
	if passwd != "" {
		pf = passwd
	}
	if acl != "" {
		af = writeTemp(t, "acl", acl)
	}
	store, err := auth.NewStore(pf, af)
	require.NoError(t, err)
	return runBroker(t, Config{Auth: store, DenyAnonymous: denyAnonymous})
}

// login connects with a user name and password and returns the CONNACK
// code; the client is usable when the code is 0.
func (tb *testBroker) login(t testing.TB, id, user, pass string) (*rawClient, byte) {
	t.Helper()
	c := tb.dial(t)
	cp := &wire.Connect{ClientID: id, CleanSession: true}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		if pass != "" {
			cp.PasswordFlag, cp.Password = true, []byte(pass)
		}
	}
	ack := c.connect(cp)
	return c, ack.ReturnCode
}

func (tb *testBroker) mustLogin(t testing.TB, id, user, pass string) *rawClient {
	t.Helper()
	c, code := tb.login(t, id, user, pass)
	require.Equal(t, wire.Accepted, code, "login %s/%s", id, user)
	return c
}

// codes subscribes to filters at QoS 1 and returns the SUBACK codes.
func (c *rawClient) codes(id uint16, filters ...string) []byte {
	c.t.Helper()
	var subs []wire.Subscription
	for _, f := range filters {
		subs = append(subs, wire.Subscription{Filter: f, QoS: 1})
	}
	return c.subscribe(id, subs...).ReturnCodes
}

const deny = wire.SubackFailure

func TestAuthPasswordLogin(t *testing.T) {
	t.Parallel()
	b := authBroker(t, passwdFile(t, "alice", "wonderland", "bob", "builder"), "", true)
	b.mustLogin(t, "a", "alice", "wonderland")
	b.mustLogin(t, "b", "bob", "builder")
	for name, up := range map[string][2]string{
		"wrong password": {"alice", "builder"},
		"unknown user":   {"carol", "wonderland"},
		"no password":    {"alice", ""},
		"case differs":   {"Alice", "wonderland"},
	} {
		t.Run(name, func(t *testing.T) {
			c := b.dial(t)
			c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "x", CleanSession: true,
				UsernameFlag: true, Username: up[0], PasswordFlag: up[1] != "", Password: []byte(up[1])})
			expectRefused(t, c, wire.RefusedBadUsernamePassword) // 0x04, [MQTT-3.2.2-4] [MQTT-3.2.2-5]
		})
	}
	require.EqualValues(t, 4, b.SecurityStats().RefusedConnects)
}

// A refused login to an existing persistent session reports session
// present 0 and leaves the session alone.
func TestAuthRefusalSessionPresentZero(t *testing.T) {
	t.Parallel()
	b := authBroker(t, passwdFile(t, "alice", "wonderland"), "", true)
	cp := &wire.Connect{ClientID: "keep", UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("wonderland")}
	c, _ := b.connectWith(t, cp)
	c.subscribe(1, wire.Subscription{Filter: "k", QoS: 1})
	c.disconnect()

	bad := b.dial(t)
	bad.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "keep", UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("guess")})
	expectRefused(t, bad, wire.RefusedBadUsernamePassword) // [MQTT-3.2.2-4] session present 0 although one exists

	_, ack := b.connectWith(t, &wire.Connect{ClientID: "keep", UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("wonderland")})
	require.True(t, ack.SessionPresent, "the refused CONNECT did not touch the session")
}

func TestAuthAnonymous(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		b := authBroker(t, passwdFile(t, "alice", "wonderland"), "", true)
		c := b.dial(t)
		c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "anon", CleanSession: true})
		expectRefused(t, c, wire.RefusedNotAuthorized) // 0x05, [MQTT-3.2.2-4] [MQTT-3.2.2-5]
	})
	t.Run("allowed with a password file", func(t *testing.T) {
		b := authBroker(t, passwdFile(t, "alice", "wonderland"), "", false)
		b.mustLogin(t, "anon", "", "")
		// A user name that fails is refused even though anonymous clients
		// are let in (as Mosquitto 2 does).
		_, code := b.login(t, "x", "alice", "nope")
		require.Equal(t, wire.RefusedBadUsernamePassword, code)
	})
	t.Run("no password file, anonymous refused", func(t *testing.T) {
		b := authBroker(t, "", "", true)
		_, code := b.login(t, "x", "alice", "anything")
		require.Equal(t, wire.RefusedBadUsernamePassword, code, "a name nothing can verify")
		_, code = b.login(t, "y", "", "")
		require.Equal(t, wire.RefusedNotAuthorized, code)
	})
}

// Without a password file a user name cannot be verified: where anonymous
// clients are allowed it is let in, but the ACL treats it as anonymous.
func TestAuthUnverifiedNameIsAnonymous(t *testing.T) {
	t.Parallel()
	b := authBroker(t, "", "topic read anon/#\nuser alice\ntopic read alice/#\n", false)
	c := b.mustLogin(t, "x", "alice", "whatever")
	require.Equal(t, []byte{1, deny}, c.codes(1, "anon/#", "alice/#"))
}

// Mosquitto 1.x's salted SHA-512 ($6$) lines log in too.
func TestAuthSHA512PasswordLine(t *testing.T) {
	t.Parallel()
	salt := make([]byte, 12)
	rand.Read(salt)
	sum := sha512.Sum512(append([]byte("old-secret"), salt...))
	line := "legacy:$6$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
	b := authBroker(t, writeTemp(t, "passwd", line), "", true)
	b.mustLogin(t, "l", "legacy", "old-secret")
	_, code := b.login(t, "l2", "legacy", "old-secret!")
	require.Equal(t, wire.RefusedBadUsernamePassword, code)
}

// Whatever follows a refused CONNECT is not processed [MQTT-3.1.4-5].
func TestAuthRefusedConnectIgnoresRest(t *testing.T) {
	t.Parallel()
	b := authBroker(t, passwdFile(t, "alice", "wonderland"), "", false)
	watch := b.subscriber(t, "watch", "#", 0)
	for name, cp := range map[string]*wire.Connect{
		"bad password": {ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "r1", CleanSession: true, UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("x")},
		"unknown user": {ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "r2", CleanSession: true, UsernameFlag: true, Username: "mallory", PasswordFlag: true, Password: []byte("x"),
			WillFlag: true, WillTopic: "leak/will", WillMessage: []byte("w")},
	} {
		c := b.dial(t)
		raw := cp.Append(nil)
		raw = append(raw, wiretest.Publish("leak/"+cp.ClientID, []byte("x"), 0, true, 0)...)
		raw = append(raw, wiretest.Subscribe(1, "#", 0)...)
		c.write(raw)
		expectRefused(t, c, wire.RefusedBadUsernamePassword) // no SUBACK follows [MQTT-3.1.4-5]
		_ = name
	}
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.4-5] nothing published, no will
	fresh := b.subscriber(t, "fresh", "leak/#", 0)
	fresh.expectSilence(200 * time.Millisecond) // [MQTT-3.1.4-5] nothing retained
}

// Each access word: read lets a client subscribe, write lets it publish,
// readwrite (or no word) both, deny neither; SUBACK codes stay in filter
// order [MQTT-3.9.3-1].
func TestACLAccessWords(t *testing.T) {
	t.Parallel()
	acl := `user alice
topic read r/#
topic write w/#
topic readwrite rw/#
topic both/#
topic deny rw/secret
`
	b := authBroker(t, passwdFile(t, "alice", "pw", "root", "pw"), acl+"user root\ntopic readwrite #\n", true)
	alice := b.mustLogin(t, "alice", "alice", "pw")
	require.Equal(t, []byte{1, deny, 1, 1, deny, deny, 1}, alice.codes(1, "r/#", "w/#", "rw/#", "both/x", "rw/secret", "other", "r/+/x")) // [MQTT-3.9.3-1]
	require.EqualValues(t, 3, b.SecurityStats().DeniedSubscribes)

	root := b.mustLogin(t, "root", "root", "pw")
	require.Equal(t, []byte{1}, root.codes(1, "#"))
	alicePub := b.mustLogin(t, "alice-pub", "alice", "pw") // subscribes to nothing
	for i, topic := range []string{"r/1", "w/1", "rw/1", "both/1", "rw/secret", "other"} {
		alicePub.publishAcked(topic, "from alice", false, uint16(10+i))
	}
	// Only the topics alice may write reached root, in order.
	root.expectMessage("w/1", "from alice")
	root.expectMessage("rw/1", "from alice")
	root.expectMessage("both/1", "from alice")
	root.expectSilence(200 * time.Millisecond)
	require.EqualValues(t, 3, b.SecurityStats().DeniedPublishes)
}

// A denied PUBLISH is acknowledged as its QoS requires and not forwarded
// [MQTT-3.3.5-2]; acknowledgements keep their order.
func TestACLDeniedPublishAcknowledged(t *testing.T) {
	t.Parallel()
	b := authBroker(t, "", "topic read #\ntopic write ok/#\n", false)
	sub := b.subscriber(t, "sub", "#", 2)
	pub, _ := b.connect(t, "pub", true)
	pub.publish("no/0", "x", 0, false, 0)
	pub.publish("no/1", "x", 1, false, 1)
	pub.publish("ok/1", "y", 1, false, 2)
	pub.publish("no/2", "x", 2, false, 3)
	require.EqualValues(t, 1, pub.expect(wire.PUBACK).(*wire.Puback).PacketID) // [MQTT-3.3.5-2] positive ack
	require.EqualValues(t, 2, pub.expect(wire.PUBACK).(*wire.Puback).PacketID)
	require.EqualValues(t, 3, pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID) // [MQTT-3.3.5-2]
	pub.send(&wire.Pubrel{PacketID: 3})
	require.EqualValues(t, 3, pub.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
	pub.ping()
	sub.expectMessage("ok/1", "y")
	sub.expectSilence(200 * time.Millisecond)
	require.EqualValues(t, 3, b.SecurityStats().DeniedPublishes)
}

// A deny that covers part of a wildcard subscription takes effect per
// delivered topic, live and retained.
func TestACLPartialDenyPerDelivery(t *testing.T) {
	t.Parallel()
	acl := `user alice
topic read a/#
topic deny a/secret
user pub
topic write #
`
	b := authBroker(t, passwdFile(t, "alice", "pw", "pub", "pw"), acl, true)
	pub := b.mustLogin(t, "pub", "pub", "pw")
	pub.publishAcked("a/secret", "retained secret", true, 1)
	pub.publishAcked("a/open", "retained open", true, 2)

	alice := b.mustLogin(t, "alice", "alice", "pw")
	require.Equal(t, []byte{1, deny}, alice.codes(1, "a/#", "a/secret"))
	p := alice.expectMessage("a/open", "retained open") // the retained secret is not sent
	require.True(t, p.Retain)
	pub.publishAcked("a/secret", "live secret", false, 3)
	pub.publishAcked("a/x", "live", false, 4)
	alice.expectMessage("a/x", "live")
	alice.expectSilence(200 * time.Millisecond)
	require.EqualValues(t, 2, b.SecurityStats().DeniedDeliveries)
}

// Rules before the first "user" line are for anonymous clients only; a
// user gets its own block and the patterns, not the anonymous rules; a
// user without a block, and an ACL with no rule for the topic, deny.
func TestACLAnonymousAndUserBlocks(t *testing.T) {
	t.Parallel()
	acl := `# anonymous
topic read public/#

user alice
topic readwrite alice/#
user alice
topic read shared/#
`
	b := authBroker(t, passwdFile(t, "alice", "pw", "bob", "pw"), acl, false)
	anon := b.mustLogin(t, "anon", "", "")
	require.Equal(t, []byte{1, deny, deny}, anon.codes(1, "public/#", "alice/#", "shared/#"))
	alice := b.mustLogin(t, "alice", "alice", "pw")
	require.Equal(t, []byte{deny, 1, 1}, alice.codes(1, "public/#", "alice/#", "shared/#"), "two blocks for one user add up")
	bob := b.mustLogin(t, "bob", "bob", "pw")
	require.Equal(t, []byte{deny, deny, deny}, bob.codes(1, "public/#", "alice/#", "#"), "no block: default deny")
}

// %c is the client id, %u the user name; a %u pattern does not apply to an
// anonymous client; a client id with '+', '#' or '/' gets nothing.
func TestACLPatterns(t *testing.T) {
	t.Parallel()
	acl := `pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern deny devices/%c/locked
user watcher
topic read #
`
	b := authBroker(t, passwdFile(t, "alice", "pw", "watcher", "pw"), acl, false)
	watch := b.mustLogin(t, "w", "watcher", "pw")
	require.Equal(t, []byte{1}, watch.codes(1, "#"))

	dev := b.mustLogin(t, "dev1", "", "")
	dev.publishAcked("devices/dev1/temp", "21", false, 5)
	dev.publishAcked("devices/dev2/temp", "99", false, 6)
	dev.publishAcked("devices/dev1/locked", "no", false, 7)
	watch.expectMessage("devices/dev1/temp", "21")
	watch.expectSilence(200 * time.Millisecond)
	require.Equal(t, []byte{1, deny, deny, deny}, dev.codes(1, "devices/dev1/#", "devices/dev2/#", "devices/dev1/locked", "users/+/inbox"))

	alice := b.mustLogin(t, "phone", "alice", "pw")
	require.Equal(t, []byte{1, deny, 1}, alice.codes(1, "users/alice/inbox", "users/bob/inbox", "devices/phone/x"))

	// %u never matches for an anonymous client, whatever its id.
	anon := b.mustLogin(t, "alice", "", "")
	require.Equal(t, []byte{deny}, anon.codes(1, "users/alice/inbox"))

	// A client id that would make %c a wildcard is denied everything.
	wild := b.mustLogin(t, "dev+", "", "")
	require.Equal(t, []byte{deny, deny}, wild.codes(1, "devices/#", "devices/+/x"))
}

// $SYS topics are read only with a rule that names $SYS: "#" and "+/..."
// never match them [MQTT-4.7.2-1].
func TestACLSysReadAccess(t *testing.T) {
	t.Parallel()
	acl := `user plain
topic read #
user ops
topic read $SYS/#
topic deny $SYS/broker/secret
user brokerwatch
topic read $SYS/broker/#
`
	b := authBroker(t, passwdFile(t, "plain", "pw", "ops", "pw", "brokerwatch", "pw"), acl, true)
	plain := b.mustLogin(t, "p", "plain", "pw")
	require.Equal(t, []byte{deny, deny, 1}, plain.codes(1, "$SYS/#", "$SYS/broker/uptime", "a/b"))
	ops := b.mustLogin(t, "o", "ops", "pw")
	require.Equal(t, []byte{1, 1, deny}, ops.codes(1, "$SYS/#", "$SYS/broker/uptime", "a/b"))
	bw := b.mustLogin(t, "bw", "brokerwatch", "pw")
	require.Equal(t, []byte{deny, 1, 1}, bw.codes(1, "$SYS/#", "$SYS/broker/+", "$SYS/broker/clients/#"))
	// Writing to $SYS is never forwarded, ACL or not.
	ops.publishAcked("$SYS/broker/fake", "x", false, 9)
	ops.expectSilence(200 * time.Millisecond)

	// The broker's own $SYS messages reach the clients that may read them,
	// checked per topic like any delivery.
	require.NoError(t, b.Publish("$SYS/broker/uptime", []byte("42"), 0, false))
	require.NoError(t, b.Publish("$SYS/broker/secret", []byte("s"), 0, false))
	ops.expectMessage("$SYS/broker/uptime", "42")
	ops.expectSilence(200 * time.Millisecond) // "topic deny $SYS/broker/secret"
	// Two shards publish them: any order.
	got := []string{string(bw.expectPublish().Topic), string(bw.expectPublish().Topic)}
	require.ElementsMatch(t, []string{"$SYS/broker/uptime", "$SYS/broker/secret"}, got)
	plain.expectSilence(100 * time.Millisecond)
}

// A will is checked for write access when it would be published.
func TestACLWill(t *testing.T) {
	t.Parallel()
	acl := `topic read #
topic write wills/allowed
`
	b := authBroker(t, "", acl, false)
	watch := b.subscriber(t, "watch", "#", 1)
	ok := b.connectWill(t, "ok", true, 0, "wills/allowed", "gone", 1, false)
	denied := b.connectWill(t, "denied", true, 0, "wills/denied", "gone", 1, false)
	denied.kill()
	ok.kill()
	watch.expectMessage("wills/allowed", "gone")
	watch.expectSilence(200 * time.Millisecond)
	require.EqualValues(t, 1, b.SecurityStats().DeniedWills)
}

// Store.Reload (SIGHUP) changes the rules for the next check; connections
// stay; a file that does not parse keeps the old rules.
func TestACLReload(t *testing.T) {
	t.Parallel()
	pf := passwdFile(t, "alice", "pw")
	af := writeTemp(t, "acl", "user alice\ntopic read a/#\n")
	store, err := auth.NewStore(pf, af)
	require.NoError(t, err)
	b := runBroker(t, Config{Auth: store, DenyAnonymous: true})
	alice := b.mustLogin(t, "alice", "alice", "pw")
	require.Equal(t, []byte{1, deny}, alice.codes(1, "a/#", "b/#"))

	require.NoError(t, os.WriteFile(af, []byte("user alice\ntopic read b/#\n"), 0o600))
	require.NoError(t, store.Reload())
	require.Equal(t, []byte{deny, 1}, alice.codes(2, "a/x", "b/#"), "same connection, new rules")

	require.NoError(t, os.WriteFile(af, []byte("user alice\ntopic read c/#\ntopic sideways d\n"), 0o600))
	err = store.Reload()
	require.ErrorContains(t, err, af+":3:")
	require.Equal(t, []byte{deny, 1}, alice.codes(3, "c/#", "b/#"), "the bad file did not take effect")

	// Adding a user to the password file lets it in after a reload.
	_, code := b.login(t, "bob", "bob", "pw2")
	require.Equal(t, wire.RefusedBadUsernamePassword, code)
	require.NoError(t, auth.SetPassword(pf, "bob", []byte("pw2")))
	require.NoError(t, os.WriteFile(af, []byte("user alice\ntopic read b/#\n"), 0o600))
	require.NoError(t, store.Reload())
	b.mustLogin(t, "bob", "bob", "pw2")
	alice.ping()
}

// Messages queued for a persistent session are checked again when sent: a
// session recovered from disk has no identity until its client returns,
// and the ACL may have changed meanwhile.
func TestACLQueuedMessagesCheckedWhenSent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pf := passwdFile(t, "alice", "pw", "pub", "pw")
	af := writeTemp(t, "acl", "user alice\ntopic read a/#\nuser pub\ntopic write #\n")
	start := func() (*testBroker, func()) {
		store, err := auth.NewStore(pf, af)
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return serveOn(t, Config{Shards: 2, Persistence: true, DataDir: dir, Auth: store, DenyAnonymous: true}, ln, ListenerOptions{})
	}
	aliceConnect := &wire.Connect{ClientID: "alice", UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("pw")}

	b, stop := start()
	alice, _ := b.connectWith(t, aliceConnect)
	require.Equal(t, []byte{1}, alice.codes(1, "a/#"))
	alice.disconnect()
	stop()

	// Restarted: alice's session is back, without an identity yet.
	b, stop = start()
	pub := b.mustLogin(t, "pub", "pub", "pw")
	pub.publishAcked("a/one", "1", false, 1)
	pub.publishAcked("a/secret", "s", false, 2)
	pub.publishAcked("a/two", "2", false, 3)
	require.NoError(t, os.WriteFile(af, []byte("user alice\ntopic read a/#\ntopic deny a/secret\nuser pub\ntopic write #\n"), 0o600))
	require.NoError(t, b.cfg.Auth.Reload())

	alice, ack := b.connectWith(t, aliceConnect)
	require.True(t, ack.SessionPresent)
	alice.expectMessage("a/one", "1")
	alice.expectMessage("a/two", "2")
	alice.expectSilence(200 * time.Millisecond)
	alice.disconnect()
	stop()

	// The dropped message stays dropped after another restart (the log
	// replays to the same queue).
	b, stop = start()
	alice, ack = b.connectWith(t, aliceConnect)
	require.True(t, ack.SessionPresent)
	alice.expectSilence(200 * time.Millisecond)
	alice.disconnect()
	stop()
}

// On a listener with CertUsername, a verified client certificate is the
// login: its common name (or first DNS/email SAN) is the user name for the
// ACL, and the CONNECT's user name and password are not checked.
func TestAuthCertificateUsername(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	dev := ca.Issue(t, "dev1", false)
	mail := ca.Issue(t, "", false, "ops@example.com")
	nameless := ca.IssueTemplate(t, &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"no name"}},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	r, err := tlsconf.New(tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, ClientAuth: tlsconf.ClientAuthOptional})
	require.NoError(t, err)

	store, err := auth.NewStore(passwdFile(t, "alice", "pw"), writeTemp(t, "acl", "user dev1\ntopic read dev1/#\nuser ops@example.com\ntopic read ops/#\nuser alice\ntopic read alice/#\n"))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b, _ := serveOn(t, Config{Shards: 2, Auth: store, DenyAnonymous: true}, tls.NewListener(ln, r.TLSConfig()), ListenerOptions{CertUsername: true})
	dial := func(cert *tlstest.Cert) *rawClient {
		conn, err := tls.Dial("tcp", b.addr, tlstest.ClientConfig(ca, cert))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return &rawClient{t: t, conn: conn, r: wire.NewReader(conn, 1<<20)}
	}

	c := dial(dev)
	// The CONNECT claims to be alice with a wrong password: the certificate wins.
	require.Equal(t, wire.Accepted, c.connect(&wire.Connect{ClientID: "d", CleanSession: true, UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("wrong")}).ReturnCode)
	require.Equal(t, []byte{1, deny}, c.codes(1, "dev1/#", "alice/#"))

	c = dial(mail)
	require.Equal(t, wire.Accepted, c.connect(&wire.Connect{ClientID: "m", CleanSession: true}).ReturnCode)
	require.Equal(t, []byte{1, deny}, c.codes(1, "ops/#", "dev1/#"), "email SAN as the user name")

	c = dial(nameless)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "n", CleanSession: true})
	expectRefused(t, c, wire.RefusedBadUsernamePassword)

	// No certificate ("optional"): the password file decides.
	c = dial(nil)
	require.Equal(t, wire.Accepted, c.connect(&wire.Connect{ClientID: "a", CleanSession: true, UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("pw")}).ReturnCode)
	require.Equal(t, []byte{1, deny}, c.codes(1, "alice/#", "dev1/#"))
	c = dial(nil)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "anon", CleanSession: true})
	expectRefused(t, c, wire.RefusedNotAuthorized)
}
