package shard

import (
	"container/list"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/valyala/bytebufferpool"

	"iotd/wire"
)

// client is one network connection. The reader goroutine (serve) owns the
// socket's read side; fields below the marker belong to the shard goroutine.
type client struct {
	b         *Broker
	conn      net.Conn
	out       outbound
	id        string // MQTT client id, set before the CONNECT is posted
	shard     *Shard
	keepAlive time.Duration
	ready     chan struct{}    // closed by the shard once CONNACK is queued
	raw       *rawReader       // non-blocking reads of a TCP socket; nil for TLS and WebSocket
	connKey   uint64           // key in the broker's connection set
	pending   *list.Element    // in the broker's pending handshakes; guarded by its mutex
	lopts     *ListenerOptions // the listener's settings; nil from ServeConn
	ident     *identity        // who the ACL sees, set before the CONNECT is posted
	tlsSlot   bool             // holds a TLS handshake slot (admission.go) until tlsHandshake

	// Owned by the shard goroutine after CONNECT.
	sess         *session
	will         *Message
	username     string
	accepted     bool // CONNACK 0 staged; read by the reader after ready closes
	disconnected bool // DISCONNECT received: the will is discarded [MQTT-3.14.4-3]
	detached     bool // no longer attached to its session (closed or taken over)
	takeover     *time.Timer
	acks         []*ticket // PUBACK/PUBREC/PUBCOMP in arrival order, waiting for durability

	// Output staged during one shard iteration, written after its commit.
	stage       *bytebufferpool.ByteBuffer
	stageIter   uint64
	isStaged    bool
	roomIter    uint64
	outQueued   int  // the writer's queue as last read (in iteration roomIter)
	roomStaged  int  // bytes staged when outQueued was read
	wantSpace   bool // ask the writer to call back when it drains
	signalReady bool // close ready after the staged CONNACK is written
	closing     bool // close the connection after the staged bytes
}

func newClient(b *Broker, conn net.Conn) *client {
	c := &client{b: b, conn: conn, ready: make(chan struct{})}
	c.out.conn = conn
	c.out.b = b
	return c
}

// writable tells the shard that the outbound queue drained below its limit,
// so held-back QoS 1/2 messages can go out.
func (c *client) writable() {
	c.shard.mb.pushShard(event{kind: evWritable, c: c})
}

// serve runs the connection's reader: CONNECT first, then every packet in
// order to the client's shard. It returns when the connection ends.
func (c *client) serve() {
	var src io.Reader = c.conn
	if c.raw = newRawReader(c.conn); c.raw != nil {
		src = c.raw
	}
	r := wire.NewReader(src, c.b.cfg.MaxPacketSize)
	// The TLS handshake and the CONNECT share the connect timeout.
	deadline := time.Now().Add(c.b.cfg.ConnectTimeout)
	ok := c.tlsHandshake(deadline) && c.handshake(r, deadline)
	c.b.pending.done(c)
	if !ok {
		// Not close(): a refusal's CONNACK is still queued and must reach
		// the client first [MQTT-3.2.2-5]; with nothing queued this closes now.
		c.out.closeAfterFlush()
		r.Release()
		c.b.conns.remove(c.connKey)
		return
	}
	if c.keepAlive == 0 {
		c.conn.SetReadDeadline(time.Time{}) // no keep-alive: only the connect timeout applied
		enableTCPKeepAlive(c.conn)
	}
	if c.raw == nil {
		// The handshake grew this goroutine's stack (CONNECT decoding,
		// validation); an idle connection parks in Read for hours, so the
		// read loop continues on a fresh goroutine with a minimal stack.
		if !c.b.goroutines.start(func() { c.readUntilClosed(r) }) {
			c.finish(r, "")
			c.out.close()
		}
		return
	}
	c.raw.block = false
	c.readUntilClosed(r)
}

// readUntilClosed runs the read loop; when a raw socket has nothing left to
// read it hands the connection to a fresh goroutine that only waits, and
// returns, so an idle connection keeps no deep stack.
func (c *client) readUntilClosed(r *wire.Reader) {
	reason, idle := c.readLoop(r)
	if idle {
		r.Release() // keep no pooled buffer while idle
		if c.b.goroutines.start(func() { c.waitForInput(r) }) {
			return
		}
		reason = ""
		c.out.close()
	}
	c.finish(r, reason)
}

// waitForInput parks until the socket is readable, then reads on this
// goroutine; it is the only goroutine of an idle TCP connection.
func (c *client) waitForInput(r *wire.Reader) {
	if err := c.raw.wait(); err != nil {
		c.finish(r, readErrorReason(err))
		return
	}
	c.readUntilClosed(r)
}

// finish ends the reader side: the shard learns why the connection ended
// ("" after DISCONNECT or at shutdown).
func (c *client) finish(r *wire.Reader, reason string) {
	r.Release()
	if reason != "" {
		c.shard.mb.pushReader(event{kind: evClosed, c: c, reason: reason})
	}
	c.b.conns.remove(c.connKey)
}

// tlsHandshake runs the TLS handshake of a tls:// connection, by deadline
// (reads and writes), and frees its handshake slot. It reports false if the
// connection must be closed now.
func (c *client) tlsHandshake(deadline time.Time) bool {
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		return true
	}
	tc.SetDeadline(deadline)
	err := tc.Handshake()
	tc.SetWriteDeadline(time.Time{}) // the writer sets its own
	if c.tlsSlot {
		c.tlsSlot = false
		c.b.admit.HandshakeDone()
	}
	if err != nil {
		c.b.logDebug("TLS handshake failed", "remote", c.conn.RemoteAddr(), "err", err)
		c.b.readLimit(c, err, true)
		return false
	}
	return true
}

// handshake reads and validates CONNECT, by deadline, and waits until the
// shard has answered it. It reports false if the connection must be closed
// now.
func (c *client) handshake(r *wire.Reader, deadline time.Time) bool {
	c.conn.SetReadDeadline(deadline)
	fh, body, err := r.ReadPacket()
	if err != nil {
		c.b.logDebug("connection closed before CONNECT", "remote", c.conn.RemoteAddr(), "err", err)
		c.b.readLimit(c, err, true)
		return false
	}
	if fh.Type != wire.CONNECT {
		// [MQTT-3.1.0-1] the first packet must be CONNECT.
		c.b.logDebug("first packet is not CONNECT", "remote", c.conn.RemoteAddr(), "type", fh.Type)
		return false
	}
	cp, err := wire.DecodeConnect(fh, body)
	if err != nil {
		var ce *wire.ConnectError
		if errors.As(err, &ce) && ce.ReturnCode != 0 {
			c.refuse(ce.ReturnCode)
		}
		// [MQTT-3.1.4-1] otherwise close without CONNACK.
		c.b.logDebug("bad CONNECT", "remote", c.conn.RemoteAddr(), "err", err)
		return false
	}
	if len(cp.ClientID) > c.b.cfg.MaxClientIDLen {
		c.b.countRefused(RefusedClientIDTooLong)
		c.b.logLimit(LimitMaxClientIDLength, "refused a CONNECT: client id longer than max-client-id-length", "remote", c.conn.RemoteAddr(), "length", len(cp.ClientID), "max", c.b.cfg.MaxClientIDLen)
		c.refuse(wire.RefusedIdentifierRejected) // [MQTT-3.1.3-9]
		return false
	}
	if cp.ClientID == "" {
		cp.ClientID = c.b.newClientID() // [MQTT-3.1.3-6]
	}
	if cp.WillFlag {
		if err := c.b.checkPublishTopic(cp.WillTopic); err != nil {
			c.b.logDebug("bad will topic", "remote", c.conn.RemoteAddr(), "err", err)
			return false
		}
		c.will = newMessage([]byte(cp.WillTopic), cp.WillMessage, cp.WillQoS, cp.WillRetain)
	}
	if !c.authenticate(cp) {
		return false // CONNACK 0x04 or 0x05 queued; nothing more is read [MQTT-3.1.4-5]
	}
	c.id = cp.ClientID
	c.username = cp.Username
	c.keepAlive = time.Duration(cp.KeepAlive) * time.Second
	c.shard = c.b.shardFor(c.id)
	c.out.mu.Lock()
	c.out.notify = c.writable
	c.out.mu.Unlock()
	if !c.shard.mb.pushReader(event{kind: evConnect, c: c, connect: cp}) {
		return false
	}
	select {
	case <-c.ready:
		c.ready = nil // the shard is done with it; an idle connection should not keep it
		return c.accepted
	case <-c.b.quit:
		return false
	}
}

// refuse answers CONNECT with a non-zero return code and closes
// [MQTT-3.2.2-4] [MQTT-3.2.2-5].
func (c *client) refuse(code byte) {
	c.out.send(&wire.Connack{ReturnCode: code}, c.rawConn())
	c.out.closeAfterFlush()
}

// readLoop reads packets after CONNECT until the connection ends or, on a
// raw TCP socket, until nothing is left to read (idle). It returns the reason
// the connection ended, or "" after a DISCONNECT.
func (c *client) readLoop(r *wire.Reader) (reason string, idle bool) {
	var pub wire.Publish
	for {
		if c.keepAlive > 0 && r.Buffered() == 0 {
			// [MQTT-3.1.2-24] one and a half times the keep-alive. Re-armed
			// only before the reader may block: packets already buffered
			// arrived in time, and a deadline per packet costs a clock read
			// and a timer update on the hot path.
			c.conn.SetReadDeadline(time.Now().Add(c.keepAlive * 3 / 2))
		}
		if c.raw != nil && c.raw.drained && r.Buffered() == 0 {
			return "", true // the last read emptied the socket
		}
		fh, body, err := r.ReadPacket()
		if err != nil {
			if err == errWouldBlock {
				return "", true
			}
			c.b.readLimit(c, err, false)
			return readErrorReason(err), false
		}
		ev := event{c: c}
		switch fh.Type {
		case wire.PUBLISH:
			if err := pub.Decode(fh, body); err != nil {
				return "malformed PUBLISH: " + err.Error(), false
			}
			ev.kind = evPublish
			ev.packetID = pub.PacketID
			ev.dup = pub.Dup
			ev.msg = newMessage(pub.Topic, pub.Payload, pub.QoS, pub.Retain)
		case wire.PINGREQ:
			if _, err := wire.Decode(fh, body); err != nil {
				return "malformed PINGREQ: " + err.Error(), false
			}
			c.out.send(&wire.Pingresp{}, c.rawConn()) // [MQTT-3.12.4-1]
			continue
		case wire.CONNECT:
			return "second CONNECT", false // [MQTT-3.1.0-2]
		default:
			p, err := wire.Decode(fh, body)
			if err != nil {
				return fmt.Sprintf("malformed %s: %v", fh.Type, err), false
			}
			switch p := p.(type) {
			case *wire.Puback:
				ev.kind, ev.packetID = evPuback, p.PacketID
			case *wire.Pubrec:
				ev.kind, ev.packetID = evPubrec, p.PacketID
			case *wire.Pubrel:
				ev.kind, ev.packetID = evPubrel, p.PacketID
			case *wire.Pubcomp:
				ev.kind, ev.packetID = evPubcomp, p.PacketID
			case *wire.Subscribe:
				ev.kind, ev.sub = evSubscribe, p
			case *wire.Unsubscribe:
				ev.kind, ev.unsub = evUnsubscribe, p
			case *wire.Disconnect:
				// Nothing after DISCONNECT is read [MQTT-3.14.4-2].
				c.shard.mb.pushReader(event{kind: evDisconnect, c: c})
				return "", false
			default:
				// CONNACK, SUBACK, UNSUBACK and PINGRESP only flow from the server.
				return "client sent " + fh.Type.String(), false
			}
		}
		if !c.shard.mb.pushReader(ev) {
			return "", false // shutting down
		}
	}
}

func readErrorReason(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "connection closed by client"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "keep-alive timeout"
	case errors.Is(err, net.ErrClosed):
		return "connection closed by server"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "keep-alive timeout"
	}
	return err.Error()
}

// tcpKeepAlive is what a client that sends keep-alive 0 gets instead: the
// listeners leave TCP keep-alive off, and without it a peer that vanished
// (power loss, a NAT dropping state) would hold its session forever. These
// are Go's own defaults for dialed and accepted connections.
var tcpKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}

// enableTCPKeepAlive turns TCP keep-alive on for conn's socket, looking
// through TLS and WebSocket wrappers.
func enableTCPKeepAlive(conn net.Conn) {
	for {
		switch c := conn.(type) {
		case *net.TCPConn:
			c.SetKeepAliveConfig(tcpKeepAlive)
			return
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return
		}
	}
}

// rawConn returns the TCP socket's raw connection for writes that skip the
// writer goroutine, or nil (TLS, WebSocket, or before serve set it up).
func (c *client) rawConn() syscall.RawConn {
	if c.raw == nil {
		return nil
	}
	return c.raw.rc
}
