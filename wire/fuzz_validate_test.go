package wire_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// The validation paths a broker runs on what a client sends first and on
// every subscription: CONNECT (DecodeConnect and its CONNACK verdict) and
// SUBSCRIBE/UNSUBSCRIBE bodies. The fuzzer drives the fixed-header flags and
// the body directly, so it never wastes inputs on framing.

// addBodySeeds seeds (flags, body) pairs from the byte tables' packets of
// type t.
func addBodySeeds(f *testing.F, t wire.Type) {
	for _, s := range wiretest.BodySeeds(t) {
		f.Add(s.Flags, s.Body)
	}
}

// connectFlagsOffset is where the connect flags sit in a CONNECT body that
// names protocol "MQTT": name length (2), "MQTT" (4), level (1).
const connectFlagsOffset = 7

// FuzzConnect: DecodeConnect never panics; every refusal is a
// *ConnectError matching exactly one sentinel whose CONNACK code is the one
// the spec requires for it; everything accepted obeys the CONNECT rules of
// section 3.1 and re-encodes to exactly the bytes it came from; and
// DecodePacket on the framed packet agrees with DecodeConnect.
func FuzzConnect(f *testing.F) {
	addBodySeeds(f, wire.CONNECT)
	f.Add(byte(0), (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: strings.Repeat("a", 300)}).Append(nil)[3:])
	f.Fuzz(func(t *testing.T, flags byte, body []byte) {
		flags &= 0x0F
		fh := wire.FixedHeader{Type: wire.CONNECT, Flags: flags, RemainingLength: len(body)}
		cp, err := wire.DecodeConnect(fh, body)

		// The framed packet takes the same path through Decode.
		framed := append(wire.AppendRemainingLength([]byte{byte(wire.CONNECT)<<4 | flags}, len(body)), body...)
		p, n, perr := wire.DecodePacket(framed)
		switch {
		case err == nil && (perr != nil || n != len(framed) || !reflect.DeepEqual(p, cp)):
			t.Fatalf("DecodePacket disagrees: %v %#v vs %#v", perr, p, cp)
		case err != nil && flags != 0 && !errors.Is(perr, wire.ErrFlags):
			t.Fatalf("bad header flags: DecodePacket returned %v", perr)
		case err != nil && flags == 0 && (perr == nil || perr.Error() != err.Error()):
			t.Fatalf("DecodePacket error %v, DecodeConnect %v", perr, err)
		}

		if err != nil {
			if cp != nil {
				t.Fatalf("error %v with a packet %#v", err, cp)
			}
			var ce *wire.ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConnectError", err)
			}
			m := matchingSentinels(err)
			if len(m) != 1 {
				t.Fatalf("error %v matches %d sentinels", err, len(m))
			}
			var want byte // close without CONNACK [MQTT-3.1.4-1]
			switch m[0] {
			case wire.ErrProtocolLevel:
				want = wire.RefusedProtocolVersion // [MQTT-3.1.2-2]
			case wire.ErrEmptyClientID:
				want = wire.RefusedIdentifierRejected // [MQTT-3.1.3-8]
			}
			if ce.ReturnCode != want {
				t.Fatalf("%v: return code %#x, want %#x", err, ce.ReturnCode, want)
			}
			if m[0] == wire.ErrEmptyClientID {
				// Only the empty id with clean session 0 was wrong: the same
				// bytes with clean session 1 are accepted with an empty id.
				fixed := bytes.Clone(body)
				fixed[connectFlagsOffset] |= 0x02
				c2, err := wire.DecodeConnect(fh, fixed)
				if err != nil || c2.ClientID != "" || !c2.CleanSession {
					t.Fatalf("with clean session 1: %v %#v", err, c2)
				}
			}
			return
		}

		// Accepted: section 3.1's rules hold.
		switch {
		case flags != 0:
			t.Fatalf("accepted header flags %#x [MQTT-2.2.2-2]", flags)
		case cp.ProtocolName != "MQTT" || cp.ProtocolLevel != 4:
			t.Fatalf("accepted protocol %q level %d", cp.ProtocolName, cp.ProtocolLevel)
		case body[connectFlagsOffset]&0x01 != 0:
			t.Fatal("accepted the reserved connect flag [MQTT-3.1.2-3]")
		case cp.WillQoS > 2:
			t.Fatalf("accepted will QoS %d [MQTT-3.1.2-14]", cp.WillQoS)
		case !cp.WillFlag && (cp.WillQoS != 0 || cp.WillRetain || cp.WillTopic != "" || cp.WillMessage != nil):
			t.Fatalf("will fields without the will flag: %#v [MQTT-3.1.2-13] [MQTT-3.1.2-15]", cp)
		case cp.WillFlag && wire.ValidTopicName(cp.WillTopic) != nil:
			t.Fatalf("accepted will topic %q [MQTT-3.1.3-10]", cp.WillTopic)
		case cp.PasswordFlag && !cp.UsernameFlag:
			t.Fatal("accepted a password without a user name [MQTT-3.1.2-22]")
		case !cp.UsernameFlag && cp.Username != "" || !cp.PasswordFlag && cp.Password != nil:
			t.Fatalf("credentials without their flags: %#v", cp)
		case wire.ValidUTF8String(cp.ClientID) != nil || wire.ValidUTF8String(cp.Username) != nil:
			t.Fatalf("accepted ill-formed strings %q %q [MQTT-3.1.3-4] [MQTT-3.1.3-11]", cp.ClientID, cp.Username)
		case cp.ClientID == "" && !cp.CleanSession:
			t.Fatal("accepted an empty client id with clean session 0 [MQTT-3.1.3-8]")
		}
		// The CONNECT body has a single encoding: re-encoding gives back
		// the input (so nothing after the last field was ignored).
		enc := cp.Append(nil)
		if _, hl, _ := wire.DecodeHeader(enc); !bytes.Equal(enc[hl:], body) {
			t.Fatalf("re-encoded body differs:\n% x\n% x", enc[hl:], body)
		}
	})
}

// refSubscribe parses a SUBSCRIBE (qos) or UNSUBSCRIBE body the plain way,
// field by field, and returns the sentinel the decoder must refuse it with,
// or the packet identifier and entries. It is the oracle for
// FuzzSubscribe, written apart from the decoder's two-pass loop.
func refSubscribe(body []byte, qos bool) (id uint16, subs []wire.Subscription, want error) {
	if len(body) < 2 {
		return 0, nil, wire.ErrMalformed
	}
	id = uint16(body[0])<<8 | uint16(body[1])
	if id == 0 {
		return 0, nil, wire.ErrZeroPacketID // [MQTT-2.3.1-1]
	}
	rest := body[2:]
	if len(rest) == 0 {
		if qos {
			return 0, nil, wire.ErrEmptySubscribe // [MQTT-3.8.3-3]
		}
		return 0, nil, wire.ErrEmptyUnsubscribe // [MQTT-3.10.3-2]
	}
	for len(rest) > 0 {
		if len(rest) < 2 {
			return 0, nil, wire.ErrMalformed
		}
		n := int(rest[0])<<8 | int(rest[1])
		if n > len(rest)-2 {
			return 0, nil, wire.ErrStringLength
		}
		filter := string(rest[2 : 2+n])
		rest = rest[2+n:]
		if err := wire.ValidTopicFilter(filter); err != nil {
			return 0, nil, err // the topic rules, checked by FuzzTopic
		}
		s := wire.Subscription{Filter: filter}
		if qos {
			if len(rest) == 0 {
				return 0, nil, wire.ErrMalformed
			}
			if rest[0] > 2 {
				return 0, nil, wire.ErrSubscribeQoS // [MQTT-3.8.3-4]
			}
			s.QoS, rest = rest[0], rest[1:]
		}
		subs = append(subs, s)
	}
	return id, subs, nil
}

// fuzzSubscribeBody checks one SUBSCRIBE or UNSUBSCRIBE body against
// refSubscribe: the same verdict (flags first [MQTT-3.8.1-1]
// [MQTT-3.10.1-1]), the same entries, and an accepted body re-encodes to
// itself.
func fuzzSubscribeBody(t *testing.T, typ wire.Type, flags byte, body []byte) {
	flags &= 0x0F
	qos := typ == wire.SUBSCRIBE
	p, err := wire.Decode(wire.FixedHeader{Type: typ, Flags: flags, RemainingLength: len(body)}, body)
	id, subs, want := refSubscribe(body, qos)
	if flags != 0x02 {
		want = wire.ErrFlags
	}
	if want != nil {
		if err == nil {
			t.Fatalf("accepted %#v, want %v", p, want)
		}
		w := matchingSentinels(want)
		if m := matchingSentinels(err); len(m) != 1 || len(w) != 1 || m[0] != w[0] {
			t.Fatalf("error %v, want %v", err, want)
		}
		return
	}
	if err != nil {
		t.Fatalf("refused a valid body: %v", err)
	}
	var got []wire.Subscription
	var gotID uint16
	switch p := p.(type) {
	case *wire.Subscribe:
		gotID, got = p.PacketID, p.Subscriptions
	case *wire.Unsubscribe:
		gotID = p.PacketID
		for _, f := range p.Filters {
			got = append(got, wire.Subscription{Filter: f})
		}
	}
	if gotID != id || !reflect.DeepEqual(got, subs) {
		t.Fatalf("decoded id %d %q, want %d %q", gotID, got, id, subs)
	}
	enc := p.Append(nil)
	if _, hl, _ := wire.DecodeHeader(enc); !bytes.Equal(enc[hl:], body) || enc[0] != byte(typ)<<4|0x02 {
		t.Fatalf("re-encoded % x, input % x", enc, body)
	}
}

// FuzzSubscribe: SUBSCRIBE validation (packet id, at least one filter,
// each filter's length, UTF-8 and wildcard rules, requested QoS) agrees
// with refSubscribe on every input.
func FuzzSubscribe(f *testing.F) {
	addBodySeeds(f, wire.SUBSCRIBE)
	f.Add(byte(2), []byte{0x00, 0x01, 0x00, 0x01, '#', 0x00, 0x00, 0x03, 'a', '/', '+', 0x02})
	f.Add(byte(2), []byte{0x00, 0x01, 0x00, 0x00, 0x01})
	f.Add(byte(2), []byte{0x00, 0x01, 0x00, 0x01, 'a', 0x03})
	f.Add(byte(2), []byte{0x00, 0x01, 0x00, 0x02, 0xc3, 0x28, 0x01})
	f.Fuzz(func(t *testing.T, flags byte, body []byte) {
		fuzzSubscribeBody(t, wire.SUBSCRIBE, flags, body)
	})
}

// FuzzUnsubscribe: the same for UNSUBSCRIBE, whose entries carry no QoS.
func FuzzUnsubscribe(f *testing.F) {
	addBodySeeds(f, wire.UNSUBSCRIBE)
	f.Add(byte(2), []byte{0x00, 0x01, 0x00, 0x01, '#', 0x00, 0x03, 'a', '/', '+'})
	f.Add(byte(2), []byte{0x00, 0x01, 0x00, 0x03, 'a', '#', 'b'})
	f.Fuzz(func(t *testing.T, flags byte, body []byte) {
		fuzzSubscribeBody(t, wire.UNSUBSCRIBE, flags, body)
	})
}
