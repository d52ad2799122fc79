package shard

// Conformance tests for QoS 0/1/2 in both directions (MQTT 3.1.1 sections
// 2.3.1, 3.3-3.7, 4.3 and 4.6), the in-flight window and the in-session
// retry option (RetryInterval / RetryLimit). Each assertion that covers a
// numbered statement names it in a comment.

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// --- helpers local to the QoS suites ---

// idOnShard returns prefix plus a number, chosen so that the client id
// hashes to shard i.
func (tb *testBroker) idOnShard(prefix string, i int) string {
	for n := 0; ; n++ {
		id := prefix + strconv.Itoa(n)
		if tb.shardFor(id).index == i {
			return id
		}
	}
}

// expectPubFirstByte reads the next PUBLISH and returns it with the first
// byte of its fixed header (type and DUP/QoS/RETAIN flags).
func (c *rawClient) expectPubFirstByte() (byte, *wire.Publish) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	fh, body, err := c.r.ReadPacket()
	require.NoError(c.t, err, "waiting for PUBLISH")
	require.Equal(c.t, wire.PUBLISH, fh.Type)
	p, err := wire.Decode(fh, body)
	require.NoError(c.t, err)
	return byte(fh.Type)<<4 | fh.Flags, p.(*wire.Publish)
}

// expectRawPacket reads the next packet and compares its exact bytes.
func (c *rawClient) expectRawPacket(want ...byte) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	fh, body, err := c.r.ReadPacket()
	require.NoError(c.t, err, "waiting for % x", want)
	got := append(wire.AppendRemainingLength([]byte{byte(fh.Type)<<4 | fh.Flags}, fh.RemainingLength), body...)
	require.Equal(c.t, want, got, "got % x, want % x", got, want)
}

// expectPubrel reads a PUBREL and returns its packet id.
func (c *rawClient) expectPubrel() uint16 {
	c.t.Helper()
	return c.expect(wire.PUBREL).(*wire.Pubrel).PacketID
}

// expectPubAt reads the next PUBLISH and checks payload, QoS and DUP.
func (c *rawClient) expectPubAt(payload string, qos byte, dup bool) *wire.Publish {
	c.t.Helper()
	p := c.expectPublish()
	require.Equal(c.t, payload, string(p.Payload), "payload")
	require.Equal(c.t, qos, p.QoS, "QoS of %q", payload)
	require.Equal(c.t, dup, p.Dup, "DUP of %q", payload)
	if qos > 0 {
		require.NotZero(c.t, p.PacketID) // [MQTT-2.3.1-1]
	}
	return p
}

// pubQoS1 publishes at QoS 1 and waits for its PUBACK.
func (c *rawClient) pubQoS1(topic, payload string, id uint16) {
	c.t.Helper()
	c.publish(topic, payload, 1, false, id)
	require.Equal(c.t, id, c.expect(wire.PUBACK).(*wire.Puback).PacketID)
}

// pubQoS2 runs a complete inbound QoS 2 flow.
func (c *rawClient) pubQoS2(topic, payload string, id uint16) {
	c.t.Helper()
	c.publish(topic, payload, 2, false, id)
	require.Equal(c.t, id, c.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	c.send(&wire.Pubrel{PacketID: id})
	require.Equal(c.t, id, c.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
}

// sendDisconnect sends DISCONNECT and waits until the broker has closed the
// connection, so the session is offline when it returns.
func (c *rawClient) sendDisconnect() {
	c.t.Helper()
	c.send(&wire.Disconnect{})
	c.expectClosed()
}

// subscribeOK subscribes to one filter and checks the granted QoS.
func (c *rawClient) subscribeOK(filter string, qos byte) {
	c.t.Helper()
	sa := c.subscribe(1, wire.Subscription{Filter: filter, QoS: qos})
	require.Equal(c.t, []byte{qos}, sa.ReturnCodes)
}

// --- inbound: the broker as receiver ---

func TestQoSInboundAcknowledgedByQoS(t *testing.T) {
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, b.idOnShard("sub", 1), true)
	sub.subscribeOK("ack/#", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)

	pub.publish("ack/0", "zero", 0, false, 0)
	pub.ping() // [MQTT-3.3.4-1] QoS 0: no answer before the PINGRESP

	pub.publish("ack/1", "one", 1, false, 0x1234)
	pub.expectRawPacket(0x40, 0x02, 0x12, 0x34) // [MQTT-3.3.4-1] PUBACK [MQTT-2.3.1-6] same id

	pub.publish("ack/2", "two", 2, false, 0x4321)
	pub.expectRawPacket(0x50, 0x02, 0x43, 0x21) // [MQTT-3.3.4-1] PUBREC [MQTT-2.3.1-6] same id
	pub.send(&wire.Pubrel{PacketID: 0x4321})
	pub.expectRawPacket(0x70, 0x02, 0x43, 0x21) // [MQTT-4.3.3-2] PUBCOMP with the PUBREL's id

	sub.expectPubAt("zero", 0, false)
	p := sub.expectPubAt("one", 1, false)
	sub.send(&wire.Puback{PacketID: p.PacketID})
	p = sub.expectPubAt("two", 2, false)
	sub.send(&wire.Pubrec{PacketID: p.PacketID})
	require.Equal(t, p.PacketID, sub.expectPubrel())
	sub.send(&wire.Pubcomp{PacketID: p.PacketID})
	sub.ping()
}

// The broker routes an inbound QoS 2 message on its first PUBLISH (method
// B: it stores only the packet id) and never delivers it twice.
func TestQoS2InboundDuplicateNotDeliveredTwice(t *testing.T) {
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, b.idOnShard("sub", 2), true)
	sub.subscribeOK("dup/q2", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 3), true)

	pub.publish("dup/q2", "one", 2, false, 7)
	require.Equal(t, uint16(7), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	// Routed on the first PUBLISH, before PUBREL.
	p := sub.expectPubAt("one", 2, false)

	// The sender's retry: same id, DUP=1, before PUBREL.
	pub.send(&wire.Publish{Dup: true, QoS: 2, Topic: []byte("dup/q2"), PacketID: 7, Payload: []byte("one")})
	require.Equal(t, uint16(7), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID) // [MQTT-4.3.3-2] acknowledged again
	// A client that reuses an id still awaiting PUBREL breaks [MQTT-2.3.1-2];
	// the broker must not rely on it: the packet is a duplicate, whatever its
	// payload and DUP flag.
	pub.publish("dup/q2", "reused id", 2, false, 7)
	require.Equal(t, uint16(7), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID) // [MQTT-2.3.1-2]

	pub.send(&wire.Pubrel{PacketID: 7})
	require.Equal(t, uint16(7), pub.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID) // [MQTT-4.3.3-2]
	// A PUBREL for an id that is no longer held still gets its PUBCOMP.
	pub.send(&wire.Pubrel{PacketID: 7})
	require.Equal(t, uint16(7), pub.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID) // [MQTT-4.3.3-2]

	// After PUBCOMP the id starts a new message.
	pub.publish("dup/q2", "two", 2, false, 7)
	require.Equal(t, uint16(7), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	pub.send(&wire.Pubrel{PacketID: 7})
	pub.expect(wire.PUBCOMP)

	// Same publisher, topic and QoS: a second copy of "one" (or "reused id")
	// would arrive before "two".
	p2 := sub.expectPubAt("two", 2, false) // [MQTT-4.3.3-2] one copy only
	sub.ackDelivery(p)
	sub.ackDelivery(p2)
	sub.expectSilence(100 * time.Millisecond)
}

func TestQoS1InboundSameIDIsNewMessage(t *testing.T) {
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("dup/q1", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)

	pub.publish("dup/q1", "a", 1, false, 5)
	require.Equal(t, uint16(5), pub.expect(wire.PUBACK).(*wire.Puback).PacketID)
	// A resend with the same id and DUP=1 is acknowledged again [MQTT-2.3.1-3]
	// and, once PUBACK was sent, is a new message [MQTT-4.3.2-2].
	pub.send(&wire.Publish{Dup: true, QoS: 1, Topic: []byte("dup/q1"), PacketID: 5, Payload: []byte("b")})
	require.Equal(t, uint16(5), pub.expect(wire.PUBACK).(*wire.Puback).PacketID) // [MQTT-2.3.1-3]

	p := sub.expectPubAt("a", 1, false)
	sub.send(&wire.Puback{PacketID: p.PacketID})
	// The inbound DUP flag is not forwarded: DUP=0 on the broker's first send.
	p = sub.expectPubAt("b", 1, false) // [MQTT-4.3.2-2] delivered [MQTT-3.3.1-3]
	sub.send(&wire.Puback{PacketID: p.PacketID})
	sub.expectSilence(100 * time.Millisecond)
}

// Outbound QoS is min(published, granted); first sends have DUP=0; QoS 0
// goes out as 0x30 with no packet id and is never retried, even with the
// retry option on.
func TestQoSOutboundDowngradeAndFirstSend(t *testing.T) {
	b := runBroker(t, Config{RetryInterval: 100 * time.Millisecond})
	var subs [3]*rawClient
	var ids [3]string
	for g := range subs {
		ids[g] = b.idOnShard(fmt.Sprintf("sub%d-", g), g)
		subs[g], _ = b.connect(t, ids[g], false)
		subs[g].subscribeOK("min/+", byte(g))
	}
	pub, _ := b.connect(t, b.idOnShard("pub", 3), true)
	pub.publish("min/0", "p0", 0, false, 0)
	pub.pubQoS1("min/1", "p1", 1)
	pub.pubQoS2("min/2", "p2", 2)

	for granted, sub := range subs {
		for published := range 3 {
			first, p := sub.expectPubFirstByte()
			want := min(byte(published), byte(granted))
			require.Equal(t, fmt.Sprintf("p%d", published), string(p.Payload))
			require.Equal(t, want, p.QoS, "published %d granted %d", published, granted) // [MQTT-3.8.4-6]
			require.False(t, p.Dup)                                                      // [MQTT-4.3.2-1] [MQTT-4.3.3-1] first send DUP=0
			switch want {
			case 0:
				require.Equal(t, byte(0x30), first) // [MQTT-4.3.1-1] QoS 0, DUP 0
				// [MQTT-2.3.1-5] no packet id: the payload follows the topic.
			case 1:
				sub.send(&wire.Puback{PacketID: p.PacketID})
			case 2:
				sub.send(&wire.Pubrec{PacketID: p.PacketID})
				require.Equal(t, p.PacketID, sub.expectPubrel())
				sub.send(&wire.Pubcomp{PacketID: p.PacketID})
			}
		}
	}
	// No retry of QoS 0, in session [MQTT-4.3.1-1] ...
	subs[0].expectSilence(350 * time.Millisecond)
	// ... or on reconnect.
	subs[0].sendDisconnect()
	c, ack := b.connect(t, ids[0], false)
	require.True(t, ack.SessionPresent)
	c.expectSilence(200 * time.Millisecond) // [MQTT-4.3.1-1]
}

// A QoS 1 delivery stays in the session until PUBACK and is resent, with
// DUP=1 and the same id, when the client resumes the session.
func TestQoS1OutboundHeldUntilPuback(t *testing.T) {
	b := runBroker(t, Config{})
	id := b.idOnShard("sub", 1)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("q1/#", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 2), true)
	pub.pubQoS1("q1/x", "m", 9)

	first, p := sub.expectPubFirstByte()
	require.Equal(t, byte(0x32), first) // [MQTT-4.3.2-1] QoS 1, DUP=0 on first send
	// The client does not acknowledge; the broker must not rely on it
	// [MQTT-4.5.0-2].
	sub.sendDisconnect()

	sub, ack := b.connect(t, id, false)
	require.True(t, ack.SessionPresent)
	first, again := sub.expectPubFirstByte()
	require.Equal(t, byte(0x3A), first)              // [MQTT-3.3.1-1] DUP=1 on redelivery
	require.Equal(t, p.PacketID, again.PacketID)     // [MQTT-4.4.0-1] original id
	require.Equal(t, "m", string(again.Payload))     // [MQTT-4.3.2-1] held until PUBACK
	sub.send(&wire.Puback{PacketID: again.PacketID}) // [MQTT-4.5.0-2]
	sub.sendDisconnect()

	sub, _ = b.connect(t, id, false)
	sub.expectSilence(200 * time.Millisecond) // acknowledged: gone from the session
}

// QoS 2 outbound: PUBLISH, PUBREC, PUBREL (0x62, same id), PUBCOMP; after
// PUBREL the PUBLISH is never sent again, only the PUBREL.
func TestQoS2OutboundFlow(t *testing.T) {
	b := runBroker(t, Config{})
	id := b.idOnShard("sub", 0)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("q2/#", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 3), true)
	pub.pubQoS2("q2/a", "released", 1)
	pub.pubQoS2("q2/a", "unreceived", 2)

	first, p1 := sub.expectPubFirstByte()
	require.Equal(t, byte(0x34), first) // [MQTT-4.3.3-1] QoS 2, DUP=0
	_, p2 := sub.expectPubFirstByte()
	require.Equal(t, "unreceived", string(p2.Payload))
	require.NotEqual(t, p1.PacketID, p2.PacketID) // [MQTT-2.3.1-4]

	// A PUBCOMP before the PUBREC does not fit the state machine: ignored.
	sub.send(&wire.Pubcomp{PacketID: p1.PacketID})
	sub.send(&wire.Pubrec{PacketID: p1.PacketID})
	sub.expectRawPacket(0x62, 0x02, byte(p1.PacketID>>8), byte(p1.PacketID)) // [MQTT-4.3.3-1] [MQTT-3.6.1-1] [MQTT-2.3.1-6]
	// PUBCOMP withheld; PUBREC withheld for the second message.
	sub.conn.Close() // network failure, no DISCONNECT

	sub, ack := b.connect(t, id, false)
	require.True(t, ack.SessionPresent) // [MQTT-4.1.0-1] the QoS 2 state is still there
	// In original order: the PUBREL for the first message (never its
	// PUBLISH again), then the second PUBLISH with DUP=1 [MQTT-4.6.0-1].
	sub.expectRawPacket(0x62, 0x02, byte(p1.PacketID>>8), byte(p1.PacketID)) // [MQTT-4.3.3-1] [MQTT-4.4.0-1]
	first, again := sub.expectPubFirstByte()
	require.Equal(t, byte(0x3C), first)           // [MQTT-3.3.1-1]
	require.Equal(t, p2.PacketID, again.PacketID) // [MQTT-4.4.0-1]
	require.Equal(t, "unreceived", string(again.Payload))
	sub.send(&wire.Pubcomp{PacketID: p1.PacketID})
	sub.send(&wire.Pubrec{PacketID: p2.PacketID})
	require.Equal(t, p2.PacketID, sub.expectPubrel())
	sub.send(&wire.Pubcomp{PacketID: p2.PacketID})
	sub.sendDisconnect()

	sub, _ = b.connect(t, id, false)
	sub.expectSilence(200 * time.Millisecond) // both complete
}

func TestPubrelWithWrongFlagsCloses(t *testing.T) {
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	pub.publish("t", "x", 2, false, 3)
	pub.expect(wire.PUBREC)
	pub.write([]byte{0x60, 0x02, 0x00, 0x03}) // [MQTT-3.6.1-1] flags 0000
	pub.expectClosed()
}

func TestPublishQoS3Closes(t *testing.T) {
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("#", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)
	// 0x36: QoS bits 11. Topic "t", packet id 1, payload "x".
	pub.write([]byte{0x36, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'x'})
	pub.expectClosed()                        // [MQTT-3.3.1-4]
	sub.expectSilence(100 * time.Millisecond) // and nothing was delivered
}

// Many unacknowledged deliveries at once all carry distinct non-zero ids,
// and a freed id is not handed out while others are still in flight.
func TestOutboundPacketIDsDistinctWhileInflight(t *testing.T) {
	const window = 200
	b := runBroker(t, Config{MaxInflight: window})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("ids", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 2), true)
	var batch []byte
	for i := range window + 1 {
		batch = (&wire.Publish{QoS: 1, Topic: []byte("ids"), PacketID: uint16(i + 1), Payload: []byte(strconv.Itoa(i))}).Append(batch)
	}
	pub.write(batch)
	for range window + 1 {
		pub.expect(wire.PUBACK)
	}
	inflight := map[uint16]int{}
	for i := range window {
		p := sub.expectPubAt(strconv.Itoa(i), 1, false)
		_, dup := inflight[p.PacketID]
		require.False(t, dup, "id %d handed out twice while in flight", p.PacketID) // [MQTT-2.3.1-4]
		require.NotZero(t, p.PacketID)                                              // [MQTT-2.3.1-1]
		inflight[p.PacketID] = i
	}
	sub.expectSilence(100 * time.Millisecond) // the window is full
	var freed uint16
	for id, i := range inflight {
		if i == window/2 {
			freed = id
		}
	}
	sub.send(&wire.Puback{PacketID: freed})
	delete(inflight, freed)
	p := sub.expectPubAt(strconv.Itoa(window), 1, false)
	_, dup := inflight[p.PacketID]
	require.False(t, dup, "id %d reused while in flight", p.PacketID) // [MQTT-2.3.1-4]
}

// An id held by an outbound QoS 2 message waiting for PUBCOMP, and one held
// by a QoS 1 message waiting for PUBACK, are not reused even after the
// broker's id counter wraps around 65535.
func TestOutboundPacketIDNotReusedAcrossWrap(t *testing.T) {
	const total = 66000
	b := runBroker(t, Config{MaxQueuedMessages: total})
	sub, _ := b.connect(t, b.idOnShard("sub", 1), true)
	sub.subscribeOK("wrap/#", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 3), true)
	pub.pubQoS2("wrap/held", "q2", 1)
	pub.pubQoS1("wrap/held", "q1", 1)
	q2 := sub.expectPubAt("q2", 2, false)
	q1 := sub.expectPubAt("q1", 1, false) // PUBACK withheld
	sub.send(&wire.Pubrec{PacketID: q2.PacketID})
	require.Equal(t, q2.PacketID, sub.expectPubrel()) // PUBCOMP withheld

	// The subscriber acknowledges everything else as it arrives.
	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			var acks []byte
			for n := 0; n < total; {
				sub.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
				fh, body, err := sub.r.ReadPacket()
				if err != nil {
					return fmt.Errorf("after %d messages: %w", n, err)
				}
				var p wire.Publish
				if err := p.Decode(fh, body); err != nil {
					return err
				}
				if p.PacketID == q1.PacketID || p.PacketID == q2.PacketID {
					return fmt.Errorf("message %d got id %d, still in flight", n, p.PacketID) // [MQTT-2.3.1-4]
				}
				if want := strconv.Itoa(n); string(p.Payload) != want {
					return fmt.Errorf("got %q, want %q", p.Payload, want)
				}
				n++
				acks = (&wire.Puback{PacketID: p.PacketID}).Append(acks)
				if sub.r.Buffered() == 0 || n == total {
					sub.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := sub.conn.Write(acks); err != nil {
						return err
					}
					acks = acks[:0]
				}
			}
			return nil
		}()
	}()
	var batch []byte
	for i := 0; i < total; i += 500 {
		batch = batch[:0]
		for j := i; j < min(i+500, total); j++ {
			batch = (&wire.Publish{QoS: 1, Topic: []byte("wrap/x"), PacketID: uint16(j%500 + 1), Payload: []byte(strconv.Itoa(j))}).Append(batch)
		}
		pub.write(batch)
		for j := i; j < min(i+500, total); j++ {
			pub.expect(wire.PUBACK)
		}
	}
	require.NoError(t, <-errc)
	// The held messages are still in flight and complete normally.
	sub.send(&wire.Pubcomp{PacketID: q2.PacketID})
	sub.send(&wire.Puback{PacketID: q1.PacketID})
	sub.ping()
}

// With MaxInflight 3, further QoS 1/2 messages wait in the session queue
// and go out in order as acknowledgements free the window, whatever order
// the acknowledgements come in.
func TestInflightWindow(t *testing.T) {
	b := runBroker(t, Config{MaxInflight: 3})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("win", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)
	for i := range 8 {
		qos := byte(1 + i%2)
		pub.publish("win", strconv.Itoa(i), qos, false, uint16(i+1))
	}
	for range 8 {
		_, err := pub.read(5 * time.Second)
		require.NoError(t, err)
	}
	var ps []*wire.Publish
	for i := range 3 {
		ps = append(ps, sub.expectPubAt(strconv.Itoa(i), byte(1+i%2), false))
	}
	sub.expectSilence(100 * time.Millisecond) // window full

	// Acknowledge the third (QoS 1) first: out of order [MQTT-4.6.0-2].
	sub.send(&wire.Puback{PacketID: ps[2].PacketID})
	ps = append(ps, sub.expectPubAt("3", 2, false))
	sub.expectSilence(50 * time.Millisecond)
	// A PUBREC frees nothing: the QoS 2 message is in flight until PUBCOMP.
	sub.send(&wire.Pubrec{PacketID: ps[1].PacketID})
	require.Equal(t, ps[1].PacketID, sub.expectPubrel())
	sub.expectSilence(50 * time.Millisecond)
	sub.send(&wire.Pubcomp{PacketID: ps[1].PacketID})
	ps = append(ps, sub.expectPubAt("4", 1, false))
	sub.send(&wire.Puback{PacketID: ps[0].PacketID})
	ps = append(ps, sub.expectPubAt("5", 2, false))
	sub.expectSilence(50 * time.Millisecond)
	sub.send(&wire.Pubrec{PacketID: ps[5].PacketID})
	sub.send(&wire.Pubrec{PacketID: ps[3].PacketID})
	require.Equal(t, ps[5].PacketID, sub.expectPubrel()) // [MQTT-4.6.0-4] in PUBREC order
	require.Equal(t, ps[3].PacketID, sub.expectPubrel())
	sub.send(&wire.Puback{PacketID: ps[4].PacketID})
	p6 := sub.expectPubAt("6", 1, false)
	sub.expectSilence(50 * time.Millisecond)
	sub.send(&wire.Pubcomp{PacketID: ps[3].PacketID})
	sub.send(&wire.Pubcomp{PacketID: ps[5].PacketID})
	p7 := sub.expectPubAt("7", 2, false)
	sub.ackDelivery(p6)
	sub.ackDelivery(p7)
	sub.expectSilence(50 * time.Millisecond)
}

// ackDelivery completes the receiver side of one delivery.
func (c *rawClient) ackDelivery(p *wire.Publish) {
	c.t.Helper()
	switch p.QoS {
	case 1:
		c.send(&wire.Puback{PacketID: p.PacketID})
	case 2:
		c.send(&wire.Pubrec{PacketID: p.PacketID})
		require.Equal(c.t, p.PacketID, c.expectPubrel())
		c.send(&wire.Pubcomp{PacketID: p.PacketID})
	}
}

// The broker's own PUBACKs and PUBRECs follow the order the PUBLISHes
// arrived in, and its PUBCOMPs the order of the PUBRELs.
func TestBrokerAcksInArrivalOrder(t *testing.T) {
	b := runBroker(t, Config{})
	pub, _ := b.connect(t, "pub", true)
	var batch []byte
	order := []struct {
		qos byte
		id  uint16
	}{{1, 10}, {2, 9}, {1, 3}, {2, 2}, {1, 7}, {2, 8}}
	for _, o := range order {
		batch = (&wire.Publish{QoS: o.qos, Topic: []byte("order/acks"), PacketID: o.id}).Append(batch)
	}
	pub.write(batch)
	for _, o := range order {
		p, err := pub.read(5 * time.Second)
		require.NoError(t, err)
		if o.qos == 1 {
			require.Equal(t, &wire.Puback{PacketID: o.id}, p) // [MQTT-4.6.0-2]
		} else {
			require.Equal(t, &wire.Pubrec{PacketID: o.id}, p) // [MQTT-4.6.0-3]
		}
	}
	batch = batch[:0]
	for _, id := range []uint16{2, 9, 8} {
		batch = (&wire.Pubrel{PacketID: id}).Append(batch)
	}
	pub.write(batch)
	for _, id := range []uint16{2, 9, 8} {
		require.Equal(t, &wire.Pubcomp{PacketID: id}, pub.expect(wire.PUBCOMP))
	}
}

// A subscriber that acknowledges out of order breaks [MQTT-4.6.0-2] and
// [MQTT-4.6.0-3]; the broker copes, and its PUBRELs follow the order of the
// PUBRECs it received [MQTT-4.6.0-4].
func TestSubscriberAcksOutOfOrder(t *testing.T) {
	b := runBroker(t, Config{})
	id := b.idOnShard("sub", 3)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("ooo/#", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)
	for i := range 3 {
		pub.pubQoS1("ooo/1", "a"+strconv.Itoa(i), uint16(i+1))
	}
	for i := range 3 {
		pub.pubQoS2("ooo/2", "b"+strconv.Itoa(i), uint16(i+1))
	}
	var q1, q2 []uint16
	for i := range 3 {
		q1 = append(q1, sub.expectPubAt("a"+strconv.Itoa(i), 1, false).PacketID)
	}
	for i := range 3 {
		q2 = append(q2, sub.expectPubAt("b"+strconv.Itoa(i), 2, false).PacketID)
	}
	var batch []byte
	for _, i := range []int{2, 0, 1} {
		batch = (&wire.Puback{PacketID: q1[i]}).Append(batch)
	}
	for _, i := range []int{2, 0, 1} {
		batch = (&wire.Pubrec{PacketID: q2[i]}).Append(batch)
	}
	sub.write(batch)
	for _, i := range []int{2, 0, 1} {
		require.Equal(t, q2[i], sub.expectPubrel()) // [MQTT-4.6.0-4]
	}
	batch = batch[:0]
	for _, i := range []int{1, 2, 0} {
		batch = (&wire.Pubcomp{PacketID: q2[i]}).Append(batch)
	}
	sub.write(batch)
	// Every message completed: nothing is resent when the session resumes.
	sub.sendDisconnect()
	sub, _ = b.connect(t, id, false)
	sub.expectSilence(200 * time.Millisecond) // [MQTT-4.6.0-2] [MQTT-4.6.0-3] handled
}

// Every topic is ordered by default: one publisher's messages on one topic
// at one QoS reach each subscriber in the order they were published, on
// the publisher's own shard and across shards. The publisher never waits
// for a single ack; it only stays within MaxQueuedMessages of the slower
// subscriber so that the default config drops nothing.
func TestOrderingPerPublisherTopicAndQoS(t *testing.T) {
	const rounds = 1000
	b := runBroker(t, Config{Shards: 4}) // defaults otherwise: every topic is ordered [MQTT-4.6.0-5]
	topics := []string{"order/a", "/leading/slash", "Ordered Topic/with space", "x"}
	want := rounds * len(topics)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)
	local, _ := b.connect(t, b.idOnShard("local", 0), true)
	remote, _ := b.connect(t, b.idOnShard("remote", 2), true)
	subs := []*rawClient{local, remote}
	for _, s := range subs {
		s.send(&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "#", QoS: 2}, {Filter: "/leading/#", QoS: 2}}})
		s.expect(wire.SUBACK)
	}

	type stream struct {
		topic string
		qos   byte
	}
	acked := 0 // QoS 1/2 publishes
	for i := range rounds {
		for ti := range topics {
			if (i+ti)%3 != 0 {
				acked++
			}
		}
	}
	var wg sync.WaitGroup
	var progress [2]atomic.Int64
	var failed atomic.Bool
	errs := make([]error, len(subs)+1)
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { failed.Store(failed.Load() || errs[i] != nil) }()
			errs[i] = func() error {
				last := map[stream]int{}
				var acks []byte
				for got := 0; got < want; {
					s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					fh, body, err := s.r.ReadPacket()
					if err != nil {
						return fmt.Errorf("after %d of %d messages: %w", got, want, err)
					}
					if fh.Type == wire.PUBREL {
						acks = append(acks, 0x70, 2, body[0], body[1])
					} else {
						var p wire.Publish
						if err := p.Decode(fh, body); err != nil {
							return err
						}
						seq, err := strconv.Atoi(string(p.Payload))
						if err != nil || p.Dup {
							return fmt.Errorf("bad delivery %+v", p)
						}
						k := stream{string(p.Topic), p.QoS}
						if prev, seen := last[k]; seen && seq <= prev {
							// [MQTT-4.6.0-6] strictly increasing per publisher, topic and QoS
							return fmt.Errorf("stream %v: %d after %d", k, seq, prev)
						}
						last[k] = seq
						got++
						progress[i].Store(int64(got))
						switch p.QoS {
						case 1:
							acks = (&wire.Puback{PacketID: p.PacketID}).Append(acks)
						case 2:
							acks = (&wire.Pubrec{PacketID: p.PacketID}).Append(acks)
						}
					}
					if s.r.Buffered() == 0 && len(acks) > 0 {
						s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
						if _, err := s.conn.Write(acks); err != nil {
							return err
						}
						acks = acks[:0]
					}
				}
				if len(last) != len(topics)*3 {
					return fmt.Errorf("saw %d streams, want %d", len(last), len(topics)*3)
				}
				return nil
			}()
		}()
	}
	// The publisher's acks are read (and PUBRECs released) on their own
	// goroutine so the publisher never waits for one.
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[2] = func() error {
			for n := 0; n < acked; {
				pub.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				fh, body, err := pub.r.ReadPacket()
				if err != nil {
					return fmt.Errorf("publisher acks: %w", err)
				}
				switch fh.Type {
				case wire.PUBACK:
					n++
				case wire.PUBREC:
					pub.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					pub.conn.Write([]byte{0x62, 2, body[0], body[1]})
				case wire.PUBCOMP:
					n++
				}
			}
			return nil
		}()
	}()

	var batch []byte
	id := uint16(0)
	for i := range rounds {
		for ti, topic := range topics {
			qos := byte((i + ti) % 3)
			pid := uint16(0)
			if qos > 0 {
				id = id%60000 + 1
				pid = id
			}
			batch = (&wire.Publish{QoS: qos, Topic: []byte(topic), PacketID: pid, Payload: []byte(strconv.Itoa(i))}).Append(batch)
		}
		if i%50 == 49 {
			pub.write(batch)
			batch = batch[:0]
			sent := int64((i + 1) * len(topics))
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if failed.Load() || sent-min(progress[0].Load(), progress[1].Load()) < 600 {
					break
				}
			}
		}
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Zero(t, b.Stats().DroppedQueueFull)
	require.Zero(t, b.Stats().DroppedQoS0)
}

// --- in-session retry (RetryInterval / RetryLimit) ---

// The retry option is off by default: 3.1.1 resends only on reconnect.
func TestRetryOffByDefault(t *testing.T) {
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("r", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)
	pub.pubQoS1("r", "x", 1)
	sub.expectPubAt("x", 1, false)
	sub.expectSilence(500 * time.Millisecond)
}

// An unacknowledged PUBLISH is resent with DUP=1 and its id after the
// interval, at most RetryLimit times; QoS 2 after PUBREC resends the PUBREL.
func TestRetryResendsUntilLimit(t *testing.T) {
	const interval = 150 * time.Millisecond
	b := runBroker(t, Config{RetryInterval: interval, RetryLimit: 2})
	sub, _ := b.connect(t, b.idOnShard("sub", 2), true)
	sub.subscribeOK("r/#", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)

	pub.pubQoS1("r/1", "q1", 1)
	start := time.Now()
	p := sub.expectPubAt("q1", 1, false)
	last := start
	for range 2 {
		again := sub.expectPubAt("q1", 1, true) // DUP=1
		require.Equal(t, p.PacketID, again.PacketID)
		require.GreaterOrEqual(t, time.Since(last), interval*2/3, "resent before the interval")
		last = time.Now()
	}
	sub.expectSilence(3 * interval) // RetryLimit reached
	sub.send(&wire.Puback{PacketID: p.PacketID})

	pub.pubQoS2("r/2", "q2", 2)
	p = sub.expectPubAt("q2", 2, false)
	again := sub.expectPubAt("q2", 2, true)
	require.Equal(t, p.PacketID, again.PacketID)
	sub.send(&wire.Pubrec{PacketID: p.PacketID})
	require.Equal(t, p.PacketID, sub.expectPubrel())
	last = time.Now()
	for range 2 {
		// The PUBREL is retried, never the PUBLISH [MQTT-4.3.3-1].
		require.Equal(t, p.PacketID, sub.expectPubrel())
		require.GreaterOrEqual(t, time.Since(last), interval*2/3, "PUBREL resent before the interval")
		last = time.Now()
	}
	sub.expectSilence(3 * interval)
	sub.send(&wire.Pubcomp{PacketID: p.PacketID})
	sub.expectSilence(2 * interval)
}

// Retries go out in the original order and stop once acknowledged.
func TestRetryKeepsOrderAndStopsOnAck(t *testing.T) {
	const interval = 150 * time.Millisecond
	b := runBroker(t, Config{RetryInterval: interval, RetryLimit: 1})
	sub, _ := b.connect(t, b.idOnShard("sub", 0), true)
	sub.subscribeOK("r", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)
	var batch []byte
	for i := range 5 {
		batch = (&wire.Publish{QoS: 1, Topic: []byte("r"), PacketID: uint16(i + 1), Payload: []byte(strconv.Itoa(i))}).Append(batch)
	}
	pub.write(batch)
	var ids []uint16
	for i := range 5 {
		ids = append(ids, sub.expectPubAt(strconv.Itoa(i), 1, false).PacketID)
	}
	sub.send(&wire.Puback{PacketID: ids[1]})
	sub.send(&wire.Puback{PacketID: ids[3]})
	for _, i := range []int{0, 2, 4} {
		p := sub.expectPubAt(strconv.Itoa(i), 1, true) // original order, acked ones skipped
		require.Equal(t, ids[i], p.PacketID)
		sub.send(&wire.Puback{PacketID: p.PacketID})
	}
	sub.expectSilence(3 * interval)
}

// The interval of a PUBREL retry counts from the PUBREC that caused the
// PUBREL, not from the PUBLISH.
func TestRetryPubrelIntervalCountsFromPubrec(t *testing.T) {
	const interval = 200 * time.Millisecond
	b := runBroker(t, Config{RetryInterval: interval, RetryLimit: 3})
	sub, _ := b.connect(t, b.idOnShard("sub", 1), true)
	sub.subscribeOK("r", 2)
	pub, _ := b.connect(t, b.idOnShard("pub", 1), true)
	pub.pubQoS2("r", "x", 1)
	p := sub.expectPubAt("x", 2, false)
	// Wait for the first retry of the PUBLISH, then answer just before the
	// next retry would be due.
	sub.expectPubAt("x", 2, true)
	time.Sleep(interval * 8 / 10)
	sub.send(&wire.Pubrec{PacketID: p.PacketID})
	sent := time.Now()
	// On a loaded machine the next PUBLISH retry may cross the PUBREC.
	first, err := sub.read(5 * time.Second)
	require.NoError(t, err)
	if pub, ok := first.(*wire.Publish); ok {
		require.True(t, pub.Dup, "only a retry may cross the PUBREC")
		first, err = sub.read(5 * time.Second)
		require.NoError(t, err)
	}
	require.Equal(t, &wire.Pubrel{PacketID: p.PacketID}, first)
	require.Equal(t, p.PacketID, sub.expectPubrel())
	require.GreaterOrEqual(t, time.Since(sent), interval*3/4, "PUBREL retried sooner than the interval after PUBREC")
	sub.send(&wire.Pubcomp{PacketID: p.PacketID})
}

// A reconnect resends everything in flight at once; the retry timer starts
// again from that resend instead of resending the same messages again
// straight away.
func TestRetryAfterReconnectWaitsAnInterval(t *testing.T) {
	const interval = 200 * time.Millisecond
	b := runBroker(t, Config{RetryInterval: interval, RetryLimit: 3})
	id := b.idOnShard("sub", 2)
	sub, _ := b.connect(t, id, false)
	sub.subscribeOK("r", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)
	pub.pubQoS1("r", "x", 1)
	p := sub.expectPubAt("x", 1, false)
	sub.sendDisconnect()
	time.Sleep(interval * 3 / 2) // the message is now older than the interval
	sub, _ = b.connect(t, id, false)
	resent := time.Now()
	require.Equal(t, p.PacketID, sub.expectPubAt("x", 1, true).PacketID) // [MQTT-4.4.0-1]
	require.Equal(t, p.PacketID, sub.expectPubAt("x", 1, true).PacketID)
	require.GreaterOrEqual(t, time.Since(resent), interval*3/4, "retried right after the reconnect resend")
	sub.send(&wire.Puback{PacketID: p.PacketID})
}

// The default in-flight window is 32 messages per client.
func TestInflightWindowDefault(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	require.Equal(t, 32, b.Config().MaxInflight)
	sub, _ := b.connect(t, b.idOnShard("sub", 2), true)
	sub.subscribeOK("w", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)
	var batch []byte
	for i := range 40 {
		batch = (&wire.Publish{QoS: 1, Topic: []byte("w"), PacketID: uint16(i + 1), Payload: []byte(strconv.Itoa(i))}).Append(batch)
	}
	pub.write(batch)
	var ids []uint16
	for i := range 32 {
		ids = append(ids, sub.expectPubAt(strconv.Itoa(i), 1, false).PacketID)
	}
	sub.expectSilence(100 * time.Millisecond)
	batch = batch[:0]
	for _, id := range ids {
		batch = (&wire.Puback{PacketID: id}).Append(batch)
	}
	sub.write(batch)
	for i := 32; i < 40; i++ {
		sub.ackDelivery(sub.expectPubAt(strconv.Itoa(i), 1, false))
	}
}
