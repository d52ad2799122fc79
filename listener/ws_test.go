package listener_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"iotd/listener"
	"iotd/shard"
	"iotd/tlsconf"
	"iotd/tlsconf/tlstest"
	"iotd/wire"
)

func TestParseWS(t *testing.T) {
	spec, err := listener.Parse("ws://0.0.0.0:8083/mqtt")
	require.NoError(t, err)
	require.Equal(t, listener.Spec{Scheme: "ws", Addr: "0.0.0.0:8083", Path: "/mqtt", URL: "ws://0.0.0.0:8083/mqtt"}, spec)
	require.False(t, spec.TLS())
	spec, err = listener.Parse("wss://127.0.0.1:8084")
	require.NoError(t, err)
	require.Equal(t, "", spec.Path, "no path: every path")
	require.True(t, spec.TLS())
	require.True(t, spec.IsLoopback())
	_, err = listener.Listen(spec)
	require.ErrorContains(t, err, "needs a certificate")
	_, err = listener.Parse("ws://127.0.0.1/mqtt")
	require.ErrorContains(t, err, "missing port")
	_, err = listener.Parse("tcp://127.0.0.1:1883/mqtt")
	require.ErrorContains(t, err, "takes no path")
}

// serveWS runs a broker behind a WebSocket listener for url (port 0).
func serveWS(t *testing.T, url string, tlsCfg *tls.Config) (*shard.Broker, string) {
	t.Helper()
	b, ln := serveWSConfig(t, url, tlsCfg, shard.Config{Shards: 2})
	return b, ln.Addr().String()
}

// serveWSConfig is serveWS with the broker's configuration; it returns the
// listener.
func serveWSConfig(t *testing.T, url string, tlsCfg *tls.Config, cfg shard.Config) (*shard.Broker, net.Listener) {
	t.Helper()
	b, err := shard.New(cfg)
	require.NoError(t, err)
	spec, err := listener.Parse(url)
	require.NoError(t, err)
	var ln net.Listener
	if spec.TLS() {
		ln, err = listener.ListenTLS(spec, tlsCfg)
	} else {
		ln, err = listener.Listen(spec)
	}
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- b.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		require.NoError(t, <-done, "Serve ends cleanly when the listener closes")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.Close(ctx))
	})
	return b, ln
}

// rawWS is a hand-rolled WebSocket client: it writes frames exactly as the
// test lays them out (fragments, several packets per frame, text frames).
type rawWS struct {
	t       *testing.T
	conn    net.Conn
	br      *bufio.Reader
	pending []byte       // unread bytes of the last binary frame
	mr      *wire.Reader // MQTT packets from the frames
}

// dialRawWS performs the opening handshake offering protocols; it returns
// the response status and, on 101, the connection.
func dialRawWS(t *testing.T, addr, path string, protocols ...string) (*http.Response, *rawWS) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\n"
	if len(protocols) > 0 {
		req += "Sec-WebSocket-Protocol: " + strings.Join(protocols, ", ") + "\r\n"
	}
	_, err = conn.Write([]byte(req + "\r\n"))
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, nil
	}
	h := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	require.Equal(t, base64.StdEncoding.EncodeToString(h[:]), resp.Header.Get("Sec-WebSocket-Accept"))
	return resp, &rawWS{t: t, conn: conn, br: br}
}

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
)

// frame writes one masked client frame.
func (c *rawWS) frame(fin bool, op byte, payload []byte) {
	c.t.Helper()
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, x := range payload {
		masked[i] = x ^ mask[i%4]
	}
	_, err := c.conn.Write(append(hdr, masked...))
	require.NoError(c.t, err)
}

// readFrame reads one (unmasked) server frame.
func (c *rawWS) readFrame() (op byte, payload []byte, err error) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(c.br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(c.br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0f, payload, err
}

// Read returns the payload bytes of the server's binary frames as one
// stream, whatever their framing.
func (c *rawWS) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		op, payload, err := c.readFrame()
		if err != nil {
			return 0, err
		}
		if op != opBinary {
			return 0, fmt.Errorf("server sent frame type %d; MQTT travels in binary frames [MQTT-6.0.0-1]", op)
		}
		c.pending = payload
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// packets reads n MQTT packets, which may be spread over frames or share
// one.
func (c *rawWS) packets(n int) []wire.Packet {
	c.t.Helper()
	if c.mr == nil {
		c.mr = wire.NewReader(c, 1<<20)
	}
	var out []wire.Packet
	for range n {
		fh, body, err := c.mr.ReadPacket()
		require.NoError(c.t, err)
		p, err := wire.Decode(fh, body)
		require.NoError(c.t, err)
		out = append(out, p)
	}
	return out
}

func TestWebSocketRawFramesCarryAByteStream(t *testing.T) {
	_, addr := serveWS(t, "ws://127.0.0.1:0/mqtt", nil)
	resp, c := dialRawWS(t, addr, "/mqtt", "mqtt")
	require.Equal(t, "mqtt", resp.Header.Get("Sec-WebSocket-Protocol"), "the server selects and returns mqtt [MQTT-6.0.0-4]")

	// One CONNECT split over three frames of one message (a FIN=0 binary
	// frame and two continuation frames), then over two whole messages.
	connect := (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "ws-raw", CleanSession: true, KeepAlive: 60}).Append(nil)
	c.frame(false, opBinary, connect[:3])
	c.frame(false, opContinuation, connect[3:9])
	c.frame(true, opContinuation, connect[9:])
	p := c.packets(1)
	require.Equal(t, &wire.Connack{ReturnCode: wire.Accepted}, p[0])

	sub := (&wire.Subscribe{PacketID: 7, Subscriptions: []wire.Subscription{{Filter: "ws/t", QoS: 1}}}).Append(nil)
	c.frame(true, opBinary, sub[:1])
	c.frame(true, opBinary, sub[1:]) // a packet across two messages [MQTT-6.0.0-2]
	p = c.packets(1)
	require.Equal(t, &wire.Suback{PacketID: 7, ReturnCodes: []byte{1}}, p[0])

	// Two packets in one frame: a QoS 1 PUBLISH to itself and a PINGREQ.
	two := (&wire.Publish{QoS: 1, PacketID: 9, Topic: []byte("ws/t"), Payload: []byte("both")}).Append(nil)
	two = (&wire.Pingreq{}).Append(two)
	c.frame(true, opBinary, two)
	got := c.packets(3) // PUBACK, the delivery and PINGRESP, in any framing
	var kinds []string
	for _, p := range got {
		switch p := p.(type) {
		case *wire.Puback:
			require.Equal(t, uint16(9), p.PacketID)
			kinds = append(kinds, "puback")
		case *wire.Publish:
			require.Equal(t, "both", string(p.Payload))
			kinds = append(kinds, "publish")
		case *wire.Pingresp:
			kinds = append(kinds, "pingresp")
		}
	}
	require.ElementsMatch(t, []string{"puback", "publish", "pingresp"}, kinds)
}

// A text frame closes the connection [MQTT-6.0.0-1], with close code 1003.
func TestWebSocketTextFrameCloses(t *testing.T) {
	_, addr := serveWS(t, "ws://127.0.0.1:0", nil)
	_, c := dialRawWS(t, addr, "/any/path", "mqtt")
	connect := (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "ws-text", CleanSession: true}).Append(nil)
	c.frame(true, opBinary, connect)
	require.Equal(t, &wire.Connack{ReturnCode: wire.Accepted}, c.packets(1)[0])
	c.frame(true, opText, (&wire.Pingreq{}).Append(nil))
	op, payload, err := c.readFrame()
	require.NoError(t, err)
	require.Equal(t, byte(opClose), op)
	require.Equal(t, uint16(websocket.CloseUnsupportedData), binary.BigEndian.Uint16(payload))
	_, _, err = c.readFrame()
	require.Error(t, err, "then the connection closes")
}

// A handshake that does not offer "mqtt" [MQTT-6.0.0-3] is refused with
// 400; a path other than the listener's gets 404.
func TestWebSocketHandshakeRefusals(t *testing.T) {
	_, addr := serveWS(t, "ws://127.0.0.1:0/mqtt", nil)
	resp, c := dialRawWS(t, addr, "/mqtt")
	require.Nil(t, c)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
	require.Contains(t, string(body), `needs the subprotocol "mqtt"`)

	resp, c = dialRawWS(t, addr, "/mqtt", "mqttv3.1", "chat")
	require.Nil(t, c)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	resp, c = dialRawWS(t, addr, "/other", "mqtt")
	require.Nil(t, c)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	resp, c = dialRawWS(t, addr, "/mqtt", "chat", "mqtt")
	require.NotNil(t, c, "mqtt among other offers is selected")
	require.Equal(t, "mqtt", resp.Header.Get("Sec-WebSocket-Protocol"))
}

// The broker's deadlines work through the WebSocket connection: a client
// that sends nothing after CONNECT is closed after 1.5 x keep-alive.
func TestWebSocketKeepAliveTimeout(t *testing.T) {
	_, addr := serveWS(t, "ws://127.0.0.1:0/mqtt", nil)
	_, c := dialRawWS(t, addr, "/mqtt", "mqtt")
	c.frame(true, opBinary, (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "ws-idle", CleanSession: true, KeepAlive: 1}).Append(nil))
	require.Equal(t, &wire.Connack{ReturnCode: wire.Accepted}, c.packets(1)[0])
	start := time.Now()
	_, _, err := c.readFrame()
	require.Error(t, err)
	require.Less(t, time.Since(start), 4*time.Second)
	require.Greater(t, time.Since(start), time.Second)
}

func pahoWS(t *testing.T, url, id string, tlsCfg *tls.Config) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func pahoRoundTrip(t *testing.T, sub, pub mqtt.Client) {
	t.Helper()
	got := make(chan mqtt.Message, 10)
	tok := sub.Subscribe("paho/ws", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m })
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	big := strings.Repeat("x", 200000) // many frames' worth
	for _, payload := range []string{"hello over websocket", big} {
		tok = pub.Publish("paho/ws", 1, false, payload)
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		select {
		case m := <-got:
			require.Equal(t, payload, string(m.Payload()))
			require.Equal(t, byte(1), m.Qos())
		case <-time.After(5 * time.Second):
			t.Fatal("no message over WebSocket")
		}
	}
}

// A stock client (Eclipse Paho) over ws://.
func TestWebSocketPaho(t *testing.T) {
	_, addr := serveWS(t, "ws://127.0.0.1:0/mqtt", nil)
	sub := pahoWS(t, "ws://"+addr+"/mqtt", "paho-ws-sub", nil)
	pub := pahoWS(t, "ws://"+addr+"/mqtt", "paho-ws-pub", nil)
	pahoRoundTrip(t, sub, pub)
}

// wss:// uses the TLS configuration of tls:// listeners.
func TestWebSocketTLSPaho(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true, "127.0.0.1")
	r, err := tlsconf.New(tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile})
	require.NoError(t, err)
	_, addr := serveWS(t, "wss://127.0.0.1:0/mqtt", r.TLSConfig())
	cfg := tlstest.ClientConfig(ca, nil)
	sub := pahoWS(t, "wss://"+addr+"/mqtt", "paho-wss-sub", cfg)
	pub := pahoWS(t, "wss://"+addr+"/mqtt", "paho-wss-pub", cfg)
	pahoRoundTrip(t, sub, pub)

	// Without TLS the listener does not answer the upgrade.
	resp, c := func() (*http.Response, *rawWS) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		conn.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return nil, nil
		}
		return resp, nil
	}()
	require.Nil(t, c)
	if resp != nil {
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to a TLS port")
	}
}
