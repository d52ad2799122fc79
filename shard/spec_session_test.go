package shard

// Conformance tests for persistent sessions (CleanSession=0): the offline
// queue and its limit, redelivery on reconnect (sections 4.1, 4.4, 4.5,
// 4.6), inbound QoS 2 state across connections, and end-to-end QoS 1/2 with
// a real client library (paho.mqtt.golang).

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// probe connects a clean QoS 0 subscriber on shard i. Deliveries to one
// shard are handled in publish order, so once the probe has a message every
// session on its shard has been offered it as well: a barrier for checks on
// offline sessions.
func (tb *testBroker) probe(t *testing.T, i int, filter string) *rawClient {
	t.Helper()
	c, _ := tb.connect(t, tb.idOnShard("probe", i), true)
	c.subscribeOK(filter, 0)
	return c
}

// publishAll sends msgs in one write, numbering the QoS 1/2 ones 1..n, and
// completes every acknowledgement flow.
func (c *rawClient) publishAll(msgs []*wire.Publish) {
	c.t.Helper()
	var batch []byte
	open := 0
	for i, p := range msgs {
		if p.QoS > 0 {
			p.PacketID = uint16(i + 1)
			open++
		}
		batch = p.Append(batch)
	}
	c.write(batch)
	for open > 0 {
		p, err := c.read(5 * time.Second)
		require.NoError(c.t, err, "%d acks missing", open)
		switch p := p.(type) {
		case *wire.Puback, *wire.Pubcomp:
			open--
		case *wire.Pubrec:
			c.send(&wire.Pubrel{PacketID: p.PacketID})
		default:
			require.Fail(c.t, "unexpected packet", "%#v", p)
		}
	}
}

// numbered returns n messages on topic with payloads "0".."n-1".
func numbered(topic string, qos byte, n int) []*wire.Publish {
	var out []*wire.Publish
	for i := range n {
		out = append(out, &wire.Publish{QoS: qos, Topic: []byte(topic), Payload: []byte(strconv.Itoa(i))})
	}
	return out
}

// While a CleanSession=0 client is offline its QoS 1/2 messages are stored
// and delivered on reconnect, in order and at the granted QoS; QoS 0 ones
// are not stored.
func TestSessionOfflineQueue(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	id := b.idOnShard("sub", 1)
	sub, _ := b.connect(t, id, false)
	sub.send(&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "oq/two", QoS: 2}, {Filter: "oq/one", QoS: 1}}})
	sub.expect(wire.SUBACK)
	sub.sendDisconnect()
	probe := b.probe(t, 1, "oq/+")

	pub, _ := b.connect(t, b.idOnShard("pub", 3), true)
	var sent []*wire.Publish
	for i := range 60 {
		sent = append(sent, &wire.Publish{QoS: byte(i % 3), Topic: []byte([]string{"oq/one", "oq/two"}[i%2]), Payload: []byte(strconv.Itoa(i))})
	}
	pub.publishAll(sent)
	for i := range sent {
		require.Equal(t, strconv.Itoa(i), string(probe.expectPublish().Payload))
	}

	sub, ack := b.connect(t, id, false)
	require.True(t, ack.SessionPresent)
	got := sub.collect(40)
	for i, m := range sent {
		if m.QoS == 0 {
			continue // not stored for an offline session
		}
		granted := byte(1)
		if string(m.Topic) == "oq/two" {
			granted = 2
		}
		p := got[0]
		got = got[1:]
		require.Equal(t, strconv.Itoa(i), string(p.Payload)) // [MQTT-3.1.2-5] stored, in order [MQTT-4.6.0-6]
		require.Equal(t, min(m.QoS, granted), p.QoS)         // [MQTT-3.8.4-6]
		require.False(t, p.Dup, "first delivery has DUP=0")  // [MQTT-4.3.2-1]
	}
	sub.expectSilence(200 * time.Millisecond)
}

// collect receives n PUBLISHes, acknowledging each as it arrives (PUBACK,
// or PUBREC and then PUBCOMP for the PUBREL), and returns them in arrival
// order once every flow is complete.
func (c *rawClient) collect(n int) []*wire.Publish {
	c.t.Helper()
	var got []*wire.Publish
	open := map[uint16]bool{}
	for len(got) < n || len(open) > 0 {
		p, err := c.read(5 * time.Second)
		require.NoError(c.t, err, "after %d of %d messages", len(got), n)
		switch p := p.(type) {
		case *wire.Publish:
			got = append(got, p)
			switch p.QoS {
			case 1:
				c.send(&wire.Puback{PacketID: p.PacketID})
			case 2:
				open[p.PacketID] = true
				c.send(&wire.Pubrec{PacketID: p.PacketID})
			}
		case *wire.Pubrel:
			require.True(c.t, open[p.PacketID], "PUBREL for id %d not awaiting one", p.PacketID)
			delete(open, p.PacketID)
			c.send(&wire.Pubcomp{PacketID: p.PacketID})
		default:
			require.Fail(c.t, "unexpected packet", "%#v", p)
		}
	}
	require.Len(c.t, got, n)
	return got
}

// The offline queue holds MaxQueuedMessages; newer messages are dropped and
// counted. The same limit applies while online with a full in-flight
// window.
func TestSessionQueueLimit(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{MaxQueuedMessages: 5, MaxInflight: 2})
	id := b.idOnShard("sub", 2)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("ql", 1)
	sub.sendDisconnect()
	probe := b.probe(t, 2, "ql")
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)

	pub.publishAll(numbered("ql", 1, 8))
	pub.publishAll(numbered("ql", 0, 3)) // QoS 0: not stored, and not a queue drop
	for range 11 {
		probe.expectPublish()
	}
	require.Equal(t, int64(3), b.Stats().DroppedQueueFull)

	sub, _ = b.connect(t, id, false)
	var ps []*wire.Publish
	for i := range 2 {
		ps = append(ps, sub.expectPubAt(strconv.Itoa(i), 1, false))
	}
	sub.expectSilence(50 * time.Millisecond) // MaxInflight 2
	// Online with a full window: the queue (3 left in it) takes 2 more and
	// drops 2.
	pub.publishAll(numbered("ql", 1, 4))
	for range 4 {
		probe.expectPublish()
	}
	require.Equal(t, int64(5), b.Stats().DroppedQueueFull)
	for _, p := range ps {
		sub.send(&wire.Puback{PacketID: p.PacketID})
	}
	for _, want := range []string{"2", "3", "4", "0", "1"} {
		sub.ackDelivery(sub.expectPubAt(want, 1, false))
	}
	sub.expectSilence(100 * time.Millisecond)
}

// On reconnect the broker resends, with their original packet ids and in
// their original order, every unacknowledged PUBLISH (DUP=1) and PUBREL,
// before anything from the queue; for each way a connection can end.
func TestSessionRedeliveryOnReconnect(t *testing.T) {
	for _, how := range []string{"disconnect", "network failure", "takeover"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			testRedelivery(t, how)
		})
	}
}

func testRedelivery(t *testing.T, how string) {
	b := runBroker(t, Config{MaxInflight: 4})
	id := b.idOnShard("sub", 2)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("rd/#", 2)
	probe := b.probe(t, 2, "rd/#")
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)

	// m1 Q1, m2 Q2, m3 Q2, m4 Q1 fill the window; m5 Q1 and m6 Q2 wait.
	var msgs []*wire.Publish
	for i, q := range []byte{1, 2, 2, 1, 1, 2} {
		msgs = append(msgs, &wire.Publish{QoS: q, Topic: []byte("rd/q" + strconv.Itoa(int(q))), Payload: []byte(fmt.Sprintf("m%d", i+1))})
	}
	pub.publishAll(msgs)
	var first []*wire.Publish
	for i, q := range []byte{1, 2, 2, 1} {
		first = append(first, sub.expectPubAt(fmt.Sprintf("m%d", i+1), q, false))
	}
	sub.expectSilence(50 * time.Millisecond)
	sub.send(&wire.Pubrec{PacketID: first[1].PacketID})
	require.Equal(t, first[1].PacketID, sub.expectPubrel()) // PUBCOMP withheld

	switch how {
	case "disconnect":
		sub.sendDisconnect()
	case "network failure":
		sub.conn.Close()
	}
	offline := how != "takeover"
	if offline {
		// While offline: m7 (QoS 1) is stored, m8 (QoS 0) is not.
		pub.publishAll([]*wire.Publish{
			{QoS: 1, Topic: []byte("rd/q1"), Payload: []byte("m7")},
			{QoS: 0, Topic: []byte("rd/q0"), Payload: []byte("m8")},
		})
		for range 8 {
			probe.expectPublish()
		}
	}

	old := sub
	sub, ack := b.connect(t, id, false)
	require.True(t, ack.SessionPresent) // [MQTT-4.1.0-1]
	if how == "takeover" {
		old.expectClosed()
	}
	// Resends first, in the original order [MQTT-4.6.0-1], with the
	// original ids [MQTT-4.4.0-1]: PUBLISH with DUP=1 [MQTT-3.3.1-1], and
	// for m2 only its PUBREL, never the PUBLISH again [MQTT-4.3.3-1].
	require.Equal(t, first[0].PacketID, sub.expectPubAt("m1", 1, true).PacketID) // [MQTT-4.4.0-1] [MQTT-4.3.2-1]
	require.Equal(t, first[1].PacketID, sub.expectPubrel())                      // [MQTT-4.4.0-1] [MQTT-4.3.3-1]
	require.Equal(t, first[2].PacketID, sub.expectPubAt("m3", 2, true).PacketID) // [MQTT-4.4.0-1]
	require.Equal(t, first[3].PacketID, sub.expectPubAt("m4", 1, true).PacketID) // [MQTT-4.4.0-1]
	sub.expectSilence(50 * time.Millisecond)                                     // the window is still full

	inflight := map[uint16]bool{first[1].PacketID: true, first[2].PacketID: true, first[3].PacketID: true}
	fresh := func(p *wire.Publish) *wire.Publish {
		t.Helper()
		require.False(t, inflight[p.PacketID], "id %d is still in flight", p.PacketID) // [MQTT-2.3.1-4]
		inflight[p.PacketID] = true
		return p
	}
	// Then the queue, in order, as the window frees.
	sub.send(&wire.Puback{PacketID: first[0].PacketID}) // [MQTT-4.5.0-2] acknowledged only now
	m5 := fresh(sub.expectPubAt("m5", 1, false))
	sub.send(&wire.Pubcomp{PacketID: first[1].PacketID})
	delete(inflight, first[1].PacketID)
	m6 := fresh(sub.expectPubAt("m6", 2, false))
	sub.send(&wire.Pubrec{PacketID: first[2].PacketID})
	require.Equal(t, first[2].PacketID, sub.expectPubrel())
	sub.send(&wire.Pubcomp{PacketID: first[2].PacketID})
	delete(inflight, first[2].PacketID)
	if offline {
		m7 := fresh(sub.expectPubAt("m7", 1, false)) // [MQTT-3.1.2-5]
		sub.send(&wire.Puback{PacketID: m7.PacketID})
	}
	sub.send(&wire.Puback{PacketID: first[3].PacketID})
	sub.send(&wire.Puback{PacketID: m5.PacketID})
	sub.ackDelivery(m6)
	sub.expectSilence(100 * time.Millisecond) // m8 was QoS 0: dropped while offline

	// Everything completed: the next resume has nothing to resend.
	sub.sendDisconnect()
	sub, _ = b.connect(t, id, false)
	sub.expectSilence(200 * time.Millisecond) // [MQTT-4.1.0-1]
}

// A resumed session keeps the inbound QoS 2 packet ids awaiting PUBREL: a
// publisher that lost its connection after PUBREC resends the PUBLISH, gets
// another PUBREC, and the message is still delivered once. A clean session
// starts with no such state.
func TestSessionInboundQoS2StateSurvivesReconnect(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("in2", 2)
	pid := b.idOnShard("pub", 1)
	pub, _ := b.connect(t, pid, false)
	pub.publish("in2", "x", 2, false, 9)
	require.Equal(t, uint16(9), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	pub.conn.Close() // before PUBREL

	pub, ack := b.connect(t, pid, false)
	require.True(t, ack.SessionPresent)
	pub.send(&wire.Publish{Dup: true, QoS: 2, Topic: []byte("in2"), PacketID: 9, Payload: []byte("x")})
	require.Equal(t, uint16(9), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID) // [MQTT-4.3.3-2] [MQTT-4.1.0-1]
	pub.send(&wire.Pubrel{PacketID: 9})
	require.Equal(t, uint16(9), pub.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID) // [MQTT-4.3.3-2]
	pub.pubQoS2("in2", "y", 9)                                                     // a new message after PUBCOMP

	got := sub.collect(2)
	require.Equal(t, "x", string(got[0].Payload))
	require.Equal(t, "y", string(got[1].Payload)) // [MQTT-4.3.3-2] "x" once only [MQTT-4.1.0-1]

	// The same sequence with a clean session: no state is kept, so the
	// resent PUBLISH is a new message.
	pub.publish("in2", "z", 2, false, 11)
	pub.expect(wire.PUBREC)
	pub.conn.Close()
	pub, _ = b.connect(t, pid, true)
	pub.pubQoS2("in2", "z", 11)
	got = sub.collect(2)
	require.Equal(t, "z", string(got[0].Payload))
	require.Equal(t, "z", string(got[1].Payload))
	sub.expectSilence(100 * time.Millisecond)
}

// Once the broker has accepted a message it adds it to every session with
// a matching subscription: online and offline, on every shard, through
// every kind of filter.
func TestSessionMessageReachesEveryMatchingSession(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{Shards: 4})
	filters := []string{"all/x/y", "all/+/y", "+/x/#", "#"}
	type member struct {
		id     string
		online bool
		c      *rawClient
	}
	var members []*member
	for i, f := range filters {
		for _, online := range []bool{true, false} {
			m := &member{id: b.idOnShard(fmt.Sprintf("m%d-%v-", i, online), (i+len(members))%4), online: online}
			m.c, _ = b.connect(t, m.id, online) // the offline ones keep their session
			m.c.subscribeOK(f, 2)
			if !online {
				m.c.sendDisconnect()
			}
			members = append(members, m)
		}
	}
	pub, _ := b.connect(t, b.idOnShard("pub", 3), true)
	pub.pubQoS1("all/x/y", "one", 1)
	pub.pubQoS2("all/x/y", "two", 2)
	for _, m := range members {
		if !m.online {
			var ack *wire.Connack
			m.c, ack = b.connect(t, m.id, false)
			require.True(t, ack.SessionPresent)
		}
		got := m.c.collect(2)
		require.Equal(t, "one", string(got[0].Payload)) // [MQTT-4.5.0-1]
		require.Equal(t, "two", string(got[1].Payload)) // [MQTT-4.5.0-1]
		require.Equal(t, []byte{1, 2}, []byte{got[0].QoS, got[1].QoS})
	}
}

// --- end to end with paho.mqtt.golang ---

// pahoSessionClient connects a paho client with the given session settings.
func pahoSessionClient(t *testing.T, b *testBroker, id string, clean bool, onMsg mqtt.MessageHandler, autoAck bool) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + b.addr).
		SetClientID(id).
		SetCleanSession(clean).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).
		SetAutoAckDisabled(!autoAck).
		SetDefaultPublishHandler(onMsg)
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second), "paho connect timed out")
	require.NoError(t, tok.Error())
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(100)
		}
	})
	return c
}

// pahoInbox collects messages for a paho client.
type pahoInbox struct {
	mu   sync.Mutex
	msgs []mqtt.Message
	more chan struct{}
}

func newPahoInbox() *pahoInbox { return &pahoInbox{more: make(chan struct{}, 1)} }

func (in *pahoInbox) handle(_ mqtt.Client, m mqtt.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	in.mu.Unlock()
	select {
	case in.more <- struct{}{}:
	default:
	}
}

// wait returns once n messages have arrived, failing after 10 s.
func (in *pahoInbox) wait(t *testing.T, n int) []mqtt.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		in.mu.Lock()
		got := append([]mqtt.Message(nil), in.msgs...)
		in.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-in.more:
		case <-deadline:
			require.FailNow(t, "paho messages missing", "got %d of %d", len(got), n)
		}
	}
}

// pahoDisconnect disconnects c and waits until the broker has read the
// DISCONNECT. A reconnect that raced ahead of it would take the session
// over from the old connection, and the acknowledgements still unread on
// that connection would be discarded.
func pahoDisconnect(t *testing.T, b *testBroker, c mqtt.Client) {
	t.Helper()
	n := b.Stats().Connections
	c.Disconnect(250)
	require.Eventually(t, func() bool { return b.Stats().Connections < n }, 5*time.Second, time.Millisecond)
}

func pahoWait(t *testing.T, tok mqtt.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(5*time.Second), "paho token timed out")
	require.NoError(t, tok.Error())
}

// A paho subscriber with a persistent session goes offline; QoS 1 and 2
// messages published meanwhile reach it when it comes back, in order, each
// QoS 2 message exactly once, QoS 0 not at all.
func TestPahoPersistentSessionQoS12(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	subID := b.idOnShard("paho-sub", 1)
	in := newPahoInbox()
	sub := pahoSessionClient(t, b, subID, false, in.handle, true)
	pahoWait(t, sub.SubscribeMultiple(map[string]byte{"paho/q1": 1, "paho/q2": 2, "paho/q0": 0}, nil))
	pub := pahoSessionClient(t, b, b.idOnShard("paho-pub", 2), true, nil, true)

	// Online.
	for i := range 10 {
		pahoWait(t, pub.Publish("paho/q1", 1, false, "on1-"+strconv.Itoa(i)))
		pahoWait(t, pub.Publish("paho/q2", 2, false, "on2-"+strconv.Itoa(i)))
	}
	got := in.wait(t, 20)
	for i := range 10 {
		require.Equal(t, "on1-"+strconv.Itoa(i), string(got[2*i].Payload()))
		require.Equal(t, "on2-"+strconv.Itoa(i), string(got[2*i+1].Payload()))
		require.Equal(t, byte(2), got[2*i+1].Qos())
	}
	pahoDisconnect(t, b, sub)

	// Offline: stored [MQTT-3.1.2-5].
	var toks []mqtt.Token
	for i := range 50 {
		toks = append(toks, pub.Publish("paho/q1", 1, false, "off1-"+strconv.Itoa(i)))
		toks = append(toks, pub.Publish("paho/q2", 2, false, "off2-"+strconv.Itoa(i)))
		toks = append(toks, pub.Publish("paho/q0", 0, false, "off0-"+strconv.Itoa(i)))
	}
	for _, tok := range toks {
		pahoWait(t, tok)
	}
	// Wait for a routed QoS 1 message to reach the subscriber's shard via a
	// marker on a clean raw subscriber there.
	probe := b.probe(t, 1, "paho/q1")
	pahoWait(t, pub.Publish("paho/q1", 1, false, "marker"))
	require.Equal(t, "marker", string(probe.expectPublish().Payload))

	in2 := newPahoInbox()
	sub2 := pahoSessionClient(t, b, subID, false, in2.handle, true)
	got = in2.wait(t, 101)
	n1, n2 := 0, 0
	for _, m := range got {
		switch m.Topic() {
		case "paho/q1":
			if string(m.Payload()) == "marker" {
				require.Equal(t, 50, n1)
				continue
			}
			require.Equal(t, "off1-"+strconv.Itoa(n1), string(m.Payload())) // [MQTT-4.6.0-6]
			n1++
		case "paho/q2":
			require.Equal(t, "off2-"+strconv.Itoa(n2), string(m.Payload())) // [MQTT-4.6.0-6] exactly once
			require.Equal(t, byte(2), m.Qos())
			n2++
		default:
			require.Fail(t, "QoS 0 stored for an offline session", "%s %s", m.Topic(), m.Payload())
		}
	}
	require.Equal(t, 50, n1)
	require.Equal(t, 50, n2)
	time.Sleep(100 * time.Millisecond)
	require.Len(t, in2.wait(t, 101), 101, "more than expected arrived")
	sub2.Disconnect(250)
	pub.Disconnect(250)
}

// A paho subscriber that does not acknowledge (auto-ack off) leaves the
// deliveries in flight; when it comes back they are resent with DUP=1 and
// completed.
func TestPahoRedeliversUnacknowledged(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	subID := b.idOnShard("paho-unacked", 3)
	in := newPahoInbox()
	sub := pahoSessionClient(t, b, subID, false, in.handle, false)
	pahoWait(t, sub.Subscribe("unacked/#", 2, nil))
	pub := pahoSessionClient(t, b, b.idOnShard("paho-pub", 0), true, nil, true)
	pahoWait(t, pub.Publish("unacked/1", 1, false, "one"))
	pahoWait(t, pub.Publish("unacked/2", 2, false, "two"))
	got := in.wait(t, 2)
	require.False(t, got[0].Duplicate())
	pahoDisconnect(t, b, sub) // never acknowledged [MQTT-4.5.0-2]

	in2 := newPahoInbox()
	sub2 := pahoSessionClient(t, b, subID, false, in2.handle, false)
	got = in2.wait(t, 2)
	require.Equal(t, "one", string(got[0].Payload()))
	require.True(t, got[0].Duplicate()) // [MQTT-3.3.1-1] [MQTT-4.4.0-1]
	require.Equal(t, "two", string(got[1].Payload()))
	require.True(t, got[1].Duplicate()) // [MQTT-3.3.1-1] [MQTT-4.4.0-1]
	// Acknowledged explicitly, so the acks are queued before the DISCONNECT.
	got[0].Ack()
	got[1].Ack()
	pahoDisconnect(t, b, sub2)

	// Acknowledged this time: nothing more on the next resume.
	in3 := newPahoInbox()
	sub3 := pahoSessionClient(t, b, subID, false, in3.handle, true)
	time.Sleep(300 * time.Millisecond)
	in3.mu.Lock()
	require.Empty(t, in3.msgs)
	in3.mu.Unlock()
	sub3.Disconnect(250)
	pub.Disconnect(250)
}

// A client acknowledges a delivery, sends DISCONNECT, closes, and
// reconnects at once. Everything it sent on the old connection had arrived
// before the new connection was opened, so the acknowledged message must
// not be sent again: the new CONNECT waits until the old connection's
// reader has passed on what it read.
func TestSessionAckBeforeImmediateReconnectIsKept(t *testing.T) {
	b := runBroker(t, Config{})
	id := b.idOnShard("sub", 1)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("ack/x", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 2), true)
	redelivered := 0
	for i := range 50 {
		pub.pubQoS1("ack/x", strconv.Itoa(i), 1)
		p := sub.expectPublish()
		for p.Dup { // acknowledged before, on an earlier connection
			redelivered++
			sub.send(&wire.Puback{PacketID: p.PacketID})
			p = sub.expectPublish()
		}
		require.Equal(t, strconv.Itoa(i), string(p.Payload))
		sub.write(append((&wire.Puback{PacketID: p.PacketID}).Append(nil), (&wire.Disconnect{}).Append(nil)...))
		sub.conn.Close()
		sub, _ = b.connect(t, id, false)
	}
	require.Zero(t, redelivered, "acknowledged messages sent again after an immediate reconnect")
}

// The default offline queue holds 1000 messages.
func TestSessionQueueLimitDefault(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	require.Equal(t, 1000, b.Config().MaxQueuedMessages)
	id := b.idOnShard("sub", 3)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("qd", 1)
	sub.sendDisconnect()
	probe := b.probe(t, 3, "qd")
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)
	pub.publishAll(numbered("qd", 1, 1005))
	for range 1005 {
		probe.expectPublish()
	}
	require.Equal(t, int64(5), b.Stats().DroppedQueueFull)
	sub, _ = b.connect(t, id, false)
	got := sub.collect(1000)
	for i, p := range got {
		require.Equal(t, strconv.Itoa(i), string(p.Payload)) // the oldest 1000, in order
	}
	sub.expectSilence(100 * time.Millisecond)
}

// A client with a will sends DISCONNECT, closes and reconnects at once: the
// DISCONNECT it sent first still discards the will [MQTT-3.14.4-3].
func TestSessionDisconnectBeforeImmediateReconnectDiscardsWill(t *testing.T) {
	b := runBroker(t, Config{})
	watcher, _ := b.connect(t, "watcher", true)
	watcher.subscribeOK("will/x", 0)
	for range 30 {
		c := b.dial(t)
		ack := c.connect(&wire.Connect{ClientID: "willing", CleanSession: true, WillFlag: true, WillTopic: "will/x", WillMessage: []byte("gone")})
		require.Equal(t, wire.Accepted, ack.ReturnCode)
		c.send(&wire.Disconnect{})
		c.conn.Close()
	}
	c, _ := b.connect(t, "willing", true)
	c.ping()
	watcher.expectSilence(200 * time.Millisecond) // [MQTT-3.14.4-3]
}

// A new connection takes over a silent one after the takeover grace: the
// old socket is closed and its will published [MQTT-3.1.4-2].
func TestSessionTakeoverOfSilentConnection(t *testing.T) {
	b := runBroker(t, Config{TakeoverGrace: 100 * time.Millisecond})
	watcher, _ := b.connect(t, "watcher", true)
	watcher.subscribeOK("will/silent", 0)
	old := b.dial(t)
	require.Equal(t, wire.Accepted, old.connect(&wire.Connect{ClientID: "dev", CleanSession: false, WillFlag: true, WillTopic: "will/silent", WillMessage: []byte("bye")}).ReturnCode)
	start := time.Now()
	_, ack := b.connect(t, "dev", false)
	require.True(t, ack.SessionPresent)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "waited for the grace")
	old.expectClosed()                                               // [MQTT-3.1.4-2]
	require.Equal(t, "bye", string(watcher.expectPublish().Payload)) // [MQTT-3.1.2-8]
}
