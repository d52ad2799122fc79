package main

// Overload with the real binary: subscribers that stop reading while
// publishers run at full speed. The broker's memory must stay under a bound
// derived from its limits (stallRSSBound), subscribers that keep up must get
// every message, and the publishers must keep at least half the rate they
// have when the same subscribers read.
//
// Each variant (QoS 0, QoS 1) runs two phases on a fresh broker with the
// same setup: N subscribers on stall/+ and F fast subscribers on stall/+,
// P publishers each on its own topic stall/<p>. In phase "reading" the N
// subscribers read (and acknowledge) everything; in phase "stalled" they
// subscribe and never read again. Their sockets have a 4 KiB receive buffer
// set before connect, so the kernel takes little for them.
//
// "Full speed": each publisher sends as fast as the broker takes its
// messages (QoS 1: with up to 256 unacknowledged), held back only to stay at
// most 200 messages ahead of the slower fast subscriber. The publisher rate
// is thus what the broker delivers to subscribers that keep up, and it
// falls if stalled subscribers slow the broker down. What the fast
// subscribers must get: at QoS 1 every message, each publisher's in order,
// none twice; at QoS 0 the same, which holds for any subscriber whose
// backlog in the broker stays under --max-outbound-bytes (the publisher lead
// keeps theirs at a few KiB), whatever the stalled ones do.
//
// The short version runs in `make test`; IOTD_SOAK_STALL=1 (make
// soak-stall) runs the long one: 1,000 stalled subscribers, 60 s per phase.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/shard"
	"iotd/wire"
)

type stallParams struct {
	subscribers int           // the ones that read in phase 1 and stall in phase 2
	fast        int           // subscribers that always read
	publishers  int           // each on its own topic
	duration    time.Duration // of publishing, per phase
	payload     int           // bytes per message
	// lead is how many messages a publisher may be ahead of the slower
	// fast subscriber. It keeps a fast subscriber's backlog in the broker
	// (publishers x lead messages) under --max-outbound-bytes and
	// --max-queued-messages, so it is never the one dropped.
	lead   int
	window int // QoS 1: unacknowledged PUBLISHes per publisher
}

// stallSoakParams: the short version, or with IOTD_SOAK_STALL set the long
// one (IOTD_SOAK_STALL_SUBSCRIBERS and IOTD_SOAK_STALL_DURATION override it).
func stallSoakParams(t *testing.T) stallParams {
	p := stallParams{subscribers: 200, fast: 2, publishers: 2, duration: 5 * time.Second, payload: 64, lead: 200, window: 256}
	if os.Getenv("IOTD_SOAK_STALL") == "" {
		return p
	}
	p.subscribers, p.duration = 1000, 60*time.Second
	if v := os.Getenv("IOTD_SOAK_STALL_SUBSCRIBERS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "IOTD_SOAK_STALL_SUBSCRIBERS")
		p.subscribers = n
	}
	if v := os.Getenv("IOTD_SOAK_STALL_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "IOTD_SOAK_STALL_DURATION")
		p.duration = d
	}
	return p
}

// stallRSSBound is the broker's peak resident memory allowed with n stalled
// subscribers: base (the broker with everyone connected, before the first
// publish) plus, per stalled connection, what its limits let it hold:
//
//   - its outbound queue: messages are queued while it holds less than
//     --max-outbound-bytes, counting the batch its writer is blocked on, so
//     at most that plus one message, kept in chunks of up to 64 KiB of which
//     the last may be mostly empty;
//   - the buffer a shard stages its messages in before they join the queue,
//     which holds at most what the queue has room for; staging buffers are
//     pooled, so count one per connection;
//   - QoS 1: --max-inflight + --max-queued-messages messages in its session
//     (messages are shared by every session they go to, so a stalled
//     session pins copies only of messages nobody else holds; counted here
//     as if none were shared: ~128 bytes of bookkeeping and the payload);
//
// times 2, because the Go collector (GOGC=100) lets the heap grow to twice
// what was live after its last cycle; plus 64 MiB for the runtime, the fast
// connections and the reader buffers. The kernel's socket buffers are not
// the broker's memory and not in its RSS. At the defaults that is about
// 4.1 MiB per stalled QoS 0 subscriber.
//
// The broker runs with its defaults (but --write-timeout, see
// startStallBroker).
func stallRSSBound(base int64, n int, qos byte, payload int) int64 {
	d := shard.DefaultConfig()
	packet := int64(16 + payload)
	perConn := int64(d.MaxOutboundBytes+64<<10) + packet + // the queue
		int64(d.MaxOutboundBytes) + packet // the staging buffer
	if qos > 0 {
		perConn += int64(d.MaxInflight+d.MaxQueuedMessages) * int64(128+payload)
	}
	return base + 2*int64(n)*perConn + 64<<20
}

func TestStalledSubscribersKeepMemoryBoundedAndPublishersFast(t *testing.T) {
	prm := stallSoakParams(t)
	bin := buildIotd(t)
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			reading := runStallPhase(t, bin, prm, qos, true)
			stalled := runStallPhase(t, bin, prm, qos, false)
			t.Logf("QoS %d, %d subscribers, %v per phase: publishers %.0f msg/s while they read, %.0f msg/s while they are stalled (%.2fx); broker peak RSS %.1f MiB reading, %.1f MiB stalled (bound %.1f MiB)",
				qos, prm.subscribers, prm.duration, reading.rate, stalled.rate, stalled.rate/reading.rate,
				mibOf(reading.hwm), mibOf(stalled.hwm), mibOf(stalled.bound))
			require.GreaterOrEqual(t, stalled.rate, 0.5*reading.rate, "publisher rate with stalled subscribers vs reading ones")
		})
	}
}

type stallResult struct {
	published int64 // by all publishers while publishing
	rate      float64
	base      int64 // broker VmRSS with everyone connected, before publishing
	hwm       int64 // broker VmHWM at the end of the phase
	rss       int64 // broker VmRSS at the end of the phase
	bound     int64
}

// runStallPhase starts a broker, connects everyone, publishes for
// prm.duration and checks what the fast subscribers got and, with stalled
// subscribers, the broker's peak memory.
func runStallPhase(t *testing.T, bin string, prm stallParams, qos byte, read bool) stallResult {
	phase := map[bool]string{true: "reading", false: "stalled"}[read]
	proc, metricsURL := startStallBroker(t, bin)
	pid := proc.cmd.Process.Pid

	// The N subscribers, connected in parallel.
	subs := make([]net.Conn, prm.subscribers)
	var readerGot atomic.Int64
	var readers sync.WaitGroup
	errs := make(chan error, prm.subscribers)
	var next atomic.Int64
	var dialers sync.WaitGroup
	for range 16 {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= prm.subscribers {
					return
				}
				c, err := dialSmallWindow(proc.addr, fmt.Sprintf("%s-sub-%d", phase, i), qos)
				if err != nil {
					errs <- err
					return
				}
				subs[i] = c
			}
		}()
	}
	dialers.Wait()
	defer func() {
		for _, c := range subs {
			if c != nil {
				c.Close()
			}
		}
	}()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	if read {
		for _, c := range subs {
			readers.Add(1)
			go func() {
				defer readers.Done()
				readAndAck(c, &readerGot)
			}()
		}
	}

	// The fast subscribers.
	got := make([][]atomic.Int64, prm.fast) // [fast][publisher]
	progress := make([]chan struct{}, prm.publishers)
	for p := range progress {
		progress[p] = make(chan struct{}, 1)
	}
	fastErrs := make([]error, prm.fast)
	fastDone := make([]chan struct{}, prm.fast) // closed once fastErrs[f] is set
	fastConns := make([]*mqttConn, prm.fast)
	fastFailed := make(chan struct{}) // closed when a fast subscriber's stream ends
	var failOnce sync.Once
	for f := range prm.fast {
		c, _, err := dialMQTT(proc.addr, fmt.Sprintf("%s-fast-%d", phase, f), true)
		require.NoError(t, err)
		c.subscribe(t, wire.Subscription{Filter: "stall/+", QoS: qos})
		fastConns[f] = c
		got[f] = make([]atomic.Int64, prm.publishers)
		fastDone[f] = make(chan struct{})
		go func() {
			defer close(fastDone[f])
			fastErrs[f] = readFast(c.nc, qos, got[f], progress)
			failOnce.Do(func() { close(fastFailed) })
		}()
	}
	defer func() {
		for f, c := range fastConns {
			c.close()
			<-fastDone[f]
		}
	}()
	minGot := func(p int) int64 {
		m := got[0][p].Load()
		for f := 1; f < prm.fast; f++ {
			m = min(m, got[f][p].Load())
		}
		return m
	}

	base, err := procStatus(pid, "VmRSS")
	require.NoError(t, err)

	// The publishers, for prm.duration.
	sent := make([]int64, prm.publishers)
	pubErrs := make([]error, prm.publishers)
	var pubWG sync.WaitGroup
	start := time.Now()
	end := start.Add(prm.duration)
	for p := range prm.publishers {
		c, _, err := dialMQTT(proc.addr, fmt.Sprintf("%s-pub-%d", phase, p), true)
		require.NoError(t, err)
		defer c.close()
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			sent[p], pubErrs[p] = publishFlat(c, p, qos, prm, end, progress[p], fastFailed, func() int64 { return minGot(p) })
		}()
	}
	pubWG.Wait()
	elapsed := time.Since(start)
	for f := range prm.fast {
		select {
		case <-fastDone[f]:
			require.NoError(t, fastErrs[f], "fast subscriber %d", f)
		default:
		}
	}
	for p, err := range pubErrs {
		require.NoError(t, err, "publisher %d", p)
	}

	// Every fast subscriber gets every message, each publisher's in order
	// (readFast checks the order as they arrive).
	deadline := time.Now().Add(60 * time.Second)
	for f := range prm.fast {
		for p := range prm.publishers {
		wait:
			for got[f][p].Load() < sent[p] && time.Now().Before(deadline) {
				select {
				case <-fastDone[f]:
					require.NoError(t, fastErrs[f], "fast subscriber %d", f)
					break wait
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
	var res stallResult
	for p := range prm.publishers {
		res.published += sent[p]
	}
	res.rate = float64(res.published) / elapsed.Seconds()
	res.base = base
	res.hwm, err = procStatus(pid, "VmHWM")
	require.NoError(t, err)
	res.rss, err = procStatus(pid, "VmRSS")
	require.NoError(t, err)
	res.bound = stallRSSBound(base, prm.subscribers, qos, prm.payload)
	m := scrapeMetrics(t, metricsURL)

	for f := range prm.fast {
		for p := range prm.publishers {
			require.Equal(t, sent[p], got[f][p].Load(), "fast subscriber %d: messages of publisher %d", f, p)
		}
	}
	t.Logf("%s QoS %d: %d subscribers, %d fast, %d publishers: %d published in %v (%.0f msg/s); fast subscribers got all %d each; the reading subscribers got %d; broker RSS before %.1f MiB, peak %.1f MiB, at the end %.1f MiB; dropped outbound-full %.0f, queue-full %.0f; connections %.0f",
		phase, qos, prm.subscribers, prm.fast, prm.publishers, res.published, elapsed.Round(time.Millisecond), res.rate,
		res.published, readerGot.Load(), mibOf(base), mibOf(res.hwm), mibOf(res.rss),
		m[`iotd_messages_dropped_total{reason="outbound-full"}`], m[`iotd_messages_dropped_total{reason="queue-full"}`], m["iotd_connections_current"])

	// Nobody was disconnected: the stalled ones stayed stalled throughout.
	require.Equal(t, float64(prm.subscribers+prm.fast+prm.publishers), m["iotd_connections_current"], "connections open at the end")
	if !read {
		if qos == 0 {
			require.Positive(t, m[`iotd_messages_dropped_total{reason="outbound-full"}`], "no QoS 0 message was dropped for the stalled subscribers")
		} else {
			require.Positive(t, m[`iotd_messages_dropped_total{reason="queue-full"}`], "no stalled subscriber's queue filled")
		}
		require.Less(t, res.hwm, res.bound, "broker peak RSS (VmHWM) with %d stalled subscribers: base %.1f MiB", prm.subscribers, mibOf(base))
	}

	require.NoError(t, proc.stopWithin(t, syscall.SIGTERM, 15*time.Second), "iotd exit status after SIGTERM")
	for _, c := range subs {
		c.Close()
	}
	readers.Wait()
	return res
}

// startStallBroker runs the binary with its defaults but --write-timeout,
// which would close a stalled subscriber after 30 s and free what it held:
// here they stay connected and stalled for the whole phase. It returns the
// broker and its metrics URL.
func startStallBroker(t *testing.T, bin string) (*iotdProc, string) {
	t.Helper()
	p := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "warn",
		"--write-timeout", "1h", "--metrics-listen", "127.0.0.1:0", "--sys-interval", "0")
	require.NotEmpty(t, p.addr, "a tcp:// listener")
	require.NotEmpty(t, p.metrics, "a metrics listener")
	return p, "http://" + p.metrics + "/metrics"
}

// dialSmallWindow connects a clean subscriber whose socket has a 4 KiB
// receive buffer, set before connect so that the window the kernel
// advertises is small too, and subscribes to stall/+.
func dialSmallWindow(addr, id string, qos byte) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var b []byte
	b = (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true}).Append(b)
	b = (&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "stall/+", QoS: qos}}}).Append(b)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	// CONNACK (4 bytes) and SUBACK (5 bytes), read exactly: nothing after
	// them is read by a stalled subscriber.
	var acks [9]byte
	if _, err := io.ReadFull(c, acks[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: CONNACK and SUBACK: %w", id, err)
	}
	want := []byte{0x20, 2, 0, 0, 0x90, 3, 0, 1, qos}
	if string(acks[:]) != string(want) {
		c.Close()
		return nil, fmt.Errorf("%s: got % x, want CONNACK and SUBACK % x", id, acks, want)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// scanPublishes parses the complete packets at the start of buf, calls fn
// for each PUBLISH and reports how many bytes it used.
func scanPublishes(buf []byte, fn func(p *wire.Publish) error) (int, error) {
	used := 0
	for {
		fh, hl, err := wire.DecodeHeader(buf[used:])
		if err == wire.ErrIncomplete || err == nil && len(buf)-used < hl+fh.RemainingLength {
			return used, nil
		}
		if err != nil {
			return used, err
		}
		body := buf[used+hl : used+hl+fh.RemainingLength]
		used += hl + fh.RemainingLength
		if fh.Type != wire.PUBLISH {
			return used, fmt.Errorf("unexpected %s", fh.Type)
		}
		var p wire.Publish
		if err := p.Decode(fh, body); err != nil {
			return used, err
		}
		if err := fn(&p); err != nil {
			return used, err
		}
	}
}

// readAndAck reads a subscriber's stream until its connection closes,
// acknowledging QoS 1 messages, and counts them.
func readAndAck(c net.Conn, got *atomic.Int64) {
	buf := make([]byte, 16<<10)
	var acks []byte
	end := 0
	for {
		n, err := c.Read(buf[end:])
		if err != nil {
			return
		}
		end += n
		acks = acks[:0]
		used, err := scanPublishes(buf[:end], func(p *wire.Publish) error {
			got.Add(1)
			if p.QoS == 1 {
				acks = (&wire.Puback{PacketID: p.PacketID}).Append(acks)
			}
			return nil
		})
		if err != nil {
			return
		}
		end = copy(buf, buf[used:end])
		if len(acks) > 0 {
			if _, err := c.Write(acks); err != nil {
				return
			}
		}
	}
}

// readFast reads a fast subscriber's stream: every message must come at
// the subscription's QoS, and each publisher's in sequence with no gap.
// got[p] counts publisher p's messages; progress[p] is signalled when it
// grows.
func readFast(c net.Conn, qos byte, got []atomic.Int64, progress []chan struct{}) error {
	buf := make([]byte, 256<<10)
	var acks []byte
	end := 0
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // ends a test that hangs, not a slow one
		n, err := c.Read(buf[end:])
		if err != nil {
			return err
		}
		end += n
		acks = acks[:0]
		used, err := scanPublishes(buf[:end], func(p *wire.Publish) error {
			if p.QoS != qos || len(p.Payload) < 5 {
				return fmt.Errorf("got QoS %d with %d payload bytes, want QoS %d", p.QoS, len(p.Payload), qos)
			}
			pub := int(p.Payload[0])
			seq := int64(binary.BigEndian.Uint32(p.Payload[1:]))
			if pub >= len(got) {
				return fmt.Errorf("message from publisher %d", pub)
			}
			if want := got[pub].Load(); seq != want {
				return fmt.Errorf("publisher %d: got message %d, want %d", pub, seq, want)
			}
			got[pub].Add(1)
			if qos == 1 {
				acks = (&wire.Puback{PacketID: p.PacketID}).Append(acks)
			}
			return nil
		})
		if err != nil {
			return err
		}
		end = copy(buf, buf[used:end])
		for _, ch := range progress {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		if len(acks) > 0 {
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(acks); err != nil {
				return err
			}
		}
	}
}

// publishFlat publishes on stall/<p> until end, as fast as the broker takes
// the messages, staying at most prm.lead ahead of the slower fast subscriber
// (received) and, at QoS 1, within prm.window unacknowledged PUBLISHes. It
// returns how many it published; at QoS 1 it waits for all their PUBACKs.
func publishFlat(c *mqttConn, p int, qos byte, prm stallParams, end time.Time, progress, fastFailed <-chan struct{}, received func() int64) (int64, error) {
	const stuck = 30 * time.Second // no progress for this long: the publisher is held up
	topic := []byte(fmt.Sprintf("stall/%d", p))
	payload := make([]byte, prm.payload)
	payload[0] = byte(p)
	free := make(chan uint16, prm.window)
	for id := 1; id <= prm.window; id++ {
		free <- uint16(id)
	}
	var sent int64
	var acked atomic.Int64
	ackErr := make(chan error, 1)
	if qos == 1 {
		go func() {
			ackErr <- func() error {
				for {
					pk, err := c.next(time.Hour)
					if err != nil {
						return err
					}
					ack, ok := pk.(*wire.Puback)
					if !ok {
						return fmt.Errorf("publisher got %T", pk)
					}
					acked.Add(1)
					free <- ack.PacketID
				}
			}()
		}()
	}
	var batch []byte
	nextID := func() (uint16, bool) {
		if qos == 0 {
			return 0, true
		}
		select {
		case id := <-free:
			return id, true
		default:
			return 0, false
		}
	}
	for time.Now().Before(end) {
		if sent-received() >= int64(prm.lead) {
			select {
			case <-progress:
			case <-fastFailed:
				return sent, nil // the fast subscriber's error is reported
			case <-time.After(stuck):
				return sent, fmt.Errorf("held up: the fast subscribers got nothing for %v, %d sent, %d received", stuck, sent, received())
			}
			continue
		}
		id, ok := nextID()
		if !ok {
			select {
			case id = <-free:
			case err := <-ackErr:
				return sent, fmt.Errorf("after %d PUBACKs: %w", acked.Load(), err)
			case <-time.After(stuck):
				return sent, fmt.Errorf("held up: no PUBACK for %v, %d sent, %d acknowledged", stuck, sent, acked.Load())
			}
		}
		batch = batch[:0]
		for {
			binary.BigEndian.PutUint32(payload[1:], uint32(sent))
			batch = (&wire.Publish{QoS: qos, Topic: topic, PacketID: id, Payload: payload}).Append(batch)
			sent++
			if len(batch) >= 16<<10 || sent-received() >= int64(prm.lead) {
				break
			}
			if id, ok = nextID(); !ok {
				break
			}
		}
		c.nc.SetWriteDeadline(time.Now().Add(stuck))
		if _, err := c.nc.Write(batch); err != nil {
			return sent, fmt.Errorf("write after %d messages: %w", sent, err)
		}
	}
	if qos == 1 {
		deadline := time.Now().Add(stuck)
		for acked.Load() < sent {
			select {
			case err := <-ackErr:
				return sent, fmt.Errorf("%d of %d PUBACKs: %w", acked.Load(), sent, err)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return sent, fmt.Errorf("%d of %d PUBACKs after %v", acked.Load(), sent, stuck)
			}
		}
	}
	return sent, nil
}

// procStatus reads a kB field (VmRSS, VmHWM) of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// scrapeMetrics reads the broker's /metrics into name{labels} -> value.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	m := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	require.NoError(t, sc.Err())
	return m
}

func mibOf(v int64) float64 { return float64(v) / (1 << 20) }
