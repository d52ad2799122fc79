package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// MQTT over WebSocket (MQTT 3.1.1 section 6): ws:// and wss:// listeners.
//
//   - The server selects the subprotocol "mqtt" and returns it in the
//     handshake [MQTT-6.0.0-4]. A client must offer it [MQTT-6.0.0-3]; a
//     handshake that does not is refused with HTTP 400 and a body that says
//     so, because such a client does not speak MQTT over WebSocket as the
//     standard defines it (and may be something else on the same port).
//   - MQTT control packets travel in binary data frames; a text frame
//     closes the connection (close code 1003) [MQTT-6.0.0-1].
//   - The binary frames carry a byte stream: a packet may span frames and
//     messages, and one frame may hold several packets [MQTT-6.0.0-2].
//     Accept returns each connection as a net.Conn over that stream, so the
//     broker serves it like a TCP connection.
//   - A listener URL with a path (ws://0.0.0.0:8083/mqtt) serves that path
//     only (others get 404); without a path every path is served.
//   - Any Origin is accepted: browsers on other sites are the usual MQTT
//     WebSocket clients, and clients authenticate in CONNECT, not by cookie.
//
// The HTTP handshake runs on the HTTP server's goroutine for the
// connection, and for wss:// the TLS handshake before it on a goroutine of
// its own (tlsHandshaker), each bounded by wsHandshakeTimeout, so a slow
// client never holds up Accept. The HTTP server starts on the first Accept,
// so a Gate set before it (SetGate) sees every connection; until then
// connections wait in the kernel's backlog, as on a tcp:// listener.

// wsHandshakeTimeout bounds the TLS handshake of a wss:// connection and
// reading the HTTP upgrade request.
const wsHandshakeTimeout = 10 * time.Second

// wsWriteBuffers lends write buffers to connections while they write, so
// an idle connection holds none.
var wsWriteBuffers sync.Pool

// ListenWS binds a ws:// listener, or a wss:// one with tlsCfg (typically
// tlsconf.Reloader.TLSConfig(), the same as for tls:// listeners).
func ListenWS(spec Spec, tlsCfg *tls.Config) (net.Listener, error) {
	switch spec.Scheme {
	case "ws":
	case "wss":
		if tlsCfg == nil {
			return nil, errors.New("listen on " + spec.URL + ": no TLS configuration")
		}
	default:
		return nil, fmt.Errorf("listen on %s: not a ws:// or wss:// listener", spec.URL)
	}
	tcp, err := listenTCP(spec.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec.URL, err)
	}
	l := &wsListener{
		tcp:   tcp,
		path:  spec.Path,
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
		upgrader: websocket.Upgrader{
			HandshakeTimeout: wsHandshakeTimeout,
			Subprotocols:     []string{"mqtt"},
			WriteBufferPool:  &wsWriteBuffers,
			CheckOrigin:      func(*http.Request) bool { return true },
		},
	}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: wsHandshakeTimeout,
		ErrorLog:          log.New(io.Discard, "", 0), // failed handshakes are the client's business
	}
	if spec.Scheme == "wss" {
		l.tlsCfg = tlsCfg
	}
	return l, nil
}

// serve starts the HTTP server, on the first Accept.
func (l *wsListener) serve() {
	var inner net.Listener = &admitListener{Listener: l.tcp, gate: l.gate, tls: l.tlsCfg != nil}
	if l.tlsCfg != nil {
		inner = newTLSHandshaker(inner, l.tlsCfg, l.gate)
	}
	go l.srv.Serve(inner)
}

// wsListener is a net.Listener whose connections arrive through an HTTP
// server's WebSocket upgrades.
type wsListener struct {
	tcp       net.Listener
	path      string      // "" serves every path
	tlsCfg    *tls.Config // wss:// only
	gate      Gate        // nil admits every connection; set before the first Accept
	srv       *http.Server
	upgrader  websocket.Upgrader
	conns     chan net.Conn
	done      chan struct{}
	serveOnce sync.Once
	once      sync.Once
}

func (l *wsListener) Accept() (net.Conn, error) {
	l.serveOnce.Do(l.serve)
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.tcp.Addr(), Err: net.ErrClosed}
	}
}

// Close stops accepting; connections already handed out stay open (the
// broker closes them).
func (l *wsListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.srv.Close()
		l.tcp.Close() // the server closes it too, once it has started
	})
	return nil
}

func (l *wsListener) Addr() net.Addr { return l.tcp.Addr() }

// ServeHTTP upgrades one request and hands the connection to Accept.
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.path != "" && r.URL.Path != l.path {
		http.Error(w, "iotd: MQTT over WebSocket is served at "+l.path, http.StatusNotFound)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), "mqtt") {
		// [MQTT-6.0.0-3] the client must offer "mqtt".
		http.Error(w, "iotd: MQTT over WebSocket needs the subprotocol \"mqtt\" (Sec-WebSocket-Protocol: mqtt)", http.StatusBadRequest)
		return
	}
	ws, err := l.upgrader.Upgrade(w, r, nil) // selects and returns "mqtt" [MQTT-6.0.0-4]
	if err != nil {
		return // Upgrade has answered with an HTTP error
	}
	c := &wsConn{ws: ws, tls: r.TLS}
	select {
	case l.conns <- c:
	case <-l.done:
		ws.Close()
	}
}

// wsConn is a WebSocket connection as a net.Conn: reads return the bytes of
// the binary messages in order, whatever their framing; each Write is sent
// as one binary message. One goroutine may read and one write at a time,
// as the broker's reader and writer do; Close may be called by any.
type wsConn struct {
	ws  *websocket.Conn
	r   io.Reader            // the message being read; nil between messages
	tls *tls.ConnectionState // nil on ws://
}

// ErrTextFrame is returned by a WebSocket connection's Read when the client
// sent a text frame, which closes the connection [MQTT-6.0.0-1].
var ErrTextFrame = errors.New("websocket: text frame received; MQTT needs binary frames")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
					return 0, io.EOF
				}
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, fmt.Errorf("websocket closed by client: %w", err)
				}
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return 0, io.EOF // the TCP connection ended without a close frame
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				// [MQTT-6.0.0-1]
				c.ws.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseUnsupportedData, "MQTT needs binary frames"),
					time.Now().Add(time.Second))
				c.ws.Close()
				return 0, ErrTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil // next message [MQTT-6.0.0-2]
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the network connection at once, without a close frame: it
// is called while the writer may be blocked on a slow client.
func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) NetConn() net.Conn                  { return c.ws.NetConn() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	c.ws.SetReadDeadline(t)
	return c.ws.SetWriteDeadline(t)
}

// ConnectionState is the TLS state of a wss:// connection (the zero value
// on ws://), as *tls.Conn reports it, for client-certificate logins.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}
