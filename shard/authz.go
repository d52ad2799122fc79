package shard

import (
	"crypto/tls"
	"sync/atomic"
	"unsafe"

	"iotd/auth"
	"iotd/tlsconf"
	"iotd/wire"
)

// Security: who may log in (Config.Auth, Config.DenyAnonymous and each
// listener's ListenerOptions) and what a client may read and write (the ACL
// in Config.Auth). The checks, and where they happen:
//
//   - CONNECT (reader goroutine, client.authenticate): credentials that do
//     not verify get CONNACK 0x04, an anonymous client where anonymous
//     clients are refused gets 0x05; either way the connection closes after
//     the CONNACK [MQTT-3.2.2-5] and nothing the client sent after the
//     CONNECT is read [MQTT-3.1.4-5].
//   - SUBSCRIBE: each filter needs read access to everything it can match
//     (auth's covering rule); a refused filter gets 0x80 in SUBACK.
//   - PUBLISH: needs write access to its topic. A denied one is acknowledged
//     as its QoS requires and dropped [MQTT-3.3.5-2], counted and logged at
//     debug level.
//   - Delivery: every message about to be handed to a session, retained
//     ones included, needs read access to its topic for that session's
//     client, so a deny that covers part of a wildcard subscription takes
//     effect per message. Messages queued for a session are checked again
//     when they are sent (the ACL may have been reloaded, or the session
//     recovered from disk before its client said who it is), and in-flight
//     messages again when they are resent after a reconnect.
//   - Will: checked for write access when it would be published.
//
// With no ACL file every access is allowed, and the only cost on the
// message path is a nil check of Broker.acl.

// ListenerOptions are the settings of one listener; see ServeListener.
type ListenerOptions struct {
	// CertUsername authenticates a client that presents a TLS client
	// certificate verified against the listener's client CA by that
	// certificate: its user name, for the ACL, is the certificate's common
	// name, else its first DNS or email SAN (tlsconf.UsernameFromCert), and
	// the user name and password in its CONNECT are not checked (as
	// Mosquitto's use_identity_as_username). A verified certificate without
	// a usable name gets CONNACK 0x04. A client without a certificate (client
	// auth "optional") logs in with a password or anonymously, as on any
	// other listener. Ignored on connections that are not TLS.
	CertUsername bool
}

// identity is who a client is for the ACL, fixed when its CONNECT is
// accepted. user is a verified name: from the password file or a client
// certificate.
type identity struct {
	user string
	anon bool // no verified user name: the ACL's anonymous rules apply
}

var anonymousIdentity = &identity{anon: true}

// securityStats counts refusals.
type securityStats struct {
	refusedAuth     atomic.Int64 // CONNACK 0x04 or 0x05
	deniedPublish   atomic.Int64
	deniedSubscribe atomic.Int64
	deniedDelivery  atomic.Int64
	deniedWill      atomic.Int64
}

// SecurityStats is a snapshot of what authentication and the ACL refused.
type SecurityStats struct {
	RefusedConnects  int64 // CONNACK 0x04 (bad user name or password) or 0x05 (not authorized)
	DeniedPublishes  int64 // PUBLISHes acknowledged and dropped: no write access
	DeniedSubscribes int64 // SUBSCRIBE filters answered 0x80: no read access
	DeniedDeliveries int64 // messages not sent to a subscriber: no read access to the topic
	DeniedWills      int64 // wills not published: no write access to the will topic
}

// SecurityStats returns the refusal counters.
func (b *Broker) SecurityStats() SecurityStats {
	return SecurityStats{
		RefusedConnects:  b.sec.refusedAuth.Load(),
		DeniedPublishes:  b.sec.deniedPublish.Load(),
		DeniedSubscribes: b.sec.deniedSubscribe.Load(),
		DeniedDeliveries: b.sec.deniedDelivery.Load(),
		DeniedWills:      b.sec.deniedWill.Load(),
	}
}

// aclFor returns the store to check access against: nil when no ACL file
// is configured, so that every check on the message path is one nil test.
func aclFor(cfg *Config) *auth.Store {
	if cfg.Auth != nil && cfg.Auth.HasACL() {
		return cfg.Auth
	}
	return nil
}

// authenticate decides whether the CONNECT logs in and, if so, sets the
// identity the ACL will see. It runs on the reader goroutine before the
// CONNECT is posted to a shard; on refusal it has queued the CONNACK and
// the caller closes the connection.
//
// In order: a verified client certificate on a CertUsername listener; a
// user name, checked against the password file (a name that cannot be
// checked, for want of a password file, is let in only where anonymous
// clients are, and then as anonymous: only a verified name selects "user"
// rules in the ACL); no user name: anonymous.
func (c *client) authenticate(cp *wire.Connect) bool {
	b := c.b
	if c.lopts != nil && c.lopts.CertUsername {
		if tc, ok := c.conn.(interface{ ConnectionState() tls.ConnectionState }); ok { // *tls.Conn, a wss:// connection
			if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
				name, ok := tlsconf.UsernameFromCert(st)
				if !ok {
					return c.refuseLogin(wire.RefusedBadUsernamePassword, cp, "the client certificate has no usable name (common name, DNS or email SAN) to take as the user name")
				}
				c.ident = &identity{user: name}
				return true
			}
		}
	}
	if cp.UsernameFlag {
		if store := b.cfg.Auth; store != nil && store.HasPasswordFile() {
			if !store.Authenticate(cp.Username, cp.Password, true) {
				return c.refuseLogin(wire.RefusedBadUsernamePassword, cp, "bad user name or password")
			}
			c.ident = &identity{user: cp.Username}
			return true
		}
		if b.cfg.DenyAnonymous {
			return c.refuseLogin(wire.RefusedBadUsernamePassword, cp, "no password file is configured to check the user name against")
		}
		c.ident = anonymousIdentity
		return true
	}
	if b.cfg.DenyAnonymous {
		return c.refuseLogin(wire.RefusedNotAuthorized, cp, "anonymous clients are not allowed: send a user name and password")
	}
	c.ident = anonymousIdentity
	return true
}

// refuseLogin answers CONNACK code (session present 0 [MQTT-3.2.2-4]) and
// closes [MQTT-3.2.2-5]. It reports false, for authenticate to return.
func (c *client) refuseLogin(code byte, cp *wire.Connect, reason string) bool {
	c.b.sec.refusedAuth.Add(1)
	c.b.logInfo("refused a CONNECT", "client", cp.ClientID, "user", cp.Username, "remote", c.conn.RemoteAddr(), "code", code, "reason", reason)
	c.refuse(code)
	return false
}

// topicString views a message topic as a string without copying. Messages
// are immutable and the ACL does not keep the string.
func topicString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// mayPublish reports whether c may publish msg. Call only with b.acl set.
func (s *Shard) mayPublish(c *client, msg *Message) bool {
	id := c.ident
	return s.b.acl.Authorize(c.id, id.user, id.anon, auth.Write, topicString(msg.Topic))
}

// refusePublish acknowledges a PUBLISH the ACL denies as its QoS requires,
// in order with the acknowledgements before it, and drops it: 3.1.1 has no
// negative acknowledgement [MQTT-3.3.5-2].
func (s *Shard) refusePublish(c *client, ev *event) {
	s.b.sec.deniedPublish.Add(1)
	s.b.logDebug("publish denied by the ACL: acknowledged and dropped", "client", c.id, "user", c.ident.user, "topic", string(ev.msg.Topic), "qos", ev.msg.QoS)
	switch ev.msg.QoS {
	case 1:
		s.holdAck(c, s.newTicket(c, wire.PUBACK, ev.packetID), wire.PUBACK, ev.packetID)
	case 2:
		s.holdAck(c, s.newTicket(c, wire.PUBREC, ev.packetID), wire.PUBREC, ev.packetID)
	}
}

// maySubscribe reports whether c may subscribe to filter. Call only with
// b.acl set.
func (s *Shard) maySubscribe(c *client, filter string) bool {
	id := c.ident
	if s.b.acl.Authorize(c.id, id.user, id.anon, auth.Read, filter) {
		return true
	}
	s.b.sec.deniedSubscribe.Add(1)
	s.b.logDebug("subscription denied by the ACL", "client", c.id, "user", id.user, "filter", filter)
	return false
}

// mayRead reports whether the session's client may receive msg. A session
// recovered from disk whose client has not connected since has no identity
// yet: its messages are queued, and checked when they are sent. Call only
// with b.acl set.
func (s *Shard) mayRead(sess *session, msg *Message) bool {
	id := sess.ident
	if id == nil || s.b.acl.Authorize(sess.id, id.user, id.anon, auth.Read, topicString(msg.Topic)) {
		return true
	}
	s.b.sec.deniedDelivery.Add(1)
	return false
}

// dropQueued discards a queued message the client may not read. The log
// has no record for that, so it is logged as sent and acknowledged at once,
// which replays to the same state.
func (s *Shard) dropQueued(sess *session) {
	if s.durable(sess) {
		id := sess.nextPacketID()
		s.p.idRecord(recSend, sess.id, id)
		s.p.idRecord(recAck, sess.id, id)
	}
}

// dropUnreadableInflight discards, before a reconnect's resend, in-flight
// messages the client may no longer read (a PUBREL already sent is kept:
// the client has the message). Call only with b.acl set.
func (s *Shard) dropUnreadableInflight(sess *session) {
	for i := len(sess.inflight) - 1; i >= 0; i-- {
		m := sess.inflight[i]
		if m.released || s.mayRead(sess, m.msg) {
			continue
		}
		sess.removeInflight(i)
		s.stats.inflight.Add(-1)
		if s.durable(sess) {
			s.p.idRecord(recAck, sess.id, m.id)
		}
	}
}

// willAllowed reports whether c's will may be published now. Call only
// with b.acl set.
func (s *Shard) willAllowed(c *client, will *Message) bool {
	id := c.ident
	if s.b.acl.Authorize(c.id, id.user, id.anon, auth.Write, topicString(will.Topic)) {
		return true
	}
	s.b.sec.deniedWill.Add(1)
	s.b.logInfo("will not published: the ACL denies writing its topic", "client", c.id, "user", id.user, "topic", string(will.Topic))
	return false
}
