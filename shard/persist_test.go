package shard

import (
	"testing"

	"github.com/stretchr/testify/require"

	"iotd/wal"
)

// sessionView flattens a session for comparison.
type sessionView struct {
	Subs     map[string]byte
	Inflight []string
	Queue    []string
	Inbound  map[uint16]struct{}
}

func viewOf(s *session) sessionView {
	v := sessionView{Subs: s.subs, Inbound: s.inbound}
	for _, m := range s.inflight {
		v.Inflight = append(v.Inflight, string(m.msg.Topic)+"|"+string(m.msg.Payload)+"|"+string(rune('0'+m.qos))+boolStr(m.retain)+boolStr(m.released)+"#"+string(rune(m.id)))
	}
	for i := 0; i < s.queue.len(); i++ {
		p := s.queue.at(i)
		v.Queue = append(v.Queue, string(p.msg.Topic)+"|"+string(p.msg.Payload)+"|"+string(rune('0'+p.qos))+boolStr(p.retain))
	}
	if v.Inbound == nil {
		v.Inbound = map[uint16]struct{}{}
	}
	return v
}

func boolStr(b bool) string {
	if b {
		return "T"
	}
	return "F"
}

func TestPersisterReplayAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	p, err := openPersister(dir, wal.Options{}, 0)
	require.NoError(t, err)

	m1 := newMessage([]byte("a/b"), []byte("one"), 1, false)
	m2 := newMessage([]byte("a/c"), []byte("two"), 2, true)
	m3 := newMessage([]byte("a/d"), []byte("three"), 2, false)

	// Two sessions; one is deleted again. Shared messages are logged once.
	p.clientRecord(recSession, "s1")
	p.sub("s1", "a/#", 2)
	p.sub("s1", "x/+", 1)
	p.unsub("s1", "x/+")
	p.clientRecord(recSession, "gone")
	p.sub("gone", "a/#", 0)
	p.clientRecord(recSessionDel, "gone")
	p.enqueue("s1", m1, 1, false)
	p.idRecord(recSend, "s1", 10)
	p.enqueue("s1", m2, 2, true)
	p.idRecord(recSend, "s1", 11)
	p.enqueue("s1", m3, 2, false)
	p.idRecord(recRelease, "s1", 11)
	p.idRecord(recInHold, "s1", 7)
	p.idRecord(recInHold, "s1", 8)
	p.idRecord(recInRelease, "s1", 7)
	require.NoError(t, p.commit())
	p.enqueue("s1", m1, 1, false) // a second batch logs the body again
	p.idRecord(recAck, "s1", 10)
	require.NoError(t, p.commit())
	require.NoError(t, p.close())

	load := func() *durableState {
		p2, err := openPersister(dir, wal.Options{}, 0)
		require.NoError(t, err)
		defer p2.close()
		st, err := p2.load()
		require.NoError(t, err)
		return st
	}
	st := load()
	require.Len(t, st.sessions, 1)
	want := sessionView{
		Subs:     map[string]byte{"a/#": 2},
		Inflight: []string{"a/c|two|2TT#" + string(rune(11))},
		Queue:    []string{"a/d|three|2F", "a/b|one|1F"},
		Inbound:  map[uint16]struct{}{8: {}},
	}
	require.Equal(t, want, viewOf(st.sessions["s1"]))

	// A snapshot covers the log; the log front is dropped and the state is
	// the same after reopening.
	p3, err := openPersister(dir, wal.Options{}, 0)
	require.NoError(t, err)
	st3, err := p3.load()
	require.NoError(t, err)
	require.NoError(t, p3.snapshot(st3.sessions, st3.unrouted, st3.marks))
	p3.idRecord(recAck, "s1", 11)
	require.NoError(t, p3.commit())
	require.NoError(t, p3.close())

	st = load()
	want.Inflight = nil
	require.Equal(t, want, viewOf(st.sessions["s1"]))
}

func TestSnapshotSharesMessages(t *testing.T) {
	m := newMessage([]byte("t"), []byte("payload"), 1, false)
	sessions := map[string]*session{}
	for _, id := range []string{"a", "b", "c"} {
		s := newSession(id, false)
		s.queue.push(pending{msg: m, qos: 1})
		sessions[id] = s
	}
	sessions["clean"] = newSession("clean", true)
	held := newMessage([]byte("h"), []byte("held"), 2, true)
	unrouted := map[uint64]*Message{40: held, 41: m}
	marks := originMarks{0, 17, 0, 9}
	st := newDurableState()
	require.NoError(t, decodeSnapshot(encodeSnapshot(sessions, 42, unrouted, marks), st))
	require.Len(t, st.sessions, 3, "clean sessions are not persisted")
	require.Equal(t, uint64(42), st.seq)
	first := st.sessions["a"].queue.at(0).msg
	for _, id := range []string{"b", "c"} {
		require.Same(t, first, st.sessions[id].queue.at(0).msg, "one copy of a shared message")
	}
	require.Len(t, st.unrouted, 2)
	require.Equal(t, held.Payload, st.unrouted[40].Payload)
	require.True(t, st.unrouted[40].Retain)
	require.Same(t, first, st.unrouted[41], "a held message also queued locally is stored once")
	require.Equal(t, marks, st.marks)
}

func TestReplayRejectsInconsistentRecords(t *testing.T) {
	st := newDurableState()
	msgs := map[uint64]*Message{}
	var e wal.Encoder
	e.AppendString("nobody")
	e.AppendString("a")
	e.AppendByte(1)
	require.ErrorContains(t, applyRecord(st, msgs, recSub, e.B), "unknown session")
	e.B = nil
	e.AppendString("s")
	require.NoError(t, applyRecord(st, msgs, recSession, e.B))
	e.AppendUint16(3)
	require.ErrorContains(t, applyRecord(st, msgs, recSend, e.B), "empty queue")
	e.B = nil
	e.AppendString("s")
	e.AppendUvarint(99)
	e.AppendByte(1)
	e.AppendByte(0)
	require.ErrorContains(t, applyRecord(st, msgs, recEnqueue, e.B), "unknown message")
	require.ErrorContains(t, applyRecord(st, msgs, 200, []byte{1, 's'}), "unknown record type")
}
