package shard

import (
	"encoding/binary"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"iotd/wal"
)

// The decoders of the shard's own durable formats: snapshots
// (decodeSnapshot) and log records (applyRecord). Both are pure functions
// of their bytes. Their input passed a CRC, so it was written by iotd, but
// a version skew or a bug must give an error, never a panic; and whatever
// state they accept must survive the next snapshot unchanged.

// stateView is a comparable picture of a durable state.
func stateView(st *durableState) map[string]sessionView {
	v := make(map[string]sessionView, len(st.sessions))
	for id, s := range st.sessions {
		sv := viewOf(s)
		if len(sv.Subs) == 0 {
			sv.Subs = nil // no subscriptions: nil or empty alike
		}
		v[id] = sv
	}
	return v
}

// requireSnapshotRoundTrip checks that st, written as a snapshot and read
// back, is the same state.
func requireSnapshotRoundTrip(t *testing.T, st *durableState) {
	t.Helper()
	back := newDurableState()
	require.NoError(t, decodeSnapshot(encodeSnapshot(st.sessions, st.seq, st.unrouted, st.marks), back))
	require.Equal(t, st.seq, back.seq)
	require.Equal(t, stateView(st), stateView(back))
	require.Equal(t, heldView(st), heldView(back))
	require.True(t, slices.Equal(st.marks, back.marks), "origin marks %v, read back %v", st.marks, back.marks)
}

// heldView pictures the held messages still to route.
func heldView(st *durableState) map[uint64]string {
	v := make(map[uint64]string, len(st.unrouted))
	for seq, m := range st.unrouted {
		v[seq] = string(m.Topic) + "|" + string(m.Payload) + "|" + string(rune('0'+m.QoS)) + boolStr(m.Retain)
	}
	return v
}

// FuzzDecodeSnapshot: any snapshot body decodes or fails with an error;
// a decoded state round-trips through encodeSnapshot.
func FuzzDecodeSnapshot(f *testing.F) {
	m := newMessage([]byte("a/b"), []byte("payload"), 2, true)
	s := newSession("c", false)
	s.subs = map[string]byte{"a/#": 2, "x": 0}
	s.addInflight(&outMsg{id: 7, msg: m, qos: 2, retain: true, released: true})
	s.addInflight(&outMsg{id: 65535, msg: newMessage([]byte("e"), nil, 1, false), qos: 1})
	s.queue.push(pending{msg: m, qos: 1})
	s.inbound = map[uint16]struct{}{3: {}, 9: {}}
	f.Add(encodeSnapshot(map[string]*session{"c": s, "d": newSession("d", false)}, 42, map[uint64]*Message{40: m, 41: newMessage([]byte("h"), []byte("held"), 2, false)}, originMarks{3, 0, 17}))
	f.Add(encodeSnapshot(nil, 0, nil, nil))
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newDurableState()
		if err := decodeSnapshot(data, st); err != nil {
			return
		}
		requireSnapshotRoundTrip(t, st)
	})
}

// appendRecord frames one log record for FuzzReplay: type, uvarint length,
// payload.
func appendRecord(dst []byte, typ byte, build func(e *wal.Encoder)) []byte {
	var e wal.Encoder
	build(&e)
	dst = append(dst, typ)
	dst = binary.AppendUvarint(dst, uint64(len(e.B)))
	return append(dst, e.B...)
}

// FuzzReplay: a sequence of log records replays onto a state record by
// record until one fails with an error (load stops there), never a panic;
// the state reached round-trips through a snapshot, and the message
// sequence number covers every message logged.
func FuzzReplay(f *testing.F) {
	client := func(id string) func(e *wal.Encoder) { return func(e *wal.Encoder) { e.AppendString(id) } }
	withID := func(id string, pid uint16) func(e *wal.Encoder) {
		return func(e *wal.Encoder) { e.AppendString(id); e.AppendUint16(pid) }
	}
	var seed []byte
	seed = appendRecord(seed, recSession, client("c"))
	seed = appendRecord(seed, recSub, func(e *wal.Encoder) { e.AppendString("c"); e.AppendString("a/+"); e.AppendByte(1) })
	seed = appendRecord(seed, recMessage, func(e *wal.Encoder) {
		e.AppendUvarint(1)
		encodeMessage(e, newMessage([]byte("a/b"), []byte("hi"), 2, false))
	})
	for range 2 {
		seed = appendRecord(seed, recEnqueue, func(e *wal.Encoder) { e.AppendString("c"); e.AppendUvarint(1); e.AppendByte(2); e.AppendByte(0) })
	}
	seed = appendRecord(seed, recSend, withID("c", 1))
	seed = appendRecord(seed, recRelease, withID("c", 1))
	seed = appendRecord(seed, recSend, withID("c", 2))
	seed = appendRecord(seed, recAck, withID("c", 2))
	seed = appendRecord(seed, recInHold, withID("c", 5))
	seed = appendRecord(seed, recInRelease, withID("c", 5))
	seed = appendRecord(seed, recInHoldMsg, func(e *wal.Encoder) {
		e.AppendString("c")
		e.AppendUint16(6)
		e.AppendUvarint(2)
		encodeMessage(e, newMessage([]byte("h/x"), []byte("held"), 2, true))
	})
	seed = appendRecord(seed, recOrigin, func(e *wal.Encoder) { e.AppendUvarint(1); e.AppendUvarint(9) })
	seed = appendRecord(seed, recRouted, func(e *wal.Encoder) { e.AppendUvarint(2) })
	seed = appendRecord(seed, recUnsub, func(e *wal.Encoder) { e.AppendString("c"); e.AppendString("a/+") })
	seed = appendRecord(seed, recSession, client("gone"))
	seed = appendRecord(seed, recSessionDel, client("gone"))
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newDurableState()
		msgs := make(map[uint64]*Message)
		for len(data) > 0 {
			typ := data[0]
			n, k := binary.Uvarint(data[1:])
			if k <= 0 || n > uint64(len(data)-1-k) {
				break
			}
			payload := data[1+k : 1+k+int(n)]
			data = data[1+k+int(n):]
			if err := applyRecord(st, msgs, typ, payload); err != nil {
				break
			}
		}
		if len(msgs) > 0 {
			require.GreaterOrEqual(t, st.seq, slices.Max(slices.Collect(maps.Keys(msgs))))
		}
		requireSnapshotRoundTrip(t, st)
	})
}
