package netfuzz

import (
	"fmt"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// Pools of client ids, topics and filters. Fuzzing connections share them,
// so sessions are taken over, messages reach subscribers and retained
// messages are replaced, and what a run leaves in the broker stays bounded
// (Run clears the pools at the end).
const clientIDPool = 32

var (
	topicPool = []string{
		"nf/a", "nf/b", "nf/a/b", "nf/a/b/c", "nf/x/y", "nf//z", "nf/", "nf/\uFEFF", "nf/caf\u00e9", "nf/l/e/v/e/l/s",
	}
	filterPool = []string{
		"#", "nf/#", "nf/+", "+/+", "nf/+/b", "nf/a/#", "+/#", "$SYS/#", "nf/a", "+", "/+", "nf//+", "nf/+/+/+",
	}
)

func poolClientID(i int) string { return fmt.Sprintf("nf-%d", i) }

func (g *gen) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *gen) qos() byte { return byte(g.rng.IntN(3)) }

// packetID is mostly small, so acks and PUBRELs hit ids the broker uses.
func (g *gen) packetID() uint16 {
	if g.rng.IntN(4) == 0 {
		return uint16(1 + g.rng.IntN(65535))
	}
	return uint16(1 + g.rng.IntN(8))
}

// connect returns a valid CONNECT: a pool id (so sessions are resumed and
// taken over), sometimes an empty one with clean session, short keep-alives
// so the broker's timer closes idle connections, a will sometimes.
func (g *gen) connect() *wire.Connect {
	c := &wire.Connect{
		ProtocolName:  "MQTT",
		ProtocolLevel: 4,
		CleanSession:  g.rng.IntN(3) != 0,
		ClientID:      poolClientID(g.rng.IntN(clientIDPool)),
	}
	switch g.rng.IntN(4) {
	case 0:
		c.KeepAlive = uint16(1 + g.rng.IntN(3))
	case 1:
		c.KeepAlive = uint16(g.rng.IntN(65536))
	default:
		c.KeepAlive = 60
	}
	if c.CleanSession && g.rng.IntN(5) == 0 {
		c.ClientID = "" // the broker assigns one [MQTT-3.1.3-6]
	}
	if g.rng.IntN(4) == 0 {
		c.WillFlag = true
		c.WillTopic = g.pick(topicPool)
		c.WillMessage = g.randomBytes(g.size(256))
		c.WillQoS = g.qos()
		c.WillRetain = g.rng.IntN(2) == 0
	}
	if g.rng.IntN(5) == 0 {
		c.UsernameFlag = true
		c.Username = "nf"
		if g.rng.IntN(2) == 0 {
			c.PasswordFlag = true
			c.Password = g.randomBytes(g.size(32))
		}
	}
	return c
}

// packet returns one well-formed packet other than the first CONNECT.
func (g *gen) packet() []byte {
	switch n := g.rng.IntN(100); {
	case n < 30:
		p := &wire.Publish{
			QoS:     g.qos(),
			Retain:  g.rng.IntN(8) == 0,
			Topic:   []byte(g.pick(topicPool)),
			Payload: g.randomBytes(g.size(2048)),
		}
		if g.rng.IntN(50) == 0 {
			p.Payload = g.randomBytes(g.size(64 << 10))
		}
		if p.QoS > 0 {
			p.PacketID = g.packetID()
			p.Dup = g.rng.IntN(8) == 0
		}
		return p.Append(nil)
	case n < 45:
		s := &wire.Subscribe{PacketID: g.packetID()}
		for range 1 + g.rng.IntN(4) {
			s.Subscriptions = append(s.Subscriptions, wire.Subscription{Filter: g.pick(filterPool), QoS: g.qos()})
		}
		return s.Append(nil)
	case n < 52:
		u := &wire.Unsubscribe{PacketID: g.packetID()}
		for range 1 + g.rng.IntN(3) {
			u.Filters = append(u.Filters, g.pick(filterPool))
		}
		return u.Append(nil)
	case n < 60:
		return (&wire.Puback{PacketID: g.packetID()}).Append(nil)
	case n < 66:
		return (&wire.Pubrec{PacketID: g.packetID()}).Append(nil)
	case n < 72:
		return (&wire.Pubrel{PacketID: g.packetID()}).Append(nil)
	case n < 78:
		return (&wire.Pubcomp{PacketID: g.packetID()}).Append(nil)
	case n < 86:
		return []byte{0xc0, 0x00} // PINGREQ
	case n < 88:
		return g.connect().Append(nil) // a second CONNECT [MQTT-3.1.0-2]
	case n < 90:
		// Packets only a server sends: CONNACK, SUBACK, UNSUBACK, PINGRESP.
		return [][]byte{{0x20, 0x02, 0x00, 0x00}, {0x90, 0x03, 0x00, 0x01, 0x00}, {0xb0, 0x02, 0x00, 0x01}, {0xd0, 0x00}}[g.rng.IntN(4)]
	case n < 95:
		return clone(wiretest.Valid[g.rng.IntN(len(wiretest.Valid))].Raw)
	default:
		return clone(wiretest.Malformed[g.rng.IntN(len(wiretest.Malformed))].Raw)
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// badStrings are string contents the spec forbids or that trip naive
// parsers: ill-formed UTF-8, a surrogate, U+0000, wildcards in the wrong
// place, nothing at all.
var badStrings = []string{
	"", "\xff", "a\xc3", "\xed\xa0\x80", "\x00", "a\x00b", "\xc0\x80", "a/#/b", "a+", "#/a", "+a/b", "nf/#", "nf/+",
	"\xf4\x90\x80\x80", "$", "\uFFFF", "\U0010FFFF",
}

// corrupt applies one field- or header-level corruption to a packet and
// names it. Structs are encoded without validation (wire's Append), so
// forbidden values go out as they are.
func (g *gen) corrupt(raw []byte) ([]byte, string) {
	fh, hl, err := wire.DecodeHeader(raw)
	if err != nil || hl+fh.RemainingLength != len(raw) {
		return g.corruptHeader(raw)
	}
	if g.rng.IntN(2) == 0 {
		return g.corruptHeader(raw)
	}
	bad := g.pick(badStrings)
	switch fh.Type {
	case wire.CONNECT:
		c := g.connect()
		var what string
		switch g.rng.IntN(10) {
		case 0:
			c.ProtocolName, what = []string{"MQIsdp", "mqtt", "", "MQTT\x00", "MQTTT"}[g.rng.IntN(5)], "protocol name"
		case 1:
			c.ProtocolLevel, what = []byte{0, 3, 5, 255}[g.rng.IntN(4)], "protocol level"
		case 2:
			c.ClientID, what = bad, "client id"
		case 3:
			c.ClientID, c.CleanSession, what = "", false, "empty client id, clean session 0"
		case 4:
			c.ClientID, what = string(g.randomBytes(257+g.rng.IntN(300))), "long client id"
		case 5:
			c.WillFlag, c.WillTopic, c.WillQoS, what = true, bad, g.qos(), "will topic"
		case 6:
			c.WillFlag, c.WillQoS, what = g.rng.IntN(2) == 0, 3, "will QoS 3"
		case 7:
			c.WillFlag, c.WillRetain, c.WillQoS, what = false, true, 1, "will retain/QoS without will"
		case 8:
			c.UsernameFlag, c.PasswordFlag, c.Password, what = false, true, []byte("pw"), "password without user name"
		default:
			c.UsernameFlag, c.Username, what = true, bad, "user name"
		}
		out := c.Append(nil)
		if _, ohl, _ := wire.DecodeHeader(out); g.rng.IntN(4) == 0 {
			// Flags follow the protocol name's length and bytes and the level.
			out[ohl+2+len(c.ProtocolName)+1] |= 0x01 // the reserved connect flag [MQTT-3.1.2-3]
			what += " + reserved flag"
		}
		return out, "CONNECT " + what
	case wire.PUBLISH:
		p := &wire.Publish{QoS: g.qos(), Topic: []byte(g.pick(topicPool)), Payload: g.randomBytes(g.size(64)), PacketID: g.packetID()}
		var what string
		switch g.rng.IntN(4) {
		case 0:
			p.Topic, what = []byte(bad), "topic"
		case 1:
			p.QoS, what = 3, "QoS 3"
		case 2:
			p.QoS, p.PacketID, what = 1+byte(g.rng.IntN(2)), 0, "packet id 0"
		default:
			p.QoS, p.Dup, what = 0, true, "DUP at QoS 0"
		}
		return p.Append(nil), "PUBLISH " + what
	case wire.SUBSCRIBE, wire.UNSUBSCRIBE:
		id := g.packetID()
		var what string
		switch g.rng.IntN(4) {
		case 0:
			id, what = 0, "packet id 0"
		case 1:
			what = "no filters"
			if fh.Type == wire.SUBSCRIBE {
				return (&wire.Subscribe{PacketID: id}).Append(nil), "SUBSCRIBE " + what
			}
			return (&wire.Unsubscribe{PacketID: id}).Append(nil), "UNSUBSCRIBE " + what
		default:
			what = "filter"
		}
		if fh.Type == wire.UNSUBSCRIBE {
			return (&wire.Unsubscribe{PacketID: id, Filters: []string{g.pick(filterPool), bad}}).Append(nil), "UNSUBSCRIBE " + what
		}
		subs := []wire.Subscription{{Filter: g.pick(filterPool), QoS: g.qos()}, {Filter: bad, QoS: g.qos()}}
		if g.rng.IntN(2) == 0 {
			subs[1] = wire.Subscription{Filter: g.pick(filterPool), QoS: []byte{3, 0x80, 0xff, 0x41}[g.rng.IntN(4)]}
			what = "requested QoS byte"
		}
		return (&wire.Subscribe{PacketID: id, Subscriptions: subs}).Append(nil), "SUBSCRIBE " + what
	case wire.PUBACK, wire.PUBREC, wire.PUBREL, wire.PUBCOMP:
		if g.rng.IntN(2) == 0 {
			out := clone(raw)
			out[hl], out[hl+1] = 0, 0
			return out, fh.Type.String() + " packet id 0"
		}
		return append(appendHeader(nil, raw[0], 3), raw[hl:]...), fh.Type.String() + " body of 3 bytes"
	case wire.PINGREQ, wire.DISCONNECT:
		return append(appendHeader(nil, raw[0], 1), 0), fh.Type.String() + " with a body"
	}
	return g.corruptHeader(raw)
}

func appendHeader(dst []byte, first byte, remaining int) []byte {
	return wire.AppendRemainingLength(append(dst, first), remaining)
}

// corruptHeader breaks the fixed header of a packet: flags, type, or a
// remaining length that is huge, over-long, too short or padded.
func (g *gen) corruptHeader(raw []byte) ([]byte, string) {
	if len(raw) < 2 {
		return append(clone(raw), 0xff), "header byte"
	}
	_, hl, err := wire.DecodeHeader(raw)
	if err != nil {
		hl = 2
	}
	body := raw[hl:]
	switch g.rng.IntN(6) {
	case 0:
		first := raw[0]&0xf0 | byte(g.rng.IntN(16))
		if first == raw[0] {
			first ^= 0x01
		}
		return append(appendHeader(nil, first, len(body)), body...), "fixed header flags"
	case 1:
		first := []byte{0x00, 0xf0, 0x0f, 0xff}[g.rng.IntN(4)]
		return append(appendHeader(nil, first, len(body)), body...), "reserved packet type"
	case 2:
		// A length the body never reaches: anything up to the protocol
		// maximum, just over the default max-packet-size (16 MiB), or just
		// under it (a packet the broker accepts and waits for).
		n := len(body) + 1 + g.rng.IntN(wire.MaxRemainingLength-len(body))
		switch g.rng.IntN(3) {
		case 0:
			n = 16<<20 + g.rng.IntN(16)
		case 1:
			n = 16<<20 - 5 - g.rng.IntN(1<<20)
		}
		return append(appendHeader(nil, raw[0], max(n, len(body)+1)), body...), "huge remaining length"
	case 3:
		return append([]byte{raw[0], 0xff, 0xff, 0xff, 0xff, 0x7f}, body...), "5-byte remaining length"
	case 4:
		if len(body) == 0 {
			return append(clone(raw[:1]), 0x01), "remaining length past the stream"
		}
		return append(appendHeader(nil, raw[0], g.rng.IntN(len(body))), body...), "short remaining length"
	default:
		// A padded (non-minimal) length is legal in 3.1.1; a padded zero
		// with a continuation on every byte is not.
		if g.rng.IntN(2) == 0 && len(body) < 0x80 {
			return append([]byte{raw[0], byte(len(body)) | 0x80, 0x80, 0x00}, body...), "padded remaining length"
		}
		return append([]byte{raw[0], 0x80, 0x80, 0x80, 0x80}, body...), "remaining length continuation on 4 bytes"
	}
}

// interesting are byte runs spliced into streams: headers announcing the
// largest packets, reserved types, and field lengths that overrun.
var interesting = [][]byte{
	{0x30, 0xff, 0xff, 0xff, 0x7f},
	{0x82, 0xff, 0xff, 0xff, 0x7f},
	{0x10, 0xff, 0xff, 0x03},
	{0xf0, 0x00},
	{0x00},
	{0xff, 0xff},
	{0x00, 0x00},
	{0x80, 0x80, 0x80, 0x80},
	{0xc0, 0x00, 0xc0, 0x00, 0xc0, 0x00},
	{0xe0, 0x00},
}

// mutateBytes applies one byte-level mutation to the stream and keeps the
// packet end offsets pointing at the same packets.
func (g *gen) mutateBytes(stream []byte, ends []int) ([]byte, []int, string) {
	if len(stream) == 0 {
		return g.randomBytes(1 + g.rng.IntN(16)), nil, "insert: random bytes into an empty stream"
	}
	pos := g.rng.IntN(len(stream))
	span := func() int { return 1 + g.rng.IntN(min(16, len(stream)-pos)) }
	switch g.rng.IntN(8) {
	case 0:
		stream[pos] ^= 1 << g.rng.IntN(8)
		return stream, ends, fmt.Sprintf("flip: a bit at %d", pos)
	case 1:
		stream[pos] = byte(g.rng.Uint32())
		return stream, ends, fmt.Sprintf("set: byte %d", pos)
	case 2:
		ins := g.randomBytes(1 + g.rng.IntN(16))
		return insertAt(stream, pos, ins), shiftEnds(ends, pos, len(ins)), fmt.Sprintf("insert: %d random bytes at %d", len(ins), pos)
	case 3:
		ins := interesting[g.rng.IntN(len(interesting))]
		return insertAt(stream, pos, ins), shiftEnds(ends, pos, len(ins)), fmt.Sprintf("insert: % x at %d", ins, pos)
	case 4:
		n := span()
		return append(stream[:pos:pos], stream[pos+n:]...), shiftEnds(ends, pos, -n), fmt.Sprintf("delete: %d bytes at %d", n, pos)
	case 5:
		n := span()
		dup := clone(stream[pos : pos+n])
		return insertAt(stream, pos+n, dup), shiftEnds(ends, pos+n, n), fmt.Sprintf("duplicate: %d bytes at %d", n, pos)
	case 6:
		// Overwrite a range with bytes from elsewhere in the stream.
		from := g.rng.IntN(len(stream))
		n := copy(stream[pos:], clone(stream[from:from+min(16, len(stream)-from)]))
		return stream, ends, fmt.Sprintf("splice: %d bytes from %d to %d", n, from, pos)
	default:
		return stream[:pos], shiftEnds(ends, pos, -(len(stream) - pos)), fmt.Sprintf("truncate: at %d", pos)
	}
}

func insertAt(b []byte, pos int, ins []byte) []byte {
	out := make([]byte, 0, len(b)+len(ins))
	out = append(out, b[:pos]...)
	out = append(out, ins...)
	return append(out, b[pos:]...)
}

// shiftEnds moves the packet ends after pos by delta; ends a deletion
// swallowed collapse onto pos, and ends past a truncated stream disappear.
func shiftEnds(ends []int, pos, delta int) []int {
	out := ends[:0]
	for _, e := range ends {
		switch {
		case e <= pos:
		case delta < 0 && e <= pos-delta:
			e = pos
		default:
			e += delta
		}
		if e > 0 && (len(out) == 0 || e > out[len(out)-1]) {
			out = append(out, e)
		}
	}
	return out
}
