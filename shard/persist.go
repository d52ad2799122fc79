package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"iotd/wal"
)

// Record types of a shard's log. Only persistent sessions (clean session = 0)
// write records; clean sessions and QoS 0 traffic never touch the disk.
//
// Records replay in order onto the state loaded from the snapshot. A message
// body is logged once per shard batch (recMessage) and referenced by its
// sequence number from the recEnqueue records of the same batch.
const (
	recSession    byte = 1  // client: a persistent session exists (created empty)
	recSessionDel byte = 2  // client: the session ended
	recSub        byte = 3  // client, filter, qos
	recUnsub      byte = 4  // client, filter
	recMessage    byte = 5  // seq, topic, payload, qos, retain
	recEnqueue    byte = 6  // client, seq, qos, retain: appended to the session queue
	recSend       byte = 7  // client, packet id: the queue head went in flight with this id
	recAck        byte = 8  // client, packet id: PUBACK or PUBCOMP completed it
	recRelease    byte = 9  // client, packet id: PUBREC received, PUBREL sent
	recInHold     byte = 10 // client, packet id: inbound QoS 2 id held until PUBREL (written before held messages were logged; still read)
	recInRelease  byte = 11 // client, packet id: PUBREL received
	recInHoldMsg  byte = 12 // client, packet id, seq, topic, payload, qos, retain: inbound QoS 2 id held, message to route
	recRouted     byte = 13 // seq: every log the held message had to reach has it
	recOrigin     byte = 14 // shard, seq: the records just before complete that held message's delivery here
)

// snapshotVersion is the layout of the state blob in a shard snapshot.
// Version 2 adds the held messages still being routed and the origin marks.
const snapshotVersion = 2

// persister is a shard's durable log. It is owned by the shard goroutine.
type persister struct {
	log          *wal.Log
	dir          string
	snapshotPath string
	compactAt    int64 // log size that triggers a snapshot
	enc          wal.Encoder
	seq          uint64              // last message sequence number used
	batchMsgs    map[*Message]uint64 // messages logged in the current batch
	records      uint64              // records appended since the log was opened
}

// openLog opens (or creates) the log in dir/wal; a repaired tail is logged
// loudly with the file and offset.
func openLog(dir string, opts wal.Options) (*wal.Log, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	log, repair, err := wal.Open(filepath.Join(dir, "wal"), opts)
	if err != nil {
		return nil, err
	}
	if repair.Truncated && opts.Logger != nil {
		opts.Logger.Warn("repaired a torn log tail", "file", repair.File, "offset", repair.Offset, "dropped_bytes", repair.DroppedBytes)
	}
	return log, nil
}

func openPersister(dir string, opts wal.Options, compactAt int64) (*persister, error) {
	log, err := openLog(dir, opts)
	if err != nil {
		return nil, err
	}
	return &persister{
		log:          log,
		dir:          dir,
		snapshotPath: filepath.Join(dir, "snapshot"),
		compactAt:    compactAt,
		batchMsgs:    make(map[*Message]uint64),
	}, nil
}

func (p *persister) record(typ byte) {
	p.log.Append(typ, p.enc.B)
	p.enc.B = p.enc.B[:0]
	p.records++
}

// holdMessage logs an inbound QoS 2 message with its packet id, under a
// new sequence number that becomes its origin.
func (p *persister) holdMessage(client string, id uint16, msg *Message) uint64 {
	p.seq++
	p.enc.AppendString(client)
	p.enc.AppendUint16(id)
	p.enc.AppendUvarint(p.seq)
	encodeMessage(&p.enc, msg)
	p.record(recInHoldMsg)
	return p.seq
}

// routed logs that the held message seq reached every log it had to.
func (p *persister) routed(seq uint64) {
	p.enc.AppendUvarint(seq)
	p.record(recRouted)
}

// originMark logs that the delivery of held message o is complete in this
// log: every record it made comes before this one.
func (p *persister) originMark(o origin) {
	p.enc.AppendUvarint(uint64(o.shard))
	p.enc.AppendUvarint(o.seq)
	p.record(recOrigin)
}

func (p *persister) clientRecord(typ byte, client string) {
	p.enc.AppendString(client)
	p.record(typ)
}

func (p *persister) idRecord(typ byte, client string, id uint16) {
	p.enc.AppendString(client)
	p.enc.AppendUint16(id)
	p.record(typ)
}

func (p *persister) sub(client, filter string, qos byte) {
	p.enc.AppendString(client)
	p.enc.AppendString(filter)
	p.enc.AppendByte(qos)
	p.record(recSub)
}

func (p *persister) unsub(client, filter string) {
	p.enc.AppendString(client)
	p.enc.AppendString(filter)
	p.record(recUnsub)
}

// enqueue logs msg (once per batch) and its addition to a session queue.
func (p *persister) enqueue(client string, msg *Message, qos byte, retain bool) {
	seq, ok := p.batchMsgs[msg]
	if !ok {
		p.seq++
		seq = p.seq
		p.batchMsgs[msg] = seq
		p.enc.AppendUvarint(seq)
		encodeMessage(&p.enc, msg)
		p.record(recMessage)
	}
	p.enc.AppendString(client)
	p.enc.AppendUvarint(seq)
	p.enc.AppendByte(qos)
	p.enc.AppendByte(boolByte(retain))
	p.record(recEnqueue)
}

// commit writes the batch with one fsync. After a failure it returns the
// failure until the log is recovered (persistfault.go): nothing that waits
// for it is acknowledged.
func (p *persister) commit() error {
	clear(p.batchMsgs)
	return p.log.Commit()
}

func (p *persister) close() error { return p.log.Close() }

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// durableState is what a shard's snapshot and log describe: its persistent
// sessions with their subscriptions, queues, in-flight and inbound state,
// the held QoS 2 messages not yet routed everywhere, and the origin marks.
type durableState struct {
	sessions map[string]*session
	seq      uint64
	unrouted map[uint64]*Message // by sequence number
	marks    originMarks
}

func newDurableState() *durableState {
	return &durableState{sessions: make(map[string]*session), unrouted: make(map[uint64]*Message)}
}

// originMarks holds, per publishing shard, the highest held message whose
// delivery is complete in one log. Each shard routes its held messages in
// sequence order and every log applies them in arrival order, so a message
// at or below the mark is already there.
type originMarks []uint64

// has reports whether the held message o is complete here; false for a
// message that was never held.
func (m originMarks) has(o origin) bool {
	return o.seq != 0 && o.shard < len(m) && o.seq <= m[o.shard]
}

// decodeOrigin reads a shard number and sequence number written by
// originMark or the retained log.
func decodeOrigin(d *wal.Decoder) (origin, error) {
	shard, seq := d.Uvarint(), d.Uvarint()
	if err := d.Err(); err != nil {
		return origin{}, err
	}
	if shard >= MaxShards {
		return origin{}, fmt.Errorf("origin shard %d out of range", shard)
	}
	return origin{shard: int(shard), seq: seq}, nil
}

// seqOf is the mark for one publishing shard (0 if none).
func (m originMarks) seqOf(shard int) uint64 {
	if shard < len(m) {
		return m[shard]
	}
	return 0
}

func (m *originMarks) note(o origin) {
	for len(*m) <= o.shard {
		*m = append(*m, 0)
	}
	(*m)[o.shard] = max((*m)[o.shard], o.seq)
}

func (m originMarks) encode(e *wal.Encoder) {
	e.AppendUvarint(uint64(len(m)))
	for _, seq := range m {
		e.AppendUvarint(seq)
	}
}

func decodeOriginMarks(d *wal.Decoder) (originMarks, error) {
	n := d.Uvarint()
	if n > MaxShards {
		return nil, fmt.Errorf("%d origin marks: at most %d", n, MaxShards)
	}
	m := make(originMarks, 0, min(n, uint64(d.Len()))) // each mark takes a byte at least
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		m = append(m, d.Uvarint())
	}
	return m, d.Err()
}

// encodeSnapshot lays out every persistent session, the unrouted held
// messages and the origin marks. Messages shared by many sessions are
// written once, in a table referenced by position.
func encodeSnapshot(sessions map[string]*session, seq uint64, unrouted map[uint64]*Message, marks originMarks) []byte {
	var e wal.Encoder
	e.AppendUvarint(snapshotVersion)
	e.AppendUvarint(seq)
	index := make(map[*Message]uint64)
	var table []*Message
	ref := func(m *Message) uint64 {
		i, ok := index[m]
		if !ok {
			i = uint64(len(table))
			index[m] = i
			table = append(table, m)
		}
		return i
	}
	var body wal.Encoder
	count := 0
	for _, s := range sessions {
		if s.clean {
			continue
		}
		count++
		body.AppendString(s.id)
		body.AppendUvarint(uint64(len(s.subs)))
		for f, q := range s.subs {
			body.AppendString(f)
			body.AppendByte(q)
		}
		body.AppendUvarint(uint64(len(s.inflight)))
		for _, m := range s.inflight {
			body.AppendUint16(m.id)
			body.AppendUvarint(ref(m.msg))
			body.AppendByte(m.qos)
			body.AppendByte(boolByte(m.retain))
			body.AppendByte(boolByte(m.released))
		}
		body.AppendUvarint(uint64(s.queue.len()))
		for i := 0; i < s.queue.len(); i++ {
			p := s.queue.at(i)
			body.AppendUvarint(ref(p.msg))
			body.AppendByte(p.qos)
			body.AppendByte(boolByte(p.retain))
		}
		body.AppendUvarint(uint64(len(s.inbound)))
		for id := range s.inbound {
			body.AppendUint16(id)
		}
	}
	body.AppendUvarint(uint64(len(unrouted)))
	for seq, m := range unrouted {
		body.AppendUvarint(seq)
		body.AppendUvarint(ref(m))
	}
	marks.encode(&body)
	e.AppendUvarint(uint64(len(table)))
	for _, m := range table {
		encodeMessage(&e, m)
	}
	e.AppendUvarint(uint64(count))
	e.B = append(e.B, body.B...)
	return e.B
}

func decodeMessage(d *wal.Decoder) *Message {
	topic := d.Bytes()
	payload := d.Bytes()
	qos := d.Byte()
	retain := d.Byte() == 1
	return newMessage(topic, payload, qos, retain)
}

func decodeSnapshot(data []byte, st *durableState) error {
	d := wal.NewDecoder(data)
	version := d.Uvarint()
	if version != 1 && version != snapshotVersion {
		return fmt.Errorf("snapshot version %d, want %d", version, snapshotVersion)
	}
	st.seq = d.Uvarint()
	n := d.Uvarint()
	if n > uint64(d.Len()) {
		return errors.New("snapshot message table longer than the file")
	}
	table := make([]*Message, 0, n)
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		table = append(table, decodeMessage(&d))
	}
	msgAt := func(i uint64) *Message {
		if i >= uint64(len(table)) {
			return nil
		}
		return table[i]
	}
	count := d.Uvarint()
	for i := uint64(0); i < count && d.Err() == nil; i++ {
		s := newSession(d.String(), false)
		for j, ns := uint64(0), d.Uvarint(); j < ns && d.Err() == nil; j++ {
			f := d.String()
			if s.subs == nil {
				s.subs = make(map[string]byte)
			}
			s.subs[f] = d.Byte()
		}
		for j, ni := uint64(0), d.Uvarint(); j < ni && d.Err() == nil; j++ {
			m := &outMsg{id: d.Uint16(), msg: msgAt(d.Uvarint()), qos: d.Byte(), retain: d.Byte() == 1, released: d.Byte() == 1}
			if m.msg == nil {
				return errors.New("snapshot in-flight message refers past the message table")
			}
			s.addInflight(m)
		}
		for j, nq := uint64(0), d.Uvarint(); j < nq && d.Err() == nil; j++ {
			p := pending{msg: msgAt(d.Uvarint()), qos: d.Byte(), retain: d.Byte() == 1}
			if p.msg == nil {
				return errors.New("snapshot queued message refers past the message table")
			}
			s.queue.push(p)
		}
		for j, nin := uint64(0), d.Uvarint(); j < nin && d.Err() == nil; j++ {
			if s.inbound == nil {
				s.inbound = make(map[uint16]struct{})
			}
			s.inbound[d.Uint16()] = struct{}{}
		}
		st.sessions[s.id] = s
	}
	if version >= 2 {
		for j, nu := uint64(0), d.Uvarint(); j < nu && d.Err() == nil; j++ {
			seq := d.Uvarint()
			m := msgAt(d.Uvarint())
			if m == nil {
				return errors.New("snapshot held message refers past the message table")
			}
			st.unrouted[seq] = m
		}
		var err error
		if st.marks, err = decodeOriginMarks(&d); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if err := d.Err(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// applyRecord replays one log record onto st. msgs maps the sequence numbers
// of recMessage records to their messages.
func applyRecord(st *durableState, msgs map[uint64]*Message, typ byte, payload []byte) error {
	d := wal.NewDecoder(payload)
	switch typ {
	case recMessage:
		seq := d.Uvarint()
		msgs[seq] = decodeMessage(&d)
		st.seq = max(st.seq, seq)
		return d.Err()
	case recRouted:
		delete(st.unrouted, d.Uvarint())
		return d.Err()
	case recOrigin:
		o, err := decodeOrigin(&d)
		if err == nil {
			st.marks.note(o)
		}
		return err
	}
	client := d.String()
	s := st.sessions[client]
	if typ == recSession {
		if s == nil {
			st.sessions[client] = newSession(client, false)
		}
		return d.Err()
	}
	if s == nil {
		return fmt.Errorf("record type %d for unknown session %q", typ, client)
	}
	switch typ {
	case recSessionDel:
		delete(st.sessions, client)
	case recSub:
		f := d.String()
		if s.subs == nil {
			s.subs = make(map[string]byte)
		}
		s.subs[f] = d.Byte()
	case recUnsub:
		delete(s.subs, d.String())
	case recEnqueue:
		seq := d.Uvarint()
		msg := msgs[seq]
		if msg == nil {
			return fmt.Errorf("enqueue of unknown message %d", seq)
		}
		s.queue.push(pending{msg: msg, qos: d.Byte(), retain: d.Byte() == 1})
	case recSend:
		id := d.Uint16()
		if s.queue.len() == 0 {
			return fmt.Errorf("send of packet id %d with an empty queue (session %q)", id, client)
		}
		p := s.queue.pop()
		s.addInflight(&outMsg{id: id, msg: p.msg, qos: p.qos, retain: p.retain})
	case recAck:
		if i := s.findInflight(d.Uint16()); i >= 0 {
			s.removeInflight(i)
		}
	case recRelease:
		if i := s.findInflight(d.Uint16()); i >= 0 {
			s.inflight[i].released = true
		}
	case recInHold:
		if s.inbound == nil {
			s.inbound = make(map[uint16]struct{})
		}
		s.inbound[d.Uint16()] = struct{}{}
	case recInHoldMsg:
		id := d.Uint16()
		seq := d.Uvarint()
		msg := decodeMessage(&d)
		if d.Err() != nil {
			return d.Err()
		}
		if s.inbound == nil {
			s.inbound = make(map[uint16]struct{})
		}
		s.inbound[id] = struct{}{}
		st.unrouted[seq] = msg
		st.seq = max(st.seq, seq)
	case recInRelease:
		delete(s.inbound, d.Uint16())
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return d.Err()
}

// load reads the snapshot and replays the log after it.
func (p *persister) load() (*durableState, error) {
	st := newDurableState()
	index, data, err := wal.ReadSnapshot(p.snapshotPath)
	switch {
	case err == nil:
		if err := decodeSnapshot(data, st); err != nil {
			return nil, fmt.Errorf("%s: %w", p.snapshotPath, err)
		}
	case errors.Is(err, os.ErrNotExist):
		index = 0
	default:
		return nil, err
	}
	if err := catchUp(p.log, index); err != nil {
		return nil, err
	}
	msgs := make(map[uint64]*Message)
	err = p.log.Replay(index, func(i uint64, typ byte, payload []byte) error {
		if err := applyRecord(st, msgs, typ, payload); err != nil {
			return fmt.Errorf("%s record %d: %w", p.dir, i, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.seq = st.seq
	return st, nil
}

// catchUp moves a log that is behind its snapshot (records the snapshot
// covers were lost: --fsync=interval and a power loss before they were
// synced) forward past it, so that Replay runs and new records get indexes
// after the snapshot (wal/doc.go, "Recovery").
func catchUp(log *wal.Log, snapshotIndex uint64) error {
	if snapshotIndex <= log.LastIndex() {
		return nil
	}
	return log.TruncateFront(snapshotIndex + 1)
}

// snapshot writes the live state and drops the log records it covers, so
// the log does not grow without bound.
func (p *persister) snapshot(sessions map[string]*session, unrouted map[uint64]*Message, marks originMarks) error {
	index := p.log.LastIndex()
	if err := wal.WriteSnapshot(p.snapshotPath, index, encodeSnapshot(sessions, p.seq, unrouted, marks)); err != nil {
		return err
	}
	if index == 0 {
		return nil
	}
	return p.log.TruncateFront(index)
}

// needsSnapshot reports whether the log has grown past its threshold.
func (p *persister) needsSnapshot() bool {
	return p.log.Err() == nil && p.compactAt > 0 && p.log.Size() >= p.compactAt
}
