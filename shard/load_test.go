package shard

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// TestLoadQoS12AcrossShards sends 100,000 QoS 1 and 100,000 QoS 2 messages
// from four publishers to four subscribers, one of each on every shard.
// Subscriber s takes publishers s (its own shard) and s+1 (another shard),
// so every message is delivered twice, once locally and once across
// shards. Publishers and subscribers keep windows of unacknowledged
// packets instead of waiting for each ack. Every subscriber must see every
// message, each QoS 2 message exactly once, and every (publisher, QoS)
// stream in publish order [MQTT-4.6.0-6] [MQTT-4.3.3-2].
func TestLoadQoS12AcrossShards(t *testing.T) {
	const (
		shards     = 4
		perPub     = 50_000 // per publisher: half QoS 1, half QoS 2
		pubWindow  = 1000   // unacknowledged PUBLISHes per publisher
		payloadLen = 24
	)
	if testing.Short() {
		t.Skip("load test")
	}
	b := runBroker(t, Config{
		Shards:            shards,
		MaxInflight:       64,         // twice the default: fewer round trips, still a short in-flight scan per packet id
		MaxQueuedMessages: 2 * perPub, // the test checks delivery, not the queue limit
	})

	subs := make([]*rawClient, shards)
	for s := range subs {
		subs[s], _ = b.connect(t, b.idOnShard(fmt.Sprintf("load-sub%d-", s), s), true)
		sa := subs[s].subscribe(1,
			wire.Subscription{Filter: fmt.Sprintf("load/%d/+", s), QoS: 2},
			wire.Subscription{Filter: fmt.Sprintf("load/%d/+", (s+1)%shards), QoS: 2})
		require.Equal(t, []byte{2, 2}, sa.ReturnCodes)
	}
	pubs := make([]*rawClient, shards)
	for p := range pubs {
		pubs[p], _ = b.connect(t, b.idOnShard(fmt.Sprintf("load-pub%d-", p), p), true)
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*shards)
	for p, c := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loadPublish(c, p, perPub, pubWindow, payloadLen); err != nil {
				errs <- fmt.Errorf("publisher %d: %w", p, err)
			}
		}()
	}
	for s, c := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loadSubscribe(c, []int{s, (s + 1) % shards}, perPub); err != nil {
				errs <- fmt.Errorf("subscriber %d: %w", s, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := b.Stats()
	require.Zero(t, st.DroppedQueueFull)
	require.Zero(t, st.DroppedQoS0)
	t.Logf("%d publishes (%d QoS 1, %d QoS 2), %d deliveries in %v (%.0f deliveries/s)",
		shards*perPub, shards*perPub/2, shards*perPub/2, 2*shards*perPub, elapsed.Round(time.Millisecond),
		float64(2*shards*perPub)/elapsed.Seconds())
}

// loadPayload is publisher, QoS, sequence number within that (publisher,
// QoS) stream, then padding.
func loadPayload(dst []byte, pub int, qos byte, seq uint32, n int) []byte {
	dst = append(dst, byte(pub), qos)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	for len(dst) < n {
		dst = append(dst, 'x')
	}
	return dst
}

// loadPublish publishes n messages alternating QoS 1 and QoS 2 on
// load/<pub>/q1 and load/<pub>/q2, keeping up to window of them
// unacknowledged, and completes every flow.
func loadPublish(c *rawClient, pub, n, window, payloadLen int) error {
	topics := [3][]byte{nil, fmt.Appendf(nil, "load/%d/q1", pub), fmt.Appendf(nil, "load/%d/q2", pub)}
	free := make([]uint16, 0, window)
	for id := window; id >= 1; id-- {
		free = append(free, uint16(id))
	}
	var open [1 << 16]byte // id -> QoS of its unfinished flow; 0 = free
	var seq [3]uint32
	var out, payload []byte
	sent, done := 0, 0
	for done < n {
		for sent < n && len(free) > 0 {
			id := free[len(free)-1]
			free = free[:len(free)-1]
			qos := byte(1 + sent%2)
			payload = loadPayload(payload[:0], pub, qos, seq[qos], payloadLen)
			seq[qos]++
			out = (&wire.Publish{QoS: qos, Topic: topics[qos], PacketID: id, Payload: payload}).Append(out)
			open[id] = qos
			sent++
		}
		if len(out) > 0 {
			c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.conn.Write(out); err != nil {
				return err
			}
			out = out[:0]
		}
		// Take every ack already read, and at least one.
		for first := true; first || c.r.Buffered() > 0; first = false {
			if c.r.Buffered() == 0 {
				c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			}
			fh, body, err := c.r.ReadPacket()
			if err != nil {
				return fmt.Errorf("after %d of %d complete: %w", done, n, err)
			}
			if len(body) != 2 {
				return fmt.Errorf("unexpected %s", fh.Type)
			}
			id := binary.BigEndian.Uint16(body)
			qos := open[id]
			switch {
			case qos == 0:
				return fmt.Errorf("%s for id %d, which is not in use", fh.Type, id)
			case fh.Type == wire.PUBACK && qos == 1, fh.Type == wire.PUBCOMP && qos == 2:
				open[id] = 0
				free = append(free, id)
				done++
			case fh.Type == wire.PUBREC && qos == 2:
				out = (&wire.Pubrel{PacketID: id}).Append(out)
			default:
				return fmt.Errorf("%s for a QoS %d PUBLISH (id %d)", fh.Type, qos, id)
			}
		}
	}
	return nil
}

// loadSubscribe receives from the given publishers until it has n messages
// from each, acknowledging as it goes, and checks order, loss and QoS 2
// duplicates per (publisher, QoS) stream.
func loadSubscribe(c *rawClient, from []int, n int) error {
	type stream struct {
		pub int
		qos byte
	}
	var next [256][3]uint32 // [publisher][QoS] -> next sequence number
	dups := 0
	want := len(from) * n
	got := 0
	var open [1 << 16]bool // QoS 2 ids awaiting PUBREL
	nopen := 0
	var acks []byte
	for got < want || nopen > 0 {
		if c.r.Buffered() == 0 {
			c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		}
		fh, body, err := c.r.ReadPacket()
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", got, want, err)
		}
		switch fh.Type {
		case wire.PUBREL:
			id := binary.BigEndian.Uint16(body)
			if !open[id] {
				return fmt.Errorf("PUBREL for id %d, which awaits none", id)
			}
			open[id] = false
			nopen--
			acks = (&wire.Pubcomp{PacketID: id}).Append(acks)
		case wire.PUBLISH:
			var p wire.Publish
			if err := p.Decode(fh, body); err != nil {
				return err
			}
			if len(p.Payload) < 6 {
				return fmt.Errorf("short payload %q", p.Payload)
			}
			k := stream{int(p.Payload[0]), p.Payload[1]}
			seq := binary.BigEndian.Uint32(p.Payload[2:])
			if k.qos != p.QoS {
				return fmt.Errorf("published at QoS %d, delivered at %d", k.qos, p.QoS)
			}
			if p.Dup {
				return fmt.Errorf("DUP=1 on stream %v seq %d with no reconnect or retry", k, seq)
			}
			if k.qos < 1 || k.qos > 2 {
				return fmt.Errorf("bad payload %q", p.Payload)
			}
			switch exp := next[k.pub][k.qos]; {
			case seq == exp:
				next[k.pub][k.qos] = seq + 1
				got++
			case seq < exp && p.QoS == 1:
				dups++ // allowed at QoS 1, though nothing here should cause one
			case seq < exp:
				return fmt.Errorf("stream %v: seq %d delivered twice", k, seq) // [MQTT-4.3.3-2]
			default:
				return fmt.Errorf("stream %v: got seq %d, want %d (lost or out of order)", k, seq, exp) // [MQTT-4.6.0-6]
			}
			switch p.QoS {
			case 1:
				acks = (&wire.Puback{PacketID: p.PacketID}).Append(acks)
			case 2:
				if open[p.PacketID] {
					return fmt.Errorf("id %d reused before PUBCOMP", p.PacketID) // [MQTT-2.3.1-4]
				}
				open[p.PacketID] = true
				nopen++
				acks = (&wire.Pubrec{PacketID: p.PacketID}).Append(acks)
			default:
				return fmt.Errorf("QoS 0 delivery on stream %v", k)
			}
		default:
			return fmt.Errorf("unexpected %s", fh.Type)
		}
		if c.r.Buffered() == 0 && len(acks) > 0 {
			c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.conn.Write(acks); err != nil {
				return err
			}
			acks = acks[:0]
		}
	}
	for _, p := range from {
		for _, q := range []byte{1, 2} {
			if got := next[p][q]; got != uint32(n/2) {
				return fmt.Errorf("publisher %d QoS %d: %d of %d messages", p, q, got, n/2)
			}
		}
	}
	if dups > 0 {
		return fmt.Errorf("%d duplicate QoS 1 deliveries without any reconnect", dups)
	}
	return nil
}
