package shard

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/internal/syncbuf"
	"iotd/wire"
)

// Connections beyond MaxConnections are closed at accept, counted and
// logged (once per limitLogEvery); the clients already connected keep
// working, and a freed slot lets the next connection in.
func TestMaxConnectionsRefusedAtAccept(t *testing.T) {
	logs := &syncbuf.Buffer{}
	b := runBroker(t, Config{MaxConnections: 3, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	c1, _ := b.connect(t, "one", true)
	c2, _ := b.connect(t, "two", true)
	silent := b.dial(t) // counts before it sends CONNECT

	for range 2 {
		over := b.dial(t)
		over.expectClosed()
	}
	require.Equal(t, int64(2), b.Stats().Refused[RefusedMaxConnections])
	require.Equal(t, 1, strings.Count(logs.String(), "refused a connection: max-connections are open"), "rate-limited: one line for two refusals:\n%s", logs.String())
	require.Contains(t, logs.String(), "limit=max-connections")

	for _, c := range []*rawClient{c1, c2} {
		c.send(&wire.Pingreq{})
		c.expect(wire.PINGRESP)
	}
	silent.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "three", CleanSession: true})
	silent.expect(wire.CONNACK)

	c1.conn.Close()
	require.Eventually(t, func() bool { return b.Stats().Connections == 2 }, 5*time.Second, 5*time.Millisecond)
	c4, _ := b.connect(t, "four", true)
	c4.send(&wire.Pingreq{})
	c4.expect(wire.PINGRESP)
	require.Equal(t, int64(2), b.Stats().Refused[RefusedMaxConnections])
	require.Equal(t, int64(4), b.Stats().ConnectionsTotal, "refused connections are not served or counted as accepted")
}

// A client id over MaxClientIDLen gets CONNACK 0x02 [MQTT-3.1.3-9] (see
// TestSpecConnectClientIDs), and the refusal is counted and logged.
func TestMaxClientIDLengthCountedAndLogged(t *testing.T) {
	logs := &syncbuf.Buffer{}
	b := runBroker(t, Config{MaxClientIDLen: 8, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	c := b.dial(t)
	ack := c.connect(&wire.Connect{ClientID: "123456789", CleanSession: true})
	require.Equal(t, wire.RefusedIdentifierRejected, ack.ReturnCode)
	c.expectClosed()
	ok, _ := b.connect(t, "12345678", true)
	ok.send(&wire.Pingreq{})
	ok.expect(wire.PINGRESP)
	require.Equal(t, int64(1), b.Stats().Refused[RefusedClientIDTooLong])
	require.Contains(t, logs.String(), "client id longer than max-client-id-length")
	require.Contains(t, logs.String(), "length=9 max=8")
}

// Every other limit is logged once per limitLogEvery with its name and
// counted: max-packet-size, connect-timeout and max-subscriptions in
// Stats.LimitHits, max-queued-messages as Stats.DroppedQueueFull. (Their
// behaviour: TestSpecMaxPacketSize, TestSpecConnectTimeout,
// TestSpecSubscribeMany, TestSessionQueueLimit; max-outbound-bytes:
// TestSlowConsumerDoesNotHoldUpOthers.)
func TestLimitHitsCountedAndLogged(t *testing.T) {
	logs := &syncbuf.Buffer{}
	b := runBroker(t, Config{
		MaxPacketSize: 1024, ConnectTimeout: 200 * time.Millisecond, MaxSubscriptions: 1, MaxQueuedMessages: 2,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})

	big, _ := b.connect(t, "big", true)
	big.publish("t", strings.Repeat("x", 2000), 0, false, 0)
	big.expectClosed()
	silent := b.dial(t)
	silent.expectClosed()

	subs, _ := b.connect(t, "subs", true)
	ack := subs.subscribe(1, wire.Subscription{Filter: "a", QoS: 0}, wire.Subscription{Filter: "b", QoS: 0})
	require.Equal(t, []byte{0, wire.SubackFailure}, ack.ReturnCodes)

	off, _ := b.connect(t, "offline", false)
	off.subscribe(1, wire.Subscription{Filter: "q", QoS: 1})
	off.send(&wire.Disconnect{})
	off.expectClosed()
	pub, _ := b.connect(t, "pub", true)
	for i := range 3 {
		pub.publishAcked("q", "m", false, uint16(i+1))
	}

	st := b.Stats()
	require.Equal(t, int64(1), st.LimitHits[LimitMaxPacketSize])
	require.Equal(t, int64(1), st.LimitHits[LimitConnectTimeout])
	require.Equal(t, int64(1), st.LimitHits[LimitMaxSubscriptions])
	require.Equal(t, int64(1), st.DroppedQueueFull)
	log := logs.String()
	for _, limit := range []string{LimitMaxPacketSize, LimitConnectTimeout, LimitMaxSubscriptions, LimitMaxQueuedMessages} {
		require.Equal(t, 1, strings.Count(log, "limit="+limit), "one log line for %s:\n%s", limit, log)
	}
}

// Connections that never complete CONNECT (slowloris) cannot lock out a real
// client: past MaxPendingHandshakes the oldest pending one is closed to make
// room, and the newcomer connects and publishes as usual.
func TestMaxPendingHandshakesEvictsOldest(t *testing.T) {
	const max, flood = 50, 300
	b := runBroker(t, Config{MaxPendingHandshakes: max, ConnectTimeout: time.Minute})
	var stalled []net.Conn
	for i := range flood {
		conn, err := net.Dial("tcp", b.addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		if i%2 == 0 {
			conn.Write([]byte{0x10, 20, 0, 4}) // half a CONNECT, then nothing
		}
		stalled = append(stalled, conn)
	}
	sub, _ := b.connect(t, "real-sub", true)
	sub.subscribe(1, wire.Subscription{Filter: "t", QoS: 1})
	pub, _ := b.connect(t, "real-pub", true)
	pub.publish("t", "through", 1, false, 9)
	pub.expect(wire.PUBACK)
	require.Equal(t, "through", string(sub.expectPublish().Payload))

	// Every stalled connection but the newest max (minus the two real ones'
	// turns) was closed; none of them got a byte.
	closed := 0
	for _, conn := range stalled {
		conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var one [1]byte
		if _, err := conn.Read(one[:]); err != nil && !isTimeout(err) {
			closed++
		}
	}
	require.GreaterOrEqual(t, closed, flood-max, "oldest pending handshakes closed")
	require.GreaterOrEqual(t, b.Stats().LimitHits[LimitMaxPendingHandshakes], int64(flood-max))
}
