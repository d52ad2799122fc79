package wire

// Encoding appends to a caller-owned slice (redcon/tidwall style) so that a
// connection writer can reuse one pooled buffer for every packet: with
// enough capacity no Append call allocates.
//
// Append encodes the struct exactly as it is, without validating it, so
// tests can build malformed packets (QoS 3, a password without a user name)
// from structs. Only lengths the wire format cannot represent panic: a
// string or binary field over 65535 bytes, or a remaining length over
// MaxRemainingLength. Packets built from decoded or validated data never
// hit those limits.

// MaxRemainingLength is the largest value four remaining-length bytes hold.
const MaxRemainingLength = 268435455

// AppendRemainingLength appends n in the variable-length encoding of section
// 2.2.3 (7 bits per byte, least significant group first, high bit set on
// every byte but the last). It panics if n is negative or over
// MaxRemainingLength.
func AppendRemainingLength(dst []byte, n int) []byte {
	if n < 0 || n > MaxRemainingLength {
		panic("wire: remaining length out of range")
	}
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

func appendUint16(dst []byte, v uint16) []byte {
	return append(dst, byte(v>>8), byte(v))
}

// appendField appends a 16-bit length prefix and the bytes of s (a UTF-8
// string or binary data field, section 1.5).
func appendField[T ~string | ~[]byte](dst []byte, s T) []byte {
	if len(s) > 0xFFFF {
		panic("wire: string or binary field longer than 65535 bytes")
	}
	dst = appendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// appendHeader appends the fixed header: type, flags and remaining length.
func appendHeader(dst []byte, t Type, flags byte, remaining int) []byte {
	dst = append(dst, byte(t)<<4|flags&0x0F)
	return AppendRemainingLength(dst, remaining)
}

// appendIDOnly encodes the packets whose body is only a packet identifier.
func appendIDOnly(dst []byte, t Type, flags byte, id uint16) []byte {
	return append(dst, byte(t)<<4|flags, 2, byte(id>>8), byte(id))
}

func boolBit(b bool, bit byte) byte {
	if b {
		return bit
	}
	return 0
}

// Append encodes the CONNECT. The flags byte comes from the *Flag fields
// and the optional payload fields are written exactly when their flag is
// set, in the order of [MQTT-3.1.3-1].
func (c *Connect) Append(dst []byte) []byte {
	flags := boolBit(c.UsernameFlag, 0x80) | boolBit(c.PasswordFlag, 0x40) |
		boolBit(c.WillRetain, 0x20) | (c.WillQoS&3)<<3 |
		boolBit(c.WillFlag, 0x04) | boolBit(c.CleanSession, 0x02)
	n := 2 + len(c.ProtocolName) + 1 + 1 + 2 + 2 + len(c.ClientID)
	if c.WillFlag {
		n += 2 + len(c.WillTopic) + 2 + len(c.WillMessage)
	}
	if c.UsernameFlag {
		n += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		n += 2 + len(c.Password)
	}
	dst = appendHeader(dst, CONNECT, 0, n)
	dst = appendField(dst, c.ProtocolName)
	dst = append(dst, c.ProtocolLevel, flags)
	dst = appendUint16(dst, c.KeepAlive)
	dst = appendField(dst, c.ClientID)
	if c.WillFlag {
		dst = appendField(dst, c.WillTopic)
		dst = appendField(dst, c.WillMessage)
	}
	if c.UsernameFlag {
		dst = appendField(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendField(dst, c.Password)
	}
	return dst
}

// Append encodes the CONNACK: 20 02 <session present> <return code>.
func (c *Connack) Append(dst []byte) []byte {
	return append(dst, byte(CONNACK)<<4, 2, boolBit(c.SessionPresent, 1), c.ReturnCode)
}

// Append encodes the PUBLISH. A QoS 0 PUBLISH carries no packet identifier
// [MQTT-2.3.1-5]; PacketID is ignored then.
func (p *Publish) Append(dst []byte) []byte {
	qos := p.QoS & 3
	n := 2 + len(p.Topic) + len(p.Payload)
	if qos > 0 {
		n += 2
	}
	dst = appendHeader(dst, PUBLISH, boolBit(p.Dup, 0x08)|qos<<1|boolBit(p.Retain, 0x01), n)
	dst = appendField(dst, p.Topic)
	if qos > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	return append(dst, p.Payload...)
}

// Append encodes the PUBACK: 40 02 <id>.
func (p *Puback) Append(dst []byte) []byte { return appendIDOnly(dst, PUBACK, 0, p.PacketID) }

// Append encodes the PUBREC: 50 02 <id>.
func (p *Pubrec) Append(dst []byte) []byte { return appendIDOnly(dst, PUBREC, 0, p.PacketID) }

// Append encodes the PUBREL: 62 02 <id>; flags 0010 per [MQTT-3.6.1-1].
func (p *Pubrel) Append(dst []byte) []byte { return appendIDOnly(dst, PUBREL, 0x02, p.PacketID) }

// Append encodes the PUBCOMP: 70 02 <id>.
func (p *Pubcomp) Append(dst []byte) []byte { return appendIDOnly(dst, PUBCOMP, 0, p.PacketID) }

// Append encodes the SUBSCRIBE with flags 0010 [MQTT-3.8.1-1].
func (s *Subscribe) Append(dst []byte) []byte {
	n := 2
	for i := range s.Subscriptions {
		n += 2 + len(s.Subscriptions[i].Filter) + 1
	}
	dst = appendHeader(dst, SUBSCRIBE, 0x02, n)
	dst = appendUint16(dst, s.PacketID)
	for i := range s.Subscriptions {
		dst = appendField(dst, s.Subscriptions[i].Filter)
		dst = append(dst, s.Subscriptions[i].QoS)
	}
	return dst
}

// Append encodes the SUBACK: one return code per filter, in order.
func (s *Suback) Append(dst []byte) []byte {
	dst = appendHeader(dst, SUBACK, 0, 2+len(s.ReturnCodes))
	dst = appendUint16(dst, s.PacketID)
	return append(dst, s.ReturnCodes...)
}

// Append encodes the UNSUBSCRIBE with flags 0010 [MQTT-3.10.1-1].
func (u *Unsubscribe) Append(dst []byte) []byte {
	n := 2
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	dst = appendHeader(dst, UNSUBSCRIBE, 0x02, n)
	dst = appendUint16(dst, u.PacketID)
	for _, f := range u.Filters {
		dst = appendField(dst, f)
	}
	return dst
}

// Append encodes the UNSUBACK: B0 02 <id>.
func (u *Unsuback) Append(dst []byte) []byte { return appendIDOnly(dst, UNSUBACK, 0, u.PacketID) }

// Append encodes the PINGREQ: C0 00.
func (*Pingreq) Append(dst []byte) []byte { return append(dst, byte(PINGREQ)<<4, 0) }

// Append encodes the PINGRESP: D0 00.
func (*Pingresp) Append(dst []byte) []byte { return append(dst, byte(PINGRESP)<<4, 0) }

// Append encodes the DISCONNECT: E0 00.
func (*Disconnect) Append(dst []byte) []byte { return append(dst, byte(DISCONNECT)<<4, 0) }
