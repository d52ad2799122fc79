package shard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	b := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.Close(ctx))
		<-done
	})
	return &testBroker{Broker: b, addr: ln.Addr().String()}
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
