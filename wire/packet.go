package wire

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

// Control packet types (MQTT 3.1.1 section 2.2.1). 0 and 15 are reserved.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
)

var typeNames = [...]string{
	CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
	PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
	SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
	PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT",
}

func (t Type) String() string {
	if t >= CONNECT && t <= DISCONNECT {
		return typeNames[t]
	}
	return "RESERVED"
}

// CONNACK return codes (section 3.2.2.3).
const (
	Accepted                   byte = 0x00
	RefusedProtocolVersion     byte = 0x01
	RefusedIdentifierRejected  byte = 0x02
	RefusedServerUnavailable   byte = 0x03
	RefusedBadUsernamePassword byte = 0x04
	RefusedNotAuthorized       byte = 0x05
)

// SubackFailure is the SUBACK return code for a refused subscription.
const SubackFailure byte = 0x80

// FixedHeader is the first 2-5 bytes of every packet.
type FixedHeader struct {
	Type            Type
	Flags           byte // low nibble of byte 1
	RemainingLength int
}

// Packet is a decoded control packet.
type Packet interface {
	// Type reports the control packet type.
	Type() Type
	// Append encodes the packet onto dst and returns the extended slice.
	Append(dst []byte) []byte
}

// Connect is the CONNECT packet (section 3.1).
type Connect struct {
	ProtocolName  string // "MQTT" for 3.1.1
	ProtocolLevel byte   // 4 for 3.1.1
	CleanSession  bool
	KeepAlive     uint16 // seconds; 0 disables the keep-alive timer
	ClientID      string
	WillFlag      bool
	WillQoS       byte
	WillRetain    bool
	WillTopic     string
	WillMessage   []byte
	UsernameFlag  bool
	Username      string
	PasswordFlag  bool
	Password      []byte
}

// Connack is the CONNACK packet (section 3.2).
type Connack struct {
	SessionPresent bool
	ReturnCode     byte
}

// Publish is the PUBLISH packet (section 3.3). When decoded by
// (*Publish).Decode, Topic and Payload alias the input buffer: copy them
// before the buffer is reused.
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    []byte
	PacketID uint16 // present only when QoS > 0
	Payload  []byte
}

// Puback is the PUBACK packet (section 3.4).
type Puback struct{ PacketID uint16 }

// Pubrec is the PUBREC packet (section 3.5).
type Pubrec struct{ PacketID uint16 }

// Pubrel is the PUBREL packet (section 3.6).
type Pubrel struct{ PacketID uint16 }

// Pubcomp is the PUBCOMP packet (section 3.7).
type Pubcomp struct{ PacketID uint16 }

// Subscription is one topic filter and requested QoS of a SUBSCRIBE.
type Subscription struct {
	Filter string
	QoS    byte
}

// Subscribe is the SUBSCRIBE packet (section 3.8).
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription
}

// Suback is the SUBACK packet (section 3.9).
type Suback struct {
	PacketID    uint16
	ReturnCodes []byte
}

// Unsubscribe is the UNSUBSCRIBE packet (section 3.10).
type Unsubscribe struct {
	PacketID uint16
	Filters  []string
}

// Unsuback is the UNSUBACK packet (section 3.11).
type Unsuback struct{ PacketID uint16 }

// Pingreq is the PINGREQ packet (section 3.12).
type Pingreq struct{}

// Pingresp is the PINGRESP packet (section 3.13).
type Pingresp struct{}

// Disconnect is the DISCONNECT packet (section 3.14).
type Disconnect struct{}

func (*Connect) Type() Type     { return CONNECT }
func (*Connack) Type() Type     { return CONNACK }
func (*Publish) Type() Type     { return PUBLISH }
func (*Puback) Type() Type      { return PUBACK }
func (*Pubrec) Type() Type      { return PUBREC }
func (*Pubrel) Type() Type      { return PUBREL }
func (*Pubcomp) Type() Type     { return PUBCOMP }
func (*Subscribe) Type() Type   { return SUBSCRIBE }
func (*Suback) Type() Type      { return SUBACK }
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }
func (*Unsuback) Type() Type    { return UNSUBACK }
func (*Pingreq) Type() Type     { return PINGREQ }
func (*Pingresp) Type() Type    { return PINGRESP }
func (*Disconnect) Type() Type  { return DISCONNECT }
