package shard

// session is the MQTT session state of one client id. It belongs to exactly
// one shard and is touched only by that shard's goroutine: no locks.
type session struct {
	id    string
	clean bool
	c     *client // the connection currently attached; nil while offline

	subs map[string]byte // filter -> granted QoS; nil until the first subscription

	// Outbound QoS 1/2: in-flight messages in the order they were first sent
	// (redelivery on reconnect keeps that order [MQTT-4.6.0-1]) and the queue
	// of messages waiting for a free in-flight slot.
	inflight []*outMsg
	queue    msgQueue
	lastID   uint16

	// Inbound QoS 2 packet ids received and not yet released by PUBREL.
	inbound map[uint16]struct{}

	// deliverMark de-duplicates overlapping subscriptions within one delivery.
	deliverMark uint64
	deliverQoS  byte

	// idBits marks the packet ids in flight once the window is too large
	// for a linear scan; nil otherwise.
	idBits *[1024]uint64

	// waiting is a CONNECT for this session held until the current
	// connection's reader has finished.
	waiting *waitingConnect

	// ident is who the ACL sees: the last client attached. nil for a
	// session recovered from disk until its client connects (authz.go).
	ident *identity
}

// idBitsThreshold is the in-flight count above which packet ids are tracked
// in a bitmap instead of found by scanning.
const idBitsThreshold = 64

// outMsg is a QoS 1/2 message sent to the client and not yet completed.
type outMsg struct {
	id       uint16
	msg      *Message
	qos      byte
	retain   bool // RETAIN flag of this delivery
	released bool // QoS 2: PUBREC received, PUBREL sent [MQTT-4.3.3-1]
	sentAt   int64
	retries  int
}

// pending is a message waiting in a session's queue.
type pending struct {
	msg    *Message
	qos    byte
	retain bool
}

func newSession(id string, clean bool) *session {
	return &session{id: id, clean: clean} // subs is made on the first subscription
}

// nextPacketID returns an id not used by any in-flight message
// [MQTT-2.3.1-4]; ids are never 0 [MQTT-2.3.1-1]. The caller keeps the
// window under 65535.
func (s *session) nextPacketID() uint16 {
	for {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if !s.idInUse(s.lastID) {
			return s.lastID
		}
	}
}

func (s *session) idInUse(id uint16) bool {
	if s.idBits != nil {
		return s.idBits[id>>6]&(1<<(id&63)) != 0
	}
	return s.findInflight(id) >= 0
}

// addInflight appends m to the in-flight list.
func (s *session) addInflight(m *outMsg) {
	s.inflight = append(s.inflight, m)
	if s.idBits == nil && len(s.inflight) > idBitsThreshold {
		s.idBits = new([1024]uint64)
		for _, o := range s.inflight {
			s.idBits[o.id>>6] |= 1 << (o.id & 63)
		}
	} else if s.idBits != nil {
		s.idBits[m.id>>6] |= 1 << (m.id & 63)
	}
}

// findInflight returns the index of id in the in-flight list, or -1. Acks
// mostly arrive in order, so the scan from the front is short.
func (s *session) findInflight(id uint16) int {
	for i, m := range s.inflight {
		if m.id == id {
			return i
		}
	}
	return -1
}

// removeInflight drops the i-th in-flight message. Acks mostly complete the
// oldest, which costs nothing to drop from the front.
func (s *session) removeInflight(i int) *outMsg {
	m := s.inflight[i]
	if i == 0 {
		s.inflight[0] = nil
		s.inflight = s.inflight[1:]
	} else {
		copy(s.inflight[i:], s.inflight[i+1:])
		s.inflight[len(s.inflight)-1] = nil
		s.inflight = s.inflight[:len(s.inflight)-1]
	}
	if s.idBits != nil {
		s.idBits[m.id>>6] &^= 1 << (m.id & 63)
	}
	if len(s.inflight) == 0 {
		s.inflight = nil
		s.idBits = nil
	}
	return m
}

// msgQueue is a FIFO ring of pending messages that grows as needed and
// shrinks back when drained, so an idle session holds no queue memory.
type msgQueue struct {
	buf  []pending
	head int
	n    int
}

func (q *msgQueue) len() int { return q.n }

func (q *msgQueue) push(p pending) {
	if q.n == len(q.buf) {
		size := 2 * len(q.buf)
		if size == 0 {
			size = 8
		}
		nb := make([]pending, size)
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = p
	q.n++
}

func (q *msgQueue) peek() pending { return q.buf[q.head] }

func (q *msgQueue) pop() pending {
	p := q.buf[q.head]
	q.buf[q.head] = pending{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 64 {
			q.buf = nil
		}
	}
	return p
}

func (q *msgQueue) clear() { *q = msgQueue{} }

// at returns the i-th queued message (0 is the head).
func (q *msgQueue) at(i int) pending { return q.buf[(q.head+i)%len(q.buf)] }
