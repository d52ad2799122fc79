package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"iotd/wal"
)

// Record types of the retained log.
const (
	recRetainSet    byte = 20 // topic, payload, qos
	recRetainDel    byte = 21 // topic
	recRetainOrigin byte = 22 // shard, seq: the update just before came from this held QoS 2 message
)

// retainSnapshotVersion 2 adds the origin marks.
const retainSnapshotVersion = 2

// retainOp is one retained update to make durable; t is released once it is.
type retainOp struct {
	topic  []byte
	msg    *Message // nil deletes
	t      *ticket
	origin origin // of a held QoS 2 message (heldroute.go)
}

// retainLog makes retained messages durable in a log of their own, written
// by one goroutine with group commit: every shard posts its retained updates
// here, and the publish is acknowledged once the update is on disk.
type retainLog struct {
	log          *wal.Log
	dir          string
	snapshotPath string
	compactAt    int64
	logger       *slog.Logger

	mu     sync.Mutex
	ops    []retainOp
	signal chan struct{}

	// current is the retained state as the log describes it; only the
	// writer goroutine touches it.
	current map[string]*Message
	marks   originMarks
	fault   logFault // the log's failure and recovery (persistfault.go)
	enc     wal.Encoder
}

func openRetainLog(dir string, opts wal.Options, compactAt int64) (*retainLog, error) {
	log, err := openLog(dir, opts)
	if err != nil {
		return nil, err
	}
	r := &retainLog{
		log:          log,
		dir:          dir,
		snapshotPath: filepath.Join(dir, "snapshot"),
		compactAt:    compactAt,
		logger:       opts.Logger,
		signal:       make(chan struct{}, 1),
		current:      make(map[string]*Message),
	}
	return r, nil
}

// load reads the snapshot and replays the log after it.
func (r *retainLog) load() (map[string]*Message, error) {
	index, data, err := wal.ReadSnapshot(r.snapshotPath)
	switch {
	case err == nil:
		d := wal.NewDecoder(data)
		version := d.Uvarint()
		if version != 1 && version != retainSnapshotVersion {
			return nil, fmt.Errorf("%s: snapshot version %d, want %d", r.snapshotPath, version, retainSnapshotVersion)
		}
		for n := d.Uvarint(); n > 0 && d.Err() == nil; n-- {
			m := decodeMessage(&d)
			r.current[string(m.Topic)] = m
		}
		if version >= 2 {
			if r.marks, err = decodeOriginMarks(&d); err != nil {
				return nil, fmt.Errorf("%s: %w", r.snapshotPath, err)
			}
		}
		if err := d.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", r.snapshotPath, err)
		}
	case errors.Is(err, os.ErrNotExist):
		index = 0
	default:
		return nil, err
	}
	if err := catchUp(r.log, index); err != nil {
		return nil, err
	}
	err = r.log.Replay(index, func(i uint64, typ byte, payload []byte) error {
		d := wal.NewDecoder(payload)
		switch typ {
		case recRetainSet:
			m := decodeMessage(&d)
			r.current[string(m.Topic)] = m
		case recRetainDel:
			delete(r.current, string(d.Bytes()))
		case recRetainOrigin:
			o, err := decodeOrigin(&d)
			if err != nil {
				return fmt.Errorf("%s record %d: %w", r.dir, i, err)
			}
			r.marks.note(o)
		default:
			return fmt.Errorf("%s record %d: unknown record type %d", r.dir, i, typ)
		}
		if err := d.Err(); err != nil {
			return fmt.Errorf("%s record %d: %w", r.dir, i, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r.current, nil
}

// post queues an update; it never blocks.
func (r *retainLog) post(op retainOp) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// run is the writer goroutine.
func (r *retainLog) run(quit <-chan struct{}) {
	var batch []retainOp
	for {
		select {
		case <-quit:
			r.drain(batch)
			if r.fault.err != nil {
				r.recover() // one last attempt to store what the failure lost
				r.fault.stop()
			}
			return
		case <-r.signal:
		case <-r.fault.retry:
			r.recover()
			continue
		}
		batch = r.drain(batch)
	}
}

// drain writes every queued update with one commit and releases their
// tickets; after a failure it applies them to current and holds the tickets
// until a recovery snapshot holds current.
func (r *retainLog) drain(batch []retainOp) []retainOp {
	r.mu.Lock()
	batch, r.ops = r.ops, batch[:0]
	r.mu.Unlock()
	if len(batch) == 0 {
		return batch
	}
	for _, op := range batch {
		r.apply(op)
	}
	if err := r.log.Commit(); err != nil {
		r.fault.fail(r.logger, err,
			"retained log write failed: retained QoS 1/2 publishes are not acknowledged until it recovers; "+
				"QoS 0 and other messages keep flowing. Free disk space or fix the disk: iotd retries on its own",
			"dir", r.dir)
		for _, op := range batch {
			if op.t != nil {
				r.fault.held = append(r.fault.held, op.t)
			}
		}
	} else {
		for _, op := range batch {
			if op.t != nil {
				op.t.release()
			}
		}
		if r.compactAt > 0 && r.log.Size() >= r.compactAt {
			if err := r.snapshot(); err != nil && r.log.Err() != nil {
				r.fault.fail(r.logger, err, "retained log truncation after a snapshot failed; iotd retries on its own", "dir", r.dir)
			} else if err != nil {
				r.logger.Error("retained log snapshot failed; the log keeps growing until it succeeds", "dir", r.dir, "err", err)
			}
		}
	}
	clear(batch)
	return batch[:0]
}

// apply logs one update and makes it current.
func (r *retainLog) apply(op retainOp) {
	if op.msg == nil {
		r.enc.AppendBytes(op.topic)
		r.log.Append(recRetainDel, r.enc.B)
		delete(r.current, string(op.topic))
	} else {
		encodeMessage(&r.enc, op.msg)
		r.log.Append(recRetainSet, r.enc.B)
		r.current[string(op.topic)] = op.msg
	}
	r.enc.B = r.enc.B[:0]
	if op.origin.seq != 0 {
		r.enc.AppendUvarint(uint64(op.origin.shard))
		r.enc.AppendUvarint(op.origin.seq)
		r.log.Append(recRetainOrigin, r.enc.B)
		r.enc.B = r.enc.B[:0]
		r.marks.note(op.origin)
	}
}

// commit writes what apply logged, with one fsync (at startup: a re-shard;
// the writer goroutine handles failures in drain).
func (r *retainLog) commit() error { return r.log.Commit() }

// encodeSnapshot lays out every retained message and the origin marks as
// load reads them.
func (r *retainLog) encodeSnapshot() []byte {
	var e wal.Encoder
	e.AppendUvarint(retainSnapshotVersion)
	e.AppendUvarint(uint64(len(r.current)))
	for _, m := range r.current {
		encodeMessage(&e, m)
	}
	r.marks.encode(&e)
	return e.B
}

func (r *retainLog) snapshot() error {
	index := r.log.LastIndex()
	if err := wal.WriteSnapshot(r.snapshotPath, index, r.encodeSnapshot()); err != nil {
		return err
	}
	return r.log.TruncateFront(index)
}

func (r *retainLog) close() error { return r.log.Close() }

// encodeMessage lays out a message as decodeMessage reads it.
func encodeMessage(e *wal.Encoder, m *Message) {
	e.AppendBytes(m.Topic)
	e.AppendBytes(m.Payload)
	e.AppendByte(m.QoS)
	e.AppendByte(boolByte(m.Retain))
}
