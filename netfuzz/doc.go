// Package netfuzz is a network fuzzer for an MQTT 3.1.1 broker: `iotd
// netfuzz` and a library for tests (Run, Config, Result).
//
// K connections at a time send hostile byte streams to a live broker while
// a control client, a separate well-behaved connection, does a subscribe +
// QoS 1 publish round trip every ControlInterval. The run fails when a
// control round trip takes longer than ControlTimeout, when the broker
// process dies (Config.BrokerAlive), or when the broker sends a fuzzing
// connection something that is not valid MQTT (a packet that does not
// decode, or anything before CONNACK [MQTT-3.2.0-1]).
//
// # Streams
//
// Each connection follows a Script, a pure function of its 64-bit seed
// (NewScript): which bytes it writes, cut into which writes, with which
// pauses, and how it ends. Kinds:
//
//   - random: random bytes from the first one;
//   - connect+random: a valid CONNECT, then random bytes;
//   - valid: a well-formed packet sequence (CONNECT, SUBSCRIBE, PUBLISH at
//     every QoS, acks for ids it never got, UNSUBSCRIBE, PINGREQ, a second
//     CONNECT, wire/wiretest table entries), so the broker's session,
//     QoS and retained paths run with odd but legal-looking input;
//   - mutated: the same sequences with field-level corruptions (bad UTF-8,
//     U+0000, zero-length fields, wrong fixed-header flags, reserved types,
//     huge or over-long remaining lengths, QoS 3, zero packet ids, connect
//     flag combinations the spec forbids) and byte-level mutations (bit
//     flips, inserted, deleted, duplicated and spliced ranges, truncation).
//
// Behaviours on top: writes whole, cut at random points or byte by byte;
// stalls between writes; ending with FIN, RST, a half-close (the script then
// keeps reading), or in the middle of a packet; connections that never read
// what the broker sends.
//
// # Reproducing a failure
//
// Connection n of worker w uses ConnSeed(seed, w, n), so the same --seed
// gives the same streams (which of them run in a time-bounded run depends
// on speed). A failure report lists the seeds of the connections that were
// running when it happened; Config.Replay (iotd netfuzz --replay SEED) runs
// exactly those streams again, and Config.ConnLog records every one.
//
// # What it leaves behind
//
// Client ids and topics come from small fixed pools (nf-0 ... nf-31,
// nf/...), so persistent sessions and retained messages stay bounded; at
// the end the pools are cleared (every pool id connects with clean session
// 1, every pool topic gets an empty retained message). A mutated id or
// topic outside the pools may survive.
package netfuzz
