// Package tlsconf builds the broker's server *tls.Config from files and
// replaces the certificate and client CA at run time.
//
// New loads Config's certificate chain, key and optional client CA bundle
// (PEM). Reloader.TLSConfig returns the config a tls:// or wss:// listener
// uses; its GetConfigForClient gives every handshake the material current at
// that moment, so Reloader.Reload (on SIGHUP) rotates certificates without
// restarting the listener or touching established connections. A reload
// that fails, because a file is missing, unparsable, expired or does not
// match its key, keeps the old material and returns an error naming the
// file and the reason.
//
// Policy: TLS 1.2 is the minimum (1.3 may be required instead); TLS 1.2
// offers only ECDHE key exchange with AEAD ciphers (AES-GCM,
// ChaCha20-Poly1305). Client certificates are required when a client CA is
// configured, unless ClientAuth is "optional", in which case a presented
// certificate must still verify. On session resumption Go re-checks a
// client certificate chain against the current CA pool, so a resumed session
// does not outlive the removal of its CA by a reload.
//
// UsernameFromCert maps a verified client certificate to an MQTT user name
// (common name, else first DNS or email SAN) for --tls-cn-as-username.
//
// Package tlstest creates throwaway CAs and certificates for tests.
package tlsconf
