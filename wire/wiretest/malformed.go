package wiretest

import "iotd/wire"

// Malformed packets: decoding Raw (wire.DecodePacket) must fail with Err.
// For CONNECT bodies the error is a *wire.ConnectError carrying ReturnCode.
// A broker must close the connection on every one of them.
var Malformed = []Case{
	// Fixed header
	{Name: "type_0", Desc: "reserved packet type 0", Raw: []byte{0x00, 0x00}, Err: wire.ErrPacketType},
	{Name: "type_15", Desc: "reserved packet type 15", Raw: []byte{0xf0, 0x00}, Err: wire.ErrPacketType},
	{
		Name: "remaining_length_5_bytes", Desc: "continuation bit on the 4th length byte (Errata 01)",
		Raw: []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, Err: wire.ErrRemainingLength,
	},
	{Name: "pingreq_flags", Spec: "MQTT-2.2.2-2", Raw: []byte{0xc1, 0x00}, Err: wire.ErrFlags},
	{Name: "puback_flags", Spec: "MQTT-2.2.2-2", Raw: []byte{0x42, 0x02, 0x00, 0x01}, Err: wire.ErrFlags},
	{Name: "connack_flags", Spec: "MQTT-2.2.2-2", Raw: []byte{0x21, 0x02, 0x00, 0x00}, Err: wire.ErrFlags},
	{Name: "pubrel_flags", Spec: "MQTT-3.6.1-1", Raw: []byte{0x60, 0x02, 0x00, 0x01}, Err: wire.ErrFlags},
	{
		Name: "subscribe_flags", Spec: "MQTT-3.8.1-1",
		Raw: []byte{0x80, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x00}, Err: wire.ErrFlags,
	},
	{
		Name: "unsubscribe_flags", Spec: "MQTT-3.10.1-1",
		Raw: []byte{0xa0, 0x07, 0x00, 0x02, 0x00, 0x03, 'a', '/', 'b'}, Err: wire.ErrFlags,
	},
	{Name: "disconnect_flags", Spec: "MQTT-3.14.1-1", Raw: []byte{0xe1, 0x00}, Err: wire.ErrFlags},
	{
		Name: "connect_header_flags", Spec: "MQTT-2.2.2-2",
		Raw: []byte{0x11, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrFlags,
	},
	{Name: "publish_qos3", Spec: "MQTT-3.3.1-4", Raw: []byte{0x36, 0x03, 0x00, 0x01, 't'}, Err: wire.ErrPublishQoS},
	{Name: "publish_dup_qos0", Spec: "MQTT-3.3.1-2", Raw: []byte{0x38, 0x03, 0x00, 0x01, 't'}, Err: wire.ErrFlags},

	// Lengths of fixed-size bodies
	{Name: "pingreq_body", Raw: []byte{0xc0, 0x01, 0x00}, Err: wire.ErrMalformed},
	{Name: "disconnect_body", Raw: []byte{0xe0, 0x01, 0x00}, Err: wire.ErrMalformed},
	{Name: "puback_long", Raw: []byte{0x40, 0x03, 0x00, 0x01, 0x00}, Err: wire.ErrMalformed},
	{Name: "puback_short", Raw: []byte{0x40, 0x01, 0x00}, Err: wire.ErrMalformed},
	{Name: "connack_short", Raw: []byte{0x20, 0x01, 0x00}, Err: wire.ErrMalformed},

	// Packet identifiers
	{Name: "puback_zero_id", Spec: "MQTT-2.3.1-1", Raw: []byte{0x40, 0x02, 0x00, 0x00}, Err: wire.ErrZeroPacketID},
	{Name: "pubrel_zero_id", Spec: "MQTT-2.3.1-1", Raw: []byte{0x62, 0x02, 0x00, 0x00}, Err: wire.ErrZeroPacketID},
	{Name: "unsuback_zero_id", Spec: "MQTT-2.3.1-1", Raw: []byte{0xb0, 0x02, 0x00, 0x00}, Err: wire.ErrZeroPacketID},
	{
		Name: "publish_qos1_zero_id", Spec: "MQTT-2.3.1-1",
		Raw: []byte{0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x00}, Err: wire.ErrZeroPacketID,
	},
	{
		Name: "subscribe_zero_id", Spec: "MQTT-2.3.1-1",
		Raw: []byte{0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 'a', 0x00}, Err: wire.ErrZeroPacketID,
	},
	{
		Name: "unsubscribe_zero_id", Spec: "MQTT-2.3.1-1",
		Raw: []byte{0xa2, 0x05, 0x00, 0x00, 0x00, 0x01, 'a'}, Err: wire.ErrZeroPacketID,
	},

	// PUBLISH topic name and fields
	{Name: "publish_plus", Spec: "MQTT-3.3.2-2", Raw: []byte{0x30, 0x05, 0x00, 0x03, 'a', '/', '+'}, Err: wire.ErrTopicWildcard},
	{Name: "publish_hash", Spec: "MQTT-3.3.2-2", Raw: []byte{0x30, 0x03, 0x00, 0x01, '#'}, Err: wire.ErrTopicWildcard},
	{Name: "publish_empty_topic", Spec: "MQTT-4.7.3-1", Raw: []byte{0x30, 0x02, 0x00, 0x00}, Err: wire.ErrTopicEmpty},
	{Name: "publish_null", Spec: "MQTT-1.5.3-2", Raw: []byte{0x30, 0x05, 0x00, 0x03, 'a', 0x00, 'b'}, Err: wire.ErrNullChar},
	{
		Name: "publish_surrogate", Desc: "ED A0 80 encodes the surrogate U+D800", Spec: "MQTT-1.5.3-1",
		Raw: []byte{0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80}, Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "publish_overlong", Desc: "C0 80 is an overlong U+0000", Spec: "MQTT-1.5.3-1",
		Raw: []byte{0x30, 0x04, 0x00, 0x02, 0xc0, 0x80}, Err: wire.ErrInvalidUTF8,
	},
	{Name: "publish_ff", Spec: "MQTT-3.3.2-1", Raw: []byte{0x30, 0x03, 0x00, 0x01, 0xff}, Err: wire.ErrInvalidUTF8},
	{
		Name: "publish_topic_overrun", Desc: "topic length 5 with 2 bytes left", Spec: "MQTT-3.3.2-1",
		Raw: []byte{0x30, 0x04, 0x00, 0x05, 'a', 'b'}, Err: wire.ErrStringLength,
	},
	{Name: "publish_no_topic", Desc: "body too short for a topic length", Raw: []byte{0x30, 0x01, 0x00}, Err: wire.ErrMalformed},
	{
		Name: "publish_qos1_no_id", Desc: "one byte where the packet id should be",
		Raw: []byte{0x32, 0x04, 0x00, 0x01, 't', 0x00}, Err: wire.ErrMalformed,
	},

	// SUBSCRIBE
	{Name: "subscribe_empty", Spec: "MQTT-3.8.3-3", Raw: []byte{0x82, 0x02, 0x00, 0x01}, Err: wire.ErrEmptySubscribe},
	{
		Name: "subscribe_qos3", Spec: "MQTT-3.8.3-4",
		Raw: []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03}, Err: wire.ErrSubscribeQoS,
	},
	{
		Name: "subscribe_qos_upper_bits", Spec: "MQTT-3.8.3-4",
		Raw: []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x81}, Err: wire.ErrSubscribeQoS,
	},
	{
		Name: "subscribe_no_qos", Desc: "filter without its requested QoS byte",
		Raw: []byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'}, Err: wire.ErrMalformed,
	},
	{
		Name: "subscribe_filter_a_hash", Spec: "MQTT-4.7.1-2",
		Raw: []byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 'a', '#', 0x00}, Err: wire.ErrTopicFilter,
	},
	{
		Name: "subscribe_filter_hash_middle", Spec: "MQTT-4.7.1-2",
		Raw: []byte{0x82, 0x0a, 0x00, 0x01, 0x00, 0x05, 'a', '/', '#', '/', 'b', 0x00}, Err: wire.ErrTopicFilter,
	},
	{
		Name: "subscribe_filter_plus_partial", Spec: "MQTT-4.7.1-3",
		Raw: []byte{0x82, 0x09, 0x00, 0x01, 0x00, 0x04, 'a', '+', '/', 'b', 0x00}, Err: wire.ErrTopicFilter,
	},
	{
		Name: "subscribe_filter_utf8", Spec: "MQTT-3.8.3-1",
		Raw: []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0xff, 0x00}, Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "subscribe_filter_empty", Spec: "MQTT-4.7.3-1",
		Raw: []byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00}, Err: wire.ErrTopicEmpty,
	},
	{
		Name: "subscribe_filter_null", Spec: "MQTT-4.7.3-2",
		Raw: []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}, Err: wire.ErrNullChar,
	},
	{
		Name: "subscribe_filter_overrun",
		Raw:  []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x09, 'a', 0x00}, Err: wire.ErrStringLength,
	},
	{
		Name: "subscribe_trailing_byte", Desc: "one byte after the last filter/QoS pair",
		Raw: []byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x01, 'a', 0x00, 'a'}, Err: wire.ErrMalformed,
	},

	// UNSUBSCRIBE
	{Name: "unsubscribe_empty", Spec: "MQTT-3.10.3-2", Raw: []byte{0xa2, 0x02, 0x00, 0x01}, Err: wire.ErrEmptyUnsubscribe},
	{
		Name: "unsubscribe_filter_utf8", Spec: "MQTT-3.10.3-1",
		Raw: []byte{0xa2, 0x05, 0x00, 0x01, 0x00, 0x01, 0xff}, Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "unsubscribe_filter_invalid", Desc: "+a", Spec: "MQTT-4.7.1-3",
		Raw: []byte{0xa2, 0x06, 0x00, 0x01, 0x00, 0x02, '+', 'a'}, Err: wire.ErrTopicFilter,
	},
	{
		Name: "unsubscribe_trailing_byte",
		Raw:  []byte{0xa2, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, Err: wire.ErrMalformed,
	},

	// SUBACK, CONNACK (sent by the broker; checked when the load tester reads them)
	{Name: "suback_code_3", Spec: "MQTT-3.9.3-2", Raw: []byte{0x90, 0x03, 0x00, 0x01, 0x03}, Err: wire.ErrMalformed},
	{Name: "suback_empty", Raw: []byte{0x90, 0x02, 0x00, 0x01}, Err: wire.ErrMalformed},
	{Name: "connack_refused_session_present", Spec: "MQTT-3.2.2-4", Raw: []byte{0x20, 0x02, 0x01, 0x01}, Err: wire.ErrMalformed},
	{Name: "connack_reserved_bits", Raw: []byte{0x20, 0x02, 0x02, 0x00}, Err: wire.ErrMalformed},
	{Name: "connack_reserved_code", Raw: []byte{0x20, 0x02, 0x00, 0x06}, Err: wire.ErrMalformed},

	// CONNECT: protocol name and level, checked before anything else
	{
		Name: "connect_protocol_name", Desc: "MQTX", Spec: "MQTT-3.1.2-1",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrProtocolName,
	},
	{
		Name: "connect_level_3", Desc: "MQTT with level 3", Spec: "MQTT-3.1.2-2",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x03, 0x02, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrProtocolLevel, ReturnCode: wire.RefusedProtocolVersion,
	},
	{
		Name: "connect_mqtt5", Desc: "an MQTT 5 CONNECT (with a property length) gets 0x01, not a parse error", Spec: "MQTT-3.1.2-2",
		Raw: []byte{
			0x10, 0x0e,
			0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, // level 5
			0x02, 0x00, 0x3c,
			0x00, // property length 0
			0x00, 0x01, 'c',
		},
		Err: wire.ErrProtocolLevel, ReturnCode: wire.RefusedProtocolVersion,
	},
	{
		Name: "connect_mqisdp", Desc: "MQTT 3.1 client", Spec: "MQTT-3.1.2-2",
		Raw: []byte{0x10, 0x0f, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'},
		Err: wire.ErrProtocolLevel, ReturnCode: wire.RefusedProtocolVersion,
	},
	{Name: "connect_truncated_name", Raw: []byte{0x10, 0x03, 0x00, 0x04, 'M'}, Err: wire.ErrStringLength},
	{Name: "connect_no_level", Raw: []byte{0x10, 0x06, 0x00, 0x04, 'M', 'Q', 'T', 'T'}, Err: wire.ErrMalformed},
	{Name: "connect_no_flags", Raw: []byte{0x10, 0x07, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04}, Err: wire.ErrMalformed},
	{Name: "connect_no_keep_alive", Raw: []byte{0x10, 0x09, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00}, Err: wire.ErrMalformed},

	// CONNECT flags
	{
		Name: "connect_reserved_flag", Desc: "connect flags 0x03", Spec: "MQTT-3.1.2-3",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrConnectFlags,
	},
	{
		Name: "connect_will_qos_without_will", Desc: "connect flags 0x0a", Spec: "MQTT-3.1.2-13",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x0a, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrConnectFlags,
	},
	{
		Name: "connect_will_qos2_without_will", Desc: "connect flags 0x12", Spec: "MQTT-3.1.2-11",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x12, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrConnectFlags,
	},
	{
		Name: "connect_will_retain_without_will", Desc: "connect flags 0x22", Spec: "MQTT-3.1.2-15",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x22, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrConnectFlags,
	},
	{
		Name: "connect_will_qos3", Desc: "connect flags 0x1e: will with QoS 3", Spec: "MQTT-3.1.2-14",
		Raw: []byte{
			0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1e, 0x00, 0x00,
			0x00, 0x01, 'c', 0x00, 0x01, 't', 0x00, 0x00,
		},
		Err: wire.ErrConnectFlags,
	},
	{
		Name: "connect_password_without_user", Desc: "connect flags 0x42", Spec: "MQTT-3.1.2-22",
		Raw: []byte{
			0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x42, 0x00, 0x00,
			0x00, 0x01, 'c', 0x00, 0x01, 'p',
		},
		Err: wire.ErrConnectFlags,
	},

	// CONNECT payload
	{
		Name: "connect_no_client_id", Desc: "payload missing", Spec: "MQTT-3.1.3-3",
		Raw: []byte{0x10, 0x0a, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_client_id_overrun", Desc: "client id length 5 with 1 byte left", Spec: "MQTT-3.1.3-1",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x05, 'c'},
		Err: wire.ErrStringLength,
	},
	{
		Name: "connect_client_id_ff", Spec: "MQTT-3.1.3-4",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 0xff},
		Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "connect_client_id_null", Spec: "MQTT-1.5.3-2",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00},
		Err: wire.ErrNullChar,
	},
	{
		Name: "connect_client_id_surrogate", Spec: "MQTT-1.5.3-1",
		Raw: []byte{0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x03, 0xed, 0xa0, 0x80},
		Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "connect_will_fields_missing", Desc: "will flag set, payload ends after the client id", Spec: "MQTT-3.1.2-9",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_will_message_missing", Spec: "MQTT-3.1.2-9",
		Raw: []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 't'},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_will_topic_utf8", Spec: "MQTT-3.1.3-10",
		Raw: []byte{
			0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x00,
			0x00, 0x01, 'c', 0x00, 0x01, 0xff, 0x00, 0x00,
		},
		Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "connect_will_topic_wildcard", Spec: "MQTT-4.7.1-1",
		Raw: []byte{
			0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x00,
			0x00, 0x01, 'c', 0x00, 0x01, '#', 0x00, 0x00,
		},
		Err: wire.ErrTopicWildcard,
	},
	{
		Name: "connect_user_missing", Spec: "MQTT-3.1.2-19",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x00, 0x00, 0x01, 'c'},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_password_missing", Spec: "MQTT-3.1.2-21",
		Raw: []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xc2, 0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 'u'},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_user_without_flag", Desc: "a user name field but user name flag 0", Spec: "MQTT-3.1.2-18",
		Raw: []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 'u'},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_password_without_flag", Desc: "a password field but password flag 0", Spec: "MQTT-3.1.2-20",
		Raw: []byte{
			0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x00,
			0x00, 0x01, 'c', 0x00, 0x01, 'u', 0x00, 0x01, 'p',
		},
		Err: wire.ErrMalformed,
	},
	{
		Name: "connect_user_utf8", Desc: "overlong C0 80 in the user name", Spec: "MQTT-3.1.3-11",
		Raw: []byte{
			0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x00,
			0x00, 0x01, 'c', 0x00, 0x02, 0xc0, 0x80,
		},
		Err: wire.ErrInvalidUTF8,
	},
	{
		Name: "connect_empty_id_persistent", Desc: "empty client id with clean session 0", Spec: "MQTT-3.1.3-8",
		Raw: []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x00, 0x00, 0x00},
		Err: wire.ErrEmptyClientID, ReturnCode: wire.RefusedIdentifierRejected,
	},
	{
		Name: "connect_empty_id_persistent_trailing", Desc: "also malformed, so no CONNACK at all", Spec: "MQTT-3.1.4-1",
		Raw: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 'x'},
		Err: wire.ErrMalformed,
	},
}
