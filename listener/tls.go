package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// ListenTLS binds a tls:// listener (a wss:// one goes to ListenWS).
// Accept returns *tls.Conn connections whose handshake runs on their first
// Read, in the connection's own reader goroutine (so a slow or silent
// client never holds up the accept loop, and the broker's connect timeout
// bounds the handshake too). cfg is typically tlsconf.Reloader.TLSConfig(),
// which serves the certificate current at each handshake.
func ListenTLS(spec Spec, cfg *tls.Config) (net.Listener, error) {
	if spec.Scheme == "wss" {
		return ListenWS(spec, cfg) // the TLS handshake runs before the HTTP upgrade
	}
	if spec.Scheme != "tls" {
		return nil, fmt.Errorf("listen on %s: not a tls:// listener", spec.URL)
	}
	if cfg == nil {
		return nil, errors.New("listen on " + spec.URL + ": no TLS configuration")
	}
	ln, err := listenTCP(spec.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec.URL, err)
	}
	return tls.NewListener(ln, cfg), nil
}
