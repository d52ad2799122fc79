package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// One test per normative statement of sections 1.5, 2 and 3 that concerns
// the packet format. Statements about broker behaviour (sessions, delivery,
// retained messages, keep-alive) belong to the broker's integration tests.

// expectErr decodes the named wiretest case and asserts the sentinel.
func expectErr(t *testing.T, name string, want error) {
	t.Helper()
	_, _, err := wire.DecodePacket(wiretest.Raw(name))
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", name, err, want)
	}
}

// expectConnect decodes the named CONNECT case and asserts the sentinel and
// the CONNACK code the broker must send (0: none).
func expectConnect(t *testing.T, name string, want error, code byte) {
	t.Helper()
	raw := wiretest.Raw(name)
	fh, hl, err := wire.DecodeHeader(raw)
	if err != nil {
		t.Fatalf("%s: header: %v", name, err)
	}
	_, err = wire.DecodeConnect(fh, raw[hl:])
	var ce *wire.ConnectError
	if !errors.As(err, &ce) || !errors.Is(err, want) || ce.ReturnCode != code {
		t.Errorf("%s: err = %v, want %v with CONNACK code %#x", name, err, want, code)
	}
}

// expectValid decodes the named case and asserts it equals the table.
func expectValid(t *testing.T, name string) wire.Packet {
	t.Helper()
	c := wiretest.Find(name)
	p, _, err := wire.DecodePacket(c.Raw)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func TestSpec_1_5_3_UTF8Strings(t *testing.T) {
	expectErr(t, "publish_surrogate", wire.ErrInvalidUTF8)                  // [MQTT-1.5.3-1] topic ED A0 80
	expectErr(t, "publish_overlong", wire.ErrInvalidUTF8)                   // [MQTT-1.5.3-1] topic C0 80
	expectConnect(t, "connect_client_id_surrogate", wire.ErrInvalidUTF8, 0) // [MQTT-1.5.3-1] client id
	expectErr(t, "subscribe_filter_utf8", wire.ErrInvalidUTF8)              // [MQTT-1.5.3-1] filter
	expectErr(t, "publish_null", wire.ErrNullChar)                          // [MQTT-1.5.3-2] topic
	expectConnect(t, "connect_client_id_null", wire.ErrNullChar, 0)         // [MQTT-1.5.3-2] client id
	expectErr(t, "subscribe_filter_null", wire.ErrNullChar)                 // [MQTT-1.5.3-2] filter
	user := wiretest.ConnectAuth("c", "a\x00b", nil)
	_, _, err := wire.DecodePacket(user)
	if !errors.Is(err, wire.ErrNullChar) { // [MQTT-1.5.3-2] user name
		t.Errorf("user name with U+0000: %v", err)
	}
	if c := expectValid(t, "connect_feff_id").(*wire.Connect); c.ClientID != "\uFEFFx" { // [MQTT-1.5.3-3]
		t.Errorf("U+FEFF stripped from client id: %q", c.ClientID)
	}
	if p := expectValid(t, "publish_feff_topic").(*wire.Publish); string(p.Topic) != "\uFEFFa" { // [MQTT-1.5.3-3]
		t.Errorf("U+FEFF stripped from topic: %q", p.Topic)
	}
}

func TestSpec_2_2_2_Flags(t *testing.T) {
	// [MQTT-2.2.2-1]: the encoder writes the Table 2.2 flags.
	for _, tc := range []struct {
		p     wire.Packet
		first byte
	}{
		{&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true}, 0x10},
		{&wire.Connack{}, 0x20},
		{&wire.Puback{PacketID: 1}, 0x40},
		{&wire.Pubrec{PacketID: 1}, 0x50},
		{&wire.Pubrel{PacketID: 1}, 0x62},
		{&wire.Pubcomp{PacketID: 1}, 0x70},
		{&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "a"}}}, 0x82},
		{&wire.Suback{PacketID: 1, ReturnCodes: []byte{0}}, 0x90},
		{&wire.Unsubscribe{PacketID: 1, Filters: []string{"a"}}, 0xa2},
		{&wire.Unsuback{PacketID: 1}, 0xb0},
		{&wire.Pingreq{}, 0xc0},
		{&wire.Pingresp{}, 0xd0},
		{&wire.Disconnect{}, 0xe0},
	} {
		if got := tc.p.Append(nil)[0]; got != tc.first { // [MQTT-2.2.2-1]
			t.Errorf("%v: first byte %#02x, want %#02x", tc.p.Type(), got, tc.first)
		}
	}
	// [MQTT-2.2.2-2]: wrong reserved flags are rejected for every type.
	for typ := wire.CONNECT; typ <= wire.DISCONNECT; typ++ {
		if typ == wire.PUBLISH {
			continue
		}
		valid := byte(0)
		if typ == wire.PUBREL || typ == wire.SUBSCRIBE || typ == wire.UNSUBSCRIBE {
			valid = 2
		}
		for flags := byte(0); flags < 16; flags++ {
			_, _, err := wire.DecodeHeader([]byte{byte(typ)<<4 | flags, 0})
			if (flags == valid) != (err == nil) || (err != nil && !errors.Is(err, wire.ErrFlags)) { // [MQTT-2.2.2-2]
				t.Errorf("%v flags %04b: err = %v", typ, flags, err)
			}
		}
	}
	expectErr(t, "pingreq_flags", wire.ErrFlags) // [MQTT-2.2.2-2] C1 00
	expectErr(t, "puback_flags", wire.ErrFlags)  // [MQTT-2.2.2-2] 42 02 ..
	// Decode re-checks flags for callers that build the header themselves.
	if _, err := wire.Decode(wire.FixedHeader{Type: wire.PUBACK, Flags: 1, RemainingLength: 2}, []byte{0, 1}); !errors.Is(err, wire.ErrFlags) {
		t.Errorf("Decode with PUBACK flags 1: %v", err) // [MQTT-2.2.2-2]
	}
}

func TestSpec_2_2_3_RemainingLength(t *testing.T) {
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152, wire.MaxRemainingLength} {
		raw := wire.AppendRemainingLength([]byte{0xc0}, n)
		fh, hl, err := wire.DecodeHeader(raw)
		if err != nil || fh.RemainingLength != n || hl != len(raw) || hl > 5 {
			t.Errorf("remaining length %d: % x -> %d, %d, %v", n, raw, fh.RemainingLength, hl, err)
		}
	}
	if got := wire.AppendRemainingLength(nil, wire.MaxRemainingLength); !bytes.Equal(got, []byte{0xff, 0xff, 0xff, 0x7f}) {
		t.Errorf("max remaining length encodes as % x", got)
	}
	// Errata 01: a continuation bit on the 4th byte is malformed, decided
	// without waiting for a 5th byte.
	if _, _, err := wire.DecodeHeader([]byte{0x30, 0x80, 0x80, 0x80, 0x80}); !errors.Is(err, wire.ErrRemainingLength) {
		t.Errorf("4 continuation bytes: %v", err)
	}
	expectErr(t, "remaining_length_5_bytes", wire.ErrRemainingLength)
	expectErr(t, "type_0", wire.ErrPacketType) // types 0 and 15 are reserved
	expectErr(t, "type_15", wire.ErrPacketType)
	for _, n := range []int{-1, wire.MaxRemainingLength + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendRemainingLength(%d) did not panic", n)
				}
			}()
			wire.AppendRemainingLength(nil, n)
		}()
	}
}

func TestSpec_2_3_1_PacketIdentifier(t *testing.T) {
	expectErr(t, "publish_qos1_zero_id", wire.ErrZeroPacketID) // [MQTT-2.3.1-1]
	expectErr(t, "subscribe_zero_id", wire.ErrZeroPacketID)    // [MQTT-2.3.1-1]
	expectErr(t, "unsubscribe_zero_id", wire.ErrZeroPacketID)  // [MQTT-2.3.1-1]
	expectErr(t, "puback_zero_id", wire.ErrZeroPacketID)       // [MQTT-2.3.1-1] acks repeat a non-zero id
	// [MQTT-2.3.1-5]: a QoS 0 PUBLISH has no packet id, even if the struct has one.
	raw := (&wire.Publish{Topic: []byte("t"), PacketID: 0x1234, Payload: []byte("p")}).Append(nil)
	if !bytes.Equal(raw, []byte{0x30, 0x04, 0x00, 0x01, 't', 'p'}) { // [MQTT-2.3.1-5]
		t.Errorf("QoS 0 PUBLISH = % x", raw)
	}
	if p := expectValid(t, "publish_qos0").(*wire.Publish); string(p.Payload) != "hello" || p.PacketID != 0 { // [MQTT-2.3.1-5]
		t.Errorf("QoS 0 payload read as %q, id %d", p.Payload, p.PacketID)
	}
	// [MQTT-2.3.1-6], [MQTT-2.3.1-7]: acks carry the id in bytes 3-4.
	for _, p := range []wire.Packet{
		&wire.Puback{PacketID: 0x1234}, &wire.Pubrec{PacketID: 0x1234}, &wire.Pubrel{PacketID: 0x1234},
		&wire.Pubcomp{PacketID: 0x1234}, &wire.Suback{PacketID: 0x1234, ReturnCodes: []byte{1}},
		&wire.Unsuback{PacketID: 0x1234},
	} {
		if raw := p.Append(nil); raw[2] != 0x12 || raw[3] != 0x34 { // [MQTT-2.3.1-6] [MQTT-2.3.1-7]
			t.Errorf("%v = % x", p.Type(), raw)
		}
	}
}

func TestSpec_3_1_Connect(t *testing.T) {
	expectConnect(t, "connect_protocol_name", wire.ErrProtocolName, 0)                                     // [MQTT-3.1.2-1]
	expectConnect(t, "connect_level_3", wire.ErrProtocolLevel, wire.RefusedProtocolVersion)                // [MQTT-3.1.2-2]
	expectConnect(t, "connect_mqtt5", wire.ErrProtocolLevel, wire.RefusedProtocolVersion)                  // [MQTT-3.1.2-2]
	expectConnect(t, "connect_mqisdp", wire.ErrProtocolLevel, wire.RefusedProtocolVersion)                 // [MQTT-3.1.2-2]
	expectConnect(t, "connect_reserved_flag", wire.ErrConnectFlags, 0)                                     // [MQTT-3.1.2-3]
	expectConnect(t, "connect_will_fields_missing", wire.ErrMalformed, 0)                                  // [MQTT-3.1.2-9]
	expectConnect(t, "connect_will_message_missing", wire.ErrMalformed, 0)                                 // [MQTT-3.1.2-9]
	expectConnect(t, "connect_will_qos2_without_will", wire.ErrConnectFlags, 0)                            // [MQTT-3.1.2-11]
	expectConnect(t, "connect_will_retain_without_will", wire.ErrConnectFlags, 0)                          // [MQTT-3.1.2-11]
	expectConnect(t, "connect_will_qos_without_will", wire.ErrConnectFlags, 0)                             // [MQTT-3.1.2-13]
	expectConnect(t, "connect_will_qos3", wire.ErrConnectFlags, 0)                                         // [MQTT-3.1.2-14]
	expectConnect(t, "connect_will_retain_without_will", wire.ErrConnectFlags, 0)                          // [MQTT-3.1.2-15]
	expectConnect(t, "connect_user_without_flag", wire.ErrMalformed, 0)                                    // [MQTT-3.1.2-18]
	expectConnect(t, "connect_user_missing", wire.ErrMalformed, 0)                                         // [MQTT-3.1.2-19]
	expectConnect(t, "connect_password_without_flag", wire.ErrMalformed, 0)                                // [MQTT-3.1.2-20]
	expectConnect(t, "connect_password_missing", wire.ErrMalformed, 0)                                     // [MQTT-3.1.2-21]
	expectConnect(t, "connect_password_without_user", wire.ErrConnectFlags, 0)                             // [MQTT-3.1.2-22]
	expectConnect(t, "connect_client_id_overrun", wire.ErrStringLength, 0)                                 // [MQTT-3.1.3-1]
	expectConnect(t, "connect_no_client_id", wire.ErrMalformed, 0)                                         // [MQTT-3.1.3-3]
	expectConnect(t, "connect_client_id_ff", wire.ErrInvalidUTF8, 0)                                       // [MQTT-3.1.3-4]
	expectConnect(t, "connect_empty_id_persistent", wire.ErrEmptyClientID, wire.RefusedIdentifierRejected) // [MQTT-3.1.3-7] [MQTT-3.1.3-8]
	expectConnect(t, "connect_will_topic_utf8", wire.ErrInvalidUTF8, 0)                                    // [MQTT-3.1.3-10]
	expectConnect(t, "connect_will_topic_wildcard", wire.ErrTopicWildcard, 0)                              // [MQTT-4.7.1-1]
	expectConnect(t, "connect_user_utf8", wire.ErrInvalidUTF8, 0)                                          // [MQTT-3.1.3-11]

	// [MQTT-3.1.3-1]: the payload fields are read in order.
	c := expectValid(t, "connect_will_auth").(*wire.Connect)
	if c.ClientID != "id" || c.WillTopic != "w/t" || string(c.WillMessage) != "bye" || c.Username != "u" || string(c.Password) != "pw" { // [MQTT-3.1.3-1]
		t.Errorf("fields out of order: %+v", c)
	}
	if c := expectValid(t, "connect_id_23").(*wire.Connect); len(c.ClientID) != 23 { // [MQTT-3.1.3-5]
		t.Errorf("23-byte client id: %q", c.ClientID)
	}
	if c := expectValid(t, "connect_empty_id_clean").(*wire.Connect); c.ClientID != "" || !c.CleanSession { // [MQTT-3.1.3-6]
		t.Errorf("empty client id with clean session: %+v", c)
	}

	// [MQTT-3.1.4-1]: every other malformed CONNECT gets no CONNACK.
	for _, mc := range wiretest.Malformed {
		if mc.Raw[0] != 0x10 {
			continue
		}
		fh, hl, err := wire.DecodeHeader(mc.Raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wire.DecodeConnect(fh, mc.Raw[hl:])
		var ce *wire.ConnectError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %T is not a ConnectError", mc.Name, err)
		}
		wantCode := errors.Is(err, wire.ErrProtocolLevel) || errors.Is(err, wire.ErrEmptyClientID)
		if (ce.ReturnCode != 0) != wantCode { // [MQTT-3.1.4-1]
			t.Errorf("%s: ReturnCode %#x for %v", mc.Name, ce.ReturnCode, err)
		}
	}
	expectConnect(t, "connect_empty_id_persistent_trailing", wire.ErrMalformed, 0) // [MQTT-3.1.4-1] malformed wins over 0x02
	// The fixed-header flags of CONNECT are reserved too.
	if _, err := wire.DecodeConnect(wire.FixedHeader{Type: wire.CONNECT, Flags: 1, RemainingLength: 0}, nil); !errors.Is(err, wire.ErrFlags) {
		t.Errorf("CONNECT flags 1: %v", err) // [MQTT-2.2.2-2]
	}
}

func TestSpec_3_2_Connack(t *testing.T) {
	expectErr(t, "connack_refused_session_present", wire.ErrMalformed) // [MQTT-3.2.2-4]
	for code := byte(1); code <= 5; code++ {
		raw := wiretest.Connack(false, code)
		if !bytes.Equal(raw, []byte{0x20, 0x02, 0x00, code}) { // [MQTT-3.2.2-4] refusal carries SP 0
			t.Errorf("CONNACK code %d = % x", code, raw)
		}
	}
	expectErr(t, "connack_reserved_bits", wire.ErrMalformed)
	expectErr(t, "connack_reserved_code", wire.ErrMalformed)
}

func TestSpec_3_3_Publish(t *testing.T) {
	// [MQTT-3.3.1-1]: DUP is carried in bit 3 both ways.
	if p := expectValid(t, "publish_qos2_dup_retain").(*wire.Publish); !p.Dup { // [MQTT-3.3.1-1]
		t.Error("DUP lost")
	}
	if raw := wiretest.PublishDup("t", nil, 1, false, 1); raw[0] != 0x3a { // [MQTT-3.3.1-1]
		t.Errorf("DUP PUBLISH first byte %#02x", raw[0])
	}
	expectErr(t, "publish_dup_qos0", wire.ErrFlags)  // [MQTT-3.3.1-2]
	expectErr(t, "publish_qos3", wire.ErrPublishQoS) // [MQTT-3.3.1-4]
	var p wire.Publish
	if err := p.Decode(wire.FixedHeader{Type: wire.PUBLISH, Flags: 0x06, RemainingLength: 3}, []byte{0, 1, 't'}); !errors.Is(err, wire.ErrPublishQoS) {
		t.Errorf("(*Publish).Decode with QoS 3: %v", err) // [MQTT-3.3.1-4]
	}
	expectErr(t, "publish_ff", wire.ErrInvalidUTF8)                                                    // [MQTT-3.3.2-1]
	expectErr(t, "publish_topic_overrun", wire.ErrStringLength)                                        // [MQTT-3.3.2-1]
	expectErr(t, "publish_no_topic", wire.ErrMalformed)                                                // [MQTT-3.3.2-1]
	expectErr(t, "publish_plus", wire.ErrTopicWildcard)                                                // [MQTT-3.3.2-2]
	expectErr(t, "publish_hash", wire.ErrTopicWildcard)                                                // [MQTT-3.3.2-2]
	expectErr(t, "publish_empty_topic", wire.ErrTopicEmpty)                                            // [MQTT-4.7.3-1]
	if p := expectValid(t, "publish_retain_empty").(*wire.Publish); !p.Retain || len(p.Payload) != 0 { // [MQTT-3.3.1-10]
		t.Errorf("retained empty PUBLISH: %+v", p)
	}
}

func TestSpec_3_6_to_3_14_FixedFlags(t *testing.T) {
	expectErr(t, "pubrel_flags", wire.ErrFlags)      // [MQTT-3.6.1-1] 60
	expectValid(t, "pubrel")                         // [MQTT-3.6.1-1] 62
	expectErr(t, "subscribe_flags", wire.ErrFlags)   // [MQTT-3.8.1-1] 80
	expectValid(t, "subscribe_one")                  // [MQTT-3.8.1-1] 82
	expectErr(t, "unsubscribe_flags", wire.ErrFlags) // [MQTT-3.10.1-1] A0
	expectValid(t, "unsubscribe_one")                // [MQTT-3.10.1-1] A2
	expectErr(t, "disconnect_flags", wire.ErrFlags)  // [MQTT-3.14.1-1] E1
	expectErr(t, "disconnect_body", wire.ErrMalformed)
}

func TestSpec_3_8_Subscribe(t *testing.T) {
	expectErr(t, "subscribe_filter_utf8", wire.ErrInvalidUTF8)     // [MQTT-3.8.3-1]
	expectErr(t, "subscribe_empty", wire.ErrEmptySubscribe)        // [MQTT-3.8.3-3]
	expectErr(t, "subscribe_qos3", wire.ErrSubscribeQoS)           // [MQTT-3.8.3-4]
	expectErr(t, "subscribe_qos_upper_bits", wire.ErrSubscribeQoS) // [MQTT-3.8.3-4]
	for q := 0; q < 256; q++ {
		raw := []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', byte(q)}
		_, _, err := wire.DecodePacket(raw)
		if (q <= 2) != (err == nil) || (err != nil && !errors.Is(err, wire.ErrSubscribeQoS)) { // [MQTT-3.8.3-4]
			t.Errorf("requested QoS byte %#02x: %v", q, err)
		}
	}
	expectErr(t, "subscribe_filter_a_hash", wire.ErrTopicFilter)       // [MQTT-4.7.1-2]
	expectErr(t, "subscribe_filter_plus_partial", wire.ErrTopicFilter) // [MQTT-4.7.1-3]
	expectErr(t, "subscribe_trailing_byte", wire.ErrMalformed)
	expectErr(t, "suback_code_3", wire.ErrMalformed)                                                            // [MQTT-3.9.3-2]
	if s := expectValid(t, "suback_mixed").(*wire.Suback); !bytes.Equal(s.ReturnCodes, []byte{0, 1, 2, 0x80}) { // [MQTT-3.9.3-2]
		t.Errorf("SUBACK codes %v", s.ReturnCodes)
	}
}

func TestSpec_3_10_Unsubscribe(t *testing.T) {
	expectErr(t, "unsubscribe_filter_utf8", wire.ErrInvalidUTF8)    // [MQTT-3.10.3-1]
	expectErr(t, "unsubscribe_empty", wire.ErrEmptyUnsubscribe)     // [MQTT-3.10.3-2]
	expectErr(t, "unsubscribe_filter_invalid", wire.ErrTopicFilter) // [MQTT-4.7.1-3]
	expectErr(t, "unsubscribe_trailing_byte", wire.ErrMalformed)
	if u := expectValid(t, "unsubscribe_many").(*wire.Unsubscribe); len(u.Filters) != 2 || u.Filters[0] != "a/+" || u.Filters[1] != "#" { // [MQTT-3.10.3-1]
		t.Errorf("filters %q", u.Filters)
	}
}

func TestSpec_3_12_Ping(t *testing.T) {
	if p := expectValid(t, "pingreq"); p.Type() != wire.PINGREQ { // [MQTT-3.12.4-1] C0 00 in
		t.Errorf("C0 00 decodes to %v", p.Type())
	}
	if got := wiretest.Pingresp(); !bytes.Equal(got, []byte{0xd0, 0x00}) { // [MQTT-3.12.4-1] D0 00 out
		t.Errorf("PINGRESP = % x", got)
	}
	expectErr(t, "pingreq_body", wire.ErrMalformed)
}
