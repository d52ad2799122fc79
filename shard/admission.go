package shard

import (
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// admission is the broker's listener.Gate: the accept-rate limit
// (MaxAcceptRate, MaxAcceptBurst) and the cap on TLS handshakes in progress
// (MaxTLSHandshakes), checked on every TCP connection as it is accepted and
// before any byte is read from it. A refused connection is closed at once,
// so a storm of connects costs an accept and a close each and is turned away
// as fast as it arrives, while connected clients keep the CPU.
//
// ServeListener admits what a tcp:// or tls:// listener accepts; ws:// and
// wss:// listeners accept behind an HTTP server and call the gate themselves
// (listener.SetGate). A tls:// connection's slot is freed when the reader
// goroutine has run its handshake (client.tlsHandshake), a wss:// one's when
// the listener has.
type admission struct {
	b      *Broker
	rate   *rate.Limiter // nil: no accept-rate limit
	maxTLS int64         // 0: no cap
	tls    atomic.Int64  // TLS handshakes admitted and not yet done
	now    func() time.Time
}

func newAdmission(b *Broker, cfg *Config) *admission {
	a := &admission{b: b, maxTLS: int64(cfg.MaxTLSHandshakes), now: time.Now}
	if cfg.MaxAcceptRate > 0 {
		// A token bucket: MaxAcceptBurst connections at once, refilled at
		// MaxAcceptRate per second, starting full.
		a.rate = rate.NewLimiter(rate.Limit(cfg.MaxAcceptRate), cfg.MaxAcceptBurst)
	}
	return a
}

// Admit implements listener.Gate.
func (a *admission) Admit(conn net.Conn, tls bool) bool {
	if a.rate != nil && !a.rate.AllowN(a.now(), 1) {
		a.b.refuseAtAccept(conn, RefusedAcceptRate, LimitMaxAcceptRate, "refused a connection: over max-accept-rate",
			"max", a.b.cfg.MaxAcceptRate, "burst", a.b.cfg.MaxAcceptBurst)
		return false
	}
	if tls && a.tls.Add(1) > a.maxTLS && a.maxTLS > 0 {
		a.tls.Add(-1)
		a.b.refuseAtAccept(conn, RefusedTLSHandshakes, LimitMaxTLSHandshakes, "refused a TLS connection: max-tls-handshakes are in progress",
			"max", a.maxTLS)
		return false
	}
	return true
}

// HandshakeDone implements listener.Gate.
func (a *admission) HandshakeDone() { a.tls.Add(-1) }
