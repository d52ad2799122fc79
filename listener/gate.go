package listener

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// A Gate admits or refuses each TCP connection as it is accepted, before
// any byte is read from it: the broker's accept-rate limit and its cap on
// TLS handshakes in progress (shard.Broker installs one).
type Gate interface {
	// Admit reports whether conn is served; a refused conn has been closed.
	// An admitted TLS connection (tls: a TLS handshake follows) holds a
	// handshake slot until HandshakeDone.
	Admit(conn net.Conn, tls bool) bool
	// HandshakeDone frees the slot of a TLS connection admitted earlier,
	// once its handshake has ended, either way.
	HandshakeDone()
}

// SetGate passes every connection ln accepts through g, for listeners that
// accept TCP connections out of their caller's sight: ws:// and wss://,
// whose HTTP server (and for wss:// the TLS handshake) runs before Accept
// returns. It reports whether ln took the gate; for any other listener,
// Accept returns each connection as the TCP accept did, and the caller
// admits it. Call it before ln's first Accept.
func SetGate(ln net.Listener, g Gate) bool {
	if l, ok := ln.(*wsListener); ok {
		l.gate = g
		return true
	}
	return false
}

// admitListener is the TCP listener under a ws:// or wss:// listener's
// HTTP server: Accept returns only the connections the gate admits.
type admitListener struct {
	net.Listener
	gate Gate // nil admits every connection
	tls  bool // wss://: a TLS handshake follows
}

func (a *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := a.Listener.Accept()
		if err != nil || a.gate == nil || a.gate.Admit(c, a.tls) {
			return c, err
		}
	}
}

// tlsHandshaker runs the TLS handshake of each wss:// connection on a
// goroutine of its own, bounded by wsHandshakeTimeout, and hands the HTTP
// server only connections whose handshake is complete (the server's own
// Handshake call then returns at once). Running it here rather than in the
// HTTP server is what tells the gate when the handshake ends, which frees
// its slot.
type tlsHandshaker struct {
	ln    net.Listener // admitted TCP connections
	cfg   *tls.Config
	gate  Gate // nil: no handshake slots
	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once

	mu         sync.Mutex
	handshakes map[net.Conn]struct{} // in progress; Close closes them
	closed     bool
}

func newTLSHandshaker(ln net.Listener, cfg *tls.Config, gate Gate) *tlsHandshaker {
	h := &tlsHandshaker{ln: ln, cfg: cfg, gate: gate, conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{}),
		handshakes: make(map[net.Conn]struct{})}
	go h.acceptLoop()
	return h
}

// acceptLoop starts a handshake for every connection accepted. An accept
// error goes to the HTTP server's Accept, which backs off on a temporary
// one before it asks again (so this loop waits too) and stops on any other.
func (h *tlsHandshaker) acceptLoop() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			select {
			case h.errs <- err:
				continue
			case <-h.done:
				return
			}
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			if h.gate != nil {
				h.gate.HandshakeDone()
			}
			return
		}
		h.handshakes[c] = struct{}{}
		h.mu.Unlock()
		go h.handshake(c)
	}
}

func (h *tlsHandshaker) handshake(c net.Conn) {
	tc := tls.Server(c, h.cfg)
	c.SetDeadline(time.Now().Add(wsHandshakeTimeout))
	err := tc.Handshake()
	h.mu.Lock()
	delete(h.handshakes, c)
	h.mu.Unlock()
	if h.gate != nil {
		h.gate.HandshakeDone()
	}
	if err != nil {
		c.Close() // the client's business, as in the HTTP server
		return
	}
	c.SetDeadline(time.Time{})
	select {
	case h.conns <- tc:
	case <-h.done:
		tc.Close()
	}
}

func (h *tlsHandshaker) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case err := <-h.errs:
		return nil, err
	case <-h.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: h.ln.Addr(), Err: net.ErrClosed}
	}
}

func (h *tlsHandshaker) Close() error {
	h.once.Do(func() {
		close(h.done)
		h.mu.Lock()
		h.closed = true
		for c := range h.handshakes {
			c.Close()
		}
		h.mu.Unlock()
	})
	return h.ln.Close()
}

func (h *tlsHandshaker) Addr() net.Addr { return h.ln.Addr() }
