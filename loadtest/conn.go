package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"iotd/wire"
)

// connectTimeout bounds dialing, the TLS handshake and the CONNACK wait.
const connectTimeout = 10 * time.Second

// ackFlushBytes is how many bytes of acknowledgements a reader collects
// before writing them even though more input is waiting.
const ackFlushBytes = 16 << 10

// conn is one MQTT connection written directly on the wire package.
//
// Ownership: the reader goroutine (readLoop) owns the read side and rd.
// Writes go through bw under wmu: the publisher goroutine appends PUBLISH
// packets, the reader acknowledgements, and whoever is about to wait (the
// publisher before blocking, the reader before blocking in Read) flushes,
// so many packets share one write call.
type conn struct {
	run *runner
	id  string
	nc  net.Conn
	rd  *wire.Reader

	wmu  sync.Mutex
	bw   *bufio.Writer
	werr error // first write error; sticky

	pub *publisher  // set before the reader starts; nil if it does not publish
	sub *subscriber // likewise for subscribing

	// barrierTopic, when set before the reader starts, is a topic this
	// connection subscribed to for a round trip through the broker: each
	// message on it is signalled on barrier instead of being accounted.
	barrierTopic []byte
	barrier      chan struct{}

	// acks are acknowledgements the reader owes the broker; they go out
	// before the reader blocks for more input (see Read).
	acks []byte

	ctrl    chan wire.Packet // SUBACK, UNSUBACK for the goroutine that asked
	pongs   atomic.Int64
	closing atomic.Bool   // we are ending it: read errors are not failures
	done    chan struct{} // closed when the reader exits
}

// dial opens a connection and completes CONNECT/CONNACK. The reader is
// not started yet, so the caller can attach a publisher or subscriber.
// bufSize is the write buffer: large for publishers, small for idle ones.
func (r *runner) dial(ctx context.Context, id string, clean bool, bufSize int) (*conn, *wire.Connack, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	d := net.Dialer{}
	if srcs := r.cfg.SourceAddrs; len(srcs) > 0 {
		src := srcs[(r.dials.Add(1)-1)%uint64(len(srcs))]
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		d.Control = bindNoPort
	}
	nc, err := d.DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", r.cfg.Addr, err)
	}
	// Closing the socket is what unblocks the handshake on timeout.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if r.cfg.TLS != nil {
		tc := tls.Client(nc, r.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("TLS handshake with %s: %w", r.cfg.Addr, err)
		}
		nc = tc
	}
	c := &conn{
		run:  r,
		id:   id,
		nc:   nc,
		bw:   bufio.NewWriterSize(nc, bufSize),
		ctrl: make(chan wire.Packet, 4),
		done: make(chan struct{}),
	}
	c.rd = wire.NewReader(c, 0)
	cp := &wire.Connect{
		ProtocolName:  "MQTT",
		ProtocolLevel: 4,
		CleanSession:  clean,
		KeepAlive:     uint16(r.cfg.KeepAlive / time.Second),
		ClientID:      id,
	}
	if r.cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, r.cfg.Username
		if r.cfg.Password != "" {
			cp.PasswordFlag, cp.Password = true, []byte(r.cfg.Password)
		}
	}
	fail := func(err error) (*conn, *wire.Connack, error) {
		nc.Close()
		if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		return nil, nil, fmt.Errorf("client %s: %w", id, err)
	}
	if _, err := c.bw.Write(cp.Append(nil)); err != nil {
		return fail(fmt.Errorf("send CONNECT: %w", err))
	}
	if err := c.bw.Flush(); err != nil {
		return fail(fmt.Errorf("send CONNECT: %w", err))
	}
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return fail(fmt.Errorf("waiting for CONNACK: %w", err))
	}
	if fh.Type != wire.CONNACK {
		return fail(fmt.Errorf("broker sent %s before CONNACK", fh.Type))
	}
	p, err := wire.Decode(fh, body)
	if err != nil {
		return fail(fmt.Errorf("bad CONNACK: %w", err))
	}
	ack := p.(*wire.Connack)
	if ack.ReturnCode != wire.Accepted {
		return fail(fmt.Errorf("CONNACK refused the connection: %s", connackReason(ack.ReturnCode)))
	}
	return c, ack, nil
}

func connackReason(code byte) string {
	switch code {
	case wire.RefusedProtocolVersion:
		return "0x01 unacceptable protocol version (the broker does not speak MQTT 3.1.1)"
	case wire.RefusedIdentifierRejected:
		return "0x02 client identifier rejected"
	case wire.RefusedServerUnavailable:
		return "0x03 server unavailable"
	case wire.RefusedBadUsernamePassword:
		return "0x04 bad user name or password (check --username/--password)"
	case wire.RefusedNotAuthorized:
		return "0x05 not authorized"
	}
	return fmt.Sprintf("0x%02x", code)
}

// start launches the reader goroutine; pub and sub must be set by now.
func (c *conn) start() {
	r := c.run
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	r.open.Add(1)
	r.started.Add(1)
	r.readers.Add(1)
	go c.readLoop()
}

// readLoop is the reader goroutine: it accounts deliveries, answers them
// (PUBACK, PUBREC, PUBCOMP), completes the publisher's QoS 1/2 flows and
// hands SUBACK/UNSUBACK to whoever waits for them.
func (c *conn) readLoop() {
	r := c.run
	defer r.readers.Done()
	defer close(c.done)
	defer r.open.Add(-1)
	defer c.rd.Release()
	var p wire.Publish
	for {
		if len(c.acks) >= ackFlushBytes {
			if err := c.writeAcks(); err != nil {
				c.lost(err)
				return
			}
		}
		fh, body, err := c.rd.ReadPacket()
		if err != nil {
			c.lost(err)
			return
		}
		switch fh.Type {
		case wire.PUBLISH:
			if err := p.Decode(fh, body); err != nil {
				c.protocolError(fmt.Errorf("malformed PUBLISH: %w", err))
				return
			}
			if c.barrierTopic != nil && bytes.Equal(p.Topic, c.barrierTopic) {
				select {
				case c.barrier <- struct{}{}:
				default:
				}
			} else if c.sub == nil {
				r.errorf("client %s: got a PUBLISH on %q without subscribing", c.id, p.Topic)
			} else if !c.sub.onPublish(c, &p) {
				c.acks = appendAck(c.acks, wire.PUBREC, p.PacketID) // QoS 2 repeat
				continue
			}
			switch p.QoS {
			case 1:
				c.acks = appendAck(c.acks, wire.PUBACK, p.PacketID)
			case 2:
				c.acks = appendAck(c.acks, wire.PUBREC, p.PacketID)
			}
		case wire.PUBACK, wire.PUBREC, wire.PUBREL, wire.PUBCOMP:
			if len(body) != 2 {
				c.protocolError(fmt.Errorf("%s with a %d-byte body", fh.Type, len(body)))
				return
			}
			id := uint16(body[0])<<8 | uint16(body[1])
			switch fh.Type {
			case wire.PUBREL:
				if c.sub != nil {
					c.sub.release(id)
				}
				c.acks = appendAck(c.acks, wire.PUBCOMP, id) // [MQTT-4.3.3-2]
			case wire.PUBREC:
				if c.pub == nil || !c.pub.onPubrec(id, r.since()) {
					r.errorf("client %s: PUBREC for packet id %d, which is not awaiting one", c.id, id)
					continue
				}
				c.acks = appendAck(c.acks, wire.PUBREL, id)
			default:
				if c.pub == nil || !c.pub.onAck(fh.Type, id, r.since()) {
					r.errorf("client %s: %s for packet id %d, which is not awaiting one", c.id, fh.Type, id)
				}
			}
		case wire.SUBACK, wire.UNSUBACK:
			pk, err := wire.Decode(fh, body)
			if err != nil {
				c.protocolError(fmt.Errorf("malformed %s: %w", fh.Type, err))
				return
			}
			select {
			case c.ctrl <- pk:
			default:
				r.errorf("client %s: unsolicited %s", c.id, fh.Type)
			}
		case wire.PINGRESP:
			c.pongs.Add(1)
		default:
			c.protocolError(fmt.Errorf("broker sent %s", fh.Type))
			return
		}
	}
}

// Read is what the wire.Reader reads from; it calls it only when no
// complete packet is buffered, that is when the reader is about to wait
// for the broker. So that is when the acknowledgements owed go out: all
// of a batch's acks in one write, and never held back while the broker
// waits for them. (Flushing when the Reader's buffer is empty is not the
// same: under a steady stream it almost always holds part of the next
// packet, and acks would pile up until the broker's in-flight and queue
// limits drop messages.) Called only from the reader goroutine, or from
// dial before it starts.
func (c *conn) Read(b []byte) (int, error) {
	if len(c.acks) > 0 {
		if err := c.writeAcks(); err != nil {
			return 0, err
		}
	}
	return c.nc.Read(b)
}

func (c *conn) writeAcks() error {
	err := c.write(c.acks, true)
	c.acks = c.acks[:0]
	return err
}

func appendAck(b []byte, t wire.Type, id uint16) []byte {
	flags := byte(0)
	if t == wire.PUBREL {
		flags = 0x02 // [MQTT-3.6.1-1]
	}
	return append(b, byte(t)<<4|flags, 2, byte(id>>8), byte(id))
}

// lost ends the reader after a read or write error; it is a failure unless
// we were closing the connection ourselves.
func (c *conn) lost(err error) {
	c.nc.Close()
	if c.closing.Load() || c.run.ctx.Err() != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("broker closed the connection")
	}
	c.run.errorf("client %s: connection lost: %v", c.id, err)
}

func (c *conn) protocolError(err error) {
	c.run.errorf("client %s: protocol error: %v", c.id, err)
	c.closing.Store(true)
	c.nc.Close()
}

// write appends b to the output and, with flush, writes it out.
func (c *conn) write(b []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		_, c.werr = c.bw.Write(b)
	}
	if flush && c.werr == nil && c.bw.Buffered() > 0 {
		c.werr = c.bw.Flush()
	}
	return c.werr
}

// writePacket appends an encoded packet; scratch is the caller's reusable
// encode buffer, returned grown.
func (c *conn) writePacket(p wire.Packet, scratch []byte, flush bool) ([]byte, error) {
	scratch = p.Append(scratch[:0])
	return scratch, c.write(scratch, flush)
}

// writePublish appends a PUBLISH, encoding straight into the write buffer
// when it fits.
func (c *conn) writePublish(p *wire.Publish, size int, scratch []byte) ([]byte, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return scratch, c.werr
	}
	if c.bw.Available() >= size {
		_, c.werr = c.bw.Write(p.Append(c.bw.AvailableBuffer()))
		return scratch, c.werr
	}
	scratch = p.Append(scratch[:0])
	_, c.werr = c.bw.Write(scratch)
	return scratch, c.werr
}

// flush writes out whatever is buffered.
func (c *conn) flush() error { return c.write(nil, true) }

// subscribe sends one SUBSCRIBE and waits for its SUBACK; it fails if the
// broker refused any filter (0x80).
func (c *conn) subscribe(ctx context.Context, id uint16, subs []wire.Subscription) ([]byte, error) {
	if _, err := c.writePacket(&wire.Subscribe{PacketID: id, Subscriptions: subs}, nil, true); err != nil {
		return nil, fmt.Errorf("client %s: send SUBSCRIBE: %w", c.id, err)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	select {
	case pk := <-c.ctrl:
		sa, ok := pk.(*wire.Suback)
		if !ok || sa.PacketID != id || len(sa.ReturnCodes) != len(subs) {
			return nil, fmt.Errorf("client %s: expected the SUBACK for packet id %d, got %T %+v", c.id, id, pk, pk)
		}
		for i, code := range sa.ReturnCodes {
			if code == wire.SubackFailure {
				return nil, fmt.Errorf("client %s: broker refused the subscription to %q (SUBACK 0x80); check its ACLs and subscription limits", c.id, subs[i].Filter)
			}
			if code < subs[i].QoS {
				c.run.errorf("client %s: broker granted QoS %d for %q instead of %d; deliveries are downgraded", c.id, code, subs[i].Filter, subs[i].QoS)
			}
		}
		return sa.ReturnCodes, nil
	case <-c.done:
		return nil, fmt.Errorf("client %s: connection closed while waiting for SUBACK", c.id)
	case <-ctx.Done():
		return nil, fmt.Errorf("client %s: no SUBACK within %v: %w", c.id, connectTimeout, ctx.Err())
	}
}

// ping sends a PINGREQ (keep-alive and liveness checks).
func (c *conn) ping() error {
	_, err := c.writePacket(&wire.Pingreq{}, make([]byte, 0, 2), true)
	return err
}

// sendDisconnect sends DISCONNECT and marks the connection as closing; the
// broker then closes it [MQTT-3.14.4-1], which ends the reader.
func (c *conn) sendDisconnect() {
	c.closing.Store(true)
	c.writePacket(&wire.Disconnect{}, make([]byte, 0, 2), true)
}

// close ends the connection now.
func (c *conn) close() {
	c.closing.Store(true)
	c.nc.Close()
}
