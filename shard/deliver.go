package shard

import (
	"time"

	"iotd/wire"
)

// maxPendingAcks bounds acknowledgements waiting for durability per client.
// A conforming client cannot have more QoS 1/2 PUBLISHes unacknowledged than
// there are packet ids.
const maxPendingAcks = 65535

func (s *Shard) handlePublish(c *client, ev *event) {
	msg := ev.msg
	s.stats.received[msg.QoS].Add(1)
	s.stats.receivedBytes[msg.QoS].Add(int64(len(msg.Payload)))
	if s.b.acl != nil && !s.mayPublish(c, msg) {
		s.refusePublish(c, ev) // acknowledged, not forwarded [MQTT-3.3.5-2]
		return
	}
	switch msg.QoS {
	case 0:
		s.route(msg, nil)
	case 1:
		t := s.newTicket(c, wire.PUBACK, ev.packetID) // [MQTT-3.3.4-1]
		s.route(msg, t)
		s.holdAck(c, t, wire.PUBACK, ev.packetID)
	case 2:
		sess := c.sess
		t := s.newTicket(c, wire.PUBREC, ev.packetID)
		if _, held := sess.inbound[ev.packetID]; !held {
			// Routed on the first PUBLISH; a repeat before PUBREL is only
			// acknowledged again [MQTT-4.3.3-2].
			if sess.inbound == nil {
				sess.inbound = make(map[uint16]struct{})
			}
			sess.inbound[ev.packetID] = struct{}{}
			if s.durable(sess) && !isSysTopic(msg.Topic) {
				// Logged whole and routed once durable, so a restart
				// neither loses nor repeats it (heldroute.go).
				s.hold(sess, ev.packetID, msg)
			} else {
				if s.durable(sess) {
					s.p.idRecord(recInHold, sess.id, ev.packetID)
				}
				s.route(msg, t)
			}
		}
		s.holdAck(c, t, wire.PUBREC, ev.packetID)
	}
	if len(c.acks) > maxPendingAcks {
		s.b.logDebug("closing a client with too many unacknowledged publishes waiting for durability", "client", c.id)
		s.handleClosed(c, "too many publishes waiting for acknowledgement")
	}
}

// newTicket returns the ticket that holds back a PUBACK/PUBREC until the
// message is durable everywhere it went, or nil when nothing is logged.
func (s *Shard) newTicket(c *client, ack wire.Type, id uint16) *ticket {
	if s.p == nil {
		return nil
	}
	t := &ticket{owner: s, c: c, ack: ack, id: id}
	t.shares.Store(1) // this shard's own commit
	s.shares = append(s.shares, t)
	return t
}

// holdAck queues the acknowledgement behind those still waiting, so they
// leave in arrival order. Without a ticket (persistence off) nothing is
// waited for.
func (s *Shard) holdAck(c *client, t *ticket, ack wire.Type, id uint16) {
	if t == nil {
		s.stageAck(c, ack, id)
		return
	}
	c.acks = append(c.acks, t)
}

func (s *Shard) handlePubrel(c *client, id uint16) {
	sess := c.sess
	if _, held := sess.inbound[id]; held {
		delete(sess.inbound, id) // [MQTT-4.3.3-2] the message was routed on PUBLISH
		if s.durable(sess) {
			s.p.idRecord(recInRelease, sess.id, id)
			// PUBCOMP frees the id for a new message: it waits for the
			// release record, or after a crash that message would be taken
			// for a repeat and dropped (persistfault.go: a failed log).
			s.holdAck(c, s.newTicket(c, wire.PUBCOMP, id), wire.PUBCOMP, id)
			return
		}
	}
	if s.fault.err != nil && s.durable(sess) {
		// A repeated PUBREL: its release record may be one the failed log lost.
		s.holdAck(c, s.newTicket(c, wire.PUBCOMP, id), wire.PUBCOMP, id)
		return
	}
	if len(c.acks) > 0 {
		// Keep PUBCOMP behind acknowledgements still waiting.
		t := &ticket{owner: s, c: c, ack: wire.PUBCOMP, id: id, settled: true}
		c.acks = append(c.acks, t)
		return
	}
	s.stageAck(c, wire.PUBCOMP, id)
}

// route applies a client's publish: $SYS/ is reserved for the broker, the
// retained store is updated, and the message goes to every matching session.
func (s *Shard) route(msg *Message, t *ticket) {
	if isSysTopic(msg.Topic) {
		s.stats.droppedSys.Add(1)
		s.b.logDebug("dropped client publish to $SYS", "topic", string(msg.Topic))
		return
	}
	s.publish(msg, t)
}

// publish delivers msg to every subscriber. Retained messages are stored
// first [MQTT-3.3.1-5]; an empty retained payload deletes [MQTT-3.3.1-10].
// t, if set, gains one share per log the message must reach.
func (s *Shard) publish(msg *Message, t *ticket) {
	// A held message routed again after a restart leaves the retained store
	// alone if the retained log already had it: a newer one may follow it.
	if msg.Retain && !s.b.retainMarks.has(msg.origin) {
		topic := string(msg.Topic)
		op := retainOp{topic: msg.Topic, msg: msg, origin: msg.origin}
		if len(msg.Payload) == 0 {
			s.b.retained.Delete(topic) // [MQTT-3.3.1-11]
			op.msg = nil
		} else {
			s.b.retained.Set(topic, msg)
		}
		// $SYS/ retained messages are the broker's live statistics: stale
		// after a restart, so they stay out of the log.
		if rl := s.b.retainLog; rl != nil && !isSysTopic(msg.Topic) {
			if t != nil {
				t.shares.Add(1)
				op.t = t
			}
			rl.post(op)
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
			if t != nil {
				t.shares.Add(1)
			}
			out = append(out, event{kind: evDeliver, msg: msg, filters: []string{m.Filter}, t: t})
		}
		s.outbox[m.Shard] = out
	}
	if local != nil {
		s.deliverMatched(msg, local)
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
		local := s.subs[f]
		if local == nil {
			continue // unsubscribed since the publisher's shard matched it
		}
		for _, e := range local.list {
			sess, qos := e.sess, e.qos
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
		s.deliver(sess, msg, min(msg.QoS, sess.deliverQoS), false, false) // [MQTT-3.3.1-9]
	}
	clear(touched)
	s.touched = touched[:0]
}

// deliver adds one message to a session [MQTT-4.5.0-1]: sent now if the
// client is online and the in-flight window and outbound queue allow,
// queued otherwise (QoS 1/2 only), in order. Retained messages sent for a new
// subscription (unbounded set) are queued past the queue limit: the retained
// store bounds them, and a subscriber must get all of them [MQTT-3.3.1-6].
func (s *Shard) deliver(sess *session, msg *Message, qos byte, retain, unbounded bool) {
	if s.b.acl != nil && !s.mayRead(sess, msg) {
		return // checked per topic: a deny may cover part of a wildcard subscription
	}
	c := sess.c
	if qos == 0 {
		if c == nil {
			return // QoS 0 is not stored for offline sessions
		}
		if s.room(c) <= 0 {
			s.b.stats.droppedQoS0.Add(1)
			if s.dropLogDue(dropOutboundFull) {
				s.b.logLimit(LimitMaxOutboundBytes, "dropped QoS 0 messages for a client whose outbound queue is full", "client", sess.id, "max", s.b.cfg.MaxOutboundBytes)
			}
			return
		}
		s.pub = wire.Publish{QoS: 0, Retain: retain, Topic: msg.Topic, Payload: msg.Payload}
		s.stagePublish(c, &s.pub)
		return
	}
	p := pending{msg: msg, qos: qos, retain: retain}
	if c != nil && sess.queue.len() == 0 && len(sess.inflight) < s.b.cfg.MaxInflight && s.hasRoom(c) {
		if s.durable(sess) {
			s.p.enqueue(sess.id, msg, qos, retain)
		}
		s.sendInflight(sess, p)
		return
	}
	if sess.queue.len() >= s.b.cfg.MaxQueuedMessages && !unbounded {
		s.b.stats.droppedQueueFull.Add(1)
		if s.dropLogDue(dropQueueFull) {
			s.b.logLimit(LimitMaxQueuedMessages, "dropped QoS 1/2 messages for a session whose queue is full", "client", sess.id, "max", s.b.cfg.MaxQueuedMessages)
		}
		return
	}
	if s.durable(sess) {
		s.p.enqueue(sess.id, msg, qos, retain)
	}
	sess.queue.push(p)
	s.stats.queued.Add(1)
}

// Kinds of delivery drop, for dropLogDue.
const (
	dropOutboundFull = iota
	dropQueueFull
)

// dropLogDue reports whether a delivery drop of this kind goes to logLimit:
// at most once per loop iteration. A stalled subscriber drops on every
// delivery, and logLimit's clock read and boxed arguments cost several
// times the drop itself.
func (s *Shard) dropLogDue(kind int) bool {
	if s.dropLogIter[kind] == s.iter {
		return false
	}
	s.dropLogIter[kind] = s.iter
	return true
}

// hasRoom reports whether c takes another QoS 1/2 message now; when it does
// not, the writer calls back once it has drained.
func (s *Shard) hasRoom(c *client) bool {
	if s.room(c) > 0 {
		return true
	}
	c.wantSpace = true
	s.touch(c)
	return false
}

func (s *Shard) stagePublish(c *client, p *wire.Publish) {
	s.stats.sent[p.QoS].Add(1)
	s.stats.sentBytes[p.QoS].Add(int64(len(p.Payload)))
	buf := s.stageBuffer(c)
	buf.B = p.Append(buf.B)
}

// fillInflight moves queued messages into the in-flight window while there is
// room, keeping their order.
func (s *Shard) fillInflight(sess *session) {
	c := sess.c
	for c != nil && sess.queue.len() > 0 && len(sess.inflight) < s.b.cfg.MaxInflight {
		if !s.hasRoom(c) {
			return
		}
		s.stats.queued.Add(-1)
		p := sess.queue.pop()
		if s.b.acl != nil && !s.mayRead(sess, p.msg) {
			s.dropQueued(sess) // not readable (any more): never sent
			continue
		}
		s.sendInflight(sess, p)
	}
}

func (s *Shard) sendInflight(sess *session, p pending) {
	m := &outMsg{id: sess.nextPacketID(), msg: p.msg, qos: p.qos, retain: p.retain, sentAt: s.retryClock()}
	sess.addInflight(m)
	s.stats.inflight.Add(1)
	if s.durable(sess) {
		s.p.idRecord(recSend, sess.id, m.id)
	}
	s.writePublish(sess.c, m, false)
}

// writePublish encodes an in-flight message. DUP is set only on the broker's
// own resends [MQTT-3.3.1-3].
func (s *Shard) writePublish(c *client, m *outMsg, dup bool) {
	s.pub = wire.Publish{Dup: dup, QoS: m.qos, Retain: m.retain, Topic: m.msg.Topic, PacketID: m.id, Payload: m.msg.Payload}
	s.stagePublish(c, &s.pub)
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
	s.stats.inflight.Add(-1)
	if s.durable(sess) {
		s.p.idRecord(recAck, sess.id, id)
	}
	s.fillInflight(sess)
}

// handlePubrec answers PUBREC with PUBREL and never resends the PUBLISH
// afterwards [MQTT-4.3.3-1].
func (s *Shard) handlePubrec(c *client, id uint16) {
	sess := c.sess
	i := sess.findInflight(id)
	if i >= 0 && sess.inflight[i].qos == 2 {
		m := sess.inflight[i]
		if !m.released && s.durable(sess) {
			s.p.idRecord(recRelease, sess.id, id)
		}
		m.released = true
		// A PUBREL retry is due an interval after this PUBREL, not after
		// the PUBLISH.
		m.retries, m.sentAt = 0, s.retryClock()
	}
	s.stageAck(c, wire.PUBREL, id)
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
				s.stageAck(c, wire.PUBREL, m.id)
			} else {
				s.writePublish(c, m, true)
			}
		}
	}
}
