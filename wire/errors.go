package wire

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error this package returns matches exactly one of
// them under errors.Is, so callers can count violations by kind and tests can
// assert the precise reason a packet was refused. Apart from ErrIncomplete,
// each one means the peer broke the protocol and, per [MQTT-4.8.0-1], the
// connection must be closed.
var (
	// ErrIncomplete means the input ends before the header or packet does:
	// read more bytes and try again. It is not a protocol error.
	ErrIncomplete = errors.New("wire: incomplete packet")

	// Fixed header.
	ErrRemainingLength = errors.New("wire: remaining length longer than 4 bytes")
	ErrPacketTooLarge  = errors.New("wire: packet larger than the maximum packet size")
	ErrPacketType      = errors.New("wire: reserved packet type")
	ErrFlags           = errors.New("wire: invalid fixed header flags")

	// Field layout.
	ErrMalformed    = errors.New("wire: malformed packet")
	ErrStringLength = errors.New("wire: string length exceeds the remaining bytes")

	// Strings ([MQTT-1.5.3-1], [MQTT-1.5.3-2]).
	ErrInvalidUTF8 = errors.New("wire: ill-formed UTF-8")
	ErrNullChar    = errors.New("wire: string contains U+0000")

	// Packet contents.
	ErrZeroPacketID     = errors.New("wire: packet identifier is 0")
	ErrEmptySubscribe   = errors.New("wire: SUBSCRIBE without topic filters")
	ErrEmptyUnsubscribe = errors.New("wire: UNSUBSCRIBE without topic filters")
	ErrSubscribeQoS     = errors.New("wire: invalid requested QoS byte")
	ErrPublishQoS       = errors.New("wire: PUBLISH with QoS 3")

	// Topic names and filters (section 4.7).
	ErrTopicWildcard = errors.New("wire: wildcard in topic name")
	ErrTopicEmpty    = errors.New("wire: empty topic")
	ErrTopicTooLong  = errors.New("wire: topic longer than 65535 bytes")
	ErrTopicFilter   = errors.New("wire: invalid topic filter")

	// CONNECT (section 3.1); DecodeConnect wraps these in *ConnectError.
	ErrProtocolName  = errors.New("wire: unknown protocol name")
	ErrProtocolLevel = errors.New("wire: unsupported protocol level")
	ErrConnectFlags  = errors.New("wire: invalid CONNECT flags")
	ErrEmptyClientID = errors.New("wire: empty client identifier with clean session 0")
)

// ConnectError is the error DecodeConnect returns. It tells the broker how
// to answer before it closes the connection: ReturnCode is the CONNACK code
// the spec requires (RefusedProtocolVersion for [MQTT-3.1.2-2],
// RefusedIdentifierRejected for [MQTT-3.1.3-8]), or 0 to close without any
// CONNACK, which [MQTT-3.1.4-1] requires for every other malformed CONNECT.
type ConnectError struct {
	ReturnCode byte
	Err        error
}

func (e *ConnectError) Error() string {
	inner := "<nil>"
	if e.Err != nil {
		inner = strings.TrimPrefix(e.Err.Error(), "wire: ")
	}
	if e.ReturnCode == 0 {
		return "wire: malformed CONNECT, close without CONNACK: " + inner
	}
	return fmt.Sprintf("wire: CONNECT refused with return code 0x%02x: %s", e.ReturnCode, inner)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// fieldError adds where a violation was found ("PUBLISH topic name") to a
// sentinel without repeating the "wire: " prefix.
type fieldError struct {
	where string
	err   error
}

func (e *fieldError) Error() string {
	return "wire: " + e.where + ": " + strings.TrimPrefix(e.err.Error(), "wire: ")
}

func (e *fieldError) Unwrap() error { return e.err }

// wrap returns err annotated with where; errors.Is(result, err) holds.
func wrap(where string, err error) error {
	return &fieldError{where: where, err: err}
}
