package wal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	twal "github.com/tidwall/wal"
)

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 16 << 20

// ErrClosed is returned by the methods of a closed Log.
var ErrClosed = errors.New("wal: log closed")

// Options configure Open.
type Options struct {
	// NoSync skips the fsync in Commit (interval mode: call Sync yourself).
	// Committed records may then be lost by a power failure or kernel crash,
	// though not by a process crash.
	NoSync bool
	// SegmentSize is the target size of a segment file in bytes; default
	// DefaultSegmentSize. tidwall keeps the whole tail segment in memory, so
	// this is also the log's resident memory (up to twice, with slice growth).
	SegmentSize int
	// Logger receives repair actions at Warn level; default slog.Default().
	Logger *slog.Logger
	// Fault, if set, is called with the log's directory and the operation
	// ("commit", "sync", "truncate", "recover") before each one touches the
	// disk; an error it returns fails that operation as if the disk had
	// returned it. It is how tests inject ENOSPC or EIO at an exact moment.
	Fault func(dir, op string) error
}

// Log is one append-only log of typed, checksummed records on tidwall/wal.
// It is owned by one goroutine (a shard's) and is not safe for concurrent
// use; it takes no lock of its own.
//
// Records are grouped: Append adds to a pending batch in memory, Commit
// writes the batch with one write and one fsync. After a write or fsync error
// the Log is failed: every later Commit, Sync and TruncateFront returns that
// error, and Append drops its record. Whether the failed write reached the
// disk is unknown (an fsync error may have dropped dirty pages), so records
// are never written again after a failure: Recover replaces the whole log by
// a snapshot of the caller's state, or a restart replays what is on disk.
type Log struct {
	dir    string
	opts   Options
	logger *slog.Logger
	tw     *twal.Log

	batch   twal.Batch // pending records, framed and indexed
	scratch []byte     // framing buffer reused by Append
	pending int

	pendSizes []int // bytes tidwall will write for each pending record

	first, last uint64 // FirstIndex and LastIndex of the committed log
	size        int64  // bytes in all segment files
	tail        int64  // bytes in the tail segment (tidwall's ebuf length)
	dirDirty    bool   // a segment file was created since the last directory fsync

	err    error  // failure, until Recover
	high   uint64 // highest index a failed write may have put on disk
	closed bool
}

func (o Options) tidwall() *twal.Options {
	return &twal.Options{
		NoSync:           o.NoSync,
		SegmentSize:      o.SegmentSize,
		LogFormat:        twal.Binary,
		SegmentCacheSize: 1, // Replay reads files itself; tidwall only reads for TruncateFront
		NoCopy:           true,
		AllowEmpty:       true, // TruncateFront may drop every record; indexes still continue
		DirPerms:         dirPerm,
		FilePerms:        filePerm,
	}
}

// Open opens or creates the log in dir.
//
// Before handing the directory to tidwall it finishes a truncation that
// tidwall was doing when the process stopped, then repairs the tail (see
// repairTail): a torn or zero-filled tail (a partial last record, trailing
// zero bytes, or a last record whose CRC fails) is truncated to the last good
// record, logged at Warn with the file and byte offset, and reported in
// Repair. A bad record anywhere else in the tail segment (a bad record
// followed by good ones) is a *CorruptError naming the file and offset, and
// nothing is changed: startup must stop rather than silently lose data.
// Earlier segments are checked by Replay, record by record.
func Open(dir string, opts Options) (*Log, Repair, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if err := mkdirDurable(dir); err != nil {
		return nil, Repair{}, fmt.Errorf("wal: create log directory: %w", err)
	}
	if err := finishTruncation(dir, logger); err != nil {
		return nil, Repair{}, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	rep, err := repairTail(dir, logger)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			return nil, rep, err
		}
		return nil, rep, fmt.Errorf("wal: repair %s: %w", dir, err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	tw, err := twal.Open(dir, opts.tidwall())
	if err != nil {
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	l := &Log{dir: dir, opts: opts, logger: logger, tw: tw}
	if len(segs) == 0 {
		// tidwall created the first segment file; make its name durable.
		if err := syncDir(dir); err != nil {
			tw.Close()
			return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
		}
	}
	if err := l.loadState(); err != nil {
		tw.Close()
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	return l, rep, nil
}

// mkdirDurable creates dir and its missing parents, fsyncing each parent
// whose entries changed.
func mkdirDurable(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirPerm); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// loadState reads the indexes from tidwall and the sizes from the files.
func (l *Log) loadState() error {
	var err error
	if l.first, err = l.tw.FirstIndex(); err != nil {
		return err
	}
	if l.last, err = l.tw.LastIndex(); err != nil {
		return err
	}
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	l.size, l.tail = 0, 0
	for _, s := range segs {
		fi, err := os.Stat(s.path)
		if err != nil {
			return err
		}
		l.size += fi.Size()
		l.tail = fi.Size()
	}
	return nil
}

// Append adds a record to the pending batch; nothing is written until Commit.
// typ is the caller's record type, 1..255 (Append panics on 0, which is
// reserved so that zeroed disk blocks never read as a record). The payload is
// copied. The record's index will be LastIndex()+Pending() once appended.
// On a failed or closed Log, Append does nothing and Commit reports why.
func (l *Log) Append(typ byte, payload []byte) {
	if typ == 0 {
		panic("wal: Append with record type 0")
	}
	if l.err != nil || l.closed {
		return
	}
	l.scratch = appendRecord(l.scratch[:0], typ, payload)
	l.pending++
	l.batch.Write(l.last+uint64(l.pending), l.scratch)
	l.pendSizes = append(l.pendSizes, entrySize(len(l.scratch)))
}

// planCommit works out what tidwall's WriteBatch will do with the pending
// records, by tidwall's own rule (wal.go writeBatch): start a new segment
// before the batch if the tail is already over SegmentSize, and after any
// entry that takes it to SegmentSize or more. It returns the bytes written,
// the tail segment's size afterwards, and whether a segment file is created
// (which takes a directory fsync to be durable).
func (l *Log) planCommit() (written, tail int64, cycled bool) {
	seg := int64(l.opts.SegmentSize)
	tail = l.tail
	if tail > seg {
		tail, cycled = 0, true
	}
	for _, n := range l.pendSizes {
		written += int64(n)
		tail += int64(n)
		if tail >= seg {
			tail, cycled = 0, true
		}
	}
	return written, tail, cycled
}

// Pending returns the number of records appended and not yet committed.
func (l *Log) Pending() int { return l.pending }

// fault runs the Options.Fault hook for op.
func (l *Log) fault(op string) error {
	if l.opts.Fault == nil {
		return nil
	}
	return l.opts.Fault(l.dir, op)
}

// Commit writes the pending batch with one tidwall WriteBatch (one write per
// segment touched) and, unless Options.NoSync, one fsync, plus a directory
// fsync if a new segment file was started. When Commit returns nil the
// records are durable (NoSync: written) and the caller may acknowledge them.
// On error the Log is failed; see Log.
func (l *Log) Commit() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	if l.pending == 0 {
		return nil
	}
	written, tail, cycled := l.planCommit()
	err := l.fault("commit")
	if err == nil {
		err = l.tw.WriteBatch(&l.batch)
	}
	if err == nil && cycled {
		// tidwall keeps the segment it just closed in its read cache; we
		// never read through tidwall, so free that memory (up to a segment).
		l.tw.ClearCache()
		if l.opts.NoSync {
			l.dirDirty = true
		} else {
			err = syncDir(l.dir)
		}
	}
	if err != nil {
		return l.fail(fmt.Errorf("commit %d records", l.pending), err)
	}
	l.last += uint64(l.pending)
	l.size += written
	l.tail = tail
	l.pending = 0
	l.pendSizes = l.pendSizes[:0]
	return nil
}

// fail makes the Log failed with err and returns the error that every
// later operation returns until Recover.
func (l *Log) fail(what error, err error) error {
	l.err = fmt.Errorf("wal: %s: %v: %w; the log accepts no more writes until it is recovered "+
		"(Recover, or a restart that replays what is on disk)", l.dir, what, err)
	// The batch that failed may be on disk in part or in full.
	l.high = max(l.high, l.last+uint64(l.pending))
	l.batch.Clear()
	l.pending = 0
	l.pendSizes = l.pendSizes[:0]
	return l.err
}

// Err returns the error that failed the Log, or nil.
func (l *Log) Err() error { return l.err }

// Sync fsyncs what Commit wrote, for Options.NoSync (interval mode). It does
// not commit pending records. An fsync error fails the Log.
func (l *Log) Sync() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	err := l.fault("sync")
	if err == nil {
		err = l.tw.Sync()
	}
	if err != nil {
		return l.fail(errors.New("sync"), err)
	}
	if l.dirDirty {
		if err := syncDir(l.dir); err != nil {
			return l.fail(errors.New("sync"), err)
		}
		l.dirDirty = false
	}
	return nil
}

// FirstIndex returns the index of the first record in the log. An empty log
// returns LastIndex()+1, the index the next record will get.
func (l *Log) FirstIndex() uint64 { return l.first }

// LastIndex returns the index of the last committed record; 0 for a log that
// never had one. Indexes start at 1 and, while the log is open, never go
// back, even when TruncateFront removes every record. (Open's tail repair can
// lower it, by dropping torn records that no Commit ever returned nil for.)
func (l *Log) LastIndex() uint64 { return l.last }

// Size returns the bytes on disk across the segment files, for compaction
// thresholds and metrics.
func (l *Log) Size() int64 { return l.size }

// TruncateFront drops every record with an index < index, after a snapshot
// covering them was written. The log has no minimum: with index ==
// LastIndex()+1 it drops every record and the next record still gets index.
//
//   - index <= FirstIndex(): nothing to do.
//   - index <= LastIndex()+1: tidwall's TruncateFront. Segments wholly before
//     index are deleted; the segment holding index is rewritten from index on
//     (<index>.START through a temp file, fsync and rename, so a crash leaves
//     the old or the new layout; Open finishes the job). Cost: a copy of the
//     rest of that one segment.
//   - index > LastIndex()+1 (the log is behind a snapshot, possible after a
//     power loss in NoSync mode): every record is dropped and the log
//     restarts empty so that the next record gets index. This needs
//     Pending() == 0.
//
// Then the directory is fsynced. At startup, after ReadSnapshot returns
// index S, call TruncateFront(S+1) before Replay(S). An I/O error fails the
// Log.
func (l *Log) TruncateFront(index uint64) error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	if index <= l.first {
		return nil
	}
	if err := l.fault("truncate"); err != nil {
		return l.fail(fmt.Errorf("truncate front to index %d", index), err)
	}
	if index <= l.last+1 {
		if err := l.tw.TruncateFront(index); err != nil {
			return l.fail(fmt.Errorf("truncate front to index %d", index), err)
		}
	} else {
		if l.pending > 0 {
			return fmt.Errorf("wal: %s: TruncateFront(%d) past LastIndex %d with %d records pending: commit them first",
				l.dir, index, l.last, l.pending)
		}
		if err := l.restartAt(index); err != nil {
			return l.fail(fmt.Errorf("restart empty at index %d", index), err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		return l.fail(fmt.Errorf("truncate front to index %d", index), err)
	}
	if err := l.loadState(); err != nil {
		return l.fail(fmt.Errorf("truncate front to index %d", index), err)
	}
	return nil
}

// restartAt replaces the log by an empty one whose next index is index,
// with tidwall's own crash-safe protocol: an empty <index>.START file makes
// tidwall (and finishTruncation) delete every older segment and rename it.
func (l *Log) restartAt(index uint64) error {
	if err := l.tw.Close(); err != nil {
		return err
	}
	l.tw = nil
	return l.openEmptyAt(index)
}

// openEmptyAt deletes every segment and opens tidwall on an empty log whose
// next index is index; l.tw must be closed.
func (l *Log) openEmptyAt(index uint64) error {
	start := filepath.Join(l.dir, fmt.Sprintf("%020d.START", index))
	if err := writeFileAtomic(start, nil); err != nil {
		return err
	}
	// Finishing our own truncation, not one a crash interrupted: no warning.
	if err := finishTruncation(l.dir, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	tw, err := twal.Open(l.dir, l.opts.tidwall())
	if err != nil {
		return err
	}
	l.tw = tw
	return nil
}

// Replay calls fn for every committed record with an index > after, in
// order. payload aliases a read buffer: fn must copy what it keeps. An error
// from fn stops Replay and is returned as is.
//
// Replay reads the segment files itself and checks every record it delivers
// (framing, CRC, type) and that each segment holds exactly the records its
// name and the next one's promise; damage is a *CorruptError naming the file
// and byte offset. Segments wholly at or before after are not read.
//
// It is an error if records after `after` are missing: after < FirstIndex()-1
// (the log was truncated past the snapshot) or after > LastIndex() (the log
// is behind the snapshot; call TruncateFront(after+1) first).
func (l *Log) Replay(after uint64, fn func(index uint64, typ byte, payload []byte) error) error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	if after+1 < l.first {
		return fmt.Errorf("wal: %s: replay after index %d, but the log starts at index %d: records %d..%d are missing "+
			"(is the snapshot older than the log's truncation point?)", l.dir, after, l.first, after+1, l.first-1)
	}
	if after > l.last {
		return fmt.Errorf("wal: %s: replay after index %d, but the log ends at index %d: "+
			"call TruncateFront(%d) first so that new records get indexes after the snapshot", l.dir, after, l.last, after+1)
	}
	if after == l.last {
		return nil
	}
	segs, err := listSegments(l.dir)
	if err != nil {
		return fmt.Errorf("wal: replay %s: %w", l.dir, err)
	}
	if len(segs) == 0 || segs[0].index != l.first {
		return fmt.Errorf("wal: replay %s: first segment file does not start at index %d; restore the data directory from a backup", l.dir, l.first)
	}
	var buf []byte
	for i, s := range segs {
		end := l.last // last index held by s
		if i+1 < len(segs) {
			end = segs[i+1].index - 1
		}
		if end <= after {
			continue
		}
		buf, err = readFileInto(buf, s.path)
		if err != nil {
			return fmt.Errorf("wal: replay %s: %w", l.dir, err)
		}
		index, pos := s.index, 0
		for pos < len(buf) && index <= end {
			rec, next, err := nextEntry(buf, pos)
			if err != nil {
				return &CorruptError{File: s.path, Offset: int64(pos), Next: -1, Err: err}
			}
			if index > after {
				typ, payload, err := parseRecord(rec)
				if err != nil {
					return &CorruptError{File: s.path, Offset: int64(pos), Next: -1, Err: fmt.Errorf("record %d: %w", index, err)}
				}
				if err := fn(index, typ, payload); err != nil {
					return err
				}
			}
			index++
			pos = next
		}
		if index != end+1 || pos != len(buf) {
			return &CorruptError{File: s.path, Offset: int64(pos), Next: -1,
				Err: fmt.Errorf("segment holds records %d..%d and %d more bytes, but should hold records %d..%d",
					s.index, index-1, len(buf)-pos, s.index, end)}
		}
	}
	return nil
}

// readFileInto reads the file at path into buf, reusing its capacity.
func readFileInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf, err
	}
	return buf, nil
}

// Close closes the log. Pending records are not committed: call Commit first.
// It returns the error that failed the Log, if any, else the error of the
// final fsync and close.
func (l *Log) Close() error {
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	l.batch.Clear()
	l.pending = 0
	l.pendSizes = l.pendSizes[:0]
	var err error
	if l.tw != nil { // nil after a Recover that failed half way
		err = l.tw.Close()
	}
	if err == nil && l.dirDirty {
		err = syncDir(l.dir)
	}
	if l.err != nil {
		return l.err
	}
	if err != nil {
		return fmt.Errorf("wal: close %s: %w", l.dir, err)
	}
	return nil
}
