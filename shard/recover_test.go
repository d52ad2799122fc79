package shard

// Shard-level recovery: the record codec, replay over many segments,
// snapshot and truncation, every kind of damage to the data directory, the
// re-distribution of sessions to another shard count, and the retained log.
// The wal package tests its own layer; these tests go through openPersister,
// shard.New and the MQTT protocol.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"

	"iotd/internal/syncbuf"
	"iotd/wal"
	"iotd/wire"
)

// durableBroker is a persistent broker the test can stop and start again
// on the same data directory.
type durableBroker struct {
	*testBroker
	stop func()
}

// startDurable runs a broker with persistence on cfg.DataDir.
func startDurable(t *testing.T, cfg Config) *durableBroker {
	t.Helper()
	cfg.Persistence = true
	require.NotEmpty(t, cfg.DataDir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tb, stop := serveOn(t, cfg, ln, ListenerOptions{})
	return &durableBroker{testBroker: tb, stop: stop}
}

// loadDir reads a stopped broker's data directory the way startup does and
// returns every persistent session, checking that each lives in the shard
// its client id hashes to.
func loadDir(t *testing.T, dir string) map[string]sessionView {
	t.Helper()
	m, err := wal.ReadManifest(dir)
	require.NoError(t, err)
	out := map[string]sessionView{}
	for i := range m.Shards {
		p, err := openPersister(shardDir(dir, m.Shards, i), wal.Options{}, 0)
		require.NoError(t, err)
		st, err := p.load()
		require.NoError(t, p.close())
		require.NoError(t, err)
		for id, s := range st.sessions {
			require.Equal(t, i, int(xxhash.Sum64String(id)%uint64(m.Shards)), "session %s is in shard %d of %d", id, i, m.Shards)
			out[id] = viewOf(s)
		}
	}
	return out
}

type rawRecord struct {
	typ     byte
	payload []byte
}

// readRecords returns every record of the log in dir.
func readRecords(t *testing.T, dir string) []rawRecord {
	t.Helper()
	p, err := openPersister(dir, wal.Options{}, 0)
	require.NoError(t, err)
	defer p.close()
	var recs []rawRecord
	require.NoError(t, p.log.Replay(0, func(_ uint64, typ byte, payload []byte) error {
		recs = append(recs, rawRecord{typ, slices.Clone(payload)})
		return nil
	}))
	return recs
}

func TestMessageCodecRoundTrip(t *testing.T) {
	for _, m := range []*Message{
		newMessage([]byte("a/b"), []byte("payload"), 1, false),
		newMessage([]byte("r"), nil, 2, true),
		newMessage([]byte("bin/\u00fc/\x7f"), []byte{0, 0xff, 0, 1}, 0, true),
		newMessage([]byte("big"), bytes.Repeat([]byte{0xab}, 70_000), 1, false), // 3-byte length
	} {
		var e wal.Encoder
		encodeMessage(&e, m)
		d := wal.NewDecoder(e.B)
		got := decodeMessage(&d)
		require.NoError(t, d.Err())
		require.Zero(t, d.Len(), "the whole encoding is read")
		require.Equal(t, string(m.Topic), string(got.Topic))
		require.Equal(t, string(m.Payload), string(got.Payload))
		require.Equal(t, m.QoS, got.QoS)
		require.Equal(t, m.Retain, got.Retain)
		for n := range len(e.B) {
			if n > 300 && n < len(e.B)-5 {
				continue // the long payload's middle adds nothing
			}
			d := wal.NewDecoder(e.B[:n])
			decodeMessage(&d)
			require.Error(t, d.Err(), "a message cut to %d of %d bytes", n, len(e.B))
		}
	}
}

// TestRecordCodecEveryType writes every record type through the
// persister, reads the records back from the log, and replays them; each
// record cut short anywhere is an error, never a panic or a silent change.
func TestRecordCodecEveryType(t *testing.T) {
	dir := t.TempDir()
	p, err := openPersister(dir, wal.Options{}, 0)
	require.NoError(t, err)
	msg := newMessage([]byte("a/\u00fc"), []byte{0, 1, 0xff}, 2, true)
	empty := newMessage([]byte("e"), nil, 1, false)
	p.clientRecord(recSession, "c")
	p.sub("c", "a/+/#", 2)
	p.unsub("c", "a/+/#")
	p.sub("c", "x", 1)
	p.enqueue("c", msg, 2, true)
	p.enqueue("c", empty, 1, false)
	p.idRecord(recSend, "c", 65535)
	p.idRecord(recRelease, "c", 65535)
	p.idRecord(recSend, "c", 1)
	p.idRecord(recAck, "c", 1)
	p.idRecord(recInHold, "c", 300)
	p.idRecord(recInHold, "c", 301)
	p.idRecord(recInRelease, "c", 300)
	held := newMessage([]byte("q"), []byte("held"), 2, true)
	require.Equal(t, uint64(3), p.holdMessage("c", 400, held))
	p.routed(p.holdMessage("c", 401, empty))
	p.originMark(origin{shard: 2, seq: 9})
	p.clientRecord(recSession, "gone")
	p.clientRecord(recSessionDel, "gone")
	require.NoError(t, p.commit())
	require.NoError(t, p.close())

	recs := readRecords(t, dir)
	types := map[byte]bool{}
	for _, r := range recs {
		types[r.typ] = true
	}
	for typ := recSession; typ <= recOrigin; typ++ {
		require.True(t, types[typ], "record type %d written", typ)
	}

	replay := func(n int) (*durableState, map[uint64]*Message) {
		st := newDurableState()
		msgs := map[uint64]*Message{}
		for _, r := range recs[:n] {
			require.NoError(t, applyRecord(st, msgs, r.typ, r.payload))
		}
		return st, msgs
	}
	st, _ := replay(len(recs))
	require.Len(t, st.sessions, 1)
	require.Equal(t, sessionView{
		Subs:     map[string]byte{"x": 1},
		Inflight: []string{"a/\u00fc|\x00\x01\xff|2TT#" + string(rune(65535))},
		Inbound:  map[uint16]struct{}{301: {}, 400: {}, 401: {}},
	}, viewOf(st.sessions["c"]))
	require.Equal(t, uint64(4), st.seq, "message sequence numbers, held messages included")
	require.Len(t, st.unrouted, 1, "the routed held message is forgotten")
	require.Equal(t, "held", string(st.unrouted[3].Payload))
	require.True(t, st.unrouted[3].Retain)
	require.Equal(t, originMarks{0, 0, 9}, st.marks)

	for i, r := range recs {
		for n := range len(r.payload) {
			st, msgs := replay(i)
			require.Error(t, applyRecord(st, msgs, r.typ, r.payload[:n]), "record %d (type %d) cut to %d of %d bytes", i, r.typ, n, len(r.payload))
		}
	}
}

// TestReplayAcrossSegments replays thousands of records from many small
// segment files, interleaved commits included, onto exactly the state they
// describe.
func TestReplayAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	opts := wal.Options{SegmentSize: 2048}
	p, err := openPersister(dir, opts, 0)
	require.NoError(t, err)
	type model struct {
		queue    []string
		inflight []string
		nextID   uint16
	}
	ids := []string{"a", "b", "c"}
	models := map[string]*model{}
	for _, id := range ids {
		p.clientRecord(recSession, id)
		p.sub(id, "t/#", 1)
		models[id] = &model{}
	}
	for i := range 3000 {
		id := ids[i%3]
		m := models[id]
		payload := strconv.Itoa(i)
		p.enqueue(id, newMessage([]byte("t/x"), []byte(payload), 1, false), 1, false)
		m.queue = append(m.queue, "t/x|"+payload+"|1F")
		if i%2 == 0 {
			m.nextID++
			p.idRecord(recSend, id, m.nextID)
			m.inflight = append(m.inflight, m.queue[0]+"F#"+string(rune(m.nextID)))
			m.queue = m.queue[1:]
		}
		if i%5 == 0 && len(m.inflight) > 0 {
			oldest := []rune(m.inflight[0])
			p.idRecord(recAck, id, uint16(oldest[len(oldest)-1]))
			m.inflight = m.inflight[1:]
		}
		if i%37 == 0 {
			require.NoError(t, p.commit())
		}
	}
	require.NoError(t, p.commit())
	require.NoError(t, p.close())
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "0*"))
	require.NoError(t, err)
	require.Greater(t, len(segs), 20, "the log spans many segments")

	p, err = openPersister(dir, opts, 0)
	require.NoError(t, err)
	defer p.close()
	st, err := p.load()
	require.NoError(t, err)
	require.Len(t, st.sessions, 3)
	for _, id := range ids {
		require.Equal(t, sessionView{Subs: map[string]byte{"t/#": 1}, Inflight: models[id].inflight, Queue: models[id].queue, Inbound: map[uint16]struct{}{}},
			viewOf(st.sessions[id]), "session %s", id)
	}
}

// publishWindow publishes n QoS 1 messages on topic through c, up to 100
// unacknowledged, and returns once every PUBACK arrived.
func publishWindow(t *testing.T, c *rawClient, topic string, retain bool, n int, payload func(i int) string) {
	t.Helper()
	for start := 0; start < n; start += 100 {
		end := min(start+100, n)
		for i := start; i < end; i++ {
			c.publish(topic, payload(i), 1, retain, uint16(i-start+1))
		}
		for i := start; i < end; i++ {
			require.Equal(t, uint16(i-start+1), c.expect(wire.PUBACK).(*wire.Puback).PacketID)
		}
	}
}

// receiveInOrder reads n QoS 1 messages with payloads want(0..n-1) and
// acknowledges each.
func receiveInOrder(t *testing.T, c *rawClient, n int, want func(i int) string) {
	t.Helper()
	for i := range n {
		p := c.expectPublish()
		require.Equal(t, want(i), string(p.Payload), "message %d of %d", i, n)
		c.ack(p)
	}
}

func segmentFiles(t *testing.T, walDir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(walDir, "0*"))
	require.NoError(t, err)
	var out []string
	for _, s := range segs {
		if filepath.Ext(s) == "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	}))
	return n
}

// TestSnapshotTruncatesLogAndStateSurvives: a small CompactBytes makes the
// shard snapshot its state and drop the log records the snapshot covers,
// again and again while 3,000 messages queue up; after a restart the
// session is present, its queue complete and in order, and its in-flight
// messages come back with their packet ids.
func TestSnapshotTruncatesLogAndStateSurvives(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Shards: 2, CompactBytes: 32 << 10, SegmentBytes: 8 << 10, MaxQueuedMessages: 10_000}
	const n = 3000
	payload := func(i int) string { return fmt.Sprintf("%06d-%s", i, bytes.Repeat([]byte{'x'}, 90)) }

	b := startDurable(t, cfg)
	sub, _ := b.connect(t, "snap-sub", false)
	sub.subscribe(1, wire.Subscription{Filter: "s/#", QoS: 1})
	sub.disconnect()
	pub, _ := b.connect(t, "snap-pub", true)
	publishWindow(t, pub, "s/x", false, n, payload)
	b.stop()

	shard := int(xxhash.Sum64String("snap-sub") % 2)
	sdir := shardDir(dir, 2, shard)
	_, err := os.Stat(filepath.Join(sdir, "snapshot"))
	require.NoError(t, err, "a snapshot was written")
	segs := segmentFiles(t, filepath.Join(sdir, "wal"))
	require.NotEmpty(t, segs)
	require.NotEqual(t, "00000000000000000001", filepath.Base(segs[0]), "the log's front was truncated")
	walBytes := dirBytes(t, filepath.Join(sdir, "wal"))
	require.Less(t, walBytes, cfg.CompactBytes+2*int64(cfg.SegmentBytes), "the log stays near CompactBytes, not the %d bytes of %d messages", n*len(payload(0)), n)
	t.Logf("log %d bytes in %d segments after %d messages; snapshot covers the rest", walBytes, len(segs), n)

	b = startDurable(t, cfg)
	sub, ack := b.connect(t, "snap-sub", false)
	require.True(t, ack.SessionPresent)
	// Hold the first 10 (in flight), take the rest after a restart.
	var held []*wire.Publish
	for i := range 10 {
		p := sub.expectPublish()
		require.Equal(t, payload(i), string(p.Payload))
		held = append(held, p)
	}
	sub.kill()
	b.stop()

	b = startDurable(t, cfg)
	sub, ack = b.connect(t, "snap-sub", false)
	require.True(t, ack.SessionPresent)
	for i, h := range held {
		p := sub.expectPublish()
		require.True(t, p.Dup, "re-send %d has DUP=1", i)
		require.Equal(t, h.PacketID, p.PacketID, "re-send %d keeps its packet id", i)
		require.Equal(t, payload(i), string(p.Payload))
		sub.ack(p)
	}
	receiveInOrder(t, sub, n-10, func(i int) string { return payload(i + 10) })
	sub.ping()
	sub.expectSilence(50 * time.Millisecond)
	sub.disconnect()
	b.stop()
}

// TestRetainedLogSurvivesRestartWithDeletes: retained sets and deletes,
// with a CompactBytes small enough that the retained log is snapshotted and
// truncated between them, come back after a restart exactly as they were
// acknowledged: a deleted message never comes back, whether its delete is
// in the snapshot or after it.
func TestRetainedLogSurvivesRestartWithDeletes(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Shards: 2, CompactBytes: 4 << 10, SegmentBytes: 2 << 10}
	want := map[string]string{}
	b := startDurable(t, cfg)
	pub, _ := b.connect(t, "retainer", true)
	set := func(topic, payload string) {
		pub.publishAcked(topic, payload, true, 1)
		if payload == "" {
			delete(want, topic)
		} else {
			want[topic] = payload
		}
	}
	set("keep/early", "k1")
	set("gone/early", "x")
	set("gone/early", "") // deleted before any snapshot
	set("gone/late", "y")
	set("replaced", "old")
	for i := range 400 { // churn: several snapshots of the retained log
		topic := "churn/" + strconv.Itoa(i%20)
		if i%3 == 2 {
			set(topic, "")
		} else {
			set(topic, fmt.Sprintf("v%d-%s", i, bytes.Repeat([]byte{'p'}, 40)))
		}
	}
	set("gone/late", "") // deleted after the last snapshot
	set("replaced", "new")
	set("keep/late", "k2")
	b.stop()

	rdir := filepath.Join(dir, "retained")
	_, err := os.Stat(filepath.Join(rdir, "snapshot"))
	require.NoError(t, err, "the retained log was snapshotted")
	segs := segmentFiles(t, filepath.Join(rdir, "wal"))
	require.NotEqual(t, "00000000000000000001", filepath.Base(segs[0]), "and truncated")

	for range 2 { // and again after a restart that wrote nothing
		b = startDurable(t, cfg)
		got := map[string]string{}
		b.retained.Range(func(topic string, m *Message) bool {
			got[topic] = string(m.Payload)
			return true
		})
		require.Equal(t, want, got)
		// What a subscriber is sent agrees.
		c, _ := b.connect(t, "reader", true)
		c.subscribe(1, wire.Subscription{Filter: "#", QoS: 0})
		sent := map[string]string{}
		for range want {
			p := c.expectPublish()
			require.True(t, p.Retain)
			sent[string(p.Topic)] = string(p.Payload)
		}
		c.ping()
		require.Equal(t, want, sent)
		c.disconnect()
		b.stop()
	}
}

// entries returns the byte offsets of the entries in a segment file.
func entries(t *testing.T, data []byte) []int {
	t.Helper()
	var offs []int
	for pos := 0; pos < len(data); {
		size, n := binary.Uvarint(data[pos:])
		require.Positive(t, n)
		offs = append(offs, pos)
		pos += n + int(size)
	}
	return offs
}

// writeShardLog writes a one-shard data directory directly: a persistent
// session "victim" with n queued messages, committed in batches of 10, in
// segments of segSize bytes. It returns the expected view of the session.
func writeShardLog(t *testing.T, dir string, n, segSize int) sessionView {
	t.Helper()
	require.NoError(t, wal.WriteManifest(dir, wal.Manifest{Shards: 1, Hash: manifestHash}))
	p, err := openPersister(shardDir(dir, 1, 0), wal.Options{SegmentSize: segSize}, 0)
	require.NoError(t, err)
	p.clientRecord(recSession, "victim")
	p.sub("victim", "v/#", 1)
	want := sessionView{Subs: map[string]byte{"v/#": 1}, Inbound: map[uint16]struct{}{}}
	for i := range n {
		payload := fmt.Sprintf("m%04d", i)
		p.enqueue("victim", newMessage([]byte("v/x"), []byte(payload), 1, false), 1, false)
		want.Queue = append(want.Queue, "v/x|"+payload+"|1F")
		if i%10 == 9 {
			require.NoError(t, p.commit())
		}
	}
	require.NoError(t, p.commit())
	// Damage tests need records after the one they break in the tail.
	for i := n; ; i++ {
		segs := segmentFiles(t, filepath.Join(shardDir(dir, 1, 0), "wal"))
		data, err := os.ReadFile(segs[len(segs)-1])
		require.NoError(t, err)
		if len(entries(t, data)) >= 4 {
			break
		}
		payload := fmt.Sprintf("m%04d", i)
		p.enqueue("victim", newMessage([]byte("v/x"), []byte(payload), 1, false), 1, false)
		want.Queue = append(want.Queue, "v/x|"+payload+"|1F")
		require.NoError(t, p.commit())
	}
	require.NoError(t, p.close())
	return want
}

func durableConfig(dir string, logs *syncbuf.Buffer) Config {
	return Config{Persistence: true, DataDir: dir, Shards: 1, SegmentBytes: 1024,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// TestDamagedLogStopsStartNamingTheFile: a bad record that has good records
// after it was acknowledged data, not a torn write; shard.New refuses to
// start, names the file and the offset, and changes nothing on disk. Also
// for an earlier segment, the snapshot, the manifest and the retained log.
func TestDamagedLogStopsStartNamingTheFile(t *testing.T) {
	flip := func(t *testing.T, path string, off int) {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		data[off] ^= 0x5a
		require.NoError(t, os.WriteFile(path, data, 0o600))
	}
	// tree returns every file of dir with its content, to check that a
	// refused start wrote nothing.
	tree := func(t *testing.T, dir string) map[string]string {
		out := map[string]string{}
		require.NoError(t, filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				b, err := os.ReadFile(path)
				out[path] = string(b)
				return err
			}
			return err
		}))
		return out
	}
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string) (file string)
		want    []string
		corrupt bool // a *wal.CorruptError
	}{
		{"tail segment, record in the middle", func(t *testing.T, dir string) string {
			segs := segmentFiles(t, filepath.Join(shardDir(dir, 1, 0), "wal"))
			tail := segs[len(segs)-1]
			data, _ := os.ReadFile(tail)
			offs := entries(t, data)
			require.GreaterOrEqual(t, len(offs), 3, "the tail segment holds records after the damaged one")
			flip(t, tail, offs[1]+3)
			return tail
		}, []string{"checksum", "followed by a valid record", "truncate -s"}, true},
		{"earlier segment", func(t *testing.T, dir string) string {
			segs := segmentFiles(t, filepath.Join(shardDir(dir, 1, 0), "wal"))
			require.Greater(t, len(segs), 2)
			flip(t, segs[1], 4)
			return segs[1]
		}, []string{"checksum"}, true},
		{"earlier segment shortened", func(t *testing.T, dir string) string {
			segs := segmentFiles(t, filepath.Join(shardDir(dir, 1, 0), "wal"))
			data, _ := os.ReadFile(segs[0])
			offs := entries(t, data)
			require.NoError(t, os.WriteFile(segs[0], data[:offs[len(offs)-1]], 0o600))
			return segs[0]
		}, []string{"should hold records"}, true},
		{"snapshot", func(t *testing.T, dir string) string {
			p, err := openPersister(shardDir(dir, 1, 0), wal.Options{}, 0)
			require.NoError(t, err)
			st, err := p.load()
			require.NoError(t, err)
			require.NoError(t, p.snapshot(st.sessions, st.unrouted, st.marks))
			require.NoError(t, p.close())
			path := filepath.Join(shardDir(dir, 1, 0), "snapshot")
			flip(t, path, 40) // in the state: the checksum fails
			return path
		}, []string{"snapshot"}, false},
		{"manifest", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, wal.ManifestFile)
			require.NoError(t, os.WriteFile(path, []byte(`{"version": 1, "shards": `), 0o600))
			return path
		}, []string{"does not parse"}, false},
		{"retained log", func(t *testing.T, dir string) string {
			rl, err := openRetainLog(filepath.Join(dir, "retained"), wal.Options{}, 0)
			require.NoError(t, err)
			for i := range 5 {
				rl.post(retainOp{topic: []byte("r/" + strconv.Itoa(i)), msg: newMessage([]byte("r/"+strconv.Itoa(i)), []byte("v"), 1, true)})
			}
			rl.drain(nil)
			require.NoError(t, rl.close())
			segs := segmentFiles(t, filepath.Join(dir, "retained", "wal"))
			tail := segs[len(segs)-1]
			data, _ := os.ReadFile(tail)
			offs := entries(t, data)
			flip(t, tail, offs[2]+3)
			return tail
		}, []string{"followed by a valid record"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeShardLog(t, dir, 200, 1024)
			file := tc.damage(t, dir)
			before := tree(t, dir)
			var logs syncbuf.Buffer
			b, err := New(durableConfig(dir, &logs))
			require.Error(t, err)
			require.Nil(t, b)
			require.ErrorContains(t, err, file, "the error names the damaged file")
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			require.Equal(t, tc.corrupt, errors.Is(err, wal.ErrCorrupt))
			require.Equal(t, before, tree(t, dir), "a refused start changes nothing on disk")
			t.Log(err)
		})
	}
}

// TestTornTailIsRepaired: what a crash leaves at the end of the log (a
// partial entry, zeros the kernel allocated, a last record whose checksum
// fails) is cut off with a warning naming the file, and the broker starts
// with every complete record.
func TestTornTailIsRepaired(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(data []byte, last int) []byte
	}{
		{"partial entry", func(data []byte, last int) []byte {
			return append(data, data[last:last+(len(data)-last)/2]...)
		}},
		{"zeros", func(data []byte, _ int) []byte { return append(data, make([]byte, 4096)...) }},
		{"last record checksum", func(data []byte, last int) []byte {
			torn := slices.Clone(data[last:])
			torn[len(torn)-1] ^= 0xff
			return append(data, torn...)
		}},
		{"record cut to its length prefix", func(data []byte, _ int) []byte { return append(data, 0x80) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := writeShardLog(t, dir, 55, 64<<10)
			segs := segmentFiles(t, filepath.Join(shardDir(dir, 1, 0), "wal"))
			tail := segs[len(segs)-1]
			data, err := os.ReadFile(tail)
			require.NoError(t, err)
			offs := entries(t, data)
			require.NoError(t, os.WriteFile(tail, tc.tear(data, offs[len(offs)-1]), 0o600))

			var logs syncbuf.Buffer
			b, err := New(durableConfig(dir, &logs))
			require.NoError(t, err, "a torn tail does not stop the broker")
			require.NoError(t, b.Close(context.Background()))
			require.Contains(t, logs.String(), "repaired a torn log tail")
			require.Contains(t, logs.String(), tail)
			got, err := os.ReadFile(tail)
			require.NoError(t, err)
			require.Equal(t, data, got, "the tail is cut back to its last good record")
			require.Equal(t, map[string]sessionView{"victim": want}, loadDir(t, dir))
		})
	}
}

// TestLogBehindSnapshotStarts: in --fsync=interval mode a power loss can
// lose log records that a snapshot, fsynced on its own, already covers
// (between WriteSnapshot and the log's truncation). The snapshot holds the
// state, so startup must use it and move the log forward past it
// (wal/doc.go, "Recovery"), not refuse to start; and records written after
// the restart must survive the next one. For shard logs and the retained
// log.
func TestLogBehindSnapshotStarts(t *testing.T) {
	dir := t.TempDir()
	want := writeShardLog(t, dir, 30, 64<<10)
	p, err := openPersister(shardDir(dir, 1, 0), wal.Options{}, 0)
	require.NoError(t, err)
	st, err := p.load()
	require.NoError(t, err)
	// The snapshot says it covers 5 records more than survived in the log.
	require.NoError(t, wal.WriteSnapshot(p.snapshotPath, p.log.LastIndex()+5, encodeSnapshot(st.sessions, st.seq, st.unrouted, st.marks)))
	require.NoError(t, p.close())

	rl, err := openRetainLog(filepath.Join(dir, "retained"), wal.Options{}, 0)
	require.NoError(t, err)
	rl.post(retainOp{topic: []byte("r/a"), msg: newMessage([]byte("r/a"), []byte("a"), 1, true)})
	rl.drain(nil)
	var e wal.Encoder
	e.AppendUvarint(retainSnapshotVersion)
	e.AppendUvarint(1)
	encodeMessage(&e, newMessage([]byte("r/b"), []byte("b"), 1, true))
	originMarks(nil).encode(&e)
	require.NoError(t, wal.WriteSnapshot(rl.snapshotPath, rl.log.LastIndex()+3, e.B))
	require.NoError(t, rl.close())

	var logs syncbuf.Buffer
	b := startDurable(t, Config{DataDir: dir, Shards: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, ok := b.retained.Get("r/b")
	require.True(t, ok, "the retained snapshot's state")
	// New records after the restart, in both logs, survive the next one.
	c, _ := b.connect(t, "pub", true)
	c.publishAcked("r/c", "c", true, 1)
	c.publishAcked("v/x", "after", false, 2)
	c.disconnect()
	b.stop()
	want.Queue = append(want.Queue, "v/x|after|1F")
	require.Equal(t, map[string]sessionView{"victim": want}, loadDir(t, dir))
	b = startDurable(t, Config{DataDir: dir, Shards: 1})
	for _, topic := range []string{"r/b", "r/c"} {
		_, ok := b.retained.Get(topic)
		require.True(t, ok, topic)
	}
	b.stop()
}

// TestReshardKeepsEverything builds, over MQTT, persistent sessions with
// subscriptions, queues, in-flight messages (QoS 1, QoS 2 before and after
// PUBREC) and held inbound QoS 2 packet ids, then restarts on 3, 5 and 1
// shards: every session is where its client id hashes, unchanged, and the
// old layout is gone. Finally the clients come back and the state works:
// re-sends with the same packet ids, PUBREL for the released ones, held
// inbound ids that a resent PUBLISH does not route twice.
func TestReshardKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Shards: 3}
	b := startDurable(t, cfg)
	const nsub = 12
	sid := func(i int) string { return "sess-" + strconv.Itoa(i) }
	for i := range nsub {
		c, _ := b.connect(t, sid(i), false)
		c.subscribe(1, wire.Subscription{Filter: "t/" + strconv.Itoa(i), QoS: byte(1 + i%2)}, wire.Subscription{Filter: "all/#", QoS: 1})
		c.disconnect()
	}
	pub, _ := b.connect(t, "feeder", true)
	for i := range nsub {
		for k := range 3 {
			pub.publish("t/"+strconv.Itoa(i), fmt.Sprintf("%d-%d", i, k), 2, false, 1)
			pub.expect(wire.PUBREC)
			pub.send(&wire.Pubrel{PacketID: 1})
			pub.expect(wire.PUBCOMP)
		}
	}
	publishWindow(t, pub, "all/x", false, 2, func(i int) string { return "all-" + strconv.Itoa(i) })
	pub.disconnect()
	// Sessions 0-5 take their messages in flight and drop the connection
	// without completing them; the odd ones (QoS 2) PUBREC the first.
	for i := range 6 {
		c, ack := b.connect(t, sid(i), false)
		require.True(t, ack.SessionPresent)
		var first *wire.Publish
		for k := range 5 {
			p := c.expectPublish()
			if k == 0 {
				first = p
			}
		}
		if first.QoS == 2 {
			c.send(&wire.Pubrec{PacketID: first.PacketID})
			c.expect(wire.PUBREL) // the release is durable once it is sent
		}
		c.kill()
	}
	// Persistent publishers hold inbound QoS 2 ids 7 and 9 (PUBREC, no PUBREL).
	for i := range 4 {
		c, _ := b.connect(t, "inbound-"+strconv.Itoa(i), false)
		for _, id := range []uint16{7, 9} {
			c.publish("all/in", fmt.Sprintf("in-%d-%d", i, id), 2, false, id)
			require.Equal(t, id, c.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
		}
		c.kill()
	}
	// A PUBREC means the message is in its publisher's log; wait until it
	// is in the subscribers' logs too, so that the state below is complete.
	require.Eventually(t, func() bool { return b.Stats().Held == 0 }, 10*time.Second, 5*time.Millisecond)
	b.stop()

	before := loadDir(t, dir)
	require.Len(t, before, nsub+4)
	require.Len(t, before["sess-1"].Inflight, 5)
	require.Contains(t, before["sess-1"].Inflight[0], "|2FT#", "a released QoS 2 message (QoS 2, not retained, released)")
	require.Len(t, before["sess-1"].Queue, 8, "the inbound messages queued behind the in-flight ones")
	require.Len(t, before["sess-11"].Queue, 13)
	require.Equal(t, map[uint16]struct{}{7: {}, 9: {}}, before["inbound-0"].Inbound)

	for _, shards := range []int{5, 1} {
		cfg.Shards = shards
		startDurable(t, cfg).stop()
		m, err := wal.ReadManifest(dir)
		require.NoError(t, err)
		require.Equal(t, shards, m.Shards)
		require.Equal(t, before, loadDir(t, dir), "after re-distributing to %d shards", shards)
		dirs, err := filepath.Glob(filepath.Join(dir, "shards-*"))
		require.NoError(t, err)
		require.Equal(t, []string{shardsDir(dir, shards)}, dirs, "only the current layout is left")
	}

	// On one shard, the clients come back.
	b = startDurable(t, cfg)
	c, ack := b.connect(t, "sess-1", false)
	require.True(t, ack.SessionPresent)
	var pubs []*wire.Publish
	for k, v := range before["sess-1"].Inflight {
		id := uint16([]rune(v)[len([]rune(v))-1])
		if k == 0 {
			require.Equal(t, id, c.expect(wire.PUBREL).(*wire.Pubrel).PacketID, "PUBREL again for the released message")
			c.send(&wire.Pubcomp{PacketID: id})
			continue
		}
		p := c.expectPublish()
		require.True(t, p.Dup)
		require.Equal(t, id, p.PacketID, "in-flight message %d keeps its packet id", k)
		pubs = append(pubs, p)
	}
	for range 8 { // then the queue
		pubs = append(pubs, c.expectPublish())
	}
	ackAll(c, pubs)
	c.disconnect()
	for i := range 4 {
		c, ack := b.connect(t, "inbound-"+strconv.Itoa(i), false)
		require.True(t, ack.SessionPresent)
		c.send(&wire.Pubrel{PacketID: 7})
		require.Equal(t, uint16(7), c.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
		// A resend of the held id 9 is acknowledged, not routed again.
		c.send(&wire.Publish{Dup: true, QoS: 2, Topic: []byte("all/in"), PacketID: 9, Payload: []byte("in-again")})
		require.Equal(t, uint16(9), c.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
		c.send(&wire.Pubrel{PacketID: 9})
		c.expect(wire.PUBCOMP)
		c.disconnect()
	}
	c, ack = b.connect(t, "sess-11", false)
	require.True(t, ack.SessionPresent)
	var got []string
	pubs = nil
	for range 13 {
		p := c.expectPublish()
		got = append(got, string(p.Payload))
		pubs = append(pubs, p)
	}
	ackAll(c, pubs)
	c.ping()
	c.expectSilence(50 * time.Millisecond)
	require.Equal(t, []string{"11-0", "11-1", "11-2", "all-0", "all-1"}, got[:5])
	slices.Sort(got[5:])
	require.Equal(t, []string{"in-0-7", "in-0-9", "in-1-7", "in-1-9", "in-2-7", "in-2-9", "in-3-7", "in-3-9"}, got[5:], "each inbound message once")
	c.disconnect()
	b.stop()
}

// ackAll completes the flows of deliveries read in a row: PUBACK or PUBREC
// for each, then PUBCOMP for each PUBREL.
func ackAll(c *rawClient, pubs []*wire.Publish) {
	c.t.Helper()
	var qos2 []uint16
	for _, p := range pubs {
		if p.QoS == 1 {
			c.send(&wire.Puback{PacketID: p.PacketID})
		} else {
			c.send(&wire.Pubrec{PacketID: p.PacketID})
			qos2 = append(qos2, p.PacketID)
		}
	}
	for _, id := range qos2 {
		require.Equal(c.t, id, c.expect(wire.PUBREL).(*wire.Pubrel).PacketID)
		c.send(&wire.Pubcomp{PacketID: id})
	}
}

// $SYS statistics are retained for subscribers but never written to the
// retained log: after a restart they would be stale.
func TestSysRetainedNotPersisted(t *testing.T) {
	dir := t.TempDir()
	b, err := New(Config{Shards: 2, Persistence: true, DataDir: dir})
	require.NoError(t, err)
	require.NoError(t, b.Publish("$SYS/broker/uptime", []byte("7 seconds"), 0, true))
	require.Eventually(t, func() bool { _, ok := b.retained.Get("$SYS/broker/uptime"); return ok }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, b.Close(context.Background()))

	b, err = New(Config{Shards: 2, Persistence: true, DataDir: dir})
	require.NoError(t, err)
	defer b.Close(context.Background())
	_, ok := b.retained.Get("$SYS/broker/uptime")
	require.False(t, ok, "a $SYS retained message came back after a restart")
}
