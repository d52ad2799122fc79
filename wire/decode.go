package wire

// Decoding is split in two steps so that a reader can frame packets without
// understanding them: DecodeHeader needs only the first 2-5 bytes and tells
// how many body bytes follow; Decode (or (*Publish).Decode on the hot path)
// then parses and validates exactly that body. Both are pure functions of
// their input: nothing is buffered between calls, so a caller that got
// ErrIncomplete simply calls again once it has more bytes.

// checkFlags validates the low nibble of the first byte against Table 2.2
// [MQTT-2.2.2-1], [MQTT-2.2.2-2].
func checkFlags(t Type, flags byte) error {
	switch t {
	case PUBLISH:
		qos := flags >> 1 & 3
		if qos == 3 {
			return ErrPublishQoS // [MQTT-3.3.1-4]
		}
		if qos == 0 && flags&0x08 != 0 {
			return ErrFlags // DUP must be 0 at QoS 0 [MQTT-3.3.1-2]
		}
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		if flags != 0x02 {
			return ErrFlags // [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
		}
	default:
		if flags != 0 {
			return ErrFlags // e.g. DISCONNECT [MQTT-3.14.1-1]
		}
	}
	return nil
}

// DecodeHeader parses the fixed header at the start of b. headerLen is the
// number of bytes it took (2 to 5); the body is the next fh.RemainingLength
// bytes. It returns ErrIncomplete while b is too short to tell, and rejects
// a packet as soon as its first byte is wrong, before the length arrives.
// It never allocates unless it returns a protocol error.
func DecodeHeader(b []byte) (fh FixedHeader, headerLen int, err error) {
	if len(b) == 0 {
		return fh, 0, ErrIncomplete
	}
	t := Type(b[0] >> 4)
	if t == 0 || t == 15 {
		return fh, 0, ErrPacketType
	}
	flags := b[0] & 0x0F
	if err := checkFlags(t, flags); err != nil {
		return fh, 0, wrap(t.String()+" fixed header", err)
	}
	n, shift := 0, 0
	for i := 1; ; i++ {
		if i >= len(b) {
			return fh, 0, ErrIncomplete
		}
		c := b[i]
		n |= int(c&0x7F) << shift
		if c&0x80 == 0 {
			return FixedHeader{Type: t, Flags: flags, RemainingLength: n}, i + 1, nil
		}
		if i == 4 {
			// A continuation bit on the 4th length byte (Errata 01).
			return fh, 0, ErrRemainingLength
		}
		shift += 7
	}
}

// DecodePacket decodes the complete packet at the start of b and reports
// how many bytes it used. It returns ErrIncomplete when b holds only part of
// a packet. The packet owns its memory, as with Decode.
func DecodePacket(b []byte) (Packet, int, error) {
	fh, hl, err := DecodeHeader(b)
	if err != nil {
		return nil, 0, err
	}
	n := hl + fh.RemainingLength
	if len(b) < n {
		return nil, 0, ErrIncomplete
	}
	p, err := Decode(fh, b[hl:n])
	if err != nil {
		return nil, 0, err
	}
	return p, n, nil
}

// cursor reads the fields of a packet body in order.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) left() int { return len(c.b) - c.i }

func (c *cursor) byte() (byte, bool) {
	if c.i >= len(c.b) {
		return 0, false
	}
	c.i++
	return c.b[c.i-1], true
}

func (c *cursor) uint16() (uint16, bool) {
	if c.left() < 2 {
		return 0, false
	}
	c.i += 2
	return uint16(c.b[c.i-2])<<8 | uint16(c.b[c.i-1]), true
}

// field reads a length-prefixed string or binary field (section 1.5.3).
// The result aliases the body.
func (c *cursor) field() ([]byte, error) {
	if c.left() < 2 {
		return nil, ErrMalformed
	}
	n := int(c.b[c.i])<<8 | int(c.b[c.i+1])
	if n > c.left()-2 {
		return nil, ErrStringLength
	}
	start := c.i + 2
	c.i = start + n
	return c.b[start:c.i:c.i], nil
}

// Decode parses and validates the body of any control packet. The returned
// packet owns its memory (strings and byte slices are copies), so body may
// be reused as soon as Decode returns. CONNECT errors are *ConnectError.
// len(body) must equal fh.RemainingLength.
func Decode(fh FixedHeader, body []byte) (Packet, error) {
	if fh.Type == 0 || fh.Type == 15 {
		return nil, ErrPacketType
	}
	if fh.Type == CONNECT {
		c, err := DecodeConnect(fh, body)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	if err := checkFlags(fh.Type, fh.Flags); err != nil {
		return nil, wrap(fh.Type.String()+" fixed header", err)
	}
	if len(body) != fh.RemainingLength {
		return nil, wrap(fh.Type.String()+" body length differs from the remaining length", ErrMalformed)
	}
	switch fh.Type {
	case PUBLISH:
		var p Publish
		if err := p.Decode(fh, body); err != nil {
			return nil, err
		}
		// One allocation holds both, so the packet no longer pins body.
		buf := make([]byte, len(p.Topic)+len(p.Payload))
		tl := copy(buf, p.Topic)
		copy(buf[tl:], p.Payload)
		p.Topic = buf[:tl:tl]
		p.Payload = nil
		if len(buf) > tl {
			p.Payload = buf[tl:]
		}
		return &p, nil
	case CONNACK:
		return decodeConnack(body)
	case PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK:
		return decodeIDOnly(fh.Type, body)
	case SUBSCRIBE:
		return decodeSubscribe(body)
	case SUBACK:
		return decodeSuback(body)
	case UNSUBSCRIBE:
		return decodeUnsubscribe(body)
	case PINGREQ, PINGRESP, DISCONNECT:
		if len(body) != 0 {
			return nil, wrap(fh.Type.String()+" with a body", ErrMalformed)
		}
		switch fh.Type {
		case PINGREQ:
			return &Pingreq{}, nil
		case PINGRESP:
			return &Pingresp{}, nil
		}
		return &Disconnect{}, nil
	}
	return nil, ErrPacketType
}

// Decode parses a PUBLISH body into p without allocating: Topic and Payload
// alias body, so p is valid only as long as body is (copy before keeping
// it). On error p is left unchanged. It checks the topic name
// [MQTT-3.3.2-1], [MQTT-3.3.2-2], [MQTT-4.7.3-1], the QoS [MQTT-3.3.1-4]
// and the packet identifier [MQTT-2.3.1-1].
func (p *Publish) Decode(fh FixedHeader, body []byte) error {
	if fh.Type != PUBLISH {
		return wrap("PUBLISH decoder given "+fh.Type.String(), ErrPacketType)
	}
	if err := checkFlags(PUBLISH, fh.Flags); err != nil {
		return wrap("PUBLISH fixed header", err)
	}
	if len(body) != fh.RemainingLength {
		return wrap("PUBLISH body length differs from the remaining length", ErrMalformed)
	}
	c := cursor{b: body}
	topic, err := c.field()
	if err != nil {
		return wrap("PUBLISH topic name", err)
	}
	if err := ValidTopicName(topic); err != nil {
		return wrap("PUBLISH topic name", err)
	}
	qos := fh.Flags >> 1 & 3
	var id uint16
	if qos > 0 {
		var ok bool
		if id, ok = c.uint16(); !ok {
			return wrap("PUBLISH packet identifier", ErrMalformed)
		}
		if id == 0 {
			return wrap("PUBLISH", ErrZeroPacketID)
		}
	}
	*p = Publish{
		Dup:      fh.Flags&0x08 != 0,
		QoS:      qos,
		Retain:   fh.Flags&0x01 != 0,
		Topic:    topic,
		PacketID: id,
		Payload:  body[c.i:],
	}
	return nil
}

// DecodeConnect parses and validates a CONNECT. Every error is a
// *ConnectError whose ReturnCode says whether to send a CONNACK before
// closing. The protocol name and level are checked first, so a client
// speaking another version gets its 0x01 even though the rest of its packet
// has a layout this decoder does not know (MQTT 5 adds properties).
func DecodeConnect(fh FixedHeader, body []byte) (*Connect, error) {
	fail := func(code byte, where string, err error) (*Connect, error) {
		return nil, &ConnectError{ReturnCode: code, Err: wrap("CONNECT "+where, err)}
	}
	if fh.Type != CONNECT {
		return fail(0, "decoder given "+fh.Type.String(), ErrPacketType)
	}
	if fh.Flags != 0 {
		return fail(0, "fixed header", ErrFlags) // [MQTT-2.2.2-2]
	}
	if len(body) != fh.RemainingLength {
		return fail(0, "body length differs from the remaining length", ErrMalformed)
	}
	c := cursor{b: body}
	name, err := c.field()
	if err != nil {
		return fail(0, "protocol name", err)
	}
	level, ok := c.byte()
	if !ok {
		return fail(0, "protocol level", ErrMalformed)
	}
	switch string(name) {
	case "MQTT":
		if level != 4 {
			return fail(RefusedProtocolVersion, "protocol level", ErrProtocolLevel) // [MQTT-3.1.2-2]
		}
	case "MQIsdp":
		// MQTT 3.1 clients understand CONNACK 0x01 and may retry with 3.1.1.
		return fail(RefusedProtocolVersion, "protocol MQIsdp (MQTT 3.1)", ErrProtocolLevel)
	default:
		return fail(0, "protocol name", ErrProtocolName) // [MQTT-3.1.2-1]
	}

	flags, ok := c.byte()
	if !ok {
		return fail(0, "connect flags", ErrMalformed)
	}
	will := flags&0x04 != 0
	willQoS := flags >> 3 & 3
	willRetain := flags&0x20 != 0
	user, pass := flags&0x80 != 0, flags&0x40 != 0
	switch {
	case flags&0x01 != 0:
		return fail(0, "connect flags: reserved bit set", ErrConnectFlags) // [MQTT-3.1.2-3]
	case !will && willQoS != 0:
		return fail(0, "connect flags: will QoS without will flag", ErrConnectFlags) // [MQTT-3.1.2-13]
	case !will && willRetain:
		return fail(0, "connect flags: will retain without will flag", ErrConnectFlags) // [MQTT-3.1.2-15]
	case willQoS == 3:
		return fail(0, "connect flags: will QoS 3", ErrConnectFlags) // [MQTT-3.1.2-14]
	case pass && !user:
		return fail(0, "connect flags: password without user name", ErrConnectFlags) // [MQTT-3.1.2-22]
	}
	keepAlive, ok := c.uint16()
	if !ok {
		return fail(0, "keep alive", ErrMalformed)
	}

	// Payload, in the order of [MQTT-3.1.3-1].
	clientID, err := c.field()
	if err != nil {
		return fail(0, "client identifier", err) // [MQTT-3.1.3-3]
	}
	if err := ValidUTF8String(clientID); err != nil {
		return fail(0, "client identifier", err) // [MQTT-3.1.3-4]
	}
	cn := &Connect{
		ProtocolName:  "MQTT",
		ProtocolLevel: level,
		CleanSession:  flags&0x02 != 0,
		KeepAlive:     keepAlive,
		ClientID:      string(clientID),
		WillFlag:      will,
		WillQoS:       willQoS,
		WillRetain:    willRetain,
		UsernameFlag:  user,
		PasswordFlag:  pass,
	}
	if will {
		topic, err := c.field()
		if err != nil {
			return fail(0, "will topic", err) // [MQTT-3.1.2-9]
		}
		if err := ValidTopicName(topic); err != nil {
			return fail(0, "will topic", err) // [MQTT-3.1.3-10]
		}
		msg, err := c.field()
		if err != nil {
			return fail(0, "will message", err) // [MQTT-3.1.2-9]
		}
		cn.WillTopic = string(topic)
		cn.WillMessage = cloneOrNil(msg)
	}
	if user {
		name, err := c.field()
		if err != nil {
			return fail(0, "user name", err) // [MQTT-3.1.2-19]
		}
		if err := ValidUTF8String(name); err != nil {
			return fail(0, "user name", err) // [MQTT-3.1.3-11]
		}
		cn.Username = string(name)
	}
	if pass {
		pw, err := c.field()
		if err != nil {
			return fail(0, "password", err) // [MQTT-3.1.2-21]
		}
		cn.Password = cloneOrNil(pw)
	}
	if c.left() != 0 {
		return fail(0, "bytes after the last field", ErrMalformed) // [MQTT-3.1.2-18], [MQTT-3.1.2-20]
	}
	// Checked last: a CONNECT that is also malformed gets no CONNACK at all.
	if len(clientID) == 0 && !cn.CleanSession {
		return fail(RefusedIdentifierRejected, "client identifier", ErrEmptyClientID) // [MQTT-3.1.3-8]
	}
	return cn, nil
}

// cloneOrNil copies b; empty fields decode as nil so that decoded packets
// compare equal to literals regardless of how the empty field arrived.
func cloneOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

func decodeConnack(body []byte) (Packet, error) {
	if len(body) != 2 {
		return nil, wrap("CONNACK length", ErrMalformed)
	}
	if body[0]&^1 != 0 {
		return nil, wrap("CONNACK acknowledge flags: reserved bits set", ErrMalformed)
	}
	if body[1] > RefusedNotAuthorized {
		return nil, wrap("CONNACK reserved return code", ErrMalformed)
	}
	if body[0] != 0 && body[1] != Accepted {
		return nil, wrap("CONNACK session present with a refusal", ErrMalformed) // [MQTT-3.2.2-4]
	}
	return &Connack{SessionPresent: body[0] == 1, ReturnCode: body[1]}, nil
}

// decodeIDOnly decodes PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK, whose
// body is a non-zero packet identifier.
func decodeIDOnly(t Type, body []byte) (Packet, error) {
	if len(body) != 2 {
		return nil, wrap(t.String()+" length", ErrMalformed)
	}
	id := uint16(body[0])<<8 | uint16(body[1])
	if id == 0 {
		return nil, wrap(t.String(), ErrZeroPacketID)
	}
	switch t {
	case PUBACK:
		return &Puback{PacketID: id}, nil
	case PUBREC:
		return &Pubrec{PacketID: id}, nil
	case PUBREL:
		return &Pubrel{PacketID: id}, nil
	case PUBCOMP:
		return &Pubcomp{PacketID: id}, nil
	}
	return &Unsuback{PacketID: id}, nil
}

// packetID reads the leading non-zero identifier of SUBSCRIBE, SUBACK and
// UNSUBSCRIBE [MQTT-2.3.1-1].
func packetID(c *cursor, t Type) (uint16, error) {
	id, ok := c.uint16()
	if !ok {
		return 0, wrap(t.String()+" packet identifier", ErrMalformed)
	}
	if id == 0 {
		return 0, wrap(t.String(), ErrZeroPacketID)
	}
	return id, nil
}

func decodeSubscribe(body []byte) (Packet, error) {
	c := cursor{b: body}
	id, err := packetID(&c, SUBSCRIBE)
	if err != nil {
		return nil, err
	}
	if c.left() == 0 {
		return nil, ErrEmptySubscribe // [MQTT-3.8.3-3]
	}
	// First pass validates and counts, so the second can allocate exactly.
	start, n := c.i, 0
	for c.left() > 0 {
		f, err := c.field()
		if err != nil {
			return nil, wrap("SUBSCRIBE topic filter", err)
		}
		if err := ValidTopicFilter(f); err != nil {
			return nil, wrap("SUBSCRIBE topic filter", err) // [MQTT-3.8.3-1]
		}
		q, ok := c.byte()
		if !ok {
			return nil, wrap("SUBSCRIBE requested QoS missing", ErrMalformed)
		}
		if q > 2 {
			return nil, ErrSubscribeQoS // upper bits 0 and QoS <= 2 [MQTT-3.8.3-4]
		}
		n++
	}
	// All filters share one string copy of the payload.
	s := string(body[start:])
	subs := make([]Subscription, n)
	for i, off := 0, 0; i < n; i++ {
		l := int(s[off])<<8 | int(s[off+1])
		subs[i] = Subscription{Filter: s[off+2 : off+2+l], QoS: s[off+2+l]}
		off += 3 + l
	}
	return &Subscribe{PacketID: id, Subscriptions: subs}, nil
}

func decodeSuback(body []byte) (Packet, error) {
	c := cursor{b: body}
	id, err := packetID(&c, SUBACK)
	if err != nil {
		return nil, err
	}
	codes := body[c.i:]
	if len(codes) == 0 {
		return nil, wrap("SUBACK without return codes", ErrMalformed)
	}
	for _, rc := range codes {
		if rc > 2 && rc != SubackFailure {
			return nil, wrap("SUBACK return code", ErrMalformed) // [MQTT-3.9.3-2]
		}
	}
	rc := make([]byte, len(codes))
	copy(rc, codes)
	return &Suback{PacketID: id, ReturnCodes: rc}, nil
}

func decodeUnsubscribe(body []byte) (Packet, error) {
	c := cursor{b: body}
	id, err := packetID(&c, UNSUBSCRIBE)
	if err != nil {
		return nil, err
	}
	if c.left() == 0 {
		return nil, ErrEmptyUnsubscribe // [MQTT-3.10.3-2]
	}
	start, n := c.i, 0
	for c.left() > 0 {
		f, err := c.field()
		if err != nil {
			return nil, wrap("UNSUBSCRIBE topic filter", err)
		}
		if err := ValidTopicFilter(f); err != nil {
			return nil, wrap("UNSUBSCRIBE topic filter", err) // [MQTT-3.10.3-1]
		}
		n++
	}
	s := string(body[start:])
	filters := make([]string, n)
	for i, off := 0, 0; i < n; i++ {
		l := int(s[off])<<8 | int(s[off+1])
		filters[i] = s[off+2 : off+2+l]
		off += 2 + l
	}
	return &Unsubscribe{PacketID: id, Filters: filters}, nil
}
