package shard

// Conformance tests for MQTT 3.1.1 topics and subscriptions: UTF-8 strings
// (§1.5.3), PUBLISH topic names and delivery flags (§3.3), SUBSCRIBE and
// SUBACK (§3.8, §3.9), UNSUBSCRIBE (§3.10) and topic matching (§4.7). Each
// assertion names the statement of /work/shared/spec/mqtt-3.1.1-checklist.md
// it checks.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// markerTopic ends a sequence of publishes: messages from one publisher
// reach a subscriber in order, so once the marker arrives everything
// published before it has arrived too (or never will).
const markerTopic = "marker/end"

// watcher connects a clean client subscribed at QoS 0 to the filters and
// to markerTopic.
func watcher(t *testing.T, b *testBroker, id string, filters ...string) *rawClient {
	t.Helper()
	c, _ := b.connect(t, id, true)
	subs := []wire.Subscription{{Filter: markerTopic}}
	for _, f := range filters {
		subs = append(subs, wire.Subscription{Filter: f})
	}
	c.subscribe(1, subs...)
	return c
}

// untilMarker returns the topics of the PUBLISHes received before the
// marker, completing QoS 1/2 flows.
func untilMarker(t *testing.T, c *rawClient) []string {
	t.Helper()
	var topics []string
	for {
		p := nextPublish(t, c)
		if string(p.Topic) == markerTopic {
			return topics
		}
		topics = append(topics, string(p.Topic))
	}
}

// nextPublish returns the next PUBLISH and acknowledges it (PUBACK, or
// PUBREC for QoS 2). A PUBREL met on the way is answered with PUBCOMP, so
// QoS 2 handshakes may interleave with later deliveries.
func nextPublish(t *testing.T, c *rawClient) *wire.Publish {
	t.Helper()
	for {
		pkt, err := c.read(5 * time.Second)
		require.NoError(t, err, "waiting for PUBLISH")
		switch pkt := pkt.(type) {
		case *wire.Pubrel:
			c.send(&wire.Pubcomp{PacketID: pkt.PacketID})
		case *wire.Publish:
			switch pkt.QoS {
			case 1:
				c.send(&wire.Puback{PacketID: pkt.PacketID})
			case 2:
				c.send(&wire.Pubrec{PacketID: pkt.PacketID})
			}
			return pkt
		default:
			t.Fatalf("expected PUBLISH, got %#v", pkt)
		}
	}
}

// nextMessage is nextPublish that checks topic and payload.
func nextMessage(t *testing.T, c *rawClient, topic, payload string) *wire.Publish {
	t.Helper()
	p := nextPublish(t, c)
	require.Equal(t, topic, string(p.Topic))
	require.Equal(t, payload, string(p.Payload))
	return p
}

func TestSpecTopicUTF8Violations(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	all := watcher(t, b, "all", "#", "$SYS/#", "$bad/#")
	pubRaw := func(topic string, qos byte) []byte {
		return (&wire.Publish{Topic: []byte(topic), Payload: []byte("x"), QoS: qos, PacketID: 1}).Append(nil)
	}
	subRaw := func(filter string) []byte {
		return (&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: filter, QoS: 1}}}).Append(nil)
	}
	unsubRaw := func(filter string) []byte {
		return (&wire.Unsubscribe{PacketID: 1, Filters: []string{filter}}).Append(nil)
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"publish surrogate", pubRaw("bad/\xed\xa0\x80", 0)},                // [MQTT-1.5.3-1]
		{"publish overlong NUL", pubRaw("bad/\xc0\x80", 1)},                 // [MQTT-1.5.3-1]
		{"publish 0xFF", wiretest.Raw("publish_ff")},                        // [MQTT-3.3.2-1]
		{"publish truncated UTF-8", pubRaw("bad/\xe2\x82", 0)},              // [MQTT-3.3.2-1]
		{"publish topic overrun", []byte{0x30, 0x04, 0x00, 0x05, 'a', 'b'}}, // [MQTT-3.3.2-1]
		{"publish no topic", wiretest.Raw("publish_no_topic")},              // [MQTT-3.3.2-1]
		{"publish U+0000", wiretest.Raw("publish_null")},                    // [MQTT-1.5.3-2]
		{"publish U+0000 qos1", pubRaw("bad/a\x00b", 1)},                    // [MQTT-4.7.3-2]
		{"subscribe surrogate", subRaw("bad/\xed\xbf\xbf")},                 // [MQTT-1.5.3-1]
		{"subscribe overlong", subRaw("bad/\xc1\xbf/#")},                    // [MQTT-3.8.3-1]
		{"subscribe 0xFF", subRaw("\xff")},                                  // [MQTT-3.8.3-1]
		{"subscribe U+0000", subRaw("bad/\x00/#")},                          // [MQTT-1.5.3-2]
		{"subscribe U+0000 alone", subRaw("\x00")},                          // [MQTT-4.7.3-2]
		{"unsubscribe surrogate", unsubRaw("bad/\xed\xa0\x80")},             // [MQTT-1.5.3-1]
		{"unsubscribe 0xFF", unsubRaw("bad/\xff")},                          // [MQTT-3.10.3-1]
		{"unsubscribe U+0000", unsubRaw("bad/\x00")},                        // [MQTT-1.5.3-2]
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := b.connect(t, "utf8", true)
			c.write(tc.raw)
			c.expectClosed() // closed, no PUBACK/SUBACK/UNSUBACK: the statement on the line of the case
		})
	}
	pub, _ := b.connect(t, "pub", true)
	pub.publish(markerTopic, "", 0, false, 0)
	require.Empty(t, untilMarker(t, all)) // [MQTT-1.5.3-1] [MQTT-1.5.3-2] nothing was routed
}

func TestSpecTopicBOMKept(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	plain := watcher(t, b, "plain", "a")
	bom := watcher(t, b, "bom", "\uFEFFa")
	pub, _ := b.connect(t, "pub", true)
	pub.publish("a", "1", 0, false, 0)
	pub.publish("\uFEFFa", "2", 0, false, 0)
	pub.publish(markerTopic, "", 0, false, 0)

	p := bom.expectPublish()
	require.Equal(t, []byte{0xEF, 0xBB, 0xBF, 'a'}, p.Topic) // [MQTT-1.5.3-3] U+FEFF kept, not stripped
	require.Equal(t, "2", string(p.Payload))                 // [MQTT-1.5.3-3] "a" did not match "\uFEFFa"
	require.Empty(t, untilMarker(t, bom))
	require.Equal(t, []string{"a"}, untilMarker(t, plain)) // [MQTT-1.5.3-3] "\uFEFFa" did not match "a"
}

func TestSpecPublishTopicWildcards(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	all := watcher(t, b, "all", "#")
	for _, topic := range []string{"a/+", "+", "#", "a/#", "a/b#", "a+", "+/b"} {
		for qos := byte(0); qos <= 2; qos++ {
			c, _ := b.connect(t, "wild", true)
			c.publish(topic, "x", qos, false, 1)
			c.expectClosed() // [MQTT-3.3.2-2] [MQTT-4.7.1-1] closed, no PUBACK/PUBREC
		}
	}
	pub, _ := b.connect(t, "pub", true)
	pub.publish(markerTopic, "", 0, false, 0)
	require.Empty(t, untilMarker(t, all)) // [MQTT-3.3.2-2] nothing delivered
}

func TestSpecTopicEmpty(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for name, raw := range map[string][]byte{
		"publish":      wiretest.Raw("publish_empty_topic"),
		"publish qos1": {0x32, 0x04, 0x00, 0x00, 0x00, 0x01},
		"subscribe":    {0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00},
		"unsubscribe":  {0xa2, 0x04, 0x00, 0x01, 0x00, 0x00},
		"subscribe second filter empty": wiretest.SubscribeMany(1,
			wire.Subscription{Filter: "ok"}, wire.Subscription{Filter: ""}),
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := b.connect(t, "empty", true)
			c.write(raw)
			c.expectClosed() // [MQTT-4.7.3-1]
		})
	}
}

func TestSpecTopicMaxLength(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	topic := strings.Repeat("t", 32767) + "/" + strings.Repeat("é", 16383) + "x"
	require.Len(t, topic, 65535)
	exact, _ := b.connect(t, "exact", true)
	require.Equal(t, []byte{1}, exact.subscribe(1, wire.Subscription{Filter: topic, QoS: 1}).ReturnCodes) // [MQTT-4.7.3-3]
	wild := b.subscriber(t, "wild", strings.Repeat("t", 32767)+"/+", 1)
	pub, _ := b.connect(t, "pub", true)
	pub.publishAcked(topic, "longest", true, 1)                                  // [MQTT-4.7.3-3] accepted
	require.Equal(t, topic, string(exact.expectMessage(topic, "longest").Topic)) // [MQTT-4.7.3-3] end to end
	wild.expectMessage(topic, "longest")                                         // [MQTT-4.7.3-3]
	late := b.subscriber(t, "late", "#", 0)
	require.True(t, late.expectMessage(topic, "longest").Retain) // [MQTT-4.7.3-3] retained too
	require.Equal(t, uint16(2), exact.unsubscribe(2, topic).PacketID)
}

// Topics published by the matching tests.
var matchTopics = []string{
	"sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
	"/finance", "finance", "/", "$foo/bar", "$foo", "Sport/tennis", "sport/tennis ", "sport /tennis",
	"ACCOUNTS", "Accounts", "caf\u00e9", "cafe\u0301", "a//b",
}
var matchAll = []string{
	"sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
	"/finance", "finance", "/", "Sport/tennis", "sport/tennis ", "sport /tennis",
	"ACCOUNTS", "Accounts", "caf\u00e9", "cafe\u0301", "a//b",
}

// matchCases: filter -> the topics of matchTopics it matches, in publish order.
var matchCases = []struct {
	filter string
	want   []string
	note   string
}{
	// a/# also matches a
	{"sport/#", []string{"sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis "}, "[MQTT-4.7.1-2]"},
	{"sport/tennis/player1/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking"}, "[MQTT-4.7.1-2]"},
	{"sport/tennis/+", []string{"sport/tennis/player1"}, "[MQTT-4.7.1-3]"},
	// a/+ matches a/ but not a
	{"sport/+", []string{"sport/", "sport/tennis", "sport/tennis "}, "[MQTT-4.7.1-3]"},
	// not $foo
	{"+", []string{"sport", "finance", "ACCOUNTS", "Accounts", "caf\u00e9", "cafe\u0301"}, "[MQTT-4.7.1-3] [MQTT-4.7.2-1]"},
	// not $foo/bar; /finance matches +/+ and /+ but not +
	{"+/+", []string{"sport/", "sport/tennis", "/finance", "/", "Sport/tennis", "sport/tennis ", "sport /tennis"}, "[MQTT-4.7.1-3] [MQTT-4.7.2-1]"},
	{"/+", []string{"/finance", "/"}, "[MQTT-4.7.1-3]"},
	{"+/tennis/#", []string{"sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "Sport/tennis", "sport /tennis"}, "[MQTT-4.7.1-3]"},
	{"+/+/#", []string{"sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "/finance", "/", "Sport/tennis", "sport/tennis ", "sport /tennis", "a//b"}, "[MQTT-4.7.1-3]"},
	// + matches an empty level
	{"a/+/b", []string{"a//b"}, "[MQTT-4.7.1-3]"},
	// everything but $foo and $foo/bar
	{"#", matchAll, "[MQTT-4.7.2-1]"},
	{"+/bar", nil, "[MQTT-4.7.2-1]"},
	// explicit $ filters match $ topics
	{"$foo/#", []string{"$foo/bar", "$foo"}, "[MQTT-4.7.2-1]"},
	{"$foo/+", []string{"$foo/bar"}, "[MQTT-4.7.2-1]"},
	// exact matching: case, spaces, Unicode normalisation
	{"Sport/#", []string{"Sport/tennis"}, "[MQTT-4.7.3-4]"},
	{"sport/tennis", []string{"sport/tennis"}, "[MQTT-4.7.3-4]"},
	{"Accounts", []string{"Accounts"}, "[MQTT-4.7.3-4]"},
	{"caf\u00e9", []string{"caf\u00e9"}, "[MQTT-4.7.3-4]"},
	{"cafe\u0301", []string{"cafe\u0301"}, "[MQTT-4.7.3-4]"},
}

func TestSpecTopicMatching(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	topics, cases := matchTopics, matchCases
	subs := make([]*rawClient, len(cases))
	for i, tc := range cases {
		subs[i] = watcher(t, b, fmt.Sprintf("m%d", i), tc.filter)
	}
	pub, _ := b.connect(t, "pub", true)
	for _, topic := range topics {
		pub.publish(topic, "x", 0, false, 0)
	}
	pub.publish(markerTopic, "", 0, false, 0)
	for i, tc := range cases {
		got := untilMarker(t, subs[i])
		// Exactly the matching topics, each once: the statements in tc.note
		// [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1] [MQTT-4.7.3-4].
		require.Equal(t, tc.want, got, "filter %q %s", tc.filter, tc.note)
		for _, topic := range got {
			// Delivered names are the published names and match the filter.
			require.True(t, slices.Contains(topics, topic))    // [MQTT-3.3.2-3]
			require.True(t, wire.MatchTopic(tc.filter, topic)) // [MQTT-3.3.2-3]
		}
	}
}

func TestSpecTopicFilterSyntax(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for _, f := range []string{"a#", "a/#/b", "#/", "#/a", "a/b#", "##", "a/##"} {
		c, _ := b.connect(t, "badhash", true)
		c.write(wiretest.Subscribe(1, f, 0))
		c.expectClosed() // [MQTT-4.7.1-2] malformed filter: close, not SUBACK 0x80
	}
	for _, f := range []string{"a+/b", "a/+b", "+a", "++", "a/b+", "+#", "#+"} {
		c, _ := b.connect(t, "badplus", true)
		c.write(wiretest.Subscribe(1, f, 0))
		c.expectClosed() // [MQTT-4.7.1-3]
	}
	c, _ := b.connect(t, "good", true)
	filters := []string{"#", "a/#", "/#", "+", "+/+/#", "a/+", "/+", "+/", "+/b/+", "/", "//"}
	subs := make([]wire.Subscription, len(filters))
	for i, f := range filters {
		subs[i] = wire.Subscription{Filter: f, QoS: byte(i % 3)}
	}
	sa := c.subscribe(9, subs...)
	for i := range filters {
		require.Equal(t, byte(i%3), sa.ReturnCodes[i], filters[i]) // [MQTT-4.7.1-2] [MQTT-4.7.1-3] accepted
	}
	// Unsubscribe checks the same syntax.
	c.write(wiretest.Unsubscribe(2, "a/#/b"))
	c.expectClosed() // [MQTT-4.7.1-2]
}

// Client publishes to $SYS/ are not routed (the prefix is reserved for the
// broker); other $ topics are.
func TestSpecSysTopicsReserved(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	sys := watcher(t, b, "sys", "$SYS/#", "$SYS")
	dollar := watcher(t, b, "dollar", "$SYSTEM/#", "$foo/#")
	all := watcher(t, b, "all", "#")
	pub, _ := b.connect(t, "pub", true)
	pub.publish("$SYS/broker/uptime", "fake", 0, true, 0)
	pub.publishAcked("$SYS/broker/clients", "fake", false, 1) // acknowledged normally, then dropped
	pub.publish("$SYS", "fake", 0, false, 0)
	pub.publish("$SYSTEM/x", "ok", 0, false, 0)
	pub.publish("$foo/bar", "ok", 0, false, 0)
	pub.publish(markerTopic, "", 0, false, 0)
	require.Empty(t, untilMarker(t, sys))                                       // $SYS is not routed from clients
	require.Equal(t, []string{"$SYSTEM/x", "$foo/bar"}, untilMarker(t, dollar)) // other $ topics are
	require.Empty(t, untilMarker(t, all))                                       // [MQTT-4.7.2-1]
	late := b.subscriber(t, "late", "$SYS/#", 0)
	late.expectSilence(200 * time.Millisecond) // nothing retained under $SYS either
}

func TestSpecSubscribeAck(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "ack", true)
	c.write(wiretest.Subscribe(0xBEEF, "a/b", 1))
	fh, body := c.readRaw(5 * time.Second)
	require.Equal(t, wire.SUBACK, fh.Type) // [MQTT-3.8.4-1]
	require.Equal(t, byte(0), fh.Flags)
	require.Equal(t, []byte{0xBE, 0xEF, 0x01}, body) // [MQTT-3.8.4-2] [MQTT-2.3.1-7]
	for id := uint16(1); id <= 20; id++ {
		sa := c.subscribe(id, wire.Subscription{Filter: fmt.Sprintf("s/%d", id%4), QoS: byte(id % 3)})
		require.Equal(t, id, sa.PacketID)                      // [MQTT-3.8.4-1] [MQTT-3.8.4-2] every SUBSCRIBE answered
		require.Equal(t, []byte{byte(id % 3)}, sa.ReturnCodes) // [MQTT-3.9.3-2]
	}
	// Unsubscribe acks repeat the id too.
	c.write(wiretest.Unsubscribe(7, "a/b"))
	fh, body = c.readRaw(5 * time.Second)
	require.Equal(t, wire.FixedHeader{Type: wire.UNSUBACK, RemainingLength: 2}, fh)
	require.Equal(t, []byte{0x00, 0x07}, body) // [MQTT-3.10.4-4] [MQTT-2.3.1-7]
}

func TestSpecSubscribeWildcardsGranted(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "wild", true)
	sa := c.subscribe(1,
		wire.Subscription{Filter: "a/#", QoS: 2},
		wire.Subscription{Filter: "+/b", QoS: 1},
		wire.Subscription{Filter: "#", QoS: 0},
		wire.Subscription{Filter: "+", QoS: 2})
	// The broker supports wildcards: none is refused with 0x80.
	require.Equal(t, []byte{2, 1, 0, 2}, sa.ReturnCodes) // [MQTT-3.8.3-2]
	pub, _ := b.connect(t, "pub", true)
	pub.publish("x/b", "w", 2, false, 1)
	pub.expect(wire.PUBREC)
	pub.send(&wire.Pubrel{PacketID: 1})
	pub.expect(wire.PUBCOMP)
	p := c.expectMessage("x/b", "w")
	require.Equal(t, byte(1), p.QoS) // [MQTT-3.8.3-2] the wildcard subscription is active
}

func TestSpecSubscribeMalformed(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for name, raw := range map[string][]byte{
		"flags 0x80":          wiretest.Raw("subscribe_flags"),                                        // [MQTT-3.8.1-1]
		"flags 0x8A":          {0x8a, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00},                        // [MQTT-3.8.1-1]
		"empty payload":       wiretest.Raw("subscribe_empty"),                                        // [MQTT-3.8.3-3]
		"qos 3":               {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03},                        // [MQTT-3.8.3-4]
		"qos byte 0x81":       {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x81},                        // [MQTT-3.8.3-4]
		"qos byte 0x40":       {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x40},                        // [MQTT-3.8.3-4]
		"qos 3 after a good":  {0x82, 0x0a, 0x00, 0x01, 0x00, 0x01, 'a', 0x01, 0x00, 0x01, 'b', 0x03}, // [MQTT-3.8.3-4]
		"qos byte missing":    {0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'},                              // [MQTT-3.8.3-1]
		"filter overrun":      {0x82, 0x06, 0x00, 0x01, 0x00, 0x09, 'a', 0x00},                        // [MQTT-3.8.3-1]
		"filter invalid utf8": wiretest.Subscribe(1, "a/\xed\xa0\x80", 0),                             // [MQTT-3.8.3-1]
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := b.connect(t, "badsub", true)
			c.write(raw)
			c.expectClosed() // closed with no SUBACK (not even 0x80): the statement on the line of the case
		})
	}
	c, _ := b.connect(t, "after", true)
	c.ping()
}

// Subscribing again to an identical filter replaces the subscription,
// re-sends the retained message and loses nothing in between.
func TestSpecSubscribeReplace(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	pub.publishAcked("r/t", "retained", true, 1)

	c, _ := b.connect(t, "resub", true)
	require.Equal(t, []byte{0, 0}, c.subscribe(1,
		wire.Subscription{Filter: "r/t", QoS: 0},
		wire.Subscription{Filter: markerTopic, QoS: 0}).ReturnCodes)
	p := c.expectMessage("r/t", "retained")
	require.True(t, p.Retain)
	require.Equal(t, byte(0), p.QoS)

	// Re-subscribe in the middle of a stream of messages.
	const n = 40
	for i := 1; i <= n/2; i++ {
		pub.publishAcked("r/t", fmt.Sprint(i), false, uint16(i+1))
	}
	c.send(&wire.Subscribe{PacketID: 2, Subscriptions: []wire.Subscription{{Filter: "r/t", QoS: 1}}})
	for i := n/2 + 1; i <= n; i++ {
		pub.publishAcked("r/t", fmt.Sprint(i), false, uint16(i+1))
	}
	pub.publish(markerTopic, "", 0, false, 0)

	var live []string
	retainedAgain, sawSuback := 0, false
	lastQoS := byte(0)
	// Where the SUBACK and the re-sent retained message fall among the
	// stream depends on scheduling; read until all three have arrived.
	for done := false; !done || !sawSuback || retainedAgain == 0; {
		pkt, err := c.read(5 * time.Second)
		require.NoError(t, err)
		switch pkt := pkt.(type) {
		case *wire.Suback:
			require.Equal(t, uint16(2), pkt.PacketID)
			require.Equal(t, []byte{1}, pkt.ReturnCodes) // [MQTT-3.8.4-3] the QoS may change
			sawSuback = true
		case *wire.Publish:
			c.ack(pkt)
			switch {
			case string(pkt.Topic) == markerTopic:
				done = true
			case pkt.Retain:
				require.True(t, sawSuback)
				require.Equal(t, "retained", string(pkt.Payload))
				require.Equal(t, byte(1), pkt.QoS) // [MQTT-3.8.4-3] retained re-sent at the new QoS
				retainedAgain++
			default:
				require.GreaterOrEqual(t, pkt.QoS, lastQoS)
				lastQoS = pkt.QoS
				live = append(live, string(pkt.Payload))
			}
		default:
			t.Fatalf("unexpected %#v", pkt)
		}
	}
	require.True(t, sawSuback)
	require.Equal(t, 1, retainedAgain) // [MQTT-3.8.4-3] matching retained messages re-sent
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint(i + 1)
	}
	require.Equal(t, want, live) // [MQTT-3.8.4-3] flow not interrupted: none lost, none doubled
	pub.publishAcked("r/t", "one copy", false, 101)
	pub.publish(markerTopic, "", 0, false, 0)
	p = c.expectMessage("r/t", "one copy")
	require.Equal(t, byte(1), p.QoS)    // [MQTT-3.8.4-3] later messages at the new QoS; replaced, not added
	require.Empty(t, untilMarker(t, c)) // [MQTT-3.8.4-3]
}

func TestSpecSubscribeMany(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "many", true)
	sa := c.subscribe(5,
		wire.Subscription{Filter: "m/2", QoS: 2},
		wire.Subscription{Filter: "m/0", QoS: 0},
		wire.Subscription{Filter: "m/1", QoS: 1},
		wire.Subscription{Filter: markerTopic, QoS: 0})
	require.Equal(t, uint16(5), sa.PacketID)             // [MQTT-3.8.4-4] one SUBACK
	require.Equal(t, []byte{2, 0, 1, 0}, sa.ReturnCodes) // [MQTT-3.8.4-5] [MQTT-3.9.3-1] one code per filter, in order
	c.ping()                                             // [MQTT-3.8.4-4] and only one
	pub, _ := b.connect(t, "pub", true)
	for _, topic := range []string{"m/0", "m/1", "m/2", "m/3"} {
		pub.publishAcked(topic, "x", false, 1)
	}
	pub.publish(markerTopic, "", 0, false, 0)
	require.Equal(t, []string{"m/0", "m/1", "m/2"}, untilMarker(t, c)) // [MQTT-3.8.4-4] all three active

	// With a subscription limit, refused filters get 0x80 in their place.
	lim := runBroker(t, Config{MaxSubscriptions: 2})
	c, _ = lim.connect(t, "limited", true)
	sa = c.subscribe(1,
		wire.Subscription{Filter: "l/a", QoS: 2},
		wire.Subscription{Filter: "l/b", QoS: 1},
		wire.Subscription{Filter: "l/c", QoS: 0})
	require.Equal(t, []byte{2, 1, wire.SubackFailure}, sa.ReturnCodes) // [MQTT-3.9.3-1] [MQTT-3.8.4-5]
	sa = c.subscribe(2,
		wire.Subscription{Filter: "l/d", QoS: 1},
		wire.Subscription{Filter: "l/a", QoS: 0},
		wire.Subscription{Filter: "l/e", QoS: 2},
		wire.Subscription{Filter: "l/b", QoS: 2})
	require.Equal(t, []byte{wire.SubackFailure, 0, wire.SubackFailure, 2}, sa.ReturnCodes) // [MQTT-3.9.3-1]
	for _, rc := range sa.ReturnCodes {
		require.Contains(t, []byte{0, 1, 2, wire.SubackFailure}, rc) // [MQTT-3.9.3-2]
	}
	pub, _ = lim.connect(t, "pub", true)
	for _, topic := range []string{"l/a", "l/b", "l/c", "l/d", "l/e"} {
		pub.publish(topic, "x", 2, false, 1)
		pub.expect(wire.PUBREC)
		pub.send(&wire.Pubrel{PacketID: 1})
		pub.expect(wire.PUBCOMP)
	}
	require.Equal(t, byte(0), c.expectMessage("l/a", "x").QoS) // replaced at QoS 0
	require.Equal(t, byte(2), c.expectMessage("l/b", "x").QoS)
	c.expectSilence(200 * time.Millisecond) // refused filters are not active
}

func TestSpecGrantedQoS(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	subs := make([]*rawClient, 3)
	for q := range subs {
		subs[q] = b.subscriber(t, fmt.Sprintf("q%d", q), "g/t", byte(q))
	}
	pub, _ := b.connect(t, "pub", true)
	for pq := byte(0); pq <= 2; pq++ {
		switch pq {
		case 0:
			pub.publish("g/t", "p0", 0, false, 0)
		case 1:
			pub.publishAcked("g/t", "p1", false, 1)
		case 2:
			pub.publish("g/t", "p2", 2, false, 2)
			pub.expect(wire.PUBREC)
			pub.send(&wire.Pubrel{PacketID: 2})
			pub.expect(wire.PUBCOMP)
		}
		for sq, s := range subs {
			p := s.expectMessage("g/t", fmt.Sprintf("p%d", pq))
			require.Equal(t, min(pq, byte(sq)), p.QoS, "published %d, granted %d", pq, sq) // [MQTT-3.8.4-6]
		}
	}
}

func TestSpecOverlappingSubscriptions(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "overlap", true)
	c.subscribe(1,
		wire.Subscription{Filter: "a/#", QoS: 0},
		wire.Subscription{Filter: "a/b", QoS: 2},
		wire.Subscription{Filter: "+/b", QoS: 1},
		wire.Subscription{Filter: markerTopic, QoS: 0})
	pub, _ := b.connect(t, "pub", true)
	pub.publish("a/b", "q2", 2, false, 1)
	pub.expect(wire.PUBREC)
	pub.send(&wire.Pubrel{PacketID: 1})
	pub.expect(wire.PUBCOMP)
	pub.publishAcked("a/b", "q1", false, 2)
	pub.publishAcked("a/c", "only a/#", false, 3)
	pub.publishAcked("x/b", "only +/b", false, 4)
	pub.publish(markerTopic, "", 0, false, 0)

	require.Equal(t, byte(2), nextMessage(t, c, "a/b", "q2").QoS)       // [MQTT-3.3.5-1] one copy, highest QoS
	require.Equal(t, byte(1), nextMessage(t, c, "a/b", "q1").QoS)       // [MQTT-3.3.5-1] min(published, highest granted)
	require.Equal(t, byte(0), nextMessage(t, c, "a/c", "only a/#").QoS) // [MQTT-3.3.5-1]
	require.Equal(t, byte(1), nextMessage(t, c, "x/b", "only +/b").QoS) // [MQTT-3.3.5-1]
	require.Empty(t, untilMarker(t, c))                                 // [MQTT-3.3.5-1] no second copies
}

// DUP on outgoing PUBLISHes is the broker's own: never copied from the
// inbound packet.
func TestSpecOutboundDupFlag(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	s0 := b.subscriber(t, "s0", "d/t", 0)
	s1 := b.subscriber(t, "s1", "d/t", 1)
	s2 := b.subscriber(t, "s2", "d/t", 2)
	pub, _ := b.connect(t, "pub", true)
	pub.write(wiretest.PublishDup("d/t", []byte("dup1"), 1, false, 9))
	pub.expect(wire.PUBACK)
	pub.write(wiretest.PublishDup("d/t", []byte("dup2"), 2, false, 10))
	pub.expect(wire.PUBREC)
	pub.send(&wire.Pubrel{PacketID: 10})
	pub.expect(wire.PUBCOMP)

	for range 2 {
		fh, _ := s0.readRaw(5 * time.Second)
		require.Equal(t, byte(0x00), fh.Flags) // [MQTT-3.3.1-2] QoS 0: DUP 0, first byte 0x30
	}
	fh, body := s1.readRaw(5 * time.Second)
	require.Equal(t, byte(0x02), fh.Flags) // [MQTT-3.3.1-3] first delivery: DUP 0
	s1.send(&wire.Puback{PacketID: uint16(body[5])<<8 | uint16(body[6])})
	fh, _ = s1.readRaw(5 * time.Second)
	require.Equal(t, byte(0x02), fh.Flags) // [MQTT-3.3.1-3] QoS 2 published, QoS 1 granted: DUP 0
	p := s2.expectMessage("d/t", "dup1")
	require.False(t, p.Dup) // [MQTT-3.3.1-3]
	p = s2.expectMessage("d/t", "dup2")
	require.False(t, p.Dup) // [MQTT-3.3.1-3]
}

func TestSpecUnsubscribe(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	publishAll := func(topics ...string) {
		for _, topic := range topics {
			pub.publish(topic, "x", 0, false, 0)
		}
		pub.publish(markerTopic, "", 0, false, 0)
	}

	// Filters compare literally: only an identical filter is removed.
	c := watcher(t, b, "literal", "a/b", "x/+")
	for i, f := range []string{"a/+", "+/b", "#", "A/b", "a/b/", "x/y", "x/#"} {
		require.Equal(t, uint16(10+i), c.unsubscribe(uint16(10+i), f).PacketID) // [MQTT-3.10.4-5] UNSUBACK though nothing was removed
	}
	publishAll("a/b", "x/y")
	require.Equal(t, []string{"a/b", "x/y"}, untilMarker(t, c)) // [MQTT-3.10.4-1]
	require.Equal(t, uint16(20), c.unsubscribe(20, "a/b").PacketID)
	publishAll("a/b", "x/y")
	require.Equal(t, []string{"x/y"}, untilMarker(t, c)) // [MQTT-3.10.4-2] no new messages for it

	// Several filters in one UNSUBSCRIBE: one UNSUBACK, all gone.
	m := watcher(t, b, "multi", "u/1", "u/2", "u/+")
	m.send(&wire.Unsubscribe{PacketID: 7, Filters: []string{"u/1", "nope", "u/2", "u/+"}})
	require.Equal(t, uint16(7), m.expect(wire.UNSUBACK).(*wire.Unsuback).PacketID) // [MQTT-3.10.4-4] [MQTT-3.10.4-6]
	m.ping()                                                                       // [MQTT-3.10.4-6] a single UNSUBACK
	publishAll("u/1", "u/2", "u/3")
	require.Empty(t, untilMarker(t, m)) // [MQTT-3.10.4-6] [MQTT-3.10.4-2]

	// An unknown filter on a session without subscriptions.
	e, _ := b.connect(t, "empty", true)
	require.Equal(t, uint16(3), e.unsubscribe(3, "never/subscribed").PacketID) // [MQTT-3.10.4-5]
}

// Deliveries already started when the subscription goes are completed.
func TestSpecUnsubscribeCompletesInflight(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	c, _ := b.connect(t, "inflight", false)
	c.subscribe(1, wire.Subscription{Filter: "i/2", QoS: 2}, wire.Subscription{Filter: "i/1", QoS: 1})
	pub, _ := b.connect(t, "pub", true)
	pub.publish("i/2", "two", 2, false, 1)
	pub.expect(wire.PUBREC)
	pub.send(&wire.Pubrel{PacketID: 1})
	pub.expect(wire.PUBCOMP)
	pub.publishAcked("i/1", "one", false, 2)
	p2 := c.expectPublish()
	require.Equal(t, "two", string(p2.Payload))
	p1 := c.expectPublish()
	require.Equal(t, "one", string(p1.Payload))

	c.unsubscribe(2, "i/2", "i/1")
	c.send(&wire.Pubrec{PacketID: p2.PacketID})
	require.Equal(t, p2.PacketID, c.expect(wire.PUBREL).(*wire.Pubrel).PacketID) // [MQTT-3.10.4-3]
	c.send(&wire.Pubcomp{PacketID: p2.PacketID})
	c.send(&wire.Puback{PacketID: p1.PacketID})
	c.ping()
	pub.publishAcked("i/1", "after", false, 3)
	c.expectSilence(200 * time.Millisecond) // [MQTT-3.10.4-2]
	c.kill()
	// Both flows were completed: nothing is resent on resume.
	c, ack := b.connect(t, "inflight", false)
	require.True(t, ack.SessionPresent)
	c.expectSilence(200 * time.Millisecond) // [MQTT-3.10.4-3]
}

func TestSpecUnsubscribeMalformed(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	for name, raw := range map[string][]byte{
		"flags 0xA0":     wiretest.Raw("unsubscribe_flags"),              // [MQTT-3.10.1-1]
		"flags 0xA3":     {0xa3, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'},      // [MQTT-3.10.1-1]
		"empty payload":  wiretest.Raw("unsubscribe_empty"),              // [MQTT-3.10.3-2]
		"bad utf8":       wiretest.Unsubscribe(1, "a/\xc0\xaf"),          // [MQTT-3.10.3-1]
		"filter overrun": {0xa2, 0x06, 0x00, 0x01, 0x00, 0x05, 'a', 'b'}, // [MQTT-3.10.3-1]
		"stray byte":     {0xa2, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 'b'}, // [MQTT-3.10.3-1] filters laid end to end
	} {
		t.Run(name, func(t *testing.T) {
			c := watcher(t, b, "badunsub", "keep")
			c.write(raw)
			c.expectClosed() // closed, no UNSUBACK: the statement on the line of the case
		})
	}
}
