// Package wire encodes and decodes MQTT 3.1.1 control packets.
//
// # Decoding
//
// Decoding is pure and resumable: DecodeHeader parses the 2-5 byte fixed
// header and returns ErrIncomplete until it has enough bytes; Decode parses
// one body and validates it against the spec (UTF-8 strings, reserved
// flags, packet identifiers, topic syntax, CONNECT flag rules). Nothing is
// kept between calls. DecodeConnect returns a *ConnectError that tells the
// broker which CONNACK code, if any, to send before closing.
//
// Every error matches one exported sentinel under errors.Is. ErrIncomplete
// means "read more"; every other error is a protocol violation after which
// the connection must be closed [MQTT-4.8.0-1].
//
// # Encoding
//
// Every packet type has Append(dst []byte) []byte, which appends the whole
// packet (fixed header, remaining length, body) to dst. With a reused
// buffer of enough capacity, encoding does not allocate.
//
// # Reader
//
// Reader frames packets from a stream. It checks the packet size against
// its maximum as soon as the fixed header is complete, before buffering or
// allocating for the body. It reads in large batches under load but, while
// it holds no unconsumed bytes, keeps only a small inline buffer, because
// the broker holds one Reader per (mostly idle) connection.
//
// # Buffer ownership
//
// Who owns a byte slice decides how long it is valid:
//
//   - The body returned by Reader.ReadPacket aliases the Reader's buffer and
//     is valid only until the next ReadPacket or Release.
//   - (*Publish).Decode does not copy: Topic and Payload alias the body, so
//     a Publish decoded that way must be copied before it is kept or queued.
//   - Decode, DecodeConnect and DecodePacket copy: their packets own their
//     memory and stay valid after the input is reused.
//   - Append only reads the packet; dst belongs to the caller.
package wire
