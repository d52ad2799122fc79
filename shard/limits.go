package shard

import "net"

// Reasons a connection is refused, as counted in Stats.Refused.
const (
	RefusedMaxConnections  = "max-connections"    // closed at accept: Config.MaxConnections are open
	RefusedClientIDTooLong = "client-id-too-long" // CONNACK 0x02: longer than Config.MaxClientIDLen
)

// refuseConnection closes a connection accepted while MaxConnections are
// open, before reading anything from it: clients already connected are not
// affected, and a flood of connects costs an accept and a close each. It is
// counted and logged (at most once per limitLogEvery).
func (b *Broker) refuseConnection(conn net.Conn) {
	remote := conn.RemoteAddr()
	conn.Close()
	b.countRefused(RefusedMaxConnections)
	b.logLimit(RefusedMaxConnections, "refused a connection: max-connections are open", "remote", remote, "max", b.cfg.MaxConnections)
}
