package shard

import (
	"bytes"
	"time"

	"iotd/topictree"
	"iotd/wire"
)

// Shard owns a share of the sessions, chosen by client id hash. Everything in
// it is touched only by its own goroutine (run); other goroutines talk to it
// through its mailbox.
type Shard struct {
	index    int
	b        *Broker
	mb       *mailbox
	sessions map[string]*session
	// subs is this shard's half of the subscription index: filter -> the
	// local sessions subscribed to it with their granted QoS. The shared
	// topic tree only records which shards hold a filter.
	subs map[string]map[*session]byte

	// Scratch space reused across loop iterations.
	matches  []topictree.Match
	outbox   [][]event // per target shard, flushed once per loop iteration
	touched  []*session
	mark     uint64
	pub      wire.Publish
	retryDue time.Time
}

func newShard(b *Broker, index int) *Shard {
	return &Shard{
		index:    index,
		b:        b,
		mb:       newMailbox(b.cfg.MailboxSize, b.quit),
		sessions: make(map[string]*session),
		subs:     make(map[string]map[*session]byte),
		outbox:   make([][]event, b.cfg.Shards),
	}
}

// run is the shard goroutine.
func (s *Shard) run() {
	var retry *time.Timer
	var retryC <-chan time.Time
	if s.b.cfg.RetryInterval > 0 {
		retry = time.NewTimer(s.b.cfg.RetryInterval)
		defer retry.Stop()
		retryC = retry.C
	}
	for {
		select {
		case <-s.b.quit:
			s.shutdown()
			return
		case <-s.mb.signal:
		case <-retryC:
			s.retryInflight()
			retry.Reset(s.b.cfg.RetryInterval)
			continue
		}
		fromShards, fromReaders := s.mb.pop()
		for i := range fromShards {
			s.handle(&fromShards[i])
		}
		for i := range fromReaders {
			s.handle(&fromReaders[i])
		}
		s.flushOutbox()
		s.mb.recycle(fromShards, fromReaders)
	}
}

func (s *Shard) handle(ev *event) {
	switch ev.kind {
	case evConnect:
		s.handleConnect(ev.c, ev.connect)
	case evDeliver:
		s.deliverLocal(ev.msg, ev.filters)
	case evWritable:
		if ev.c.sess != nil && !ev.c.detached {
			s.fillInflight(ev.c.sess)
		}
	case evClosed:
		s.handleClosed(ev.c, ev.reason)
	default:
		c := ev.c
		if c.detached || c.sess == nil {
			return // taken over or closed: ignore what it still sent
		}
		switch ev.kind {
		case evPublish:
			s.handlePublish(c, ev)
		case evPuback:
			s.handleAck(c.sess, ev.packetID, 1)
		case evPubrec:
			s.handlePubrec(c, ev.packetID)
		case evPubrel:
			// [MQTT-4.3.3-2] release the id; the message was routed on PUBLISH.
			delete(c.sess.inbound, ev.packetID)
			c.out.sendAck(wire.PUBCOMP, ev.packetID)
		case evPubcomp:
			s.handleAck(c.sess, ev.packetID, 2)
		case evSubscribe:
			s.handleSubscribe(c, ev.sub)
		case evUnsubscribe:
			s.handleUnsubscribe(c, ev.unsub)
		case evDisconnect:
			c.disconnected = true
			c.will = nil // [MQTT-3.14.4-3] [MQTT-3.1.2-10]
			s.handleClosed(c, "client sent DISCONNECT")
		}
	}
}

// handleConnect attaches the connection to its session, taking over an
// existing connection with the same client id [MQTT-3.1.4-2].
func (s *Shard) handleConnect(c *client, cp *wire.Connect) {
	sess := s.sessions[cp.ClientID]
	if sess != nil && sess.c != nil {
		old := sess.c
		s.detach(old, "taken over by a new connection")
		old.out.close()
	}
	present := false
	if sess != nil && (cp.CleanSession || sess.clean) {
		s.dropSession(sess) // [MQTT-3.1.2-6]
		sess = nil
	}
	if sess == nil {
		sess = newSession(cp.ClientID, cp.CleanSession)
		s.sessions[cp.ClientID] = sess
	} else {
		present = true // [MQTT-3.2.2-2]
	}
	sess.c = c
	c.sess = sess
	// CONNACK is the first packet the client gets [MQTT-3.2.0-1].
	c.out.send(&wire.Connack{SessionPresent: present, ReturnCode: wire.Accepted}) // [MQTT-3.1.4-4]
	close(c.ready)
	s.b.logInfo("client connected", "client", c.id, "remote", c.conn.RemoteAddr(), "clean", cp.CleanSession, "session_present", present, "shard", s.index)
	if present {
		s.resend(sess)
	}
}

// resend re-sends, after a reconnect, every unacknowledged PUBLISH with DUP=1
// and every unacknowledged PUBREL, with their original packet ids and in their
// original order [MQTT-4.4.0-1] [MQTT-4.6.0-1], then starts on the queue.
func (s *Shard) resend(sess *session) {
	now := s.retryClock()
	for _, m := range sess.inflight {
		// The in-session retry timer and budget start again from this resend.
		m.sentAt, m.retries = now, 0
		if m.released {
			sess.c.out.sendAck(wire.PUBREL, m.id) // [MQTT-4.3.3-1]
			continue
		}
		s.writePublish(sess.c, m, true) // [MQTT-3.3.1-1]
	}
	s.fillInflight(sess)
}

// handleClosed ends a connection: publishes its will unless it sent
// DISCONNECT, and drops a clean session.
func (s *Shard) handleClosed(c *client, reason string) {
	if c.detached || c.sess == nil {
		return
	}
	s.detach(c, reason)
	c.out.closeAfterFlush()
}

// detach separates a connection from its session: the will fires unless the
// client disconnected cleanly [MQTT-3.1.2-8], and a clean session ends.
func (s *Shard) detach(c *client, reason string) {
	c.detached = true
	sess := c.sess
	if sess.c == c {
		sess.c = nil
	}
	if c.will != nil {
		will := c.will
		c.will = nil  // published at most once [MQTT-3.1.2-10]
		s.route(will) // client-supplied like a PUBLISH: never into $SYS
	}
	if sess.clean && sess.c == nil {
		s.dropSession(sess)
	}
	s.b.logInfo("client disconnected", "client", c.id, "remote", c.conn.RemoteAddr(), "reason", reason)
}

// dropSession forgets a session and its subscriptions.
func (s *Shard) dropSession(sess *session) {
	for filter := range sess.subs {
		s.removeSub(sess, filter)
	}
	sess.inflight = nil
	sess.queue.clear()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
	}
}

func (s *Shard) handlePublish(c *client, ev *event) {
	msg := ev.msg
	switch msg.QoS {
	case 1:
		s.route(msg)
		c.out.sendAck(wire.PUBACK, ev.packetID) // [MQTT-3.3.4-1]
	case 2:
		if c.sess.inbound == nil {
			c.sess.inbound = make(map[uint16]struct{})
		}
		if _, held := c.sess.inbound[ev.packetID]; !held {
			// Routed on the first PUBLISH; a repeat before PUBREL is only
			// acknowledged again [MQTT-4.3.3-2].
			c.sess.inbound[ev.packetID] = struct{}{}
			s.route(msg)
		}
		c.out.sendAck(wire.PUBREC, ev.packetID)
	default:
		s.route(msg)
	}
}

// route applies a client's publish: $SYS/ is reserved for the broker, the
// retained store is updated, and the message goes to every matching session.
func (s *Shard) route(msg *Message) {
	if isSysTopic(msg.Topic) {
		s.b.logDebug("dropped client publish to $SYS", "topic", string(msg.Topic))
		return
	}
	s.publish(msg)
}

// publish delivers msg to every subscriber. Retained messages are stored
// first [MQTT-3.3.1-5]; an empty retained payload deletes [MQTT-3.3.1-10].
func (s *Shard) publish(msg *Message) {
	if msg.Retain {
		if len(msg.Payload) == 0 {
			s.b.retained.Delete(string(msg.Topic)) // [MQTT-3.3.1-11]
		} else {
			s.b.retained.Set(string(msg.Topic), msg)
		}
	}
	s.matches = s.b.tree.Match(msg.Topic, s.matches[:0])
	if len(s.matches) == 0 {
		return
	}
	// Group the matched filters by shard: one mailbox post per target shard.
	var local []string
	for i := range s.matches {
		m := &s.matches[i]
		if m.Shard == s.index {
			local = append(local, m.Filter)
			continue
		}
		out := s.outbox[m.Shard]
		if n := len(out); n > 0 && out[n-1].msg == msg {
			out[n-1].filters = append(out[n-1].filters, m.Filter)
		} else {
			out = append(out, event{kind: evDeliver, msg: msg, filters: []string{m.Filter}})
		}
		s.outbox[m.Shard] = out
	}
	if local != nil {
		s.deliverLocal(msg, local)
	}
}

// flushOutbox posts this iteration's deliveries, one push per target shard.
func (s *Shard) flushOutbox() {
	for i, out := range s.outbox {
		if len(out) == 0 {
			continue
		}
		s.b.shards[i].mb.pushShardBatch(out)
		clear(out)
		s.outbox[i] = out[:0]
	}
}

// deliverLocal hands msg to each local session subscribed to one of filters,
// once per session at the highest granted QoS [MQTT-3.3.5-1].
func (s *Shard) deliverLocal(msg *Message, filters []string) {
	s.mark++
	touched := s.touched[:0]
	for _, f := range filters {
		for sess, qos := range s.subs[f] {
			if sess.deliverMark != s.mark {
				sess.deliverMark = s.mark
				sess.deliverQoS = qos
				touched = append(touched, sess)
			} else if qos > sess.deliverQoS {
				sess.deliverQoS = qos
			}
		}
	}
	for _, sess := range touched {
		// [MQTT-3.8.4-6] min(published QoS, granted QoS).
		s.deliver(sess, msg, min(msg.QoS, sess.deliverQoS), false) // [MQTT-3.3.1-9]
	}
	clear(touched)
	s.touched = touched[:0]
}

// deliver adds one message to a session [MQTT-4.5.0-1]: sent now if the
// client is online and the in-flight window and outbound queue allow,
// queued otherwise (QoS 1/2 only), in order.
func (s *Shard) deliver(sess *session, msg *Message, qos byte, retain bool) {
	c := sess.c
	if qos == 0 {
		if c == nil {
			return // QoS 0 is not stored for offline sessions
		}
		s.pub = wire.Publish{QoS: 0, Retain: retain, Topic: msg.Topic, Payload: msg.Payload}
		if !c.out.sendPublish(&s.pub, true) {
			s.b.stats.droppedQoS0.Add(1)
		}
		return
	}
	p := pending{msg: msg, qos: qos, retain: retain}
	if c != nil && sess.queue.len() == 0 && len(sess.inflight) < s.b.cfg.MaxInflight && c.out.hasRoom() {
		s.sendInflight(sess, p)
		return
	}
	if sess.queue.len() >= s.b.cfg.MaxQueuedMessages {
		s.b.stats.droppedQueueFull.Add(1)
		return
	}
	sess.queue.push(p)
}

// fillInflight moves queued messages into the in-flight window while there is
// room, keeping their order.
func (s *Shard) fillInflight(sess *session) {
	c := sess.c
	for c != nil && sess.queue.len() > 0 && len(sess.inflight) < s.b.cfg.MaxInflight {
		if !c.out.hasRoom() {
			return // the writer calls back when it drains
		}
		s.sendInflight(sess, sess.queue.pop())
	}
}

func (s *Shard) sendInflight(sess *session, p pending) {
	m := &outMsg{id: sess.nextPacketID(), msg: p.msg, qos: p.qos, retain: p.retain, sentAt: s.retryClock()}
	sess.inflight = append(sess.inflight, m)
	s.writePublish(sess.c, m, false)
}

// writePublish encodes an in-flight message. DUP is set only on the broker's
// own resends [MQTT-3.3.1-3].
func (s *Shard) writePublish(c *client, m *outMsg, dup bool) {
	s.pub = wire.Publish{Dup: dup, QoS: m.qos, Retain: m.retain, Topic: m.msg.Topic, PacketID: m.id, Payload: m.msg.Payload}
	c.out.sendPublish(&s.pub, false)
}

// handleAck completes an outbound QoS 1 (PUBACK) or QoS 2 (PUBCOMP) message.
func (s *Shard) handleAck(sess *session, id uint16, qos byte) {
	i := sess.findInflight(id)
	if i < 0 {
		return
	}
	m := sess.inflight[i]
	if m.qos != qos || (qos == 2 && !m.released) {
		return // an ack that does not fit the state machine is ignored
	}
	sess.removeInflight(i) // the id is free again [MQTT-2.3.1-4]
	s.fillInflight(sess)
}

// handlePubrec answers PUBREC with PUBREL and never resends the PUBLISH
// afterwards [MQTT-4.3.3-1].
func (s *Shard) handlePubrec(c *client, id uint16) {
	i := c.sess.findInflight(id)
	if i >= 0 && c.sess.inflight[i].qos == 2 {
		m := c.sess.inflight[i]
		m.released = true
		// A PUBREL retry is due an interval after this PUBREL, not after
		// the PUBLISH.
		m.retries, m.sentAt = 0, s.retryClock()
	}
	c.out.sendAck(wire.PUBREL, id)
}

// handleSubscribe grants every filter and sends the SUBACK, then the
// matching retained messages [MQTT-3.3.1-6].
func (s *Shard) handleSubscribe(c *client, sub *wire.Subscribe) {
	sess := c.sess
	codes := make([]byte, len(sub.Subscriptions))
	for i, t := range sub.Subscriptions {
		qos := t.QoS
		if len(sess.subs) >= s.b.cfg.MaxSubscriptions {
			if _, exists := sess.subs[t.Filter]; !exists {
				codes[i] = wire.SubackFailure
				continue
			}
		}
		s.addSub(sess, t.Filter, qos) // [MQTT-3.8.4-3] replaces an identical filter
		codes[i] = qos                // [MQTT-3.8.4-5] [MQTT-3.9.3-1]
	}
	// One SUBACK for the whole packet, with its packet id [MQTT-3.8.4-1,2,4].
	c.out.send(&wire.Suback{PacketID: sub.PacketID, ReturnCodes: codes})
	for i, t := range sub.Subscriptions {
		if codes[i] == wire.SubackFailure {
			continue
		}
		granted := codes[i]
		s.b.retained.Match(t.Filter, func(_ string, msg *Message) bool {
			s.deliver(sess, msg, min(msg.QoS, granted), true) // [MQTT-3.3.1-8]
			return true
		})
	}
}

func (s *Shard) handleUnsubscribe(c *client, unsub *wire.Unsubscribe) {
	for _, f := range unsub.Filters {
		// Filters compare literally [MQTT-3.10.4-1]; in-flight messages still
		// complete [MQTT-3.10.4-3].
		s.removeSub(c.sess, f)
	}
	c.out.sendAck(wire.UNSUBACK, unsub.PacketID) // [MQTT-3.10.4-4] [MQTT-3.10.4-5]
}

func (s *Shard) addSub(sess *session, filter string, qos byte) {
	if _, exists := sess.subs[filter]; !exists {
		local := s.subs[filter]
		if local == nil {
			local = make(map[*session]byte)
			s.subs[filter] = local
			s.b.tree.Add(filter, s.index)
		}
		local[sess] = qos
		s.b.stats.subscriptions.Add(1)
	} else {
		s.subs[filter][sess] = qos
	}
	sess.subs[filter] = qos
}

func (s *Shard) removeSub(sess *session, filter string) {
	if _, exists := sess.subs[filter]; !exists {
		return
	}
	delete(sess.subs, filter)
	local := s.subs[filter]
	delete(local, sess)
	if len(local) == 0 {
		delete(s.subs, filter)
		s.b.tree.Remove(filter, s.index)
	}
	s.b.stats.subscriptions.Add(-1)
}

// retryClock is the time an in-flight message is stamped with when it is
// sent; it is read only when in-session retry is on.
func (s *Shard) retryClock() int64 {
	if s.b.cfg.RetryInterval > 0 {
		return time.Now().UnixNano()
	}
	return 0
}

// retryInflight re-sends in-flight messages older than the retry interval
// (an operator option for lossy links; 3.1.1 itself only resends on
// reconnect). Resends go out in the original order.
func (s *Shard) retryInflight() {
	interval := s.b.cfg.RetryInterval
	limit := s.b.cfg.RetryLimit
	now := time.Now().UnixNano()
	for _, sess := range s.sessions {
		c := sess.c
		if c == nil {
			continue
		}
		for _, m := range sess.inflight {
			if now-m.sentAt < int64(interval) || (limit > 0 && m.retries >= limit) {
				continue
			}
			m.retries++
			m.sentAt = now
			if m.released {
				c.out.sendAck(wire.PUBREL, m.id)
			} else {
				s.writePublish(c, m, true)
			}
		}
	}
}

// shutdown closes every connection this shard owns.
func (s *Shard) shutdown() {
	for _, sess := range s.sessions {
		if sess.c != nil {
			sess.c.out.close()
		}
	}
}

func isSysTopic(topic []byte) bool {
	return bytes.HasPrefix(topic, []byte("$SYS/")) || bytes.Equal(topic, []byte("$SYS"))
}
