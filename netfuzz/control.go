package netfuzz

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	"iotd/wire"
)

// control is the well-behaved client whose round trips show that the broker
// keeps serving while it is fuzzed. It is owned by one goroutine.
//
// A round trip is a QoS 1 PUBLISH to a topic the control client subscribed
// to at QoS 1: it completes when both the PUBACK and the delivery of that
// message have arrived (the delivery is acknowledged in turn).
type control struct {
	addr    string
	id      string // random, so no fuzzing stream takes its session over
	topic   string
	timeout time.Duration

	nc     net.Conn
	rd     *wire.Reader
	nextID uint16
	seq    uint64
}

func newControl(addr string, timeout time.Duration) *control {
	var tag [6]byte
	rand.Read(tag[:])
	t := hex.EncodeToString(tag[:])
	return &control{addr: addr, id: "netfuzz-control-" + t, topic: "netfuzz-control/" + t, timeout: timeout}
}

// connect (re)connects with a clean session and subscribes, within the
// round-trip timeout.
func (c *control) connect(ctx context.Context) error {
	c.close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	c.nc, c.rd = nc, wire.NewReader(nc, 0)
	fail := func(err error) error {
		c.close()
		return err
	}
	cp := &wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: c.id}
	if _, err := nc.Write(cp.Append(nil)); err != nil {
		return fail(fmt.Errorf("send CONNECT: %w", err))
	}
	p, err := c.read()
	if err != nil {
		return fail(fmt.Errorf("waiting for CONNACK: %w", err))
	}
	if ack, ok := p.(*wire.Connack); !ok || ack.ReturnCode != wire.Accepted {
		return fail(fmt.Errorf("CONNECT answered with %#v", p))
	}
	sub := &wire.Subscribe{PacketID: c.packetID(), Subscriptions: []wire.Subscription{{Filter: c.topic, QoS: 1}}}
	if _, err := nc.Write(sub.Append(nil)); err != nil {
		return fail(fmt.Errorf("send SUBSCRIBE: %w", err))
	}
	p, err = c.read()
	if err != nil {
		return fail(fmt.Errorf("waiting for SUBACK: %w", err))
	}
	if sa, ok := p.(*wire.Suback); !ok || sa.PacketID != sub.PacketID || len(sa.ReturnCodes) != 1 || sa.ReturnCodes[0] != 1 {
		return fail(fmt.Errorf("SUBSCRIBE answered with %#v", p))
	}
	return nil
}

func (c *control) close() {
	if c.nc != nil {
		c.nc.Close()
		c.rd.Release()
		c.nc, c.rd = nil, nil
	}
}

func (c *control) packetID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

func (c *control) read() (wire.Packet, error) {
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return nil, err
	}
	return wire.Decode(fh, body)
}

// roundTrip publishes the next sequence number and waits, at most the
// timeout, for its PUBACK and its delivery. It returns how long that took.
func (c *control) roundTrip(ctx context.Context) (time.Duration, error) {
	if c.nc == nil {
		return 0, fmt.Errorf("not connected")
	}
	c.seq++
	payload := binary.BigEndian.AppendUint64([]byte(c.id), c.seq)
	pub := &wire.Publish{QoS: 1, Topic: []byte(c.topic), PacketID: c.packetID(), Payload: payload}
	start := time.Now()
	c.nc.SetDeadline(start.Add(c.timeout))
	// The end of ctx interrupts the round trip; ctx.Err() is set by then, so
	// the caller can tell a cut-short round trip from a slow one.
	// It captures the socket: a close after this round trip clears c.nc
	// while the callback may still be running.
	nc := c.nc
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.nc.Write(pub.Append(nil)); err != nil {
		return time.Since(start), fmt.Errorf("publish #%d: %w", c.seq, err)
	}
	acked, delivered := false, false
	for !acked || !delivered {
		p, err := c.read()
		if err != nil {
			return time.Since(start), fmt.Errorf("round trip #%d (acked %v, delivered %v): %w", c.seq, acked, delivered, err)
		}
		switch p := p.(type) {
		case *wire.Puback:
			acked = acked || p.PacketID == pub.PacketID
		case *wire.Publish:
			// Earlier messages of a failed round trip may still arrive: only
			// this one counts, but every one is acknowledged.
			delivered = delivered || string(p.Payload) == string(payload)
			if p.QoS == 1 {
				if _, err := c.nc.Write((&wire.Puback{PacketID: p.PacketID}).Append(nil)); err != nil {
					return time.Since(start), fmt.Errorf("acknowledge delivery: %w", err)
				}
			}
		}
	}
	return time.Since(start), nil
}
