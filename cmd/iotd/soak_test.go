package main

// The SIGKILL soak (make soak-kill): cycles of mixed load on the real binary
// with persistence on, each ended by kill -9 at a seeded random moment and
// followed by a restart on the same data directory. After every restart:
//
//   - every QoS 1/2 message the broker acknowledged to its publisher before
//     the kill (PUBACK for QoS 1, PUBREC for QoS 2) reaches every persistent
//     subscriber, after the restart or before the kill, in publish order
//     with no gap, and no QoS 2 message twice to one QoS 2 subscription;
//   - persistent publishers resume as a real client does (same client id,
//     clean session 0: PUBLISH again with DUP=1, or PUBREL where PUBREC came)
//     and then every message they sent arrives under the same rules;
//   - each retained topic holds the last acknowledged operation on it (or a
//     later one that was sent), and after the publishers resumed exactly the
//     last one sent.
//
// The load per cycle: QoS 1 and QoS 2 publishers (clean and persistent),
// retained publishers, a QoS 0 publisher, persistent subscribers online and
// offline at QoS 1 and QoS 2, and clean-session subscribers, whose view of
// one connection must be in order, without repeats, and without gaps at
// QoS 1/2. --shards and --fsync (always, interval) change between restarts.
//
// Short by default (3 cycles, for make test). IOTD_SOAK_CYCLES=N runs N
// longer cycles; IOTD_SOAK_SEED replays the kill points and configurations
// of a run; IOTD_SOAK_MESSAGES sets the messages per publisher and cycle;
// IOTD_SOAK_SHARDS pins --shards.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

type soakConfig struct {
	cycles    int
	perStream int // QoS 1/2 messages per publisher and cycle
	seed      int64
	shards    int // 0: chosen per cycle
}

func soakConfigFromEnv(t *testing.T) soakConfig {
	t.Helper()
	cfg := soakConfig{cycles: 3, perStream: 400, seed: time.Now().UnixNano()}
	atoi := func(name string) (int64, bool) {
		v := os.Getenv(name)
		if v == "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, name)
		return n, true
	}
	if n, ok := atoi("IOTD_SOAK_CYCLES"); ok {
		require.Positive(t, n, "IOTD_SOAK_CYCLES")
		cfg.cycles, cfg.perStream = int(n), 4000
	}
	if n, ok := atoi("IOTD_SOAK_MESSAGES"); ok {
		require.GreaterOrEqual(t, n, int64(20), "IOTD_SOAK_MESSAGES")
		cfg.perStream = int(n)
	}
	if n, ok := atoi("IOTD_SOAK_SEED"); ok {
		cfg.seed = n
	}
	if n, ok := atoi("IOTD_SOAK_SHARDS"); ok {
		require.Positive(t, n, "IOTD_SOAK_SHARDS")
		cfg.shards = int(n)
	}
	return cfg
}

// violation is a broken promise seen by a soak client, as opposed to the
// connection simply ending (the kill).
type violation struct{ msg string }

func (v *violation) Error() string { return v.msg }

func violatef(format string, args ...any) error {
	return &violation{fmt.Sprintf(format, args...)}
}

// soakSub is one subscriber of the soak and everything it has seen. Its
// filters: s/1/+ and s/2/+, or s/+/+, at up to maxQoS; clean ones also z/+
// at QoS 0. Only one goroutine at a time uses it: a reader while online
// during the load, the test goroutine otherwise.
type soakSub struct {
	id     string
	clean  bool
	online bool // persistent and connected during the load
	subs   []wire.Subscription
	maxQoS byte // deliveries of s/<q>/... come at min(q, maxQoS)
	// resent: per stream, the sequence numbers its publisher published
	// again after a restart; only those may come twice at QoS 1 without
	// DUP (the broker sees a new PUBLISH). Written between kill and restart.
	resent map[string]map[int]bool

	c    *mqttConn
	next map[string]int    // per stream: next sequence number expected
	qos2 map[uint16]string // QoS 2 ids PUBREC'd, PUBREL not yet come: the message
	got  int               // deliveries, repeats included
	done chan struct{}     // closed when the online reader ended
	err  error             // the online reader's violation
	// ended is when the online reader saw its connection end, and why:
	// before the kill, the broker dropped a subscriber it must keep.
	ended  time.Time
	endErr error
}

func newSoakSub(id string, clean, online bool, maxQoS byte, resent map[string]map[int]bool, subs ...wire.Subscription) *soakSub {
	return &soakSub{id: id, clean: clean, online: online, subs: subs, maxQoS: maxQoS, resent: resent,
		next: map[string]int{}, qos2: map[uint16]string{}}
}

// connect opens the subscriber's session; a persistent one must find its
// session exactly when it had one.
func (s *soakSub) connect(addr string, sessionExpected bool) error {
	c, ack, err := dialMQTT(addr, s.id, s.clean)
	if err != nil {
		return err
	}
	if !s.clean && ack.SessionPresent != sessionExpected {
		c.close()
		return violatef("%s: CONNACK session present %v, expected %v", s.id, ack.SessionPresent, sessionExpected)
	}
	s.c = c
	return nil
}

// account checks one PUBLISH. It reports false for a QoS 2 message whose
// packet id the subscriber still holds: the same message again, not a new
// delivery [MQTT-4.3.3-2].
func (s *soakSub) account(pk *wire.Publish) (bool, error) {
	name, seq, ok := parsePayload(pk.Payload)
	if !ok {
		return false, violatef("%s: payload %q on %s", s.id, pk.Payload, pk.Topic)
	}
	msg := fmt.Sprintf("%s %d", name, seq)
	topic := string(pk.Topic)
	var want byte
	switch {
	case strings.HasPrefix(topic, "z/"):
		want = 0
	case strings.HasPrefix(topic, "s/1/"):
		want = min(1, s.maxQoS)
	case strings.HasPrefix(topic, "s/2/"):
		want = min(2, s.maxQoS)
	default:
		return false, violatef("%s: message %s on %s, which none of its filters matches", s.id, msg, topic)
	}
	if !strings.HasSuffix(topic, "/"+name) {
		return false, violatef("%s: message %s on %s, not its publisher's topic", s.id, msg, topic)
	}
	if pk.QoS != want {
		return false, violatef("%s: %s delivered at QoS %d, want %d", s.id, msg, pk.QoS, want)
	}
	if pk.Retain {
		return false, violatef("%s: live message %s with RETAIN set", s.id, msg)
	}
	if pk.QoS == 2 {
		if held, ok := s.qos2[pk.PacketID]; ok {
			if !pk.Dup || held != msg {
				return false, violatef("%s: QoS 2 packet id %d holds %s (PUBREC sent, no PUBREL yet) but came again with %s, DUP=%v", s.id, pk.PacketID, held, msg, pk.Dup)
			}
			return false, nil
		}
		s.qos2[pk.PacketID] = msg
	}
	s.got++
	expected := s.next[name]
	switch {
	case seq == expected:
		s.next[name] = seq + 1
	case pk.QoS == 0 && seq > expected:
		s.next[name] = seq + 1 // QoS 0 may be dropped, never repeated or reordered
	case seq > expected:
		return false, violatef("%s: QoS %d %s while %d was next: an acknowledged message lost, or out of order", s.id, pk.QoS, msg, expected)
	case pk.QoS == 2:
		return false, violatef("%s: QoS 2 duplicate: %s delivered again with packet id %d (DUP=%v; next expected %d)", s.id, msg, pk.PacketID, pk.Dup, expected)
	case pk.QoS == 0 || s.clean:
		return false, violatef("%s: %s again or out of order at QoS %d within one clean session (next expected %d)", s.id, msg, pk.QoS, expected)
	case !pk.Dup && !s.resent[name][seq]:
		return false, violatef("%s: QoS 1 repeat of %s without DUP=1, and its publisher did not resend it", s.id, msg)
	}
	return true, nil
}

// handle processes one packet and queues the reply that completes its flow;
// violations are *violation, other errors are the connection's.
func (s *soakSub) handle(pk wire.Packet) error {
	switch pk := pk.(type) {
	case *wire.Publish:
		if _, err := s.account(pk); err != nil {
			return err
		}
		switch pk.QoS {
		case 1:
			return s.c.send(&wire.Puback{PacketID: pk.PacketID}, false)
		case 2:
			return s.c.send(&wire.Pubrec{PacketID: pk.PacketID}, false)
		}
	case *wire.Pubrel:
		delete(s.qos2, pk.PacketID) // an id not held: our PUBCOMP was lost, complete again
		return s.c.send(&wire.Pubcomp{PacketID: pk.PacketID}, false)
	case *wire.Pingresp:
	default:
		return violatef("%s: unexpected %T", s.id, pk)
	}
	return nil
}

// readOnline consumes deliveries on its own goroutine until the connection
// ends (the kill) or a violation, which it keeps in s.err.
func (s *soakSub) readOnline() {
	s.done = make(chan struct{})
	s.err, s.endErr = nil, nil
	go func() {
		defer close(s.done)
		defer s.c.close()
		for {
			if s.c.rd.Buffered() == 0 {
				if err := s.c.flush(); err != nil {
					s.ended, s.endErr = time.Now(), err
					return
				}
			}
			pk, err := s.c.next(time.Minute)
			if err != nil {
				if isTimeout(err) {
					s.err = violatef("%s: nothing arrived for a minute while online", s.id)
				}
				s.ended, s.endErr = time.Now(), err
				return
			}
			if err := s.handle(pk); err != nil {
				var v *violation
				if errors.As(err, &v) {
					s.err = err
				}
				s.ended, s.endErr = time.Now(), err
				return
			}
		}
	}()
}

// drain reads until want[stream] messages of every stream have arrived, no
// QoS 2 flow is open and nothing more came for quiet. It fails when nothing
// arrives for stall while something is missing, or after limit.
func (s *soakSub) drain(want map[string]int, quiet, stall, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	progress := time.Now()
	complete := func() bool {
		for name, n := range want {
			if s.next[name] < n {
				return false
			}
		}
		return len(s.qos2) == 0
	}
	for {
		wait := time.Second
		if complete() {
			wait = quiet
		}
		if s.c.rd.Buffered() == 0 {
			if err := s.c.flush(); err != nil {
				return fmt.Errorf("%s: %w", s.id, err)
			}
		}
		pk, err := s.c.next(wait)
		if err != nil {
			if !isTimeout(err) {
				return fmt.Errorf("%s: connection ended while draining: %w", s.id, err)
			}
			if complete() {
				return nil
			}
			if now := time.Now(); now.After(deadline) || now.Sub(progress) > stall {
				var missing []string
				for _, name := range slices.Sorted(maps.Keys(want)) {
					if s.next[name] < want[name] {
						missing = append(missing, fmt.Sprintf("%s: %d of %d", name, s.next[name], want[name]))
					}
				}
				return violatef("%s: nothing more for %v (draining for %v): missing acknowledged messages (%s) or QoS 2 flows (%d open)", s.id, now.Sub(progress).Round(time.Second), limit-deadline.Sub(now).Round(time.Second), strings.Join(missing, ", "), len(s.qos2))
			}
			continue
		}
		progress = time.Now()
		if err := s.handle(pk); err != nil {
			return err
		}
	}
}

// publishQoS0 sends up to count QoS 0 messages "<name> <seq>" on z/<name>,
// paced in small bursts, until the connection breaks (the kill).
func publishQoS0(addr, name string, count int) int {
	c, _, err := dialMQTT(addr, name, true)
	if err != nil {
		return 0
	}
	defer c.close()
	topic := []byte("z/" + name)
	for seq := range count {
		burstEnd := seq%32 == 31
		if c.send(&wire.Publish{Topic: topic, Payload: []byte(name + " " + strconv.Itoa(seq))}, burstEnd) != nil {
			return seq
		}
		if burstEnd {
			time.Sleep(2 * time.Millisecond)
		}
	}
	c.flush()
	return count
}

// killWhen SIGKILLs the broker once n acknowledgements have arrived (or the
// publishers finished) and waits for every publisher to notice. It returns
// the acknowledgement count and the moment just before the signal.
func killWhen(t *testing.T, r *pubRun, b *iotdProc, n int64) (int64, time.Time) {
	t.Helper()
	r.waitAcks(t, n, 2*time.Minute)
	at, when := r.acks.Load(), time.Now()
	b.kill9(t)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishers did not stop within 30s of the kill")
	}
	return at, when
}

// streamState is what one publisher's record says at the kill.
type streamState struct {
	acked  int          // leading sequence numbers acknowledged before the kill
	issued int          // sequence numbers handed to the connection: sent, or open
	resent map[int]bool // persistent publishers: PUBLISHed again with DUP after the restart
	flows  int          // open flows at the kill
}

// stateAtKill reads a publisher's record once its connection has ended.
func stateAtKill(t *testing.T, p *pubStream) streamState {
	t.Helper()
	st := streamState{acked: p.ackedPrefix(t), resent: map[int]bool{}}
	p.mu.Lock()
	defer p.mu.Unlock()
	st.issued = p.sent
	for _, m := range p.open {
		st.issued = max(st.issued, m.seq+1) // a send that failed at the kill is open too
		if !m.released && p.persistent {
			st.resent[m.seq] = true
		}
	}
	st.flows = len(p.open)
	return st
}

// TestSoakKill9 is the SIGKILL soak; see the top of this file.
func TestSoakKill9(t *testing.T) {
	cfg := soakConfigFromEnv(t)
	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 0))
	t.Logf("soak: seed %d (IOTD_SOAK_SEED=%d replays the kill points and configurations), %d cycles, %d messages per QoS 1/2 publisher", cfg.seed, cfg.seed, cfg.cycles, cfg.perStream)
	bin := buildIotd(t)
	dir := t.TempDir()
	const (
		window    = 32
		rtTopics  = 20 // per retained publisher
		quiet     = 300 * time.Millisecond
		stall     = 20 * time.Second
		drainTime = 5 * time.Minute
	)
	argsFor := func() []string {
		shards := 4
		if rng.IntN(4) == 0 {
			shards = 2 + rng.IntN(4)
		}
		if cfg.shards > 0 {
			shards = cfg.shards
		}
		fsync := "always"
		if rng.IntN(3) == 0 {
			fsync = "interval:100ms"
		}
		return []string{"--shards", strconv.Itoa(shards), "--fsync", fsync, "--max-queued-messages", "1000000"}
	}

	resent := map[string]map[int]bool{}
	persistentSubs := []*soakSub{
		newSoakSub("soak-online-1", false, true, 2, resent, wire.Subscription{Filter: "s/1/+", QoS: 1}, wire.Subscription{Filter: "s/2/+", QoS: 2}),
		newSoakSub("soak-online-2", false, true, 2, resent, wire.Subscription{Filter: "s/+/+", QoS: 2}),
		newSoakSub("soak-offline-1", false, false, 2, resent, wire.Subscription{Filter: "s/1/+", QoS: 1}, wire.Subscription{Filter: "s/2/+", QoS: 2}),
		newSoakSub("soak-offline-2", false, false, 1, resent, wire.Subscription{Filter: "s/+/+", QoS: 1}),
	}

	args := argsFor()
	t.Logf("cycle 0: iotd %s", strings.Join(args, " "))
	b := startBroker(t, bin, dir, args...)
	for _, s := range persistentSubs {
		require.NoError(t, s.connect(b.addr, false))
		s.c.subscribe(t, s.subs...)
		if s.online {
			s.readOnline()
		} else {
			s.c.disconnect(t)
		}
	}
	retainedState := map[string]string{} // payload by topic, as last read

	for cycle := range cfg.cycles {
		where := fmt.Sprintf("cycle %d (seed %d)", cycle, cfg.seed)

		// This cycle's publishers: QoS 1 (two clean, one persistent), QoS 2
		// (one clean, two persistent), retained at QoS 1 and 2 (persistent),
		// and one QoS 0.
		var pubs, streams, retained []*pubStream
		for _, spec := range []struct {
			qos        byte
			persistent bool
		}{{1, false}, {1, false}, {1, true}, {2, false}, {2, true}, {2, true}} {
			kind := "c"
			if spec.persistent {
				kind = "p"
			}
			name := fmt.Sprintf("c%dq%d%s%d", cycle, spec.qos, kind, len(streams))
			p := &pubStream{name: name, topic: fmt.Sprintf("s/%d/%s", spec.qos, name), qos: spec.qos, count: cfg.perStream, persistent: spec.persistent}
			streams = append(streams, p)
		}
		for i := range 2 {
			name := fmt.Sprintf("c%dr%d", cycle, i)
			retained = append(retained, &pubStream{
				name: name, qos: byte(1 + i), retain: true, count: cfg.perStream / 2, persistent: true,
				topicFor: func(seq int) string { return fmt.Sprintf("rt/p%d/%d", i, seq%rtTopics) },
				payloadFor: func(seq int) []byte {
					if (seq/rtTopics)%3 == 2 {
						return nil // every third operation on a topic deletes it
					}
					return []byte(name + " " + strconv.Itoa(seq))
				},
			})
		}
		pubs = append(append(pubs, streams...), retained...)
		var total int64
		for _, p := range pubs {
			total += int64(p.count)
		}
		killAt := 1 + rng.Int64N(total*19/20)

		cleanSubs := []*soakSub{
			newSoakSub(fmt.Sprintf("c%d-clean-1", cycle), true, false, 2, resent, wire.Subscription{Filter: "s/+/+", QoS: 2}, wire.Subscription{Filter: "z/+", QoS: 0}),
			newSoakSub(fmt.Sprintf("c%d-clean-2", cycle), true, false, 1, resent, wire.Subscription{Filter: "s/1/+", QoS: 1}, wire.Subscription{Filter: "s/2/+", QoS: 1}, wire.Subscription{Filter: "z/+", QoS: 0}),
		}
		for _, s := range cleanSubs {
			require.NoError(t, s.connect(b.addr, false), where)
			s.c.subscribe(t, s.subs...)
			s.readOnline()
		}

		// Load, then the kill.
		start := time.Now()
		run := startPublishers(b.addr, pubs, window)
		q0name := fmt.Sprintf("c%dq0", cycle)
		q0sent := make(chan int, 1)
		go func() { q0sent <- publishQoS0(b.addr, q0name, 20*cfg.perStream) }()
		at, killTime := killWhen(t, run, b, killAt)
		loadTime := killTime.Sub(start)
		online := append(slices.Clone(cleanSubs), persistentSubs[:2]...)
		for _, s := range online {
			select {
			case <-s.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: subscriber %s still reading 30s after the kill", where, s.id)
			}
			require.NoError(t, s.err, where)
			require.False(t, s.ended.Before(killTime), "%s: subscriber %s lost its connection %v before the kill: %v", where, s.id, killTime.Sub(s.ended), s.endErr)
		}
		nq0 := <-q0sent

		state := map[*pubStream]streamState{}
		var ackedQ1, ackedQ2, ackedRt, issued, flows int
		for _, p := range pubs {
			st := stateAtKill(t, p)
			state[p] = st
			issued += st.issued
			switch {
			case p.retain:
				ackedRt += st.acked
			case p.qos == 1:
				ackedQ1 += st.acked
			default:
				ackedQ2 += st.acked
			}
			resent[p.name] = st.resent
			if p.persistent {
				flows += st.flows
			}
		}
		before := map[*soakSub]int{}
		for _, s := range persistentSubs {
			for _, p := range streams {
				before[s] += s.next[p.name]
			}
		}
		var cleanGot []string
		for _, s := range cleanSubs {
			cleanGot = append(cleanGot, fmt.Sprintf("%s %d", s.id, s.got))
		}

		// Restart on the same data directory, with the next configuration.
		args = argsFor()
		restartStart := time.Now()
		b = startBroker(t, bin, dir, args...)
		restartTime := time.Since(restartStart)

		// Retained: the last acknowledged operation on each topic, or a
		// later one that was sent.
		rtAllowed := map[string]map[string]bool{}
		for i, p := range retained {
			st := state[p]
			for k := range rtTopics {
				topic := fmt.Sprintf("rt/p%d/%d", i, k)
				ok := map[string]bool{}
				lastAcked := -1
				for seq := k; seq < st.acked; seq += rtTopics {
					lastAcked = seq
				}
				if lastAcked < 0 {
					ok[retainedState[topic]] = true
				}
				for seq := max(lastAcked, k); seq < st.issued; seq += rtTopics {
					ok[string(p.payloadFor(seq))] = true
				}
				rtAllowed[topic] = ok
			}
		}
		afterRestart := readRetained(t, b.addr, "rt/#")
		for topic, ok := range rtAllowed {
			require.True(t, ok[afterRestart[topic]], "%s: after the restart retained %s holds %q; allowed (last acknowledged operation or a later one sent): %v", where, topic, afterRestart[topic], slices.Collect(maps.Keys(ok)))
		}
		for topic := range afterRestart {
			require.Contains(t, rtAllowed, topic, "%s: a retained message on a topic never published", where)
		}

		// Persistent publishers resume every open flow, like a real client.
		for i, p := range pubs {
			if p.persistent {
				p.resume(t, b.addr, fmt.Sprintf("%s-c%d", p.name, i))
			}
		}

		// Now every retained operation a persistent publisher sent is
		// acknowledged: each of its topics holds the last one. A clean
		// publisher's topics stay as the restart left them.
		got := readRetained(t, b.addr, "rt/#")
		for i, p := range retained {
			for k := range rtTopics {
				topic := fmt.Sprintf("rt/p%d/%d", i, k)
				if !p.persistent {
					require.Equal(t, afterRestart[topic], got[topic], "%s: retained %s changed with no publisher on it", where, topic)
					continue
				}
				want, last := retainedState[topic], -1
				for seq := k; seq < state[p].issued; seq += rtTopics {
					want, last = string(p.payloadFor(seq)), seq
				}
				require.Equal(t, want, got[topic], "%s: after the publishers resumed, retained %s must hold the last operation sent on it (%s %d: QoS %d, acknowledged before the kill %v, published again with DUP after the restart %v)",
					where, topic, p.name, last, p.qos, last >= 0 && last < state[p].acked, state[p].resent[last])
			}
		}
		for topic := range got {
			require.Contains(t, rtAllowed, topic, "%s: a retained message on a topic never published", where)
		}
		retainedState = got

		// Persistent subscribers come back and get everything: what was
		// acknowledged before the kill, and for resumed publishers all
		// they sent.
		want := map[string]int{}
		for _, p := range streams {
			if p.persistent {
				want[p.name] = state[p].issued
			} else {
				want[p.name] = state[p].acked
			}
		}
		errs := make([]error, len(persistentSubs))
		var wg sync.WaitGroup
		for i, s := range persistentSubs {
			s.got = 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				if errs[i] = s.connect(b.addr, true); errs[i] == nil {
					errs[i] = s.drain(want, quiet, stall, drainTime)
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			// What each publisher's record says about its messages.
			var streamsAt []string
			for _, p := range streams {
				st := state[p]
				resend := "clean session, nothing resent"
				if p.persistent {
					resend = fmt.Sprintf("published again with DUP after the restart: %v, PUBREL only: %d", slices.Sorted(maps.Keys(st.resent)), st.flows-len(st.resent))
				}
				streamsAt = append(streamsAt, fmt.Sprintf("%s (QoS %d): acknowledged before the kill %d, sent %d, %s", p.name, p.qos, st.acked, st.issued, resend))
			}
			t.Fatalf("%s: %v\npublishers: %s", where, err, strings.Join(streamsAt, "; "))
		}
		var delivered []string
		for _, s := range persistentSubs {
			total := 0
			for _, p := range streams {
				require.LessOrEqual(t, s.next[p.name], state[p].issued, "%s: %s got %s messages that were never sent", where, s.id, p.name)
				total += s.next[p.name]
			}
			delivered = append(delivered, fmt.Sprintf("%s %d (%d before the kill, %d deliveries after)", s.id, total, before[s], s.got))
			if s.online && cycle < cfg.cycles-1 {
				s.readOnline()
			} else {
				s.c.disconnect(t)
			}
		}
		wantTotal := 0
		for _, n := range want {
			wantTotal += n
		}
		t.Logf("%s: killed after %v at %d of %d acknowledgements (target %d); acknowledged QoS 1 %d, QoS 2 %d, retained %d; %d issued; %d QoS 0 sent; restart %v with %s; %d open flows resumed; %d messages due to each persistent subscriber: %s; clean subscribers before the kill: %s; retained %d topics as expected",
			where, loadTime.Round(time.Millisecond), at, total, killAt, ackedQ1, ackedQ2, ackedRt, issued, nq0, restartTime.Round(time.Millisecond), strings.Join(args, " "), flows, wantTotal, strings.Join(delivered, ", "), strings.Join(cleanGot, ", "), len(got))
	}
	b.terminate(t)
}
