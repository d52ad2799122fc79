package shard

// Held QoS 2 messages after a crash: the data directory is written as a
// SIGKILL can leave it (the publisher's shard logged the held message, the
// other logs had or had not committed its delivery), then a broker starts on
// it. Every case must end with the message delivered exactly once and the
// retained store at the newest acknowledged value.

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"

	"iotd/wal"
	"iotd/wire"
)

// heldCrash describes the data directory a crash left.
type heldCrash struct {
	shards    int
	delivered bool // the subscriber's shard committed the delivery (and marked it)
	retain    bool // the held message is retained
	retained  bool // the retained log committed it (and marked it), then a newer value
}

const heldPacketID = 7

// idsOnDifferentShards returns a publisher and a subscriber client id that
// hash to different shards of n.
func idsOnDifferentShards(n int) (pub, sub string) {
	shardOf := func(id string) int { return int(xxhash.Sum64String(id) % uint64(n)) }
	pub = "held-pub"
	for i := 0; ; i++ {
		sub = "held-sub-" + strconv.Itoa(i)
		if shardOf(sub) != shardOf(pub) {
			return pub, sub
		}
	}
}

// writeHeldCrash writes dir as a crash left it and returns the client ids.
func writeHeldCrash(t *testing.T, dir string, c heldCrash) (pub, sub string) {
	t.Helper()
	pub, sub = idsOnDifferentShards(c.shards)
	shardOf := func(id string) int { return int(xxhash.Sum64String(id) % uint64(c.shards)) }
	require.NoError(t, wal.WriteManifest(dir, wal.Manifest{Version: wal.ManifestVersion, Shards: c.shards, Hash: manifestHash}))
	msg := newMessage([]byte("h/x"), []byte("held"), 2, c.retain)

	pp, err := openPersister(shardDir(dir, c.shards, shardOf(pub)), wal.Options{}, 0)
	require.NoError(t, err)
	pp.clientRecord(recSession, pub)
	seq := pp.holdMessage(pub, heldPacketID, msg)
	require.NoError(t, pp.commit())
	require.NoError(t, pp.close())
	o := origin{shard: shardOf(pub), seq: seq}

	sp, err := openPersister(shardDir(dir, c.shards, shardOf(sub)), wal.Options{}, 0)
	require.NoError(t, err)
	sp.clientRecord(recSession, sub)
	sp.sub(sub, "h/#", 2)
	if c.delivered {
		sp.enqueue(sub, msg, 2, false)
		sp.originMark(o)
	}
	require.NoError(t, sp.commit())
	require.NoError(t, sp.close())

	rl, err := openRetainLog(filepath.Join(dir, "retained"), wal.Options{}, 0)
	require.NoError(t, err)
	rl.apply(retainOp{topic: []byte("h/other"), msg: newMessage([]byte("h/other"), []byte("o"), 1, true)})
	if c.retained {
		rl.apply(retainOp{topic: msg.Topic, msg: msg, origin: o})
		rl.apply(retainOp{topic: msg.Topic, msg: newMessage(msg.Topic, []byte("newer"), 1, true)})
	}
	require.NoError(t, rl.commit())
	require.NoError(t, rl.close())
	return pub, sub
}

// finishPublisherFlow resumes the publisher's session: its DUP resend is
// acknowledged without being routed again [MQTT-4.3.3-2], then released.
func finishPublisherFlow(t *testing.T, b *durableBroker, pub string) {
	t.Helper()
	c, ack := b.connect(t, pub, false)
	require.True(t, ack.SessionPresent)
	c.send(&wire.Publish{Dup: true, QoS: 2, Topic: []byte("h/x"), PacketID: heldPacketID, Payload: []byte("held")})
	require.Equal(t, uint16(heldPacketID), c.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	c.send(&wire.Pubrel{PacketID: heldPacketID})
	require.Equal(t, uint16(heldPacketID), c.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
	c.disconnect()
}

func TestHeldQoS2AfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		crash    heldCrash
		restart  int // shard count of the restarted broker
		retained string
	}{
		{"not delivered", heldCrash{shards: 2}, 2, ""},
		{"delivered", heldCrash{shards: 2, delivered: true}, 2, ""},
		{"retained not applied", heldCrash{shards: 2, retain: true}, 2, "held"},
		{"retained applied then replaced", heldCrash{shards: 2, delivered: true, retain: true, retained: true}, 2, "newer"},
		{"not delivered, re-sharded", heldCrash{shards: 2, retain: true}, 3, "held"},
		{"delivered, re-sharded", heldCrash{shards: 2, delivered: true, retain: true, retained: true}, 3, "newer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pub, sub := writeHeldCrash(t, dir, tc.crash)
			cfg := Config{DataDir: dir, Shards: tc.restart}
			b := startDurable(t, cfg)

			s, ack := b.connect(t, sub, false)
			require.True(t, ack.SessionPresent)
			p := s.expectMessage("h/x", "held") // exactly once: never lost [MQTT-4.3.3-2]
			require.Equal(t, byte(2), p.QoS)
			finishPublisherFlow(t, b, pub)
			s.expectSilence(300 * time.Millisecond) // and never twice
			s.disconnect()
			require.Eventually(t, func() bool { return b.Stats().Held == 0 }, 10*time.Second, 5*time.Millisecond)
			checkRetained(t, b, tc.retained)
			b.stop()

			// Once every log had it, the next restart routes nothing.
			b = startDurable(t, cfg)
			s, _ = b.connect(t, sub, false)
			s.expectSilence(300 * time.Millisecond)
			s.disconnect()
			checkRetained(t, b, tc.retained)
			b.stop()
			require.Zero(t, unroutedOnDisk(t, dir), "held messages still to route")
		})
	}
}

func checkRetained(t *testing.T, b *durableBroker, want string) {
	t.Helper()
	m, ok := b.retained.Get("h/x")
	if want == "" {
		require.False(t, ok, "no retained message on h/x")
		return
	}
	require.True(t, ok, "retained message on h/x")
	require.Equal(t, want, string(m.Payload))
	other, ok := b.retained.Get("h/other")
	require.True(t, ok)
	require.Equal(t, "o", string(other.Payload))
}

// TestHeldQoS2LiveFlow: QoS 2 messages of a persistent publisher reach a
// subscriber on another shard in order, and each is logged as routed, so a
// restart delivers nothing again.
func TestHeldQoS2LiveFlow(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Shards: 2}
	b := startDurable(t, cfg)
	pub, sub := idsOnDifferentShards(2)
	s, _ := b.connect(t, sub, false)
	// QoS 1 downstream: the harness acknowledges one message at a time.
	require.Equal(t, byte(1), s.subscribe(1, wire.Subscription{Filter: "h/#", QoS: 1}).ReturnCodes[0])
	p, _ := b.connect(t, pub, false)
	for i := range 50 {
		id := uint16(i + 1)
		p.publish("h/x", "m"+strconv.Itoa(i), 2, i%10 == 0, id)
		require.Equal(t, id, p.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
		p.send(&wire.Pubrel{PacketID: id})
		require.Equal(t, id, p.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
	}
	for i := range 50 {
		s.expectMessage("h/x", "m"+strconv.Itoa(i))
	}
	p.disconnect()
	s.disconnect()
	require.Eventually(t, func() bool { return b.Stats().Held == 0 }, 10*time.Second, 5*time.Millisecond, "held messages still being routed")
	b.stop()
	require.Zero(t, unroutedOnDisk(t, dir), "every held message is logged as routed")
	b = startDurable(t, cfg)
	s, _ = b.connect(t, sub, false)
	s.expectSilence(300 * time.Millisecond)
}

// unroutedOnDisk counts the held messages a stopped broker's logs still
// have to route.
func unroutedOnDisk(t *testing.T, dir string) int {
	t.Helper()
	m, err := wal.ReadManifest(dir)
	require.NoError(t, err)
	n := 0
	for i := range m.Shards {
		p, err := openPersister(shardDir(dir, m.Shards, i), wal.Options{}, 0)
		require.NoError(t, err)
		st, err := p.load()
		require.NoError(t, p.close())
		require.NoError(t, err)
		n += len(st.unrouted)
	}
	return n
}
