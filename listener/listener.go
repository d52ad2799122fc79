// Package listener turns listener URLs (tcp://host:port) into bound sockets.
package listener

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Spec is a parsed listener URL.
type Spec struct {
	Scheme string // tcp, tls, ws or wss
	Addr   string // host:port
	Path   string // ws and wss: the HTTP path served; "" serves every path
	URL    string // as the operator wrote it
}

// TLS reports whether the listener needs a certificate (tls://, wss://).
func (s Spec) TLS() bool { return s.Scheme == "tls" || s.Scheme == "wss" }

// Parse reads a listener URL such as tcp://127.0.0.1:1883,
// tls://0.0.0.0:8883, ws://0.0.0.0:8083/mqtt or wss://0.0.0.0:8084/mqtt. A
// bare host:port means tcp.
func Parse(raw string) (Spec, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Spec{}, fmt.Errorf("listener %q: %v", raw, err)
	}
	switch u.Scheme {
	case "tcp", "tls", "ws", "wss":
	default:
		return Spec{}, fmt.Errorf("listener %q: unsupported scheme %q (supported: tcp, tls, ws, wss)", raw, u.Scheme)
	}
	if u.Host == "" {
		return Spec{}, fmt.Errorf("listener %q: missing host:port", raw)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return Spec{}, fmt.Errorf("listener %q: %v", raw, err)
	}
	if u.Scheme == "ws" || u.Scheme == "wss" {
		return Spec{Scheme: u.Scheme, Addr: u.Host, Path: u.Path, URL: raw}, nil
	}
	if u.Path != "" && u.Path != "/" {
		return Spec{}, fmt.Errorf("listener %q: a %s listener takes no path", raw, u.Scheme)
	}
	return Spec{Scheme: u.Scheme, Addr: u.Host, URL: raw}, nil
}

// Listen binds the listener described by spec. A tls:// listener needs a
// certificate: bind it with ListenTLS.
func Listen(spec Spec) (net.Listener, error) {
	switch spec.Scheme {
	case "tls":
		return nil, fmt.Errorf("listen on %s: a tls:// listener needs a certificate (ListenTLS)", spec.URL)
	case "wss":
		return nil, fmt.Errorf("listen on %s: a wss:// listener needs a certificate (ListenWS)", spec.URL)
	case "ws":
		return ListenWS(spec, nil)
	}
	ln, err := listenTCP(spec.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec.URL, err)
	}
	return ln, nil
}

// listenTCP binds addr with TCP keep-alive off on accepted connections: MQTT
// has its own keep-alive, and Go's default (SO_KEEPALIVE and three timer
// options) costs four setsockopt calls per accept. The broker turns TCP
// keep-alive on for the clients that send keep-alive 0.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// IsLoopback reports whether the listener accepts only local connections.
func (s Spec) IsLoopback() bool {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
