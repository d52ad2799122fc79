package shard

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/internal/servetest"
	"iotd/wire"
)

// testBroker is a real broker on an ephemeral loopback port.
type testBroker struct {
	*Broker
	addr string
}

// runBroker starts a broker listening on 127.0.0.1:0 and stops it when the
// test ends. Set IOTD_LOGGING=1 to see its log.
func runBroker(t testing.TB, cfg Config) *testBroker {
	t.Helper()
	if os.Getenv("IOTD_LOGGING") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Shards == 0 {
		cfg.Shards = 4
	}
	if os.Getenv("IOTD_TEST_PERSISTENCE") != "" {
		// The whole suite also runs with every ack held for the log.
		cfg.Persistence = true
	}
	if cfg.Persistence && cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tb, _ := serveOn(t, cfg, ln, ListenerOptions{})
	return tb
}

// serveOn makes a broker from cfg as given and serves ln with opts. stop
// closes the listener and the broker and waits for Serve to return; it is
// idempotent, and also runs when the test ends. Every way these tests start
// a broker (plain, TLS, persistent and restarted) goes through here.
func serveOn(t testing.TB, cfg Config, ln net.Listener, opts ListenerOptions) (tb *testBroker, stop func()) {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		ln.Close()
	}
	require.NoError(t, err)
	stop = servetest.Run(t, ln, func() { b.ServeListener(ln, opts) }, b.Close)
	return &testBroker{Broker: b, addr: ln.Addr().String()}, stop
}

// rawClient speaks MQTT byte by byte, for protocol edges.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *wire.Reader
}

func (tb *testBroker) dial(t testing.TB) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", tb.addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: wire.NewReader(conn, 1<<28)}
}

// connect dials and completes a CONNECT/CONNACK exchange.
func (tb *testBroker) connect(t testing.TB, id string, clean bool) (*rawClient, *wire.Connack) {
	t.Helper()
	c := tb.dial(t)
	ack := c.connect(&wire.Connect{ClientID: id, CleanSession: clean})
	require.Equal(t, wire.Accepted, ack.ReturnCode)
	return c, ack
}

func (c *rawClient) connect(cp *wire.Connect) *wire.Connack {
	c.t.Helper()
	if cp.ProtocolName == "" {
		cp.ProtocolName, cp.ProtocolLevel = "MQTT", 4
	}
	c.send(cp)
	p := c.expect(wire.CONNACK)
	return p.(*wire.Connack)
}

func (c *rawClient) send(p wire.Packet) {
	c.t.Helper()
	c.write(p.Append(nil))
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(b)
	require.NoError(c.t, err)
}

// read returns the next packet, or an error (io.EOF when the broker closed).
func (c *rawClient) read(timeout time.Duration) (wire.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	fh, body, err := c.r.ReadPacket()
	if err != nil {
		return nil, err
	}
	return wire.Decode(fh, body)
}

// expect reads the next packet and checks its type.
func (c *rawClient) expect(t wire.Type) wire.Packet {
	c.t.Helper()
	p, err := c.read(5 * time.Second)
	require.NoError(c.t, err, "waiting for %s", t)
	require.Equal(c.t, t, p.Type(), "got %#v", p)
	return p
}

func (c *rawClient) expectPublish() *wire.Publish {
	c.t.Helper()
	return c.expect(wire.PUBLISH).(*wire.Publish)
}

// expectClosed checks that the broker closes the connection without sending
// anything more.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	p, err := c.read(5 * time.Second)
	require.Error(c.t, err, "expected the connection to close, got %#v", p)
	var ne net.Error
	require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "connection still open after 5s")
	require.True(c.t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "unexpected error %v", err)
}

// expectSilence checks that nothing arrives for d.
func (c *rawClient) expectSilence(d time.Duration) {
	c.t.Helper()
	p, err := c.read(d)
	var ne net.Error
	require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "expected nothing, got %#v %v", p, err)
}

// ping sends PINGREQ and waits for PINGRESP: everything the broker sent
// before it has arrived.
func (c *rawClient) ping() {
	c.t.Helper()
	c.send(&wire.Pingreq{})
	c.expect(wire.PINGRESP)
}

func (c *rawClient) subscribe(id uint16, subs ...wire.Subscription) *wire.Suback {
	c.t.Helper()
	c.send(&wire.Subscribe{PacketID: id, Subscriptions: subs})
	return c.expect(wire.SUBACK).(*wire.Suback)
}

func (c *rawClient) publish(topic string, payload string, qos byte, retain bool, id uint16) {
	c.t.Helper()
	c.send(&wire.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: id})
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// --- helpers for the spec_*_test.go conformance suites ---

// connectWith dials and sends cp (protocol "MQTT" level 4 unless set),
// requiring CONNACK 0x00.
func (tb *testBroker) connectWith(t testing.TB, cp *wire.Connect) (*rawClient, *wire.Connack) {
	t.Helper()
	c := tb.dial(t)
	ack := c.connect(cp)
	require.Equal(t, wire.Accepted, ack.ReturnCode)
	return c, ack
}

// connectWill connects a client whose CONNECT carries a will.
func (tb *testBroker) connectWill(t testing.TB, id string, clean bool, keepAlive uint16, topic, payload string, qos byte, retain bool) *rawClient {
	t.Helper()
	c, _ := tb.connectWith(t, &wire.Connect{
		ClientID: id, CleanSession: clean, KeepAlive: keepAlive,
		WillFlag: true, WillTopic: topic, WillMessage: []byte(payload), WillQoS: qos, WillRetain: retain,
	})
	return c
}

// subscriber connects a clean client subscribed to filter at qos.
func (tb *testBroker) subscriber(t testing.TB, id, filter string, qos byte) *rawClient {
	t.Helper()
	c, _ := tb.connect(t, id, true)
	sa := c.subscribe(1, wire.Subscription{Filter: filter, QoS: qos})
	require.Equal(t, []byte{qos}, sa.ReturnCodes)
	return c
}

// readRaw returns the next packet undecoded: its fixed header and body.
func (c *rawClient) readRaw(timeout time.Duration) (wire.FixedHeader, []byte) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	fh, body, err := c.r.ReadPacket()
	require.NoError(c.t, err)
	return fh, append([]byte(nil), body...)
}

// unsubscribe sends UNSUBSCRIBE and waits for the UNSUBACK.
func (c *rawClient) unsubscribe(id uint16, filters ...string) *wire.Unsuback {
	c.t.Helper()
	c.send(&wire.Unsubscribe{PacketID: id, Filters: filters})
	return c.expect(wire.UNSUBACK).(*wire.Unsuback)
}

// expectMessage reads the next PUBLISH, checks topic and payload, and
// completes its QoS 1/2 flow.
func (c *rawClient) expectMessage(topic, payload string) *wire.Publish {
	c.t.Helper()
	p := c.expectPublish()
	require.Equal(c.t, topic, string(p.Topic))
	require.Equal(c.t, payload, string(p.Payload))
	c.ack(p)
	return p
}

// ack completes the receiver side of a delivery: PUBACK for QoS 1,
// PUBREC/PUBREL/PUBCOMP for QoS 2.
func (c *rawClient) ack(p *wire.Publish) {
	c.t.Helper()
	switch p.QoS {
	case 1:
		c.send(&wire.Puback{PacketID: p.PacketID})
	case 2:
		c.send(&wire.Pubrec{PacketID: p.PacketID})
		require.Equal(c.t, p.PacketID, c.expect(wire.PUBREL).(*wire.Pubrel).PacketID)
		c.send(&wire.Pubcomp{PacketID: p.PacketID})
	}
}

// publishAcked publishes at QoS 1 and waits for the PUBACK: the broker has
// routed the message when it returns.
func (c *rawClient) publishAcked(topic, payload string, retain bool, id uint16) {
	c.t.Helper()
	c.publish(topic, payload, 1, retain, id)
	require.Equal(c.t, id, c.expect(wire.PUBACK).(*wire.Puback).PacketID)
}

// disconnect sends DISCONNECT and waits for the broker to close.
func (c *rawClient) disconnect() {
	c.t.Helper()
	c.send(&wire.Disconnect{})
	c.expectClosed()
}

// kill drops the TCP connection without DISCONNECT (a network failure as
// the broker sees it).
func (c *rawClient) kill() { c.conn.Close() }
