package shard

// Conformance tests for MQTT 3.1.1 retained messages (§3.3.1.3) and will
// messages (§3.1.2.5-3.1.2.7, §3.14.4). Each assertion names the statement
// of /work/shared/spec/mqtt-3.1.1-checklist.md it checks.

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// publishQoS publishes at any QoS and completes the publisher's side of
// the flow, so the broker has routed the message when it returns.
func publishQoS(c *rawClient, topic, payload string, qos byte, retain bool, id uint16) {
	c.t.Helper()
	c.publish(topic, payload, qos, retain, id)
	switch qos {
	case 1:
		c.expect(wire.PUBACK)
	case 2:
		c.expect(wire.PUBREC)
		c.send(&wire.Pubrel{PacketID: id})
		c.expect(wire.PUBCOMP)
	}
}

func TestSpecRetainedStoredWithQoS(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	publishQoS(pub, "r/q0", "zero", 0, true, 1)
	publishQoS(pub, "r/q1", "one", 1, true, 2)
	publishQoS(pub, "r/q2", "two", 2, true, 3)
	pub.ping()
	for granted := byte(0); granted <= 2; granted++ {
		c, _ := b.connect(t, fmt.Sprintf("late%d", granted), true)
		for _, topic := range []string{"r/q0", "r/q1", "r/q2"} {
			c.subscribe(1, wire.Subscription{Filter: topic, QoS: granted})
			stored := topic[len(topic)-1] - '0'
			p := c.expectPublish()
			require.Equal(t, topic, string(p.Topic))
			require.True(t, p.Retain)                            // [MQTT-3.3.1-8]
			require.Equal(t, min(stored, granted), p.QoS, topic) // [MQTT-3.3.1-5] stored with its QoS
			c.ack(p)
		}
	}
}

func TestSpecRetainedOnSubscribe(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	for _, topic := range []string{"a/1", "a/2", "a/2/x", "b/1"} {
		publishQoS(pub, topic, "r:"+topic, 1, true, 1)
	}
	c, _ := b.connect(t, "sub", true)
	c.subscribe(1, wire.Subscription{Filter: "a/+", QoS: 1})
	var got []string
	for range 2 {
		p := c.expectPublish()
		require.True(t, p.Retain) // [MQTT-3.3.1-8]
		require.Equal(t, "r:"+string(p.Topic), string(p.Payload))
		got = append(got, string(p.Topic))
		c.ack(p)
	}
	sort.Strings(got)
	require.Equal(t, []string{"a/1", "a/2"}, got) // [MQTT-3.3.1-6] every matching topic, at once
	c.expectSilence(200 * time.Millisecond)       // [MQTT-3.3.1-6] and nothing else
}

func TestSpecRetainedReplace(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	publishQoS(pub, "r/t", "old", 1, true, 1)
	publishQoS(pub, "r/t", "new", 0, true, 2)
	pub.ping()
	c, _ := b.connect(t, "sub", true)
	c.subscribe(1, wire.Subscription{Filter: "r/t", QoS: 2})
	p := c.expectMessage("r/t", "new") // [MQTT-3.3.1-7] the QoS 0 message replaced the QoS 1 one
	require.Equal(t, byte(0), p.QoS)   // [MQTT-3.3.1-7]
	require.True(t, p.Retain)
	c.expectSilence(200 * time.Millisecond) // [MQTT-3.3.1-7] "old" is gone
}

func TestSpecRetainedLiveCopyFlag(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	live := b.subscriber(t, "live", "r/#", 2)
	pub, _ := b.connect(t, "pub", true)
	for qos := byte(0); qos <= 2; qos++ {
		publishQoS(pub, "r/t", fmt.Sprint(qos), qos, true, 1)
		p := live.expectMessage("r/t", fmt.Sprint(qos))
		require.False(t, p.Retain) // [MQTT-3.3.1-9] existing subscription: RETAIN=0
		require.Equal(t, qos, p.QoS)
	}
	// A new subscriber gets the stored copy with RETAIN=1.
	late := b.subscriber(t, "late", "r/#", 2)
	p := late.expectMessage("r/t", "2")
	require.True(t, p.Retain) // [MQTT-3.3.1-8]
	// Re-subscribing re-sends it with RETAIN=1; live traffic stays RETAIN=0.
	live.subscribe(2, wire.Subscription{Filter: "r/#", QoS: 2})
	require.True(t, live.expectMessage("r/t", "2").Retain) // [MQTT-3.3.1-8]
	publishQoS(pub, "r/t", "3", 1, true, 2)
	require.False(t, live.expectMessage("r/t", "3").Retain) // [MQTT-3.3.1-9]
	require.False(t, late.expectMessage("r/t", "3").Retain) // [MQTT-3.3.1-9]
}

func TestSpecRetainedEmptyPayloadDeletes(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	live := b.subscriber(t, "live", "r/#", 1)
	pub, _ := b.connect(t, "pub", true)
	publishQoS(pub, "r/t", "keep me?", 1, true, 1)
	live.expectMessage("r/t", "keep me?")
	for qos := byte(0); qos <= 2; qos++ {
		publishQoS(pub, "r/t", "", qos, true, 2)
		p := live.expectMessage("r/t", "") // [MQTT-3.3.1-10] delivered normally to current subscribers
		require.Empty(t, p.Payload)
		require.Equal(t, min(qos, 1), p.QoS) // [MQTT-3.3.1-10]
		// A new subscriber receives nothing: the retained message is gone and
		// the empty one was not stored.
		late := b.subscriber(t, fmt.Sprintf("late%d", qos), "r/#", 1)
		late.expectSilence(200 * time.Millisecond) // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
	}
	// An empty retained message on a topic that holds none stores nothing.
	publishQoS(pub, "r/never", "", 1, true, 3)
	live.expectMessage("r/never", "")
	late := b.subscriber(t, "late-never", "r/never", 1)
	late.expectSilence(200 * time.Millisecond) // [MQTT-3.3.1-11]
	require.Zero(t, b.Stats().Retained)        // [MQTT-3.3.1-11]
}

func TestSpecRetainedUntouchedByPlainPublish(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	publishQoS(pub, "r/t", "x", 1, true, 1)
	live := b.subscriber(t, "live", "r/t", 1)
	live.expectMessage("r/t", "x")
	publishQoS(pub, "r/t", "y", 1, false, 2)
	publishQoS(pub, "r/t", "", 0, false, 3) // not retained: does not delete either
	live.expectMessage("r/t", "y")
	live.expectMessage("r/t", "")
	late := b.subscriber(t, "late", "r/t", 1)
	p := late.expectMessage("r/t", "x") // [MQTT-3.3.1-12] neither stored nor removed
	require.True(t, p.Retain)
	late.expectSilence(200 * time.Millisecond) // [MQTT-3.3.1-12]
}

// Retained messages are not session state: they outlive the publisher's
// session, clean or not.
func TestSpecRetainedNotSessionState(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	clean, _ := b.connect(t, "clean-pub", true)
	publishQoS(clean, "r/clean", "from clean", 1, true, 1)
	clean.disconnect()
	kept, _ := b.connect(t, "kept-pub", false)
	publishQoS(kept, "r/kept", "from kept", 2, true, 1)
	kept.kill()
	// Wipe kept-pub's session with a clean connect.
	c, _ := b.connect(t, "kept-pub", true)
	c.disconnect()

	late := b.subscriber(t, "late", "r/#", 2)
	var got []string
	for range 2 {
		p := late.expectPublish()
		require.True(t, p.Retain)
		got = append(got, string(p.Payload))
		late.ack(p)
	}
	sort.Strings(got)
	require.Equal(t, []string{"from clean", "from kept"}, got) // [MQTT-3.1.2-7]
}

// The will is published on every close that is not a DISCONNECT, at its
// QoS, exactly once.
func TestSpecWillOnUncleanClose(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 2)
	causes := map[string]func(c *rawClient){
		"network failure":    func(c *rawClient) { c.kill() },
		"half close":         func(c *rawClient) { c.conn.(interface{ CloseWrite() error }).CloseWrite() },
		"reserved flags":     func(c *rawClient) { c.write([]byte{0xc1, 0x00}) },
		"invalid topic":      func(c *rawClient) { c.publish("a/#", "x", 0, false, 0) },
		"subscribe qos 3":    func(c *rawClient) { c.write([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03}) },
		"second connect":     func(c *rawClient) { c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "x"}) },
		"server-only packet": func(c *rawClient) { c.send(&wire.Suback{PacketID: 1, ReturnCodes: []byte{0}}) },
	}
	for name, cause := range causes {
		t.Run(name, func(t *testing.T) {
			for qos := byte(0); qos <= 2; qos++ {
				id := fmt.Sprintf("w-%s-%d", name, qos)
				c := b.connectWill(t, id, true, 0, "will/"+id, "bye "+id, qos, false)
				c.ping()
				cause(c)
				p := watch.expectMessage("will/"+id, "bye "+id) // [MQTT-3.1.2-8]
				require.Equal(t, qos, p.QoS)                    // [MQTT-3.1.2-8] at the will QoS
				require.False(t, p.Retain)                      // [MQTT-3.1.2-16]
			}
		})
	}
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.2-10] each will exactly once
}

func TestSpecWillOnTakeover(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 2)
	first := b.connectWill(t, "same", false, 0, "will/same", "taken over", 2, false)
	second, ack := b.connectWith(t, &wire.Connect{ClientID: "same", CleanSession: false})
	require.True(t, ack.SessionPresent)
	first.expectClosed()
	p := watch.expectMessage("will/same", "taken over") // [MQTT-3.1.2-8] [MQTT-3.1.4-2]
	require.Equal(t, byte(2), p.QoS)
	// The will belonged to the first connection: the second one, which has
	// none, publishes nothing when it drops.
	second.kill()
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.2-10] [MQTT-3.1.2-12]
}

func TestSpecWillOnce(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 1)
	c := b.connectWill(t, "once", false, 0, "will/once", "first", 1, false)
	c.kill()
	watch.expectMessage("will/once", "first") // [MQTT-3.1.2-8]
	// The session survives, the will does not: reconnecting without one
	// and dropping again publishes nothing.
	c, ack := b.connect(t, "once", false)
	require.True(t, ack.SessionPresent)
	c.kill()
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.2-10]
	// A new will on the next connection is the one that fires.
	c = b.connectWill(t, "once", false, 0, "will/once", "second", 1, false)
	c.write([]byte{0xe1, 0x00})
	watch.expectMessage("will/once", "second")  // [MQTT-3.1.2-8]
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.2-10]
}

func TestSpecNoWillWithoutFlag(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "#", 2)
	for i := range 3 {
		c, _ := b.connect(t, fmt.Sprintf("nowill%d", i), i%2 == 0)
		switch i {
		case 0:
			c.kill()
		case 1:
			c.write([]byte{0xc1, 0x00})
		case 2:
			c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "x"})
		}
		c.expectClosed()
	}
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.1.2-12] nothing published
}

func TestSpecWillDiscardedOnDisconnect(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	watch := b.subscriber(t, "watch", "will/#", 1)
	for i := range 3 {
		c := b.connectWill(t, fmt.Sprintf("polite%d", i), i == 0, 0, "will/polite", "should not", byte(i), i == 1)
		c.disconnect()
	}
	watch.expectSilence(300 * time.Millisecond) // [MQTT-3.14.4-3] [MQTT-3.1.2-10]
	late := b.subscriber(t, "late", "will/#", 1)
	late.expectSilence(100 * time.Millisecond) // [MQTT-3.14.4-3] not retained either
}

func TestSpecWillRetain(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	live := b.subscriber(t, "live", "will/#", 2)

	plain := b.connectWill(t, "plain", true, 0, "will/plain", "not retained", 1, false)
	plain.kill()
	p := live.expectMessage("will/plain", "not retained")
	require.False(t, p.Retain)

	kept := b.connectWill(t, "kept", true, 0, "will/kept", "retained", 2, true)
	kept.kill()
	p = live.expectMessage("will/kept", "retained")
	require.False(t, p.Retain) // [MQTT-3.3.1-9] live copy
	require.Equal(t, byte(2), p.QoS)

	late := b.subscriber(t, "late", "will/#", 2)
	p = late.expectMessage("will/kept", "retained")
	require.True(t, p.Retain)                  // [MQTT-3.1.2-17] published as a retained message
	require.Equal(t, byte(2), p.QoS)           // [MQTT-3.3.1-5] with its QoS
	late.expectSilence(200 * time.Millisecond) // [MQTT-3.1.2-16] no retained copy of will/plain

	// A retained will with an empty message deletes the retained message.
	empty := b.connectWill(t, "empty", true, 0, "will/kept", "", 0, true)
	empty.kill()
	live.expectMessage("will/kept", "")
	late.expectMessage("will/kept", "")
	later := b.subscriber(t, "later", "will/#", 2)
	later.expectSilence(200 * time.Millisecond) // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
}

func TestSpecWillQoS(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	subs := make([]*rawClient, 3)
	for q := range subs {
		subs[q] = b.subscriber(t, fmt.Sprintf("s%d", q), "will/+", byte(q))
	}
	for wq := byte(0); wq <= 2; wq++ {
		c := b.connectWill(t, fmt.Sprintf("w%d", wq), true, 0, "will/q", fmt.Sprint(wq), wq, false)
		c.kill()
		for sq, s := range subs {
			p := s.expectMessage("will/q", fmt.Sprint(wq))
			require.Equal(t, min(wq, byte(sq)), p.QoS) // [MQTT-3.1.2-8] [MQTT-3.8.4-6]
		}
	}
}

// A will is a client-supplied message like any PUBLISH: it cannot be used
// to write into the broker's $SYS tree, while other $ topics work.
func TestSpecWillSysTopic(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	sys := b.subscriber(t, "sys", "$SYS/#", 1)
	dollar := b.subscriber(t, "dollar", "$app/#", 1)
	c := b.connectWill(t, "spoof", true, 0, "$SYS/broker/version", "spoofed", 1, true)
	c.kill()
	c = b.connectWill(t, "app", true, 0, "$app/status", "offline", 1, false)
	c.kill()
	dollar.expectMessage("$app/status", "offline")
	sys.expectSilence(300 * time.Millisecond)
	late := b.subscriber(t, "late", "$SYS/#", 1)
	late.expectSilence(100 * time.Millisecond)
}

// Retained messages are matched by the same rules as live ones: the filter
// table of TestSpecTopicMatching, applied to the retained store.
func TestSpecRetainedMatching(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	for _, topic := range matchTopics {
		pub.publish(topic, "r", 0, true, 0)
	}
	// "$marker/end" matches none of the filters (a $ topic, and no filter
	// starts with $marker): subscribed after each filter in the same
	// SUBSCRIBE, its retained copy arrives after the filter's.
	const end = "$marker/end"
	pub.publishAcked(end, "end", true, 1)
	for i, tc := range matchCases {
		c, _ := b.connect(t, fmt.Sprintf("rm%d", i), true)
		c.subscribe(1, wire.Subscription{Filter: tc.filter}, wire.Subscription{Filter: end})
		var got []string
		for {
			p := c.expectPublish()
			require.True(t, p.Retain) // [MQTT-3.3.1-8]
			if string(p.Topic) == end {
				break
			}
			got = append(got, string(p.Topic))
		}
		want := slices.Clone(tc.want)
		sort.Strings(want)
		sort.Strings(got)
		if len(want) == 0 {
			want = nil
		}
		// [MQTT-3.3.1-6] every matching retained topic, once, and no other:
		// [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1] [MQTT-4.7.3-4].
		require.Equal(t, want, got, "filter %q %s", tc.filter, tc.note)
	}
}
