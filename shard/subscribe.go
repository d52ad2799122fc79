package shard

import "iotd/wire"

// handleSubscribe grants every filter and stages the SUBACK, then the
// matching retained messages [MQTT-3.3.1-6]. Both leave after the
// subscriptions are durable.
func (s *Shard) handleSubscribe(c *client, sub *wire.Subscribe) {
	sess := c.sess
	codes := make([]byte, len(sub.Subscriptions))
	for i, t := range sub.Subscriptions {
		if s.b.acl != nil && !s.maySubscribe(c, t.Filter) {
			codes[i] = wire.SubackFailure // no read access [MQTT-3.9.3-1]
			continue
		}
		if len(sess.subs) >= s.b.cfg.MaxSubscriptions {
			if _, exists := sess.subs[t.Filter]; !exists {
				codes[i] = wire.SubackFailure
				s.b.hitLimit(LimitMaxSubscriptions, "refused a subscription over the per-session limit", "client", c.id, "max", s.b.cfg.MaxSubscriptions)
				continue
			}
		}
		s.addSub(sess, t.Filter, t.QoS) // [MQTT-3.8.4-3] replaces an identical filter
		codes[i] = t.QoS                // [MQTT-3.8.4-5] [MQTT-3.9.3-1]
	}
	// One SUBACK for the whole packet, with its packet id [MQTT-3.8.4-1,2,4].
	s.stagePacket(c, &wire.Suback{PacketID: sub.PacketID, ReturnCodes: codes})
	for i, t := range sub.Subscriptions {
		if codes[i] == wire.SubackFailure {
			continue
		}
		granted := codes[i]
		s.b.retained.Match(t.Filter, func(_ string, msg *Message) bool {
			s.deliver(sess, msg, min(msg.QoS, granted), true, true) // [MQTT-3.3.1-8]
			return true
		})
	}
}

func (s *Shard) handleUnsubscribe(c *client, unsub *wire.Unsubscribe) {
	for _, f := range unsub.Filters {
		// Filters compare literally [MQTT-3.10.4-1]; in-flight messages still
		// complete [MQTT-3.10.4-3].
		s.removeSub(c.sess, f, true)
	}
	s.stageAck(c, wire.UNSUBACK, unsub.PacketID) // [MQTT-3.10.4-4] [MQTT-3.10.4-5]
}

func (s *Shard) addSub(sess *session, filter string, qos byte) {
	if _, exists := sess.subs[filter]; !exists {
		s.b.stats.subscriptions.Add(1)
	}
	s.localSubs(filter).set(sess, qos)
	if sess.subs == nil {
		sess.subs = make(map[string]byte)
	}
	sess.subs[filter] = qos
	if s.durable(sess) {
		s.p.sub(sess.id, filter, qos)
	}
}

// removeSub drops one subscription; log says whether to record it (a session
// that ends is recorded as a whole).
func (s *Shard) removeSub(sess *session, filter string, log bool) {
	if _, exists := sess.subs[filter]; !exists {
		return
	}
	delete(sess.subs, filter)
	local := s.subs[filter]
	local.remove(sess)
	if local.len() == 0 {
		delete(s.subs, filter)
		s.b.tree.Remove(filter, s.index)
	}
	s.b.stats.subscriptions.Add(-1)
	if log && s.durable(sess) {
		s.p.unsub(sess.id, filter)
	}
}

// restoreSub indexes a subscription recovered from the log.
func (s *Shard) restoreSub(sess *session, filter string, qos byte) {
	s.localSubs(filter).set(sess, qos)
	s.b.stats.subscriptions.Add(1)
}

// localSubs returns the shard's subscriber list for filter, creating it
// (and announcing the filter in the shared tree) on first use.
func (s *Shard) localSubs(filter string) *localSubs {
	local := s.subs[filter]
	if local == nil {
		local = &localSubs{}
		s.subs[filter] = local
		s.b.tree.Add(filter, s.index)
	}
	return local
}
