package shard

import (
	"bytes"
	"syscall"
	"time"

	"github.com/valyala/bytebufferpool"

	"iotd/topictree"
	"iotd/wire"
)

// Shard owns a share of the sessions, chosen by client id hash. Everything in
// it is touched only by its own goroutine (run); other goroutines talk to it
// through its mailbox.
//
// One loop iteration drains the mailbox, handles every event, posts the
// deliveries it made to other shards, commits its log records with one fsync,
// and only then writes what it staged for its clients: acknowledgements,
// SUBACKs and outbound PUBLISHes never run ahead of the state they depend on.
type Shard struct {
	index    int
	b        *Broker
	mb       *mailbox
	sessions map[string]*session
	// subs is this shard's half of the subscription index: filter -> the
	// local sessions subscribed to it with their granted QoS. The shared
	// topic tree only records which shards hold a filter.
	subs  map[string]*localSubs
	p     *persister // nil when persistence is off
	stats shardStats

	iter   uint64    // loop iteration, for per-iteration client state
	staged []*client // clients with output staged in this iteration
	shares []*ticket // ticket shares to release once this iteration is durable
	fault  logFault  // the log's failure and recovery (persistfault.go)

	// Held QoS 2 messages (heldroute.go): those not yet in every log by
	// sequence number, those logged in this iteration, those durable and
	// waiting to be routed, and the origin marks of this shard's log.
	unrouted  map[uint64]*Message
	holdNew   []*Message
	routeNext []*Message
	marks     originMarks

	dropLogIter [2]uint64 // iteration of the last drop logged, by kind (dropLogDue)

	// Scratch space reused across loop iterations.
	matches []topictree.Match
	outbox  [][]event // per target shard, flushed once per loop iteration
	touched []*session
	mark    uint64
	pub     wire.Publish
}

// stagePool holds per-client staging buffers; separate from the writer's
// pool because staged batches are much smaller than writes.
var stagePool bytebufferpool.Pool

func newShard(b *Broker, index int) *Shard {
	return &Shard{
		index:    index,
		b:        b,
		mb:       newMailbox(b.cfg.MailboxSize, b.quit),
		sessions: make(map[string]*session),
		subs:     make(map[string]*localSubs),
		unrouted: make(map[uint64]*Message),
		outbox:   make([][]event, b.cfg.Shards),
	}
}

// run is the shard goroutine.
func (s *Shard) run() {
	var retryC, syncC <-chan time.Time
	if s.b.cfg.RetryInterval > 0 {
		t := time.NewTicker(s.b.cfg.RetryInterval / 2)
		defer t.Stop()
		retryC = t.C
	}
	if s.p != nil && s.b.cfg.FsyncInterval > 0 {
		t := time.NewTicker(s.b.cfg.FsyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	for {
		select {
		case <-s.b.quit:
			s.shutdown()
			return
		case <-s.mb.signal:
		case <-retryC:
			s.iter++
			s.retryInflight()
			s.endIteration()
			continue
		case <-syncC:
			s.syncLog()
			continue
		case <-s.fault.retry:
			s.iter++
			s.recoverLog()
			s.endIteration()
			continue
		}
		s.iter++
		start := time.Now()
		fromShards, fromReaders := s.mb.pop()
		for i := range fromShards {
			s.handle(&fromShards[i])
		}
		for i := range fromReaders {
			s.handle(&fromReaders[i])
		}
		s.endIteration()
		s.stats.loop.observe(time.Since(start))
		s.mb.recycle(fromShards, fromReaders)
	}
}

// endIteration posts deliveries to other shards, makes this iteration's
// records durable and then releases what waited for them.
func (s *Shard) endIteration() {
	s.flushOutbox()
	if s.p != nil {
		var start time.Time
		pending := s.p.log.Pending() > 0
		if pending {
			start = time.Now()
		}
		err := s.p.commit()
		if pending {
			s.stats.fsync.observe(time.Since(start))
			s.stats.logBytes.Store(s.p.log.Size())
		}
		if err != nil {
			s.holdShares(err)
		} else {
			for _, t := range s.shares {
				t.releaseOn(s)
			}
			clear(s.shares)
			s.shares = s.shares[:0]
			s.heldCommitted()
			if s.p.needsSnapshot() {
				s.snapshot()
			}
		}
	}
	s.flushStaged()
}

func (s *Shard) snapshot() {
	start := time.Now()
	if err := s.p.snapshot(s.sessions, s.unrouted, s.marks); err != nil {
		if s.p.log.Err() != nil {
			s.logFailed(err) // the truncation after the snapshot failed the log
			return
		}
		s.b.cfg.Logger.Error("shard snapshot failed; the log keeps growing until one succeeds", "shard", s.index, "err", err)
		return
	}
	s.b.cfg.Logger.Debug("shard snapshot written", "shard", s.index, "took", time.Since(start))
}

// syncLog flushes the log to disk in --fsync=interval mode.
func (s *Shard) syncLog() {
	if err := s.p.log.Sync(); err != nil {
		s.logFailed(err)
	}
}

func (s *Shard) handle(ev *event) {
	if s.fault.err != nil {
		s.handleWhileFailed(ev)
		return
	}
	s.dispatch(ev)
}

func (s *Shard) dispatch(ev *event) {
	switch ev.kind {
	case evConnect:
		s.handleConnect(ev.c, ev.connect)
	case evDeliver:
		s.deliverMatched(ev.msg, ev.filters)
		if ev.t != nil {
			s.shares = append(s.shares, ev.t)
		}
	case evSettled:
		s.settle(ev.t)
	case evSysPublish:
		s.publish(ev.msg, nil)
	case evRouteHeld:
		s.routeHeld()
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
			s.handlePubrel(c, ev.packetID)
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

// handleConnect attaches the connection to its session. If another
// connection holds the session, the new one waits until the old one's reader
// has passed on what it already received (a DISCONNECT or PUBACK sent just
// before a reconnect must count); a silent old connection is closed after
// the takeover grace [MQTT-3.1.4-2].
func (s *Shard) handleConnect(c *client, cp *wire.Connect) {
	sess := s.sessions[cp.ClientID]
	if sess != nil && sess.c != nil {
		if prev := sess.waiting; prev != nil {
			// A third connection: the one that was waiting loses.
			s.refuseWaiting(prev)
		}
		sess.waiting = &waitingConnect{c: c, connect: cp}
		old := sess.c
		if old.takeover == nil {
			conn := old.conn
			old.takeover = time.AfterFunc(s.b.cfg.TakeoverGrace, func() { conn.Close() })
		}
		return
	}
	present := false
	if sess != nil && (cp.CleanSession || sess.clean) {
		s.dropSession(sess) // [MQTT-3.1.2-6]
		sess = nil
	}
	if sess == nil {
		sess = newSession(cp.ClientID, cp.CleanSession)
		s.sessions[cp.ClientID] = sess
		s.stats.sessions.Add(1)
		if s.durable(sess) {
			s.p.clientRecord(recSession, sess.id)
		}
	} else {
		present = true // [MQTT-3.2.2-2]
	}
	sess.c = c
	sess.ident = c.ident
	c.sess = sess
	c.accepted = true
	// CONNACK is the first packet the client gets [MQTT-3.2.0-1]; the
	// reader starts answering PINGREQ only once it has been written.
	s.stagePacket(c, &wire.Connack{SessionPresent: present, ReturnCode: wire.Accepted}) // [MQTT-3.1.4-4]
	c.signalReady = true
	s.b.logInfo("client connected", "client", c.id, "remote", c.conn.RemoteAddr(), "clean", cp.CleanSession, "session_present", present, "shard", s.index)
	if present {
		s.resend(sess)
	}
}

// waitingConnect is a CONNECT held until the session's current connection
// has ended.
type waitingConnect struct {
	c       *client
	connect *wire.Connect
}

// refuseWaiting ends a connection whose CONNECT lost a takeover race; it is
// closed without CONNACK, as when the server cannot serve it [MQTT-3.2.2-6].
func (s *Shard) refuseWaiting(w *waitingConnect) {
	w.c.detached = true
	w.c.out.close()
	close(w.c.ready)
}

// resend re-sends, after a reconnect, every unacknowledged PUBLISH with DUP=1
// and every unacknowledged PUBREL, with their original packet ids and in their
// original order [MQTT-4.4.0-1] [MQTT-4.6.0-1], then starts on the queue.
func (s *Shard) resend(sess *session) {
	if s.b.acl != nil {
		s.dropUnreadableInflight(sess)
	}
	now := s.retryClock()
	for _, m := range sess.inflight {
		// The in-session retry timer and budget start again from this resend.
		m.sentAt, m.retries = now, 0
		if m.released {
			s.stageAck(sess.c, wire.PUBREL, m.id) // [MQTT-4.3.3-1]
			continue
		}
		s.writePublish(sess.c, m, true) // [MQTT-3.3.1-1]
	}
	s.fillInflight(sess)
}

// handleClosed ends a connection: publishes its will unless it sent
// DISCONNECT, drops a clean session, and lets a waiting CONNECT in.
func (s *Shard) handleClosed(c *client, reason string) {
	if c.detached || c.sess == nil {
		return
	}
	s.detach(c, reason)
	c.closing = true
	s.touch(c)
}

// detach separates a connection from its session: the will fires unless the
// client disconnected cleanly [MQTT-3.1.2-8], and a clean session ends.
func (s *Shard) detach(c *client, reason string) {
	c.detached = true
	if c.takeover != nil {
		c.takeover.Stop()
	}
	sess := c.sess
	if sess.c == c {
		sess.c = nil
	}
	if c.will != nil {
		will := c.will
		c.will = nil // published at most once [MQTT-3.1.2-10]
		if s.b.acl == nil || s.willAllowed(c, will) {
			s.route(will, nil) // client-supplied like a PUBLISH: never into $SYS
		}
	}
	for _, t := range c.acks {
		t.abandoned.Store(true)
	}
	clear(c.acks)
	c.acks = nil
	waiting := sess.waiting
	sess.waiting = nil
	if sess.clean && sess.c == nil {
		s.dropSession(sess)
	}
	s.b.logInfo("client disconnected", "client", c.id, "remote", c.conn.RemoteAddr(), "reason", reason)
	if waiting != nil {
		s.handleConnect(waiting.c, waiting.connect)
	}
}

// dropSession forgets a session and its subscriptions.
func (s *Shard) dropSession(sess *session) {
	durable := s.durable(sess)
	for filter := range sess.subs {
		s.removeSub(sess, filter, false)
	}
	s.stats.inflight.Add(-int64(len(sess.inflight)))
	s.stats.queued.Add(-int64(sess.queue.len()))
	sess.inflight = nil
	sess.idBits = nil
	sess.queue.clear()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
		s.stats.sessions.Add(-1)
	}
	if durable {
		s.p.clientRecord(recSessionDel, sess.id)
	}
}

// durable reports whether changes to sess are logged.
func (s *Shard) durable(sess *session) bool { return s.p != nil && !sess.clean }

// touch marks c as having output (or a close) to flush at the end of the
// iteration.
func (s *Shard) touch(c *client) {
	if c.stageIter != s.iter || !c.isStaged {
		c.stageIter = s.iter
		c.isStaged = true
		s.staged = append(s.staged, c)
	}
}

func (s *Shard) stageBuffer(c *client) *bytebufferpool.ByteBuffer {
	s.touch(c)
	if c.stage == nil {
		c.stage = stagePool.Get()
	}
	return c.stage
}

func (s *Shard) stagePacket(c *client, p wire.Packet) {
	buf := s.stageBuffer(c)
	buf.B = p.Append(buf.B)
}

// stageAck stages one of the four-byte packets (PUBACK, PUBREC, PUBREL,
// PUBCOMP, UNSUBACK).
func (s *Shard) stageAck(c *client, t wire.Type, id uint16) {
	flags := byte(0)
	if t == wire.PUBREL {
		flags = 0x02 // [MQTT-3.6.1-1]
	}
	buf := s.stageBuffer(c)
	buf.B = append(buf.B, byte(t)<<4|flags, 2, byte(id>>8), byte(id))
}

// room reports how many more bytes c's outbound queue takes now; staged
// bytes count against it. The writer's queue is read once per iteration and
// read again when that reading says full and more was staged since: the
// writer drains while a long iteration stages, and a stale reading dropped
// QoS 0 messages for a subscriber that kept up. A stalled subscriber stages
// nothing more once full, so its drops cost no lock.
func (s *Shard) room(c *client) int {
	staged := 0
	if c.stage != nil {
		staged = len(c.stage.B)
	}
	if c.roomIter != s.iter {
		c.roomIter = s.iter
		c.outQueued = c.out.queuedBytes()
		c.roomStaged = staged
	}
	r := s.b.cfg.MaxOutboundBytes - c.outQueued - staged
	if r <= 0 && c.roomStaged != staged {
		c.outQueued = c.out.queuedBytes()
		c.roomStaged = staged
		r = s.b.cfg.MaxOutboundBytes - c.outQueued - staged
	}
	return r
}

// maxInlineFlushClients is the most clients with output in one iteration for
// which the shard writes to the sockets itself.
const maxInlineFlushClients = 8

// flushStaged hands every touched client its staged bytes, one lock and at
// most one writer wake-up per client per iteration. When few clients have
// output, the shard writes to their sockets itself (saving a writer
// goroutine's start and wake-up, which is most of a lone message's latency);
// when many do, their writers copy to the kernel in parallel with the shard.
func (s *Shard) flushStaged() {
	inline := len(s.staged) <= maxInlineFlushClients
	for i, c := range s.staged {
		c.isStaged = false
		if c.stage != nil {
			var rc syscall.RawConn
			if inline {
				rc = c.rawConn()
			}
			c.out.write(c.stage.B, rc)
			stagePool.Put(c.stage)
			c.stage = nil
		}
		if c.wantSpace {
			c.wantSpace = false
			c.out.requestSpace()
		}
		if c.signalReady {
			c.signalReady = false
			close(c.ready)
		}
		if c.closing {
			c.closing = false
			c.out.closeAfterFlush()
		}
		s.staged[i] = nil
	}
	s.staged = s.staged[:0]
}

// settle records that every share of t was released: acknowledgements go out
// in the order their PUBLISHes arrived [MQTT-4.6.0-2] [MQTT-4.6.0-3].
func (s *Shard) settle(t *ticket) {
	if t.routed != 0 {
		s.finishRoute(t.routed)
		return
	}
	t.settled = true
	c := t.c
	if c.detached {
		return
	}
	n := 0
	for _, head := range c.acks {
		if !head.settled {
			break
		}
		s.stageAck(c, head.ack, head.id)
		n++
	}
	clear(c.acks[:n])
	c.acks = c.acks[n:]
	if len(c.acks) == 0 {
		c.acks = nil
	}
}

// shutdown commits what is pending, closes the log and every connection.
func (s *Shard) shutdown() {
	if s.p != nil {
		if s.fault.err != nil {
			s.recoverLog() // one last attempt to store what the failure lost
			s.fault.stop()
		}
		if err := s.p.commit(); err != nil {
			s.b.cfg.Logger.Error("shard log commit at shutdown failed", "shard", s.index, "err", err)
		}
		if err := s.p.close(); err != nil {
			s.b.cfg.Logger.Error("shard log close failed", "shard", s.index, "err", err)
		}
	}
	for _, sess := range s.sessions {
		if sess.c != nil {
			sess.c.out.close()
		}
		if w := sess.waiting; w != nil {
			w.c.out.close()
		}
	}
}

func isSysTopic(topic []byte) bool {
	return bytes.HasPrefix(topic, []byte("$SYS/")) || bytes.Equal(topic, []byte("$SYS"))
}
