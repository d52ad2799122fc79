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

// The broker's own publishes reach $SYS subscribers; clients cannot publish
// there [MQTT-4.7.2-1 comments: $SYS is the broker's].
func TestBrokerPublishSys(t *testing.T) {
	b := runBroker(t, Config{})
	sub, _ := b.connect(t, "sys", true)
	sub.subscribe(1, wire.Subscription{Filter: "$SYS/#", QoS: 0})
	require.NoError(t, b.Publish("$SYS/broker/uptime", []byte("5 seconds"), 0, true))
	p := sub.expectPublish()
	require.Equal(t, "$SYS/broker/uptime", string(p.Topic))
	require.Equal(t, "5 seconds", string(p.Payload))
	require.False(t, p.Retain, "live copy") // [MQTT-3.3.1-9]
	late, _ := b.connect(t, "late", true)
	late.subscribe(1, wire.Subscription{Filter: "$SYS/broker/+", QoS: 0})
	p = late.expectPublish()
	require.True(t, p.Retain) // [MQTT-3.3.1-8]
	require.Error(t, b.Publish("a/+", nil, 0, false))
}
