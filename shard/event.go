package shard

import "iotd/wire"

// Message is one application message as it travels through the broker. It is
// immutable once created and shared by every session it is delivered to.
type Message struct {
	Topic   []byte
	Payload []byte
	QoS     byte // as published
	Retain  bool // as published

	// origin names an inbound QoS 2 message held in its publisher's shard
	// log (heldroute.go); zero for every other message.
	origin origin
}

// origin identifies a held QoS 2 message: the publisher's shard and the
// sequence number its log gave the message. Sequence numbers start at 1 and
// only grow, so every log can remember which held messages it already has
// by keeping the highest one per publishing shard.
type origin struct {
	shard int
	seq   uint64
}

// newMessage copies topic and payload into one allocation, so a message never
// aliases a connection's read buffer.
func newMessage(topic, payload []byte, qos byte, retain bool) *Message {
	buf := make([]byte, len(topic)+len(payload))
	n := copy(buf, topic)
	copy(buf[n:], payload)
	return &Message{Topic: buf[:n:n], Payload: buf[n:], QoS: qos, Retain: retain}
}

type eventKind uint8

const (
	evConnect     eventKind = iota // reader: CONNECT accepted by validation
	evPublish                      // reader: PUBLISH
	evPuback                       // reader: PUBACK
	evPubrec                       // reader: PUBREC
	evPubrel                       // reader: PUBREL
	evPubcomp                      // reader: PUBCOMP
	evSubscribe                    // reader: SUBSCRIBE
	evUnsubscribe                  // reader: UNSUBSCRIBE
	evDisconnect                   // reader: DISCONNECT
	evClosed                       // reader: the connection ended without DISCONNECT
	evDeliver                      // another shard: a message matched filters held here
	evWritable                     // writer: the outbound queue drained below its limit
	evSettled                      // a ticket's last share was released: its ack may go out
	evSysPublish                   // the broker publishes (e.g. $SYS statistics)
	evRouteHeld                    // this shard: held QoS 2 messages are durable, route them
)

// event is one item in a shard's mailbox. Only the fields its kind needs are set.
type event struct {
	kind     eventKind
	c        *client
	packetID uint16
	dup      bool
	msg      *Message
	connect  *wire.Connect
	sub      *wire.Subscribe
	unsub    *wire.Unsubscribe
	filters  []string // evDeliver: the matching filters this shard holds
	reason   string   // evClosed: why, for the log
	t        *ticket  // evDeliver: share to release after commit; evSettled: the ticket
}
