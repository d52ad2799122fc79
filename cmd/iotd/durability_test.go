package main

// Process tests of the durability promise (DESIGN.md): the real binary is
// killed with SIGKILL while clients publish, restarted, and must hand every
// acknowledged message to its persistent subscriber, in order, with no QoS 2
// duplicate; retained messages and in-flight messages likewise; and a restart
// with another --shards keeps every session.
//
// Clients speak raw MQTT over TCP (the wire package), so that a test knows
// exactly which packets crossed the socket before the kill.

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// mqttConn is a raw MQTT 3.1.1 connection: one goroutine reads (next), any
// goroutine may send.
type mqttConn struct {
	nc  net.Conn
	rd  *wire.Reader
	wmu sync.Mutex
	bw  *bufio.Writer
}

// dialMQTT connects and completes CONNECT/CONNACK.
func dialMQTT(addr, id string, clean bool) (*mqttConn, *wire.Connack, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := &mqttConn{nc: nc, rd: wire.NewReader(nc, 0), bw: bufio.NewWriterSize(nc, 64<<10)}
	if err := c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: clean}, true); err != nil {
		nc.Close()
		return nil, nil, err
	}
	p, err := c.next(10 * time.Second)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("client %s: waiting for CONNACK: %w", id, err)
	}
	ack, ok := p.(*wire.Connack)
	if !ok || ack.ReturnCode != wire.Accepted {
		nc.Close()
		return nil, nil, fmt.Errorf("client %s: expected CONNACK 0, got %#v", id, p)
	}
	return c, ack, nil
}

// send encodes p into the write buffer and, with flush, writes it out.
func (c *mqttConn) send(p wire.Packet, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.bw.Write(p.Append(c.bw.AvailableBuffer())); err != nil {
		return err
	}
	if flush {
		return c.bw.Flush()
	}
	return nil
}

func (c *mqttConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.bw.Flush()
}

// next reads and decodes one packet; the result owns its memory.
func (c *mqttConn) next(timeout time.Duration) (wire.Packet, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return nil, err
	}
	return wire.Decode(fh, body)
}

func (c *mqttConn) close() { c.nc.Close() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// disconnect sends DISCONNECT and waits until the broker closed the
// connection, so everything sent before it has been handled.
func (c *mqttConn) disconnect(t *testing.T) {
	t.Helper()
	require.NoError(t, c.send(&wire.Disconnect{}, true))
	for {
		_, err := c.next(10 * time.Second)
		if err != nil {
			require.False(t, isTimeout(err), "the broker did not close the connection after DISCONNECT")
			break
		}
	}
	c.close()
}

// subscribe sends SUBSCRIBE and waits for its SUBACK granting every QoS
// asked for.
func (c *mqttConn) subscribe(t *testing.T, subs ...wire.Subscription) {
	t.Helper()
	require.NoError(t, c.send(&wire.Subscribe{PacketID: 1, Subscriptions: subs}, true))
	p, err := c.next(10 * time.Second)
	require.NoError(t, err)
	sa, ok := p.(*wire.Suback)
	require.True(t, ok, "expected SUBACK, got %#v", p)
	for i, s := range subs {
		require.Equal(t, s.QoS, sa.ReturnCodes[i], "granted QoS for %s", s.Filter)
	}
}

// start runs the broker on an ephemeral loopback port with its state in
// dataDir and waits for the ready line.
func startBroker(t *testing.T, bin, dataDir string, args ...string) *iotdProc {
	t.Helper()
	all := append([]string{"--listen", "tcp://127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, args...)
	p := startIotd(t, bin, all...)
	require.NotEmpty(t, p.addr, "a tcp:// listener")
	return p
}

// --- publishers that know exactly what was acknowledged ---

// pubStream is one publisher: messages "<name> <seq>" on one topic at one
// QoS, a window of packet ids in flight, and a record of which sequence
// numbers the broker acknowledged (PUBACK for QoS 1, PUBREC for QoS 2).
type pubStream struct {
	name   string
	topic  string
	qos    byte
	retain bool
	count  int
	// payloadFor, if set, gives the payload of message seq (retained tests:
	// empty payloads delete); default "<name> <seq>".
	payloadFor func(seq int) []byte
	topicFor   func(seq int) string

	// persistent publishers connect with clean session 0 and can resume
	// after a restart: resend what is not acknowledged [MQTT-4.4.0-1].
	persistent bool

	mu       sync.Mutex
	open     map[uint16]*openMsg // QoS 1/2 flows not complete, by packet id
	sent     int                 // messages written to the socket
	acked    []bool              // by seq
	nAcked   int
	ackOrder bool // acknowledgements came in publish order
	lastAck  int
	err      error // why the connection ended
}

// openMsg is a publisher's message whose flow is not complete.
type openMsg struct {
	seq      int
	released bool // QoS 2: PUBREC received, PUBREL sent
}

func (p *pubStream) payload(seq int) []byte {
	if p.payloadFor != nil {
		return p.payloadFor(seq)
	}
	return []byte(p.name + " " + strconv.Itoa(seq))
}

func (p *pubStream) topicOf(seq int) string {
	if p.topicFor != nil {
		return p.topicFor(seq)
	}
	return p.topic
}

// ackedUpTo returns how many leading sequence numbers were acknowledged, and
// checks that no later one was (the broker acknowledges in order).
func (p *pubStream) ackedPrefix(t *testing.T) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.acked) && p.acked[n] {
		n++
	}
	require.Equal(t, n, p.nAcked, "%s: acknowledgements must come in publish order [MQTT-4.6.0-2/3]: %d acked but only the first %d contiguous", p.name, p.nAcked, n)
	require.True(t, p.ackOrder, "%s: acknowledgements out of publish order", p.name)
	return n
}

// run publishes p.count messages with up to window unacknowledged, until
// done or the connection breaks. acks counts acknowledgements over every
// publisher, for the kill trigger.
func (p *pubStream) run(addr, clientID string, window int, acks *atomic.Int64) {
	c, _, err := dialMQTT(addr, clientID, !p.persistent)
	if err != nil {
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		return
	}
	defer c.close()
	p.mu.Lock()
	p.open = make(map[uint16]*openMsg)
	p.acked = make([]bool, p.count)
	p.ackOrder = true
	p.lastAck = -1
	p.mu.Unlock()

	free := make(chan uint16, window)
	for id := 1; id <= window; id++ {
		free <- uint16(id)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			pk, err := c.next(time.Minute)
			if err != nil {
				p.mu.Lock()
				if p.err == nil {
					p.err = err
				}
				p.mu.Unlock()
				c.close()
				return
			}
			var id uint16
			switch pk := pk.(type) {
			case *wire.Puback:
				id = pk.PacketID
			case *wire.Pubrec:
				id = pk.PacketID
			case *wire.Pubcomp:
				p.mu.Lock()
				delete(p.open, pk.PacketID)
				p.mu.Unlock()
				free <- pk.PacketID
				continue
			default:
				continue
			}
			p.mu.Lock()
			m := p.open[id]
			if m == nil {
				p.mu.Unlock()
				continue // a repeated PUBREC
			}
			seq := m.seq
			if p.qos == 1 {
				delete(p.open, id)
			} else {
				m.released = true
			}
			if !p.acked[seq] {
				p.acked[seq] = true
				p.nAcked++
				if seq != p.lastAck+1 {
					p.ackOrder = false
				}
				p.lastAck = seq
			}
			p.mu.Unlock()
			acks.Add(1)
			if p.qos == 2 {
				c.send(&wire.Pubrel{PacketID: id}, true)
			} else {
				free <- id
			}
		}
	}()
	// take returns a free packet id, flushing before it waits for one; 0
	// once the connection is gone.
	take := func() uint16 {
		select {
		case id := <-free:
			return id
		default:
		}
		if c.flush() != nil {
			return 0
		}
		select {
		case id := <-free:
			return id
		case <-readerDone:
			return 0
		}
	}
	for seq := 0; seq < p.count; seq++ {
		id := take()
		if id == 0 {
			break
		}
		p.mu.Lock()
		p.open[id] = &openMsg{seq: seq}
		p.mu.Unlock()
		pk := &wire.Publish{QoS: p.qos, Retain: p.retain, Topic: []byte(p.topicOf(seq)), PacketID: id, Payload: p.payload(seq)}
		if c.send(pk, false) != nil {
			break
		}
		p.mu.Lock()
		p.sent = seq + 1
		p.mu.Unlock()
	}
	c.flush()
	// Wait for the last acknowledgements (or the kill).
	for range window {
		select {
		case <-free:
		case <-readerDone:
			return
		}
	}
	c.close()
	<-readerDone
}

// pubRun is a set of publishers running concurrently.
type pubRun struct {
	acks atomic.Int64 // acknowledgements over every publisher
	done chan struct{}
}

// startPublishers runs every publisher on its own goroutine.
func startPublishers(addr string, pubs []*pubStream, window int) *pubRun {
	r := &pubRun{done: make(chan struct{})}
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(addr, fmt.Sprintf("%s-c%d", p.name, i), window, &r.acks)
		}()
	}
	go func() { wg.Wait(); close(r.done) }()
	return r
}

// waitAcks waits until n acknowledgements have arrived or the publishers
// finished, failing the test after limit.
func (r *pubRun) waitAcks(t *testing.T, n int64, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for r.acks.Load() < n {
		select {
		case <-r.done:
			return
		case <-deadline:
			t.Fatalf("only %d of the %d acknowledgements to wait for arrived within %v", r.acks.Load(), n, limit)
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// killAt SIGKILLs the broker once n acknowledgements have arrived (or the
// publishers finished), waits for every publisher to notice, and returns
// the acknowledgement count at the kill.
func (r *pubRun) killAt(t *testing.T, broker *iotdProc, n int64) int64 {
	t.Helper()
	r.waitAcks(t, n, 60*time.Second)
	at := r.acks.Load()
	broker.kill9(t)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishers did not stop within 30s of the kill")
	}
	return at
}

// publishUntilKilled runs pubs and SIGKILLs the broker once killAt
// acknowledgements have arrived.
func publishUntilKilled(t *testing.T, broker *iotdProc, pubs []*pubStream, window int, killAt int64) int64 {
	t.Helper()
	return startPublishers(broker.addr, pubs, window).killAt(t, broker, killAt)
}

// --- the subscriber's view ---

// delivery is one PUBLISH a subscriber got.
type delivery struct {
	stream string
	seq    int
	qos    byte
	dup    bool
	id     uint16
}

func parsePayload(b []byte) (string, int, bool) {
	name, num, ok := strings.Cut(string(b), " ")
	if !ok {
		return "", 0, false
	}
	seq, err := strconv.Atoi(num)
	return name, seq, err == nil
}

// receiver reads a persistent subscriber's deliveries, completes every QoS
// 1/2 flow, and checks them per stream: first deliveries in publish order
// with no gap, QoS 1 repeats only with DUP=1, no QoS 2 message twice.
type receiver struct {
	t     *testing.T
	c     *mqttConn
	qos2  map[uint16]bool // QoS 2 ids PUBREC'd, PUBREL not yet received
	next  map[string]int  // per stream: next sequence number expected
	seen  map[string]int  // per stream: deliveries, repeats included
	log   []delivery
	other int // PUBRELs for ids we do not hold (a lost PUBCOMP resent)
}

func newReceiver(t *testing.T, c *mqttConn) *receiver {
	return &receiver{t: t, c: c, qos2: map[uint16]bool{}, next: map[string]int{}, seen: map[string]int{}}
}

// account records one PUBLISH and checks it against its stream. It reports
// false for a resend of a QoS 2 message whose packet id the receiver still
// holds: the same message, not a new delivery [MQTT-4.3.3-2].
func (r *receiver) account(pk *wire.Publish) bool {
	t := r.t
	t.Helper()
	name, seq, ok := parsePayload(pk.Payload)
	require.True(t, ok, "payload %q", pk.Payload)
	switch pk.QoS {
	case 1:
	case 2:
		if r.qos2[pk.PacketID] {
			require.True(t, pk.Dup, "QoS 2 packet id %d reused before PUBREL without DUP", pk.PacketID)
			return false
		}
		r.qos2[pk.PacketID] = true
	default:
		t.Fatalf("QoS 0 delivery %q to a QoS 1/2 subscription", pk.Payload)
	}
	r.seen[name]++
	want := r.next[name]
	switch {
	case seq == want:
		r.next[name] = seq + 1
	case seq < want:
		require.Equal(t, byte(1), pk.QoS, "QoS 2 duplicate: %s %d delivered again (next expected %d)", name, seq, want)
		require.True(t, pk.Dup, "QoS 1 repeat of %s %d without DUP=1", name, seq)
	default:
		t.Fatalf("%s: got %d while %d was next: a gap or out of order (QoS %d)", name, seq, want, pk.QoS)
	}
	r.log = append(r.log, delivery{stream: name, seq: seq, qos: pk.QoS, dup: pk.Dup, id: pk.PacketID})
	return true
}

// handle processes one packet and completes its flow: PUBACK, PUBREC,
// PUBCOMP.
func (r *receiver) handle(pk wire.Packet) {
	t := r.t
	t.Helper()
	switch pk := pk.(type) {
	case *wire.Publish:
		r.account(pk)
		if pk.QoS == 1 {
			require.NoError(t, r.c.send(&wire.Puback{PacketID: pk.PacketID}, false))
		} else {
			require.NoError(t, r.c.send(&wire.Pubrec{PacketID: pk.PacketID}, false))
		}
	case *wire.Pubrel:
		if r.qos2[pk.PacketID] {
			delete(r.qos2, pk.PacketID)
		} else {
			r.other++
		}
		require.NoError(t, r.c.send(&wire.Pubcomp{PacketID: pk.PacketID}, false))
	case *wire.Pingresp:
	default:
		t.Fatalf("subscriber got %#v", pk)
	}
}

// drain reads until want(stream) messages of every stream in want have
// arrived and nothing more came for quiet, or fails after limit.
func (r *receiver) drain(want map[string]int, quiet, limit time.Duration) {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(limit)
	complete := func() bool {
		for name, n := range want {
			if r.next[name] < n {
				return false
			}
		}
		return true
	}
	for {
		wait := 2 * time.Second
		if complete() {
			wait = quiet
		}
		if r.c.rd.Buffered() == 0 {
			require.NoError(t, r.c.flush()) // about to wait: acknowledgements out
		}
		pk, err := r.c.next(wait)
		if err != nil {
			require.True(t, isTimeout(err), "subscriber connection: %v", err)
			if complete() && len(r.qos2) == 0 {
				return
			}
			if time.Now().After(deadline) {
				var missing []string
				for name, n := range want {
					if r.next[name] < n {
						missing = append(missing, fmt.Sprintf("%s: %d of %d", name, r.next[name], n))
					}
				}
				t.Fatalf("after %v the subscriber still lacks acknowledged messages (%s) or QoS 2 flows (%d open)", limit, strings.Join(missing, ", "), len(r.qos2))
			}
			continue
		}
		r.handle(pk)
	}
}

// --- tests ---

// killSchedule returns n kill points, as acknowledgement counts spread over
// (0, total): one in each of n equal slices, at a random place within it, so
// the kills land early, late and in between.
func killSchedule(rng *rand.Rand, n int, total int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		lo := total * int64(i) / int64(n)
		out[i] = lo + 1 + rng.Int64N(total/int64(n)-1)
	}
	rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// seededKills is killSchedule from a fresh seed; it logs the seed and the
// schedule.
func seededKills(t *testing.T, n int, total int64) []int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	kills := killSchedule(rand.New(rand.NewPCG(uint64(seed), 0)), n, total)
	t.Logf("seed %d, kill after these acknowledgement counts: %v", seed, kills)
	return kills
}

// TestKill9KeepsAcknowledgedMessages: a persistent subscriber (QoS 1 and
// QoS 2 subscriptions) is offline while publishers send 50,000 messages; the
// broker is killed with SIGKILL at a random moment. After the restart the
// subscriber's session is present and it receives every message the broker
// acknowledged (PUBACK / PUBREC), in order per publisher, without a QoS 2
// duplicate. Five rounds, five kills, one data directory throughout.
func TestKill9KeepsAcknowledgedMessages(t *testing.T) {
	bin := buildIotd(t)
	dir := t.TempDir()
	const (
		rounds  = 5
		total   = 50_000 // messages per round, over all publishers
		pubsPer = 2      // publishers per QoS
		window  = 64
	)
	kills := seededKills(t, rounds, total)
	args := []string{"--shards", "3", "--max-queued-messages", "200000", "--max-inflight", "1000", "--fsync", "always"}

	b := startBroker(t, bin, dir, args...)
	sub, _, err := dialMQTT(b.addr, "durable-sub", false)
	require.NoError(t, err)
	sub.subscribe(t, wire.Subscription{Filter: "d/1/+", QoS: 1}, wire.Subscription{Filter: "d/2/+", QoS: 2})
	sub.disconnect(t)

	for round, killAt := range kills {
		var pubs []*pubStream
		for q := byte(1); q <= 2; q++ {
			for i := range pubsPer {
				name := fmt.Sprintf("r%dq%dp%d", round, q, i)
				pubs = append(pubs, &pubStream{name: name, topic: fmt.Sprintf("d/%d/%s", q, name), qos: q, count: total / (2 * pubsPer)})
			}
		}
		start := time.Now()
		at := publishUntilKilled(t, b, pubs, window, killAt)
		want := map[string]int{}
		var acked, sent int
		for _, p := range pubs {
			want[p.name] = p.ackedPrefix(t)
			acked += want[p.name]
			sent += p.sent
		}
		t.Logf("round %d: killed after %d acknowledgements (%v): %d of %d sent acknowledged", round, at, time.Since(start).Round(time.Millisecond), acked, sent)

		start = time.Now()
		b = startBroker(t, bin, dir, args...)
		t.Logf("round %d: restarted in %v", round, time.Since(start).Round(time.Millisecond))
		sub, ack, err := dialMQTT(b.addr, "durable-sub", false)
		require.NoError(t, err)
		require.True(t, ack.SessionPresent, "round %d: the persistent session did not survive the kill", round)
		r := newReceiver(t, sub)
		r.drain(want, 300*time.Millisecond, 20*time.Second)
		for _, p := range pubs {
			// Unacknowledged messages may arrive, but only ones that were sent.
			require.LessOrEqual(t, r.next[p.name], p.sent, "%s: more messages than were sent", p.name)
		}
		got := 0
		for _, n := range r.next {
			got += n
		}
		t.Logf("round %d: subscriber got %d messages (%d acknowledged, %d sent) in %v", round, got, acked, sent, time.Since(start).Round(time.Millisecond))
		sub.disconnect(t)
	}
	b.terminate(t)
}

// resume reconnects a persistent publisher after a restart and completes
// every open flow, in the original order: PUBLISH again with DUP=1 and the
// same packet id where no acknowledgement came, PUBREL where PUBREC did
// [MQTT-4.4.0-1]. Every message it sent is acknowledged when it returns.
func (p *pubStream) resume(t *testing.T, addr, clientID string) {
	t.Helper()
	c, ack, err := dialMQTT(addr, clientID, false)
	require.NoError(t, err)
	defer c.close()
	require.True(t, ack.SessionPresent, "%s: the publisher's session did not survive", clientID)
	p.mu.Lock()
	ids := make([]uint16, 0, len(p.open))
	for id := range p.open {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uint16) int { return p.open[a].seq - p.open[b].seq })
	for _, id := range ids {
		m := p.open[id]
		if m.released {
			require.NoError(t, c.send(&wire.Pubrel{PacketID: id}, false))
		} else {
			require.NoError(t, c.send(&wire.Publish{Dup: true, QoS: p.qos, Retain: p.retain, Topic: []byte(p.topicOf(m.seq)), PacketID: id, Payload: p.payload(m.seq)}, false))
		}
	}
	p.mu.Unlock()
	require.NoError(t, c.flush())
	for {
		p.mu.Lock()
		left := len(p.open)
		p.mu.Unlock()
		if left == 0 {
			break
		}
		pk, err := c.next(10 * time.Second)
		require.NoError(t, err, "%s: %d flows still open after the resend", clientID, left)
		p.mu.Lock()
		switch pk := pk.(type) {
		case *wire.Puback:
			if m := p.open[pk.PacketID]; m != nil && p.qos == 1 {
				p.acked[m.seq] = true
				delete(p.open, pk.PacketID)
			}
		case *wire.Pubrec:
			if m := p.open[pk.PacketID]; m != nil {
				p.acked[m.seq] = true
				m.released = true
			}
			require.NoError(t, c.send(&wire.Pubrel{PacketID: pk.PacketID}, true))
		case *wire.Pubcomp:
			if m := p.open[pk.PacketID]; m != nil && m.released {
				delete(p.open, pk.PacketID)
			}
		}
		p.mu.Unlock()
	}
	c.disconnect(t)
}

// TestKill9QoS2ExactlyOnceAcrossRestart: persistent QoS 2 publishers are cut
// off by SIGKILL; after the restart they resume their sessions and finish
// every flow (DUP resend or PUBREL). QoS 2 then means every message they
// sent reaches the persistent subscriber exactly once: none lost, none
// twice, whichever log the kill caught each message in.
//
// With --shards 3 the publishers' shards differ from the subscriber's, so a
// kill lands between the commits of different logs (shard/heldroute.go).
func TestKill9QoS2ExactlyOnceAcrossRestart(t *testing.T) {
	bin := buildIotd(t)
	dir := t.TempDir()
	const (
		rounds = 3
		total  = 20_000
		npubs  = 4
		window = 64
	)
	kills := seededKills(t, rounds, total)
	args := []string{"--shards", "3", "--max-queued-messages", "200000"}

	b := startBroker(t, bin, dir, args...)
	sub, _, err := dialMQTT(b.addr, "eo-sub", false)
	require.NoError(t, err)
	sub.subscribe(t, wire.Subscription{Filter: "eo/+", QoS: 2})
	sub.disconnect(t)

	for round, killAt := range kills {
		var pubs []*pubStream
		for i := range npubs {
			name := fmt.Sprintf("r%dp%d", round, i)
			pubs = append(pubs, &pubStream{name: name, topic: "eo/" + name, qos: 2, count: total / npubs, persistent: true})
		}
		publishUntilKilled(t, b, pubs, window, killAt)
		b = startBroker(t, bin, dir, args...)
		want := map[string]int{}
		open := 0
		for i, p := range pubs {
			open += len(p.open)
			p.resume(t, b.addr, fmt.Sprintf("%s-c%d", p.name, i))
			want[p.name] = p.sent
		}
		t.Logf("round %d: resumed %d open flows", round, open)
		sub, ack, err := dialMQTT(b.addr, "eo-sub", false)
		require.NoError(t, err)
		require.True(t, ack.SessionPresent)
		r := newReceiver(t, sub)
		r.drain(want, 300*time.Millisecond, 20*time.Second)
		for _, p := range pubs {
			require.Equal(t, p.sent, r.next[p.name], "%s: exactly the messages sent", p.name)
		}
		sub.disconnect(t)
	}
	b.terminate(t)
}

// TestKill9KeepsRetainedMessages: publishers keep replacing and deleting
// retained messages on 100 topics (QoS 1 and 2) and the broker is killed
// with SIGKILL at a random moment, five times. After each restart a new
// subscriber finds on every topic the outcome of the last acknowledged
// operation or of a later one that was sent: an acknowledged delete never
// brings an older message back, an acknowledged set is never lost.
func TestKill9KeepsRetainedMessages(t *testing.T) {
	bin := buildIotd(t)
	dir := t.TempDir()
	const (
		rounds = 5
		npubs  = 4  // two at QoS 1, two at QoS 2
		topics = 25 // per publisher
		ops    = 4000
		window = 32
	)
	kills := seededKills(t, rounds, npubs*ops)
	args := []string{"--shards", "3"}
	topicOf := func(pub, seq int) string { return fmt.Sprintf("rt/p%d/%d", pub, seq%topics) }
	isDelete := func(seq int) bool { return (seq/topics)%3 == 2 } // every third operation on a topic

	state := map[string]string{} // retained payload by topic, as last observed
	b := startBroker(t, bin, dir, args...)
	for round, killAt := range kills {
		var pubs []*pubStream
		for i := range npubs {
			name := fmt.Sprintf("r%dp%d", round, i)
			pubs = append(pubs, &pubStream{
				name: name, qos: byte(1 + i%2), retain: true, count: ops,
				topicFor: func(seq int) string { return topicOf(i, seq) },
				payloadFor: func(seq int) []byte {
					if isDelete(seq) {
						return nil
					}
					return []byte(name + " " + strconv.Itoa(seq))
				},
			})
		}
		at := publishUntilKilled(t, b, pubs, window, killAt)

		// What each topic may hold now: the outcome of the last acknowledged
		// operation on it, or of any later one that was sent.
		allowed := map[string]map[string]bool{}
		for i, p := range pubs {
			acked := p.ackedPrefix(t)
			for k := range topics {
				topic := topicOf(i, k)
				ok := map[string]bool{}
				lastAcked := -1
				for seq := k; seq < acked; seq += topics {
					lastAcked = seq
				}
				if lastAcked < 0 {
					ok[state[topic]] = true // untouched or unacknowledged: as before
				}
				for seq := max(lastAcked, k); seq < p.sent; seq += topics {
					if seq < 0 {
						continue
					}
					ok[string(p.payloadFor(seq))] = true
				}
				allowed[topic] = ok
			}
		}

		b = startBroker(t, bin, dir, args...)
		got := readRetained(t, b.addr, "rt/#")
		for topic, ok := range allowed {
			require.True(t, ok[got[topic]], "round %d: %s holds %q; allowed: %v", round, topic, got[topic], ok)
		}
		for topic := range got {
			require.Contains(t, allowed, topic, "round %d: retained message on a topic never published", round)
		}
		t.Logf("round %d: killed after %d acknowledgements; %d retained messages after the restart, each as acknowledged", round, at, len(got))
		state = got
	}
	b.terminate(t)
}

// readRetained subscribes a new clean client to filter and returns the
// retained messages it is sent, by topic. A marker published on the same
// connection after SUBACK comes after every one of them (one shard, one
// session queue).
func readRetained(t *testing.T, addr, filter string) map[string]string {
	t.Helper()
	c, _, err := dialMQTT(addr, "retained-reader", true)
	require.NoError(t, err)
	defer c.close()
	c.subscribe(t, wire.Subscription{Filter: filter, QoS: 2})
	marker := strings.TrimSuffix(filter, "#") + "zz-marker"
	require.NoError(t, c.send(&wire.Publish{QoS: 1, Topic: []byte(marker), PacketID: 1, Payload: []byte("end")}, true))
	got := map[string]string{}
	for {
		pk, err := c.next(10 * time.Second)
		require.NoError(t, err, "waiting for the retained messages and the marker")
		switch pk := pk.(type) {
		case *wire.Publish:
			if string(pk.Topic) == marker {
				require.False(t, pk.Retain)
				c.send(&wire.Puback{PacketID: pk.PacketID}, true)
				c.disconnect(t)
				return got
			}
			require.True(t, pk.Retain, "a live message on %s while reading retained ones", pk.Topic)
			_, dup := got[string(pk.Topic)]
			require.False(t, dup, "two retained messages on %s", pk.Topic)
			got[string(pk.Topic)] = string(pk.Payload)
			switch pk.QoS {
			case 1:
				c.send(&wire.Puback{PacketID: pk.PacketID}, true)
			case 2:
				c.send(&wire.Pubrec{PacketID: pk.PacketID}, true)
			}
		case *wire.Pubrel:
			c.send(&wire.Pubcomp{PacketID: pk.PacketID}, true)
		}
	}
}

// heldMsg is a delivery the subscriber did not complete before the kill.
type heldMsg struct {
	id             uint16
	qos            byte
	topic, payload string
	pubrec         bool // QoS 2: PUBREC sent
	pubrel         bool // and the broker's PUBREL came (PUBCOMP withheld)
}

// TestKill9RedeliversInflight: an online persistent subscriber (QoS 1 and
// QoS 2) stops acknowledging, so its whole in-flight window is held: QoS 1
// PUBLISHes without PUBACK, QoS 2 ones without PUBREC, and QoS 2 ones
// PUBREC'd whose PUBREL got no PUBCOMP. Publishers keep going and the broker
// is killed with SIGKILL at a random moment. After the restart the broker
// first re-sends exactly that window, in its original order, with the same
// packet ids: PUBLISH with DUP=1, or PUBREL where PUBREC had been received
// [MQTT-4.4.0-1] [MQTT-4.3.3-1]. Then every acknowledged message arrives, in
// order, with no QoS 2 duplicate. Three rounds, three kills.
func TestKill9RedeliversInflight(t *testing.T) {
	bin := buildIotd(t)
	dir := t.TempDir()
	const (
		rounds      = 3
		perPub      = 10_000
		maxInflight = 16
		window      = 64
	)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)
	args := []string{"--shards", "3", "--max-inflight", strconv.Itoa(maxInflight), "--max-queued-messages", "200000"}

	b := startBroker(t, bin, dir, args...)
	sub, _, err := dialMQTT(b.addr, "inflight-sub", false)
	require.NoError(t, err)
	sub.subscribe(t, wire.Subscription{Filter: "f/1/+", QoS: 1}, wire.Subscription{Filter: "f/2/+", QoS: 2})
	r := newReceiver(t, sub)

	for round := range rounds {
		pubs := []*pubStream{
			{name: fmt.Sprintf("r%dq1", round), topic: fmt.Sprintf("f/1/r%d", round), qos: 1, count: perPub},
			{name: fmt.Sprintf("r%dq2", round), topic: fmt.Sprintf("f/2/r%d", round), qos: 2, count: perPub},
		}
		run := startPublishers(b.addr, pubs, window)

		// Complete the first holdAfter deliveries, then hold the window.
		holdAfter := 20 + rng.IntN(2000)
		completed := 0
		var held []*heldMsg
		stable := func() bool {
			if len(held) < maxInflight {
				return false
			}
			for _, h := range held {
				if h.pubrec && !h.pubrel {
					return false
				}
			}
			return true
		}
		for !stable() {
			if sub.rd.Buffered() == 0 {
				require.NoError(t, sub.flush())
			}
			pk, err := sub.next(10 * time.Second)
			require.NoError(t, err, "round %d: waiting to fill the in-flight window (%d held)", round, len(held))
			switch pk := pk.(type) {
			case *wire.Publish:
				if completed < holdAfter {
					r.handle(pk)
					completed++
					continue
				}
				require.True(t, r.account(pk), "a resend before any reconnect")
				require.Less(t, len(held), maxInflight, "the broker sent more than --max-inflight unacknowledged messages")
				h := &heldMsg{id: pk.PacketID, qos: pk.QoS, topic: string(pk.Topic), payload: string(pk.Payload)}
				if pk.QoS == 2 && rng.IntN(2) == 0 {
					h.pubrec = true
					require.NoError(t, sub.send(&wire.Pubrec{PacketID: pk.PacketID}, false))
				}
				held = append(held, h)
			case *wire.Pubrel:
				i := slices.IndexFunc(held, func(h *heldMsg) bool { return h.id == pk.PacketID })
				if i >= 0 {
					require.True(t, held[i].pubrec, "PUBREL for %d before PUBREC", pk.PacketID)
					held[i].pubrel = true
					delete(r.qos2, pk.PacketID) // released; PUBCOMP withheld
					continue
				}
				r.handle(pk)
			default:
				r.handle(pk)
			}
		}
		killAt := int64(completed + maxInflight + rng.IntN(2*perPub-completed-maxInflight))
		at := run.killAt(t, b, killAt)
		want := map[string]int{}
		acked := 0
		for _, p := range pubs {
			want[p.name] = p.ackedPrefix(t)
			acked += want[p.name]
		}
		nrel := 0
		for _, h := range held {
			if h.pubrel {
				nrel++
			}
		}
		t.Logf("round %d: held %d in flight (%d released) after %d completed; killed after %d acknowledgements", round, len(held), nrel, completed, at)

		b = startBroker(t, bin, dir, args...)
		sub.close()
		var ack *wire.Connack
		sub, ack, err = dialMQTT(b.addr, "inflight-sub", false)
		require.NoError(t, err)
		require.True(t, ack.SessionPresent)
		r.c = sub
		for i, h := range held {
			pk, err := sub.next(10 * time.Second)
			require.NoError(t, err, "waiting for re-send %d of %d", i+1, len(held))
			if h.pubrel {
				require.Equal(t, &wire.Pubrel{PacketID: h.id}, pk, "re-send %d: PUBREL for the released QoS 2 message %s", i, h.payload)
			} else {
				want := &wire.Publish{Dup: true, QoS: h.qos, Topic: []byte(h.topic), PacketID: h.id, Payload: []byte(h.payload)}
				require.Equal(t, want, pk, "re-send %d: the unacknowledged PUBLISH again, DUP=1, same packet id", i)
			}
			r.handle(pk)
		}
		r.drain(want, 300*time.Millisecond, 20*time.Second)
		t.Logf("round %d: %d re-sent as expected; %d acknowledged messages all arrived", round, len(held), acked)
	}
	sub.disconnect(t)
	b.terminate(t)
}

// TestRestartWithOtherShardCountKeepsSessions: 40 persistent sessions with
// queued QoS 1 and QoS 2 messages survive restarts that change --shards
// (3 -> 5 -> 1 -> 2), after SIGKILL and after SIGTERM: each session is
// present, holds its queue in order, and its subscriptions still route new
// messages.
func TestRestartWithOtherShardCountKeepsSessions(t *testing.T) {
	bin := buildIotd(t)
	dir := t.TempDir()
	const sessions = 40
	id := func(i int) string { return fmt.Sprintf("sess-%d", i) }

	b := startBroker(t, bin, dir, "--shards", "3")
	for i := range sessions {
		c, ack, err := dialMQTT(b.addr, id(i), false)
		require.NoError(t, err)
		require.False(t, ack.SessionPresent)
		c.subscribe(t, wire.Subscription{Filter: fmt.Sprintf("sh/%d/+", i), QoS: 2}, wire.Subscription{Filter: "sh/all", QoS: 1})
		c.disconnect(t)
	}
	// queue publishes, for stage, 3 messages to each session's own filter
	// (one QoS 1, two QoS 2) and 2 to all of them (QoS 1), acknowledged.
	queue := func(stage int) {
		p := &pubStream{name: fmt.Sprintf("s%d", stage), qos: 2, count: 3 * sessions}
		p.topicFor = func(seq int) string { return fmt.Sprintf("sh/%d/x", seq%sessions) }
		p.payloadFor = func(seq int) []byte { return fmt.Appendf(nil, "s%d-%d %d", stage, seq%sessions, seq/sessions) }
		all := &pubStream{name: fmt.Sprintf("s%dall", stage), topic: "sh/all", qos: 1, count: 2}
		run := startPublishers(b.addr, []*pubStream{p, all}, 16)
		<-run.done
		require.Equal(t, 3*sessions, p.ackedPrefix(t))
		require.Equal(t, 2, all.ackedPrefix(t))
	}
	// check reconnects every session and expects exactly what stage queued.
	check := func(stage int) {
		for i := range sessions {
			c, ack, err := dialMQTT(b.addr, id(i), false)
			require.NoError(t, err)
			require.True(t, ack.SessionPresent, "stage %d: session %s lost", stage, id(i))
			r := newReceiver(t, c)
			own, all := fmt.Sprintf("s%d-%d", stage, i), fmt.Sprintf("s%dall", stage)
			r.drain(map[string]int{own: 3, all: 2}, 20*time.Millisecond, 10*time.Second)
			require.Equal(t, map[string]int{own: 3, all: 2}, r.next, "stage %d, %s: its queue", stage, id(i))
			c.disconnect(t)
		}
	}
	queue(0)
	for stage, shards := range []int{5, 1, 2} {
		if stage%2 == 0 {
			b.kill9(t)
		} else {
			b.terminate(t)
		}
		b = startBroker(t, bin, dir, "--shards", strconv.Itoa(shards))
		check(stage)
		queue(stage + 1)
		t.Logf("--shards %d: %d sessions with their queues and subscriptions", shards, sessions)
	}
	b.terminate(t)
	b = startBroker(t, bin, dir, "--shards", "3")
	check(3)
	b.terminate(t)
}
