package shard

// Conformance tests for MQTT 3.1.1 connection handling: packet format rules
// (§2), CONNECT (§3.1), CONNACK (§3.2), PINGREQ (§3.12), DISCONNECT (§3.14),
// keep-alive and error handling (§4.8). Each assertion names the statement
// of /work/shared/spec/mqtt-3.1.1-checklist.md it checks.

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// expectConnackBytes reads the next packet raw and checks that it is exactly
// 20 02 <session present> <code>.
func expectConnackBytes(t *testing.T, c *rawClient, sessionPresent bool, code byte) {
	t.Helper()
	fh, body := c.readRaw(5 * time.Second)
	require.Equal(t, wire.CONNACK, fh.Type)
	require.Equal(t, byte(0), fh.Flags)
	sp := byte(0)
	if sessionPresent {
		sp = 1
	}
	require.Equal(t, []byte{sp, code}, body)
}

// trailing appends extra bytes inside a short packet (one remaining-length
// byte), so they belong to it rather than to the next packet.
func trailing(raw []byte, extra ...byte) []byte {
	out := append(append([]byte(nil), raw...), extra...)
	out[1] += byte(len(extra))
	return out
}

// expectRefused checks a refusal: CONNACK with the code and Session Present
// 0, then the connection closes.
func expectRefused(t *testing.T, c *rawClient, code byte) {
	t.Helper()
	fh, body := c.readRaw(5 * time.Second)
	require.Equal(t, wire.CONNACK, fh.Type)
	require.Len(t, body, 2)
	require.Equal(t, code, body[1])
	require.Equal(t, byte(0), body[0], "session present must be 0 on a refusal") // [MQTT-3.2.2-4]
	c.expectClosed()                                                             // [MQTT-3.2.2-5]
}

func TestSpecConnectFirstPacketMustBeConnect(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for name, raw := range map[string][]byte{
		"pingreq":     wiretest.Pingreq(),
		"publish":     wiretest.Publish("a", []byte("x"), 0, false, 0),
		"subscribe":   wiretest.Subscribe(1, "a", 0),
		"disconnect":  wiretest.Disconnect(),
		"unsubscribe": wiretest.Unsubscribe(1, "a"),
	} {
		t.Run(name, func(t *testing.T) {
			c := b.dial(t)
			c.write(raw)
			c.expectClosed() // [MQTT-3.1.0-1] closed, nothing sent back
		})
	}
	// The broker is still serving.
	c, _ := b.connect(t, "after", true)
	c.ping()
}

// The broker closes a connection that sends no CONNECT in time (§3.1, SHOULD).
func TestSpecConnectTimeout(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{ConnectTimeout: 300 * time.Millisecond})
	c := b.dial(t)
	start := time.Now()
	c.expectClosed()
	require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)
}

func TestSpecConnectSecondConnect(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 1)
	c := b.connectWill(t, "twice", true, 0, "will/twice", "gone", 1, false)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "twice", CleanSession: true})
	c.expectClosed() // [MQTT-3.1.0-2] closed, no second CONNACK
	// A protocol violation is not a DISCONNECT: the will fires [MQTT-3.1.2-8].
	watch.expectMessage("will/twice", "gone")
}

func TestSpecConnectProtocolName(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c := b.dial(t)
	c.write(wiretest.Raw("connect_protocol_name")) // protocol name MQTX
	c.expectClosed()                               // [MQTT-3.1.2-1] closed without CONNACK
}

func TestSpecConnectProtocolLevel(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for _, level := range []byte{0, 3, 5, 6, 255} {
		c := b.dial(t)
		c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: level, ClientID: "lvl", CleanSession: true})
		expectConnackBytes(t, c, false, wire.RefusedProtocolVersion) // [MQTT-3.1.2-2] 20 02 00 01
		c.expectClosed()                                             // [MQTT-3.1.2-2] then disconnect
	}
	// MQTT 3.1 (MQIsdp) clients get the same answer.
	c := b.dial(t)
	c.write(wiretest.Raw("connect_mqisdp"))
	expectRefused(t, c, wire.RefusedProtocolVersion) // [MQTT-3.1.2-2]
}

// Every CONNECT that breaks a rule of §3.1 is closed with no CONNACK at all.
func TestSpecConnectMalformedClosesWithoutConnack(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	enc := func(cp wire.Connect) []byte {
		cp.ProtocolName, cp.ProtocolLevel = "MQTT", 4
		return cp.Append(nil)
	}
	// Will topic length 9 with only 3 bytes left in the packet.
	willTopicOverrun := enc(wire.Connect{ClientID: "c", CleanSession: true, WillFlag: true, WillTopic: "t"})
	require.Equal(t, byte('t'), willTopicOverrun[17])
	willTopicOverrun[16] = 9
	cases := []struct {
		name string
		raw  []byte
	}{
		{"reserved_flag", wiretest.Raw("connect_reserved_flag")},                                                                             // [MQTT-3.1.2-3]
		{"header_flags", wiretest.Raw("connect_header_flags")},                                                                               // [MQTT-2.2.2-2]
		{"will_fields_missing", wiretest.Raw("connect_will_fields_missing")},                                                                 // [MQTT-3.1.2-9]
		{"will_message_missing", wiretest.Raw("connect_will_message_missing")},                                                               // [MQTT-3.1.2-9]
		{"will_qos1_without_will", enc(wire.Connect{ClientID: "c", CleanSession: true, WillQoS: 1})},                                         // [MQTT-3.1.2-11]
		{"will_retain_without_will_fields", enc(wire.Connect{ClientID: "c", CleanSession: true, WillRetain: true})},                          // [MQTT-3.1.2-11]
		{"will_fields_without_will_flag", trailing(enc(wire.Connect{ClientID: "c", CleanSession: true}), 0, 1, 't', 0, 0)},                   // [MQTT-3.1.2-11]
		{"will_qos2_without_will", enc(wire.Connect{ClientID: "c", CleanSession: true, WillQoS: 2})},                                         // [MQTT-3.1.2-13]
		{"will_qos3", wiretest.Raw("connect_will_qos3")},                                                                                     // [MQTT-3.1.2-14]
		{"will_retain_without_will", wiretest.Raw("connect_will_retain_without_will")},                                                       // [MQTT-3.1.2-15]
		{"user_without_flag", wiretest.Raw("connect_user_without_flag")},                                                                     // [MQTT-3.1.2-18]
		{"user_missing", wiretest.Raw("connect_user_missing")},                                                                               // [MQTT-3.1.2-19]
		{"password_without_flag", wiretest.Raw("connect_password_without_flag")},                                                             // [MQTT-3.1.2-20]
		{"password_missing", wiretest.Raw("connect_password_missing")},                                                                       // [MQTT-3.1.2-21]
		{"password_without_user", wiretest.Raw("connect_password_without_user")},                                                             // [MQTT-3.1.2-22]
		{"password_without_user_complete", enc(wire.Connect{ClientID: "c", CleanSession: true, PasswordFlag: true, Password: []byte("pw")})}, // [MQTT-3.1.2-22]
		{"client_id_overrun", wiretest.Raw("connect_client_id_overrun")},                                                                     // [MQTT-3.1.3-1]
		{"will_topic_overrun", willTopicOverrun},                                                                                             // [MQTT-3.1.3-1]
		{"no_client_id", wiretest.Raw("connect_no_client_id")},                                                                               // [MQTT-3.1.3-3]
		{"client_id_ff", wiretest.Raw("connect_client_id_ff")},                                                                               // [MQTT-3.1.3-4]
		{"client_id_surrogate", wiretest.Raw("connect_client_id_surrogate")},                                                                 // [MQTT-1.5.3-1]
		{"client_id_overlong_nul", enc(wire.Connect{ClientID: "a\xc0\x80", CleanSession: true})},                                             // [MQTT-1.5.3-1]
		{"client_id_null", wiretest.Raw("connect_client_id_null")},                                                                           // [MQTT-1.5.3-2]
		{"will_topic_utf8", wiretest.Raw("connect_will_topic_utf8")},                                                                         // [MQTT-3.1.3-10]
		{"will_topic_surrogate", enc(wire.Connect{ClientID: "c", CleanSession: true, WillFlag: true, WillTopic: "w/\xed\xa0\x80"})},          // [MQTT-3.1.3-10]
		{"will_topic_null", enc(wire.Connect{ClientID: "c", CleanSession: true, WillFlag: true, WillTopic: "w/\x00"})},                       // [MQTT-1.5.3-2]
		{"will_topic_hash", wiretest.Raw("connect_will_topic_wildcard")},                                                                     // [MQTT-4.7.1-1]
		{"will_topic_plus", enc(wire.Connect{ClientID: "c", CleanSession: true, WillFlag: true, WillTopic: "w/+"})},                          // [MQTT-4.7.1-1]
		{"will_topic_empty", enc(wire.Connect{ClientID: "c", CleanSession: true, WillFlag: true, WillTopic: ""})},                            // [MQTT-4.7.3-1]
		{"user_utf8", wiretest.Raw("connect_user_utf8")},                                                                                     // [MQTT-3.1.3-11]
		{"user_null", enc(wire.Connect{ClientID: "c", CleanSession: true, UsernameFlag: true, Username: "u\x00"})},                           // [MQTT-1.5.3-2]
		{"empty_id_persistent_trailing", wiretest.Raw("connect_empty_id_persistent_trailing")},                                               // [MQTT-3.1.4-1]
		{"protocol_name", wiretest.Raw("connect_protocol_name")},                                                                             // [MQTT-3.1.2-1]
		{"truncated_name", wiretest.Raw("connect_truncated_name")},                                                                           // [MQTT-3.1.4-1]
		{"no_keep_alive", wiretest.Raw("connect_no_keep_alive")},                                                                             // [MQTT-3.1.4-1]
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := b.dial(t)
			c.write(tc.raw)
			// [MQTT-3.1.4-1] closed and zero bytes received, for every
			// statement listed in the table above.
			c.expectClosed()
		})
	}
	ok, _ := b.connect(t, "still-up", true)
	ok.ping()
}

// A refused CONNECT ends the connection: nothing sent after it is acted on.
func TestSpecConnectRefusedIgnoresRest(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "#", 0)
	for name, cp := range map[string]*wire.Connect{
		"bad_level":     {ProtocolName: "MQTT", ProtocolLevel: 6, ClientID: "r1", CleanSession: true},
		"empty_id_cs0":  {ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: ""},
		"id_too_long":   {ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: strings.Repeat("x", 257), CleanSession: true},
		"with_will_cs0": {ProtocolName: "MQTT", ProtocolLevel: 4, WillFlag: true, WillTopic: "w", WillMessage: []byte("will")},
	} {
		t.Run(name, func(t *testing.T) {
			c := b.dial(t)
			raw := cp.Append(nil)
			raw = append(raw, wiretest.Publish("leak/"+name, []byte("x"), 0, true, 0)...)
			raw = append(raw, wiretest.Subscribe(1, "#", 0)...)
			c.write(raw)
			fh, body := c.readRaw(5 * time.Second)
			require.Equal(t, wire.CONNACK, fh.Type)
			require.NotEqual(t, wire.Accepted, body[1])
			c.expectClosed() // [MQTT-3.1.4-5] no SUBACK
		})
	}
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.4-5] nothing published, no will either
	fresh := b.subscriber(t, "fresh", "leak/#", 0)
	fresh.expectSilence(200 * time.Millisecond) // [MQTT-3.1.4-5] nothing retained
}

func TestSpecConnectAccepted(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c := b.dial(t)
	c.write(wiretest.Connect("ok", true, 30))
	expectConnackBytes(t, c, false, wire.Accepted) // [MQTT-3.1.4-4] 20 02 00 00
	c.ping()
	c.disconnect()
}

func TestSpecConnectClientIDs(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	c := b.dial(t)
	ack := c.connect(&wire.Connect{ClientID: alnum[:23], CleanSession: true})
	require.Equal(t, wire.Accepted, ack.ReturnCode) // [MQTT-3.1.3-5] 23 bytes of [0-9a-zA-Z]
	c = b.dial(t)
	ack = c.connect(&wire.Connect{ClientID: alnum[39:], CleanSession: true})
	require.Equal(t, wire.Accepted, ack.ReturnCode) // [MQTT-3.1.3-5]
	c = b.dial(t)
	ack = c.connect(&wire.Connect{ClientID: "Z", CleanSession: true})
	require.Equal(t, wire.Accepted, ack.ReturnCode) // [MQTT-3.1.3-5] 1 byte

	// Longer ids and other characters are accepted up to MaxClientIDLen
	// (256 bytes by default): spaces, dashes, multi-byte UTF-8, U+FEFF.
	long := "sensor - hall é ü 水 \uFEFF/#+"
	long += strings.Repeat("-", 256-len(long))
	require.Len(t, long, 256)
	for _, id := range []string{"with space", "dash-and_underscore", "ünïcödé-水", long} {
		c := b.dial(t)
		ack := c.connect(&wire.Connect{ClientID: id, CleanSession: false})
		require.Equal(t, wire.Accepted, ack.ReturnCode, "id %q", id)
		require.False(t, ack.SessionPresent)
		c.disconnect()
		// The id is the key of the stored session [MQTT-3.1.3-2].
		c = b.dial(t)
		ack = c.connect(&wire.Connect{ClientID: id, CleanSession: false})
		require.True(t, ack.SessionPresent, "id %q", id) // [MQTT-3.2.2-2]
		c.disconnect()
	}

	// 257 bytes is over the limit: identifier rejected.
	c = b.dial(t)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: long + "x", CleanSession: true})
	expectRefused(t, c, wire.RefusedIdentifierRejected) // [MQTT-3.1.3-9]
	c = b.dial(t)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: strings.Repeat("é", 129)})
	expectRefused(t, c, wire.RefusedIdentifierRejected) // [MQTT-3.1.3-9] 258 bytes, 129 characters

	// The limit is configurable.
	small := runBroker(t, Config{MaxClientIDLen: 23})
	c = small.dial(t)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: alnum[:24], CleanSession: true})
	expectRefused(t, c, wire.RefusedIdentifierRejected) // [MQTT-3.1.3-9]
	c = small.dial(t)
	require.Equal(t, wire.Accepted, c.connect(&wire.Connect{ClientID: alnum[:23], CleanSession: true}).ReturnCode) // [MQTT-3.1.3-5]
}

func TestSpecConnectEmptyClientID(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	// Two empty-id clean clients get distinct ids: neither takes the other over.
	c1, ack1 := b.connect(t, "", true)
	require.False(t, ack1.SessionPresent)
	require.Equal(t, []byte{0}, c1.subscribe(1, wire.Subscription{Filter: "anon/t", QoS: 0}).ReturnCodes)
	c2, _ := b.connect(t, "", true)
	require.Equal(t, []byte{0}, c2.subscribe(1, wire.Subscription{Filter: "anon/t", QoS: 0}).ReturnCodes)
	c2.publish("anon/t", "hi", 0, false, 0)
	c1.expectMessage("anon/t", "hi") // [MQTT-3.1.3-6] c1 still connected
	c2.expectMessage("anon/t", "hi") // [MQTT-3.1.3-6]
	c1.ping()
	c2.ping()

	// Empty id with CleanSession=0: 20 02 00 02, then close.
	c := b.dial(t)
	c.write(wiretest.Raw("connect_empty_id_persistent"))
	expectConnackBytes(t, c, false, wire.RefusedIdentifierRejected) // [MQTT-3.1.3-8] [MQTT-3.1.3-7]
	c.expectClosed()                                                // [MQTT-3.1.3-8]
}

func TestSpecConnectTakeover(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 2)

	first := b.connectWill(t, "dup", false, 0, "will/dup", "first gone", 1, false)
	require.Equal(t, []byte{1}, first.subscribe(1, wire.Subscription{Filter: "dup/in", QoS: 1}).ReturnCodes)

	second, ack := b.connectWith(t, &wire.Connect{ClientID: "dup", CleanSession: false})
	require.True(t, ack.SessionPresent) // [MQTT-3.2.2-2] the session survived the takeover
	first.expectClosed()                // [MQTT-3.1.4-2] the existing connection is closed
	p := watch.expectMessage("will/dup", "first gone")
	require.Equal(t, byte(1), p.QoS) // [MQTT-3.1.2-8] takeover publishes the will, at its QoS

	// The new connection works and has the session's subscription.
	pub, _ := b.connect(t, "pub", true)
	pub.publishAcked("dup/in", "to second", false, 1)
	second.expectMessage("dup/in", "to second") // [MQTT-3.1.4-2]
	second.ping()

	// A clean takeover gets a fresh session.
	third, ack := b.connectWith(t, &wire.Connect{ClientID: "dup", CleanSession: true})
	require.False(t, ack.SessionPresent) // [MQTT-3.2.2-1]
	second.expectClosed()                // [MQTT-3.1.4-2]
	pub.publishAcked("dup/in", "lost", false, 2)
	third.expectSilence(200 * time.Millisecond) // [MQTT-3.1.2-6] subscriptions dropped
	watch.expectSilence(100 * time.Millisecond) // second had no will [MQTT-3.1.2-12]
}

func TestSpecConnectCleanSession0Resumes(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, ack := b.connect(t, "keeper", false)
	require.False(t, ack.SessionPresent) // [MQTT-3.2.2-3] no stored session yet
	require.Equal(t, []byte{1, 0}, c.subscribe(1,
		wire.Subscription{Filter: "keep/a", QoS: 1},
		wire.Subscription{Filter: "keep/+/b", QoS: 0}).ReturnCodes)
	c.disconnect()

	pub, _ := b.connect(t, "pub", true)
	for round := 0; round < 3; round++ {
		c, ack = b.connect(t, "keeper", false)
		require.True(t, ack.SessionPresent) // [MQTT-3.2.2-2] [MQTT-3.1.2-4] [MQTT-3.1.4-3]
		pub.publishAcked("keep/a", "one", false, 1)
		c.expectMessage("keep/a", "one") // [MQTT-3.1.2-4] [MQTT-3.1.3-2] still subscribed
		pub.publish("keep/x/b", "two", 0, false, 0)
		c.expectMessage("keep/x/b", "two") // [MQTT-3.1.2-4]
		// The PINGRESP comes from the reader after it has passed the PUBACK
		// on; without it the next CONNECT may take over first, and the
		// ack arriving on the old connection would be ignored (a legal
		// QoS 1 redelivery, but not what this test is about).
		c.ping()
		if round%2 == 0 {
			c.disconnect()
		} else {
			c.kill() // a network failure keeps the session as well
		}
	}
}

func TestSpecConnectStoresWhileOffline(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "offline", false)
	c.subscribe(1, wire.Subscription{Filter: "off/1", QoS: 1}, wire.Subscription{Filter: "off/2", QoS: 2})
	c.disconnect()

	pub, _ := b.connect(t, "pub", true)
	pub.publishAcked("off/1", "q1", false, 1)
	pub.publish("off/2", "q2", 2, false, 2)
	pub.expect(wire.PUBREC)
	pub.send(&wire.Pubrel{PacketID: 2})
	pub.expect(wire.PUBCOMP)

	c, ack := b.connect(t, "offline", false)
	require.True(t, ack.SessionPresent)
	require.Equal(t, byte(1), c.expectMessage("off/1", "q1").QoS) // [MQTT-3.1.2-5]
	require.Equal(t, byte(2), c.expectMessage("off/2", "q2").QoS) // [MQTT-3.1.2-5]
	c.ping()
}

func TestSpecConnectCleanSession1(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)

	// A stored session with a subscription and a queued message...
	c, _ := b.connect(t, "cs", false)
	c.subscribe(1, wire.Subscription{Filter: "cs/t", QoS: 1})
	c.disconnect()
	pub.publishAcked("cs/t", "queued", false, 1)

	// ...is discarded by a CleanSession=1 connect.
	c, ack := b.connect(t, "cs", true)
	require.False(t, ack.SessionPresent)       // [MQTT-3.2.2-1]
	c.expectSilence(200 * time.Millisecond)    // [MQTT-3.1.2-6] queue dropped
	pub.publishAcked("cs/t", "live", false, 2) // no subscription any more
	c.expectSilence(200 * time.Millisecond)    // [MQTT-3.1.2-6] subscriptions dropped
	c.subscribe(2, wire.Subscription{Filter: "cs/t", QoS: 1})
	c.kill()

	// The clean session is never reused, whether it ended by DISCONNECT or
	// by a network failure.
	c, ack = b.connect(t, "cs", false)
	require.False(t, ack.SessionPresent) // [MQTT-3.1.2-6] [MQTT-3.2.2-3]
	pub.publishAcked("cs/t", "after", false, 3)
	c.expectSilence(200 * time.Millisecond) // [MQTT-3.1.2-6]
	c.disconnect()

	// The CleanSession=0 session just created is stored.
	c, ack = b.connect(t, "cs", false)
	require.True(t, ack.SessionPresent) // [MQTT-3.2.2-2]
	c.disconnect()
}

// A session lasts as long as its connection: a clean client's
// subscriptions stay active until it disconnects.
func TestSpecSessionLastsForConnection(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c := b.subscriber(t, "sub", "life/#", 1)
	pub, _ := b.connect(t, "pub", true)
	for i := uint16(1); i <= 5; i++ {
		pub.publishAcked("life/x", "m", false, i)
		c.expectMessage("life/x", "m") // [MQTT-4.1.0-2]
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSpecConnackFirstPacket(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "first", false)
	c.subscribe(1, wire.Subscription{Filter: "first/#", QoS: 1})
	c.kill()
	pub, _ := b.connect(t, "pub", true)
	for i := uint16(1); i <= 5; i++ {
		pub.publishAcked("first/t", "queued", true, i)
	}
	c = b.dial(t)
	c.write(wiretest.Connect("first", false, 0))
	expectConnackBytes(t, c, true, wire.Accepted) // [MQTT-3.2.0-1] the first packet is CONNACK
	for i := 0; i < 5; i++ {
		c.expectMessage("first/t", "queued")
	}
	// The same holds for a fresh connection with retained messages waiting.
	c = b.dial(t)
	c.write(append(wiretest.Connect("other", true, 0), wiretest.Subscribe(1, "first/#", 1)...))
	expectConnackBytes(t, c, false, wire.Accepted) // [MQTT-3.2.0-1]
	c.expect(wire.SUBACK)
	c.expectMessage("first/t", "queued")
}

func TestSpecConnackRefusals(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	// "known" has a stored session and is connected: a refusal still says
	// Session Present 0, and a refused CONNECT takes nothing over.
	k, _ := b.connect(t, "known", false)
	for name, cp := range map[string]*wire.Connect{
		"level 0x01":      {ProtocolName: "MQTT", ProtocolLevel: 5, ClientID: "known"},
		"empty id 0x02":   {ProtocolName: "MQTT", ProtocolLevel: 4},
		"long id 0x02":    {ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "known" + strings.Repeat("k", 300)},
		"level with will": {ProtocolName: "MQTT", ProtocolLevel: 3, ClientID: "known", WillFlag: true, WillTopic: "w", WillMessage: []byte("x")},
	} {
		t.Run(name, func(t *testing.T) {
			c := b.dial(t)
			c.send(cp)
			fh, body := c.readRaw(5 * time.Second)
			require.Equal(t, wire.CONNACK, fh.Type)
			require.NotEqual(t, wire.Accepted, body[1])
			require.Equal(t, byte(0), body[0]) // [MQTT-3.2.2-4]
			c.expectClosed()                   // [MQTT-3.2.2-5]
		})
	}
	// [MQTT-3.2.2-6] (close without CONNACK when no return code fits) has no
	// reachable trigger: the only internal failure during CONNECT is the
	// broker shutting down, which closes the connection without a CONNACK
	// (client.handshake returns false); there is no test for that race.
	k.ping() // not taken over by the refused CONNECTs
	k.disconnect()
	c, ack := b.connect(t, "known", false)
	require.True(t, ack.SessionPresent) // the refusals did not touch the session
	c.disconnect()
}

func TestSpecKeepAliveTimeout(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 1)
	c := b.dial(t)
	ack := c.connect(&wire.Connect{
		ClientID: "sleepy", CleanSession: true, KeepAlive: 1,
		WillFlag: true, WillTopic: "will/sleepy", WillMessage: []byte("timed out"), WillQoS: 1,
	})
	require.Equal(t, wire.Accepted, ack.ReturnCode)
	start := time.Now()
	// Still open after the keep-alive itself (1 s) has passed...
	_, err := c.read(1100 * time.Millisecond)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "closed before 1.5 x keep-alive: %v", err) // [MQTT-3.1.2-24]
	// ...closed once 1.5 x keep-alive has gone by with nothing received.
	c.expectClosed()
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 1400*time.Millisecond) // [MQTT-3.1.2-24]
	require.Less(t, elapsed, 3*time.Second)                   // [MQTT-3.1.2-24]
	// Treated as a network failure: the will is published.
	watch.expectMessage("will/sleepy", "timed out") // [MQTT-3.1.2-24] [MQTT-3.1.2-8]
}

func TestSpecKeepAlivePingKeepsConnection(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connectWith(t, &wire.Connect{ClientID: "pinger", CleanSession: true, KeepAlive: 1})
	// Any packet resets the timer; PINGREQ is accepted at any time.
	for i := 0; i < 5; i++ {
		time.Sleep(600 * time.Millisecond)
		c.ping() // [MQTT-3.1.2-23] [MQTT-3.12.4-1] after 3 s, well past 1.5 s
	}
	c.disconnect()
}

func TestSpecKeepAliveZero(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 0)
	c := b.connectWill(t, "forever", true, 0, "will/forever", "x", 0, false)
	c.expectSilence(2500 * time.Millisecond) // [MQTT-3.1.2-24] keep-alive 0: never timed out
	c.ping()
	watch.expectSilence(10 * time.Millisecond)
	c.disconnect()
}

func TestSpecPingresp(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "ping", true)
	for i := 0; i < 3; i++ {
		c.write(wiretest.Pingreq())
		fh, body := c.readRaw(5 * time.Second)
		require.Equal(t, wire.FixedHeader{Type: wire.PINGRESP}, fh) // [MQTT-3.12.4-1] D0 00
		require.Empty(t, body)                                      // [MQTT-3.12.4-1]
	}
}

func TestSpecDisconnect(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "#", 0)

	// The broker closes the connection itself after DISCONNECT.
	c := b.connectWill(t, "polite", true, 0, "will/polite", "no", 0, false)
	c.send(&wire.Disconnect{})
	c.expectClosed() // [MQTT-3.14.4-1]

	// Nothing sent after DISCONNECT is acted on, even in the same write.
	c = b.connectWill(t, "chatty", true, 0, "will/chatty", "no", 0, false)
	c.write(append(wiretest.Disconnect(), wiretest.Publish("after/disconnect", []byte("x"), 0, false, 0)...))
	c.expectClosed()
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.14.4-2] no PUBLISH [MQTT-3.14.4-3] no will

	// Reserved flags set: a protocol violation, not a DISCONNECT.
	c = b.connectWill(t, "rude", true, 0, "will/rude", "yes", 0, false)
	c.write([]byte{0xe1, 0x00})
	c.expectClosed()                        // [MQTT-3.14.1-1]
	watch.expectMessage("will/rude", "yes") // the will fires [MQTT-3.1.2-8]
}

// Reserved flag bits that do not match Table 2.2 close the connection.
func TestSpecReservedFlags(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for name, raw := range map[string][]byte{
		"pingreq C1":     {0xc1, 0x00},                                    // [MQTT-2.2.2-2]
		"puback 42":      {0x42, 0x02, 0x00, 0x01},                        // [MQTT-2.2.2-2]
		"pubrec 51":      {0x51, 0x02, 0x00, 0x01},                        // [MQTT-2.2.2-2]
		"pubcomp 78":     {0x78, 0x02, 0x00, 0x01},                        // [MQTT-2.2.2-2]
		"subscribe 80":   wiretest.Raw("subscribe_flags"),                 // [MQTT-3.8.1-1]
		"subscribe 83":   {0x83, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, // [MQTT-3.8.1-1]
		"unsubscribe A0": wiretest.Raw("unsubscribe_flags"),               // [MQTT-3.10.1-1]
		"unsubscribe AA": {0xaa, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'},       // [MQTT-3.10.1-1]
		"disconnect E1":  {0xe1, 0x00},                                    // [MQTT-3.14.1-1]
		"disconnect E8":  {0xe8, 0x00},                                    // [MQTT-3.14.1-1]
		"connect 12":     {0x12, 0x00},                                    // [MQTT-2.2.2-2]
		"publish dup q0": wiretest.Raw("publish_dup_qos0"),                // [MQTT-3.3.1-2]
		"publish qos3":   wiretest.Raw("publish_qos3"),                    // [MQTT-3.3.1-4]
		"type 0":         {0x00, 0x00},                                    // [MQTT-2.2.2-2]
		"type 15":        {0xf0, 0x00},                                    // [MQTT-2.2.2-2]
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := b.connect(t, "flags", true)
			c.write(raw)
			c.expectClosed() // [MQTT-2.2.2-2]
		})
	}
}

// Packet identifiers: never 0 on SUBSCRIBE, UNSUBSCRIBE and QoS>0 PUBLISH,
// absent at QoS 0, and echoed by the acknowledgements.
func TestSpecPacketIdentifiers(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for name, raw := range map[string][]byte{
		"publish qos1": wiretest.Raw("publish_qos1_zero_id"),
		"publish qos2": {0x34, 0x05, 0x00, 0x01, 't', 0x00, 0x00},
		"subscribe":    wiretest.Raw("subscribe_zero_id"),
		"unsubscribe":  wiretest.Raw("unsubscribe_zero_id"),
		"puback":       wiretest.Raw("puback_zero_id"),
		"pubrel":       wiretest.Raw("pubrel_zero_id"),
	} {
		t.Run("zero id "+name, func(t *testing.T) {
			c, _ := b.connect(t, "zero", true)
			c.write(raw)
			c.expectClosed() // [MQTT-2.3.1-1] enforced
		})
	}

	sub := b.subscriber(t, "sub", "ids/#", 2)
	pub, _ := b.connect(t, "pub", true)

	// QoS 0 delivery: the payload starts right after the topic.
	pub.publish("ids/0", "zero", 0, false, 0)
	fh, body := sub.readRaw(5 * time.Second)
	require.Equal(t, wire.PUBLISH, fh.Type)
	require.Equal(t, byte(0), fh.Flags>>1&3)
	require.Equal(t, append([]byte{0, 5}, "ids/0zero"...), body) // [MQTT-2.3.1-5] no packet id

	// Acks repeat the publisher's id.
	pub.publish("ids/1", "one", 1, false, 0x1234)
	require.Equal(t, uint16(0x1234), pub.expect(wire.PUBACK).(*wire.Puback).PacketID) // [MQTT-2.3.1-6]
	pub.publish("ids/2", "two", 2, false, 0xBEEF)
	require.Equal(t, uint16(0xBEEF), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID) // [MQTT-2.3.1-6]
	pub.send(&wire.Pubrel{PacketID: 0xBEEF})
	require.Equal(t, uint16(0xBEEF), pub.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)

	// The broker's own QoS>0 ids are never 0, and its PUBREL repeats the
	// id of the PUBLISH/PUBREC it answers.
	p := sub.expectPublish()
	require.Equal(t, "ids/1", string(p.Topic))
	require.NotZero(t, p.PacketID) // [MQTT-2.3.1-1]
	sub.send(&wire.Puback{PacketID: p.PacketID})
	p = sub.expectPublish()
	require.Equal(t, "ids/2", string(p.Topic))
	require.NotZero(t, p.PacketID) // [MQTT-2.3.1-1]
	sub.send(&wire.Pubrec{PacketID: p.PacketID})
	require.Equal(t, p.PacketID, sub.expect(wire.PUBREL).(*wire.Pubrel).PacketID) // [MQTT-2.3.1-6]
	sub.send(&wire.Pubcomp{PacketID: p.PacketID})
	sub.ping()
}

// A packet bigger than MaxPacketSize closes the connection.
func TestSpecMaxPacketSize(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{MaxPacketSize: 1024})
	watch := b.subscriber(t, "watch", "#", 0)
	c := b.connectWill(t, "big", true, 0, "will/big", "too big", 0, false)
	c.publish("big/ok", strings.Repeat("x", 1000), 0, false, 0)
	watch.expectMessage("big/ok", strings.Repeat("x", 1000))
	c.publish("big/no", strings.Repeat("x", 1025), 0, false, 0)
	c.expectClosed()
	watch.expectMessage("will/big", "too big") // closed as a protocol error: the will fires
	watch.expectSilence(200 * time.Millisecond)

	// The header alone is enough to refuse: a huge remaining length closes
	// at once, without waiting for the body.
	c, _ = b.connect(t, "huge", true)
	c.write([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	c.expectClosed()

	// An oversized CONNECT is closed with no CONNACK.
	c = b.dial(t)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "c", CleanSession: true,
		WillFlag: true, WillTopic: "w", WillMessage: make([]byte, 2000)})
	c.expectClosed()
}

// Protocol violations close the connection they arrived on, every time,
// and the broker keeps serving everyone else.
func TestSpecMalformedPacketsClose(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	bystander := b.subscriber(t, "bystander", "by/#", 0)
	for _, tc := range wiretest.Malformed {
		t.Run(tc.Name, func(t *testing.T) {
			c := b.dial(t)
			if tc.Raw[0]>>4 == byte(wire.CONNECT) {
				c.write(tc.Raw)
				if tc.ReturnCode != 0 {
					expectRefused(t, c, tc.ReturnCode)
					return
				}
				c.expectClosed() // [MQTT-4.8.0-1] [MQTT-3.1.4-1]
				return
			}
			c.connect(&wire.Connect{ClientID: "bad-" + tc.Name, CleanSession: true})
			c.write(tc.Raw)
			c.expectClosed() // [MQTT-4.8.0-1]
		})
	}
	// A second CONNECT after a good one is a violation too.
	c, _ := b.connect(t, "again", true)
	c.write(wiretest.Raw("connect_minimal"))
	c.expectClosed() // [MQTT-4.8.0-1] [MQTT-3.1.0-2]

	pub, _ := b.connect(t, "pub", true)
	pub.publish("by/x", "still here", 0, false, 0)
	bystander.expectMessage("by/x", "still here") // [MQTT-4.8.0-1] others unaffected
}

// A connection whose outbound side fails (a subscriber that stopped
// reading) is dropped on its own; publishers and other subscribers carry on.
func TestSpecStalledConnectionAffectsNoOne(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{WriteTimeout: 300 * time.Millisecond})
	stalled := b.subscriber(t, "stalled", "flood", 0)
	// A tiny receive buffer (which also stops autotuning) so that the
	// flood below fills the socket and the broker's writer blocks.
	require.NoError(t, stalled.conn.(*net.TCPConn).SetReadBuffer(4096))
	healthy := b.subscriber(t, "healthy", "flood", 1) // QoS 1: nothing may be dropped for it
	pub, _ := b.connect(t, "pub", true)

	payload := strings.Repeat("p", 60<<10)
	var wg sync.WaitGroup
	received := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			p, err := healthy.read(5 * time.Second)
			if err != nil {
				return
			}
			pub := p.(*wire.Publish)
			if pub.QoS == 1 {
				if _, err := healthy.conn.Write(wiretest.Puback(pub.PacketID)); err != nil {
					return
				}
			}
			if pub.Payload[0] == 'e' {
				return
			}
			received++
		}
	}()
	const n = 300 // 18 MB: more than any socket buffer holds
	for i := 1; i <= n; i++ {
		pub.publishAcked("flood", payload, false, uint16(i)) // [MQTT-4.8.0-2] the publisher is never held up
	}
	// The stalled subscriber is dropped by the write timeout: its reader
	// goroutine ends, so the broker's connection count falls to 2. (Its
	// socket is not drained here: with a 4 KB receive window that takes
	// seconds.)
	require.Eventually(t, func() bool { return b.Stats().Connections == 2 }, 10*time.Second, 20*time.Millisecond,
		"stalled subscriber still connected") // [MQTT-4.8.0-2]
	pub.publishAcked("flood", "end", false, 1)
	wg.Wait()
	require.Equal(t, n, received) // [MQTT-4.8.0-2] the healthy subscriber got everything
	pub.ping()
}
