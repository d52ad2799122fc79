package shard

import (
	"errors"
	"net"
	"os"
	"sync/atomic"

	"iotd/wire"
)

// Limits (Config) and what hitting each does. Every one is logged, at most
// once per limitLogEvery per limit (logLimit), and counted:
//
//	max-accept-rate       the connection is closed at accept     Stats.Refused["accept-rate"]
//	max-tls-handshakes    the TLS connection is closed at accept Stats.Refused["tls-handshakes"]
//	max-connections       the connection is closed at accept     Stats.Refused["max-connections"]
//	max-pending-handshakes the oldest connection without CONNECT  Stats.LimitHits["max-pending-handshakes"]
//	                      is closed to make room
//	max-client-id-length  CONNACK 0x02, then close               Stats.Refused["client-id-too-long"]
//	max-packet-size       the connection is closed               Stats.LimitHits["max-packet-size"]
//	connect-timeout       the connection is closed               Stats.LimitHits["connect-timeout"]
//	max-subscriptions     the filter gets SUBACK 0x80            Stats.LimitHits["max-subscriptions"]
//	max-queued-messages   the QoS 1/2 message is dropped         Stats.DroppedQueueFull
//	max-outbound-bytes    a QoS 0 message is dropped (QoS 1/2    Stats.DroppedQoS0
//	                      wait in the session queue)
//	max-inflight          further QoS 1/2 messages wait in the session queue: not an error, not counted
const (
	RefusedMaxConnections  = "max-connections"    // Stats.Refused reason
	RefusedClientIDTooLong = "client-id-too-long" // Stats.Refused reason
	RefusedAcceptRate      = "accept-rate"        // Stats.Refused reason
	RefusedTLSHandshakes   = "tls-handshakes"     // Stats.Refused reason

	LimitMaxConnections       = "max-connections"
	LimitMaxAcceptRate        = "max-accept-rate"
	LimitMaxTLSHandshakes     = "max-tls-handshakes"
	LimitMaxPendingHandshakes = "max-pending-handshakes"
	LimitMaxClientIDLength    = "max-client-id-length"
	LimitMaxPacketSize        = "max-packet-size"
	LimitConnectTimeout       = "connect-timeout"
	LimitMaxSubscriptions     = "max-subscriptions"
	LimitMaxQueuedMessages    = "max-queued-messages"
	LimitMaxOutboundBytes     = "max-outbound-bytes"
)

// refuseConnection closes a connection accepted while MaxConnections are
// open, before reading anything from it: clients already connected are not
// affected, and a flood of connects costs an accept and a close each.
func (b *Broker) refuseConnection(conn net.Conn) {
	b.refuseAtAccept(conn, RefusedMaxConnections, LimitMaxConnections, "refused a connection: max-connections are open", "max", b.cfg.MaxConnections)
}

// refuseAtAccept closes a connection just accepted, before reading
// anything from it, and counts and logs why. It counts first, so a client
// that sees the close can already see the count.
func (b *Broker) refuseAtAccept(conn net.Conn, reason, limit, msg string, args ...any) {
	b.countRefused(reason)
	remote := conn.RemoteAddr()
	conn.Close()
	b.logLimit(limit, msg, append([]any{"remote", remote}, args...)...)
}

// hitLimit counts a limit in Stats.LimitHits and logs it (rate-limited).
func (b *Broker) hitLimit(limit, msg string, args ...any) {
	v, ok := b.stats.limits.Load(limit)
	if !ok {
		v, _ = b.stats.limits.LoadOrStore(limit, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
	b.logLimit(limit, msg, args...)
}

// readLimit counts a read that ended on a limit: a packet over
// MaxPacketSize, or no CONNECT within ConnectTimeout (beforeConnect).
func (b *Broker) readLimit(c *client, err error, beforeConnect bool) {
	switch {
	case errors.Is(err, wire.ErrPacketTooLarge):
		b.hitLimit(LimitMaxPacketSize, "closed a connection that sent a packet over max-packet-size", "client", c.id, "remote", c.conn.RemoteAddr(), "max", b.cfg.MaxPacketSize)
	case beforeConnect && isTimeout(err):
		b.hitLimit(LimitConnectTimeout, "closed a connection that sent no CONNECT within connect-timeout", "remote", c.conn.RemoteAddr(), "timeout", b.cfg.ConnectTimeout)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
