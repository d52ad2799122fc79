package wiretest

import (
	"bytes"

	"iotd/wire"
)

// Case pairs raw bytes with what decoding them must give, in the style of
// mochi-mqtt's tpackets: the bytes are written out by hand, annotated, so
// they are an oracle independent of this module's encoder.
type Case struct {
	Name string
	Desc string
	Spec string // normative statements the case exercises, if any
	Raw  []byte

	// Valid cases.
	Packet     wire.Packet // what Raw decodes to
	DecodeOnly bool        // Packet.Append gives a different (canonical) encoding

	// Malformed cases.
	Err        error // sentinel the decoder must return (errors.Is)
	ReturnCode byte  // CONNECT only: CONNACK code to send first, 0 = none
}

// Valid packets: decoding Raw gives Packet and, unless DecodeOnly,
// encoding Packet gives Raw.
var Valid = []Case{
	// CONNECT
	{
		Name: "connect_minimal", Desc: "clean session, keep alive 60, client id c1",
		Raw: []byte{
			0x10, 0x0e, // CONNECT, remaining length 14
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
			0x04,       // protocol level 4
			0x02,       // flags: clean session
			0x00, 0x3c, // keep alive 60
			0x00, 0x02, 'c', '1', // client id
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "c1"},
	},
	{
		Name: "connect_will_auth", Desc: "will QoS 1 retained, user name and password", Spec: "MQTT-3.1.3-1",
		Raw: []byte{
			0x10, 0x1f, // CONNECT, remaining length 31
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0xee,       // user, password, will retain, will QoS 1, will, clean
			0x00, 0x1e, // keep alive 30
			0x00, 0x02, 'i', 'd', // client id
			0x00, 0x03, 'w', '/', 't', // will topic
			0x00, 0x03, 'b', 'y', 'e', // will message
			0x00, 0x01, 'u', // user name
			0x00, 0x02, 'p', 'w', // password
		},
		Packet: &wire.Connect{
			ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 30, ClientID: "id",
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "w/t", WillMessage: []byte("bye"),
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw"),
		},
	},
	{
		Name: "connect_empty_id_clean", Desc: "empty client id is allowed with clean session 1", Spec: "MQTT-3.1.3-6",
		Raw: []byte{
			0x10, 0x0c,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0x02,       // clean session
			0x00, 0x00, // keep alive 0: no timeout
			0x00, 0x00, // empty client id
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true},
	},
	{
		Name: "connect_persistent", Desc: "clean session 0, keep alive 600",
		Raw: []byte{
			0x10, 0x14,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0x00,       // no flags
			0x02, 0x58, // keep alive 600
			0x00, 0x08, 's', 'e', 'n', 's', 'o', 'r', '-', '1',
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, KeepAlive: 600, ClientID: "sensor-1"},
	},
	{
		Name: "connect_user_only", Desc: "user name without password",
		Raw: []byte{
			0x10, 0x14,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0x82, // user name, clean
			0x00, 0x00,
			0x00, 0x01, 'a',
			0x00, 0x05, 'a', 'l', 'i', 'c', 'e',
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "a", UsernameFlag: true, Username: "alice"},
	},
	{
		Name: "connect_id_23", Desc: "23 alphanumeric bytes must be accepted", Spec: "MQTT-3.1.3-5",
		Raw: append([]byte{
			0x10, 0x23, // remaining length 35
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00,
			0x00, 0x17, // 23
		}, "0123456789abcdefghijKLM"...),
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "0123456789abcdefghijKLM"},
	},
	{
		Name: "connect_will_qos2_empty_message", Desc: "will QoS 2 with an empty will message",
		Raw: []byte{
			0x10, 0x12,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0x16, // will QoS 2, will, clean
			0x00, 0x00,
			0x00, 0x01, 'c',
			0x00, 0x01, 't', // will topic
			0x00, 0x00, // empty will message
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "c", WillFlag: true, WillQoS: 2, WillTopic: "t"},
	},
	{
		Name: "connect_empty_password", Desc: "password flag with an empty password",
		Raw: []byte{
			0x10, 0x12,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
			0xc2, // user, password, clean
			0x00, 0x00,
			0x00, 0x01, 'c',
			0x00, 0x01, 'u',
			0x00, 0x00, // empty password
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "c", UsernameFlag: true, Username: "u", PasswordFlag: true},
	},
	{
		Name: "connect_feff_id", Desc: "U+FEFF in a string is kept, not stripped", Spec: "MQTT-1.5.3-3",
		Raw: []byte{
			0x10, 0x10,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00,
			0x00, 0x04, 0xef, 0xbb, 0xbf, 'x', // "\uFEFFx"
		},
		Packet: &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: "\uFEFFx"},
	},

	// CONNACK
	{Name: "connack_accepted", Raw: []byte{0x20, 0x02, 0x00, 0x00}, Packet: &wire.Connack{}},
	{Name: "connack_session_present", Raw: []byte{0x20, 0x02, 0x01, 0x00}, Packet: &wire.Connack{SessionPresent: true}},
	{Name: "connack_bad_version", Spec: "MQTT-3.1.2-2", Raw: []byte{0x20, 0x02, 0x00, 0x01}, Packet: &wire.Connack{ReturnCode: wire.RefusedProtocolVersion}},
	{Name: "connack_id_rejected", Spec: "MQTT-3.1.3-8", Raw: []byte{0x20, 0x02, 0x00, 0x02}, Packet: &wire.Connack{ReturnCode: wire.RefusedIdentifierRejected}},
	{Name: "connack_not_authorized", Raw: []byte{0x20, 0x02, 0x00, 0x05}, Packet: &wire.Connack{ReturnCode: wire.RefusedNotAuthorized}},

	// PUBLISH
	{
		Name: "publish_qos0", Desc: "QoS 0 has no packet id: the payload follows the topic", Spec: "MQTT-2.3.1-5",
		Raw: []byte{
			0x30, 0x0c, // PUBLISH QoS 0, remaining length 12
			0x00, 0x05, 'a', '/', 'b', '/', 'c', // topic name
			'h', 'e', 'l', 'l', 'o', // payload
		},
		Packet: &wire.Publish{Topic: []byte("a/b/c"), Payload: []byte("hello")},
	},
	{
		Name: "publish_qos1",
		Raw: []byte{
			0x32, 0x08, // PUBLISH QoS 1
			0x00, 0x03, 'a', '/', 'b',
			0x00, 0x0a, // packet id 10
			'x',
		},
		Packet: &wire.Publish{QoS: 1, Topic: []byte("a/b"), PacketID: 10, Payload: []byte("x")},
	},
	{
		Name: "publish_qos2_dup_retain", Spec: "MQTT-3.3.1-1",
		Raw: []byte{
			0x3d, 0x07, // PUBLISH DUP, QoS 2, RETAIN
			0x00, 0x01, 't',
			0x12, 0x34, // packet id 0x1234
			'p', 'p',
		},
		Packet: &wire.Publish{Dup: true, QoS: 2, Retain: true, Topic: []byte("t"), PacketID: 0x1234, Payload: []byte("pp")},
	},
	{
		Name:   "publish_qos1_retain",
		Raw:    []byte{0x33, 0x06, 0x00, 0x01, 't', 0xff, 0xff, 'v'},
		Packet: &wire.Publish{QoS: 1, Retain: true, Topic: []byte("t"), PacketID: 0xffff, Payload: []byte("v")},
	},
	{
		Name: "publish_retain_empty", Desc: "retained, empty payload: deletes the retained message", Spec: "MQTT-3.3.1-10",
		Raw:    []byte{0x31, 0x03, 0x00, 0x01, 't'},
		Packet: &wire.Publish{Retain: true, Topic: []byte("t")},
	},
	{
		Name:   "publish_sys",
		Raw:    []byte{0x30, 0x0a, 0x00, 0x08, '$', 'S', 'Y', 'S', '/', 'f', 'o', 'o'},
		Packet: &wire.Publish{Topic: []byte("$SYS/foo")},
	},
	{
		Name: "publish_feff_topic", Spec: "MQTT-1.5.3-3",
		Raw:    []byte{0x30, 0x06, 0x00, 0x04, 0xef, 0xbb, 0xbf, 'a'},
		Packet: &wire.Publish{Topic: []byte("\uFEFFa")},
	},
	{
		Name: "publish_slash", Desc: "a single '/' is a valid topic name of two empty levels",
		Raw:    []byte{0x30, 0x03, 0x00, 0x01, '/'},
		Packet: &wire.Publish{Topic: []byte("/")},
	},
	{
		Name: "publish_two_byte_length", Desc: "remaining length 203 takes two bytes",
		Raw: append([]byte{
			0x30, 0xcb, 0x01, // remaining length 0x4b + 1*128 = 203
			0x00, 0x01, 't',
		}, bytes.Repeat([]byte{'z'}, 200)...),
		Packet: &wire.Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte{'z'}, 200)},
	},
	{
		Name: "publish_non_minimal_length", Desc: "3.1.1 does not forbid a padded remaining length; the encoder writes the short form",
		Raw:        []byte{0x30, 0x83, 0x00, 0x00, 0x01, 't'},
		Packet:     &wire.Publish{Topic: []byte("t")},
		DecodeOnly: true,
	},

	// Acknowledgements
	{Name: "puback", Spec: "MQTT-2.3.1-6", Raw: []byte{0x40, 0x02, 0x00, 0x01}, Packet: &wire.Puback{PacketID: 1}},
	{Name: "pubrec", Spec: "MQTT-2.3.1-6", Raw: []byte{0x50, 0x02, 0x12, 0x34}, Packet: &wire.Pubrec{PacketID: 0x1234}},
	{Name: "pubrel", Spec: "MQTT-3.6.1-1", Raw: []byte{0x62, 0x02, 0xff, 0xff}, Packet: &wire.Pubrel{PacketID: 0xffff}},
	{Name: "pubcomp", Raw: []byte{0x70, 0x02, 0x00, 0x07}, Packet: &wire.Pubcomp{PacketID: 7}},

	// SUBSCRIBE / SUBACK
	{
		Name: "subscribe_one", Spec: "MQTT-3.8.1-1",
		Raw: []byte{
			0x82, 0x08, // SUBSCRIBE, flags 0010
			0x00, 0x01, // packet id 1
			0x00, 0x03, 'a', '/', 'b', 0x00, // filter a/b, QoS 0
		},
		Packet: &wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "a/b"}}},
	},
	{
		Name: "subscribe_many",
		Raw: []byte{
			0x82, 0x15,
			0xbe, 0xef, // packet id 0xBEEF
			0x00, 0x03, 'a', '/', '+', 0x01, // a/+ QoS 1
			0x00, 0x01, '#', 0x02, // # QoS 2
			0x00, 0x06, '$', 'S', 'Y', 'S', '/', '#', 0x00, // $SYS/# QoS 0
		},
		Packet: &wire.Subscribe{PacketID: 0xbeef, Subscriptions: []wire.Subscription{
			{Filter: "a/+", QoS: 1}, {Filter: "#", QoS: 2}, {Filter: "$SYS/#"},
		}},
	},
	{Name: "suback_one", Raw: []byte{0x90, 0x03, 0x00, 0x01, 0x00}, Packet: &wire.Suback{PacketID: 1, ReturnCodes: []byte{0}}},
	{
		Name: "suback_mixed", Spec: "MQTT-3.9.3-2",
		Raw:    []byte{0x90, 0x06, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x80},
		Packet: &wire.Suback{PacketID: 0xbeef, ReturnCodes: []byte{0, 1, 2, wire.SubackFailure}},
	},

	// UNSUBSCRIBE / UNSUBACK
	{
		Name: "unsubscribe_one", Spec: "MQTT-3.10.1-1",
		Raw:    []byte{0xa2, 0x07, 0x00, 0x02, 0x00, 0x03, 'a', '/', 'b'},
		Packet: &wire.Unsubscribe{PacketID: 2, Filters: []string{"a/b"}},
	},
	{
		Name: "unsubscribe_many",
		Raw: []byte{
			0xa2, 0x0a,
			0x00, 0x03,
			0x00, 0x03, 'a', '/', '+',
			0x00, 0x01, '#',
		},
		Packet: &wire.Unsubscribe{PacketID: 3, Filters: []string{"a/+", "#"}},
	},
	{Name: "unsuback", Raw: []byte{0xb0, 0x02, 0x00, 0x07}, Packet: &wire.Unsuback{PacketID: 7}},

	// Bodiless packets
	{Name: "pingreq", Raw: []byte{0xc0, 0x00}, Packet: &wire.Pingreq{}},
	{Name: "pingresp", Spec: "MQTT-3.12.4-1", Raw: []byte{0xd0, 0x00}, Packet: &wire.Pingresp{}},
	{Name: "disconnect", Raw: []byte{0xe0, 0x00}, Packet: &wire.Disconnect{}},
}
