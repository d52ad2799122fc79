package shard

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// The broker's CONNECT and SUBSCRIBE acceptance, fuzzed over a socket: the
// logic lives in the connection's handshake (client.go) and the shard
// (subscribe.go), not in a pure function, so each input goes to a live
// broker and what comes back is checked against wire's verdict on the same
// bytes plus the broker's own limits. One broker serves every input of a
// fuzzing process.

// addBodySeeds seeds (flags, body) pairs from the byte tables' packets of
// type t.
func addBodySeeds(f *testing.F, t wire.Type) {
	for _, s := range wiretest.BodySeeds(t) {
		f.Add(s.Flags, s.Body)
	}
}

// frame returns the packet of type t with the given header flags and body.
func frame(t wire.Type, flags byte, body []byte) []byte {
	return append(wire.AppendRemainingLength([]byte{byte(t)<<4 | flags&0x0F}, len(body)), body...)
}

// FuzzBrokerConnect: a CONNECT that wire.DecodeConnect refuses gets the
// CONNACK code its ConnectError names and is closed, or is closed without
// CONNACK when the code is 0 [MQTT-3.1.4-1]; an accepted one with a client
// id over MaxClientIDLen gets 0x02 [MQTT-3.1.3-9]; any other is accepted
// (no password file, anonymous allowed), with session present 0 for a clean
// session [MQTT-3.2.2-1], and the connection serves a PINGREQ.
func FuzzBrokerConnect(f *testing.F) {
	addBodySeeds(f, wire.CONNECT)
	for _, n := range []int{16, 17} {
		cp := &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: strings.Repeat("i", n)}
		f.Add(byte(0), cp.Append(nil)[2:])
	}
	tb := runBroker(f, Config{Shards: 2, MaxClientIDLen: 16})
	f.Fuzz(func(t *testing.T, flags byte, body []byte) {
		flags &= 0x0F
		cp, derr := wire.DecodeConnect(wire.FixedHeader{Type: wire.CONNECT, Flags: flags, RemainingLength: len(body)}, body)
		want := -1 // no CONNACK
		switch {
		case derr != nil:
			var ce *wire.ConnectError
			require.True(t, errors.As(derr, &ce))
			if ce.ReturnCode != 0 {
				want = int(ce.ReturnCode)
			}
		case len(cp.ClientID) > tb.cfg.MaxClientIDLen:
			want = int(wire.RefusedIdentifierRejected)
		default:
			want = int(wire.Accepted)
		}

		c := tb.dial(t)
		c.write(frame(wire.CONNECT, flags, body))
		if want < 0 {
			c.expectClosed()
			return
		}
		ack := c.expect(wire.CONNACK).(*wire.Connack)
		require.Equal(t, byte(want), ack.ReturnCode, "decode verdict %v", derr)
		if want != int(wire.Accepted) {
			require.False(t, ack.SessionPresent) // [MQTT-3.2.2-4]
			c.expectClosed()                     // [MQTT-3.2.2-5]
			return
		}
		if cp.CleanSession {
			require.False(t, ack.SessionPresent)
		}
		c.ping()
		c.disconnect()
		if !cp.CleanSession {
			// End the session this input made, so sessions do not pile up
			// over a long fuzzing run.
			c2 := tb.dial(t)
			require.Equal(t, wire.Accepted, c2.connect(&wire.Connect{ClientID: cp.ClientID, CleanSession: true}).ReturnCode)
			c2.disconnect()
		}
	})
}

// FuzzBrokerSubscribe: a SUBSCRIBE that wire.Decode refuses closes the
// connection without a SUBACK [MQTT-4.8.0-1]; an accepted one gets one
// SUBACK with its packet id and one code per filter in order
// [MQTT-3.8.4-1..5]: the requested QoS, or 0x80 for a new filter past
// MaxSubscriptions (a repeated filter replaces the earlier one).
func FuzzBrokerSubscribe(f *testing.F) {
	addBodySeeds(f, wire.SUBSCRIBE)
	var many []wire.Subscription
	for i := range 6 {
		many = append(many, wire.Subscription{Filter: "f/" + strconv.Itoa(i%5), QoS: byte(i % 3)})
	}
	f.Add(byte(2), wiretest.SubscribeMany(7, many...)[2:])
	tb := runBroker(f, Config{Shards: 2, MaxSubscriptions: 4})
	var clients atomic.Int64
	f.Fuzz(func(t *testing.T, flags byte, body []byte) {
		flags &= 0x0F
		p, derr := wire.Decode(wire.FixedHeader{Type: wire.SUBSCRIBE, Flags: flags, RemainingLength: len(body)}, body)
		c, _ := tb.connect(t, "fz-"+strconv.FormatInt(clients.Add(1), 36), true)
		c.write(frame(wire.SUBSCRIBE, flags, body))
		if derr != nil {
			c.expectClosed()
			return
		}
		sub := p.(*wire.Subscribe)
		want := make([]byte, len(sub.Subscriptions))
		granted := make(map[string]bool)
		for i, s := range sub.Subscriptions {
			if len(granted) >= tb.cfg.MaxSubscriptions && !granted[s.Filter] {
				want[i] = wire.SubackFailure
				continue
			}
			granted[s.Filter] = true
			want[i] = s.QoS
		}
		sa := c.expect(wire.SUBACK).(*wire.Suback)
		require.Equal(t, sub.PacketID, sa.PacketID)
		require.Equal(t, want, sa.ReturnCodes)
		c.disconnect()
	})
}
