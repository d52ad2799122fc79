package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/urfave/cli/v2"

	"iotd/auth"
	"iotd/listener"
	"iotd/shard"
	"iotd/tlsconf"
)

// Security flags of `iotd serve`. The TLS flags apply to every tls://
// listener: one certificate, one client CA, one client-auth mode for all
// of them; tcp:// listeners have no TLS settings. Which listeners need
// authentication depends on each one's address (below).
func securityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert", Usage: "server certificate chain `FILE` (PEM, leaf first) for every tls:// listener; re-read on SIGHUP"},
		&cli.StringFlag{Name: "tls-key", Usage: "private key `FILE` (PEM) of --tls-cert; re-read on SIGHUP"},
		&cli.StringFlag{Name: "tls-client-ca", Usage: "CA certificates `FILE` (PEM) that every client certificate presented on a tls:// listener must verify against; re-read on SIGHUP"},
		&cli.StringFlag{Name: "tls-client-auth", Usage: "require: refuse TLS clients without a certificate from --tls-client-ca (the default when it is set); optional: accept them, but still verify a certificate that is presented"},
		&cli.BoolFlag{Name: "tls-cn-as-username", Usage: "a TLS client with a verified certificate logs in as its common name (else its first DNS or email SAN), with no password; needs --tls-client-ca"},
		&cli.StringFlag{Name: "password-file", Usage: "Mosquitto password `FILE` (user:hash lines, $7$ or $6$; make one with `iotd passwd`); re-read on SIGHUP"},
		&cli.StringFlag{Name: "acl-file", Usage: "Mosquitto ACL `FILE` (topic/user/pattern lines; see README); without it every client may read and write everything; re-read on SIGHUP"},
		&cli.BoolFlag{Name: "allow-anonymous", Usage: "let in clients that log in without a user name (or certificate name). Without this flag they are let in only when every listener is on loopback and there is no --password-file, and a listener on another address with no authentication configured refuses to start"},
	}
}

// security is the broker's TLS, password file and ACL, built from the
// flags, with what SIGHUP reloads.
type security struct {
	store         *auth.Store
	tls           *tlsconf.Reloader // nil without tls:// listeners
	certUsername  bool
	denyAnonymous bool
	logger        *slog.Logger
}

// newSecurity checks the security flags against the listeners and loads
// the files. Every error names the flag or file at fault and what to do.
func newSecurity(cctx *cli.Context, specs []listener.Spec, logger *slog.Logger) (*security, error) {
	sec := &security{certUsername: cctx.Bool("tls-cn-as-username"), logger: logger}
	var tlsSpecs []string
	allLoopback := true
	for _, sp := range specs {
		if sp.TLS() {
			tlsSpecs = append(tlsSpecs, sp.URL)
		}
		allLoopback = allLoopback && sp.IsLoopback()
	}
	certFile, keyFile, caFile := cctx.String("tls-cert"), cctx.String("tls-key"), cctx.String("tls-client-ca")
	clientAuth := cctx.String("tls-client-auth")
	if err := checkClientAuth(clientAuth); err != nil {
		return nil, fmt.Errorf("--tls-client-auth %w", err)
	}
	if len(tlsSpecs) == 0 {
		for _, f := range []string{"tls-cert", "tls-key", "tls-client-ca", "tls-client-auth", "tls-cn-as-username"} {
			if f == "tls-cn-as-username" && cctx.Bool(f) || f != "tls-cn-as-username" && cctx.String(f) != "" {
				return nil, fmt.Errorf("--%s is set but no listener uses TLS: add --listen tls://HOST:PORT (e.g. tls://0.0.0.0:8883)", f)
			}
		}
	} else {
		if certFile == "" || keyFile == "" {
			return nil, fmt.Errorf("listener %s needs a server certificate: set --tls-cert and --tls-key (PEM files)", tlsSpecs[0])
		}
		if clientAuth != "" && caFile == "" {
			return nil, fmt.Errorf("--tls-client-auth %s needs --tls-client-ca, the CA that signs client certificates", clientAuth)
		}
		if sec.certUsername && caFile == "" {
			return nil, errors.New("--tls-cn-as-username needs --tls-client-ca: only a certificate verified against a client CA can stand for a user")
		}
		r, err := tlsconf.New(tlsconf.Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: clientAuth})
		if err != nil {
			return nil, err
		}
		sec.tls = r
	}
	certRequired := caFile != "" && clientAuth != tlsconf.ClientAuthOptional

	passwordFile, aclFile := cctx.String("password-file"), cctx.String("acl-file")
	store, err := auth.NewStore(passwordFile, aclFile)
	if err != nil {
		return nil, err
	}
	sec.store = store

	// Anonymous clients are let in by default only where nothing but this
	// host can connect and no password file says who may.
	allowAnonymous := cctx.Bool("allow-anonymous") || (allLoopback && passwordFile == "")
	if !allowAnonymous && passwordFile == "" {
		// A listener other hosts can reach must authenticate its clients,
		// or the operator must say that anonymous access is intended.
		for _, sp := range specs {
			if sp.IsLoopback() || (sp.TLS() && sec.certUsername && certRequired) {
				continue // local, or every client logs in with its certificate
			}
			return nil, fmt.Errorf("listener %s accepts connections from other hosts, but no authentication is configured, so anyone who reaches it could read and publish anything.\n"+
				"Set --password-file (create one with `iotd passwd FILE USER`), or use a tls:// listener with --tls-client-ca and --tls-cn-as-username; "+
				"or pass --allow-anonymous to let anonymous clients in on purpose", sp.URL)
		}
	}
	sec.denyAnonymous = !allowAnonymous

	args := []any{"anonymous", allowAnonymous, "password_file", passwordFile, "acl_file", aclFile}
	if sec.tls != nil {
		mode := "none"
		if caFile != "" {
			mode = tlsconf.ClientAuthRequire
			if clientAuth == tlsconf.ClientAuthOptional {
				mode = clientAuth
			}
		}
		args = append(args, "tls_cert", certFile, "tls_client_auth", mode, "tls_cn_as_username", sec.certUsername)
	}
	if aclFile == "" {
		args = append(args, "acl", "none: every client may read and write every topic")
	}
	logger.Info("security", args...)
	return sec, nil
}

// configure sets the broker's authentication and ACL.
func (s *security) configure(cfg *shard.Config) {
	cfg.Auth = s.store
	cfg.DenyAnonymous = s.denyAnonymous
}

// listen binds one listener: tls:// with the current certificate.
func (s *security) listen(spec listener.Spec) (net.Listener, error) {
	if spec.TLS() {
		return listener.ListenTLS(spec, s.tls.TLSConfig())
	}
	return listener.Listen(spec)
}

// options are the per-listener settings the broker serves spec with.
func (s *security) options(spec listener.Spec) shard.ListenerOptions {
	return shard.ListenerOptions{CertUsername: spec.TLS() && s.certUsername}
}

// reloadFiles re-reads the password and ACL files (SIGHUP). On error the
// previous rules stay; the error names the file, line and reason.
func (s *security) reloadFiles() error {
	if !s.store.HasPasswordFile() && !s.store.HasACL() {
		return nil
	}
	if err := s.store.Reload(); err != nil {
		return err
	}
	s.logger.Info("SIGHUP: reloaded the password and ACL files")
	return nil
}

// reloadTLS re-reads the certificate, key and client CA (SIGHUP). New
// handshakes get them; established connections keep theirs.
func (s *security) reloadTLS() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.Reload(); err != nil {
		return err
	}
	c := s.tls.Certificate()
	s.logger.Info("SIGHUP: reloaded the TLS certificate and client CA", "subject", c.Subject.CommonName, "not_after", c.NotAfter)
	return nil
}

// checkClientAuth validates --tls-client-auth ("" means the default).
func checkClientAuth(v string) error {
	switch v {
	case "", tlsconf.ClientAuthRequire, tlsconf.ClientAuthOptional:
		return nil
	}
	return fmt.Errorf("%q: want require or optional", v)
}
