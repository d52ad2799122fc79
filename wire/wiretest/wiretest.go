// Package wiretest gives tests raw MQTT packets: builders for the packets a
// test client sends and expects, and the byte tables (Valid, Malformed) that
// the wire package's own round-trip tests use as their oracle. Broker
// integration tests write these bytes straight to a socket.
package wiretest

import (
	"fmt"
	"io"

	"iotd/wire"
)

// Encode returns the complete encoding of p.
func Encode(p wire.Packet) []byte { return p.Append(nil) }

// Connect returns a CONNECT for protocol level 4 with no will and no
// credentials.
func Connect(clientID string, clean bool, keepAlive uint16) []byte {
	return Encode(&wire.Connect{
		ProtocolName: "MQTT", ProtocolLevel: 4,
		CleanSession: clean, KeepAlive: keepAlive, ClientID: clientID,
	})
}

// ConnectWill returns a CONNECT carrying a will message.
func ConnectWill(clientID string, clean bool, keepAlive uint16, willTopic string, willMessage []byte, willQoS byte, willRetain bool) []byte {
	return Encode(&wire.Connect{
		ProtocolName: "MQTT", ProtocolLevel: 4,
		CleanSession: clean, KeepAlive: keepAlive, ClientID: clientID,
		WillFlag: true, WillTopic: willTopic, WillMessage: willMessage,
		WillQoS: willQoS, WillRetain: willRetain,
	})
}

// ConnectAuth returns a clean-session CONNECT with a user name and password.
func ConnectAuth(clientID, username string, password []byte) []byte {
	return Encode(&wire.Connect{
		ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true,
		ClientID: clientID, UsernameFlag: true, Username: username,
		PasswordFlag: true, Password: password,
	})
}

// Connack returns the CONNACK a broker should send.
func Connack(sessionPresent bool, returnCode byte) []byte {
	return Encode(&wire.Connack{SessionPresent: sessionPresent, ReturnCode: returnCode})
}

// Publish returns a PUBLISH; id is ignored at QoS 0. QoS 3 is encoded as
// given, for malformed-packet tests.
func Publish(topic string, payload []byte, qos byte, retain bool, id uint16) []byte {
	return Encode(&wire.Publish{QoS: qos, Retain: retain, Topic: []byte(topic), PacketID: id, Payload: payload})
}

// PublishDup returns a re-delivered PUBLISH (DUP=1).
func PublishDup(topic string, payload []byte, qos byte, retain bool, id uint16) []byte {
	return Encode(&wire.Publish{Dup: true, QoS: qos, Retain: retain, Topic: []byte(topic), PacketID: id, Payload: payload})
}

// Puback returns a PUBACK.
func Puback(id uint16) []byte { return Encode(&wire.Puback{PacketID: id}) }

// Pubrec returns a PUBREC.
func Pubrec(id uint16) []byte { return Encode(&wire.Pubrec{PacketID: id}) }

// Pubrel returns a PUBREL.
func Pubrel(id uint16) []byte { return Encode(&wire.Pubrel{PacketID: id}) }

// Pubcomp returns a PUBCOMP.
func Pubcomp(id uint16) []byte { return Encode(&wire.Pubcomp{PacketID: id}) }

// Subscribe returns a SUBSCRIBE for one filter.
func Subscribe(id uint16, filter string, qos byte) []byte {
	return SubscribeMany(id, wire.Subscription{Filter: filter, QoS: qos})
}

// SubscribeMany returns a SUBSCRIBE for several filters in one packet.
func SubscribeMany(id uint16, subs ...wire.Subscription) []byte {
	return Encode(&wire.Subscribe{PacketID: id, Subscriptions: subs})
}

// Suback returns the SUBACK a broker should send.
func Suback(id uint16, codes ...byte) []byte {
	return Encode(&wire.Suback{PacketID: id, ReturnCodes: codes})
}

// Unsubscribe returns an UNSUBSCRIBE.
func Unsubscribe(id uint16, filters ...string) []byte {
	return Encode(&wire.Unsubscribe{PacketID: id, Filters: filters})
}

// Unsuback returns an UNSUBACK.
func Unsuback(id uint16) []byte { return Encode(&wire.Unsuback{PacketID: id}) }

// Pingreq returns C0 00.
func Pingreq() []byte { return Encode(&wire.Pingreq{}) }

// Pingresp returns D0 00.
func Pingresp() []byte { return Encode(&wire.Pingresp{}) }

// Disconnect returns E0 00.
func Disconnect() []byte { return Encode(&wire.Disconnect{}) }

// ReadPacket reads exactly one packet from r, never a byte more, and
// decodes it. Tests use it on sockets where later bytes must stay unread;
// production code uses wire.Reader, which reads in batches.
func ReadPacket(r io.Reader) (wire.Packet, error) {
	raw, err := ReadRaw(r)
	if err != nil {
		return nil, err
	}
	p, _, err := wire.DecodePacket(raw)
	return p, err
}

// ReadRaw reads exactly one packet from r and returns its bytes undecoded.
func ReadRaw(r io.Reader) ([]byte, error) {
	var raw []byte
	one := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, one); err != nil {
			if len(raw) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return raw, err
		}
		raw = append(raw, one[0])
		fh, hl, err := wire.DecodeHeader(raw)
		if err == wire.ErrIncomplete {
			continue
		}
		if err != nil {
			return raw, err
		}
		raw = append(raw, make([]byte, fh.RemainingLength)...)
		if _, err := io.ReadFull(r, raw[hl:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return raw, err
		}
		return raw, nil
	}
}

// Find returns the case of Valid or Malformed with that name; it panics on
// an unknown name so a typo fails the test at once.
func Find(name string) Case {
	for _, tables := range [][]Case{Valid, Malformed} {
		for _, c := range tables {
			if c.Name == name {
				return c
			}
		}
	}
	panic(fmt.Sprintf("wiretest: no case named %q", name))
}

// Raw returns the bytes of the named case.
func Raw(name string) []byte { return append([]byte(nil), Find(name).Raw...) }
