package shard

import (
	"testing"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

func TestSmokePublishSubscribe(t *testing.T) {
	b := runBroker(t, Config{})
	sub, ack := b.connect(t, "sub", true)
	require.False(t, ack.SessionPresent)
	sa := sub.subscribe(7, wire.Subscription{Filter: "a/+", QoS: 2})
	require.Equal(t, []byte{2}, sa.ReturnCodes)
	pub, _ := b.connect(t, "pub", true)
	pub.publish("a/b", "hello", 0, false, 0)
	p := sub.expectPublish()
	require.Equal(t, "a/b", string(p.Topic))
	require.Equal(t, "hello", string(p.Payload))
	pub.publish("a/c", "q1", 1, false, 5)
	require.Equal(t, uint16(5), pub.expect(wire.PUBACK).(*wire.Puback).PacketID)
	p = sub.expectPublish()
	require.Equal(t, byte(1), p.QoS)
	sub.send(&wire.Puback{PacketID: p.PacketID})
	pub.publish("a/d", "q2", 2, false, 6)
	require.Equal(t, uint16(6), pub.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	pub.send(&wire.Pubrel{PacketID: 6})
	pub.expect(wire.PUBCOMP)
	p = sub.expectPublish()
	require.Equal(t, byte(2), p.QoS)
	sub.send(&wire.Pubrec{PacketID: p.PacketID})
	require.Equal(t, p.PacketID, sub.expect(wire.PUBREL).(*wire.Pubrel).PacketID)
	sub.send(&wire.Pubcomp{PacketID: p.PacketID})
	sub.ping()
}
