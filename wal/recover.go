package wal

import (
	"errors"
	"fmt"

	twal "github.com/tidwall/wal"
)

// Recover brings a failed Log back into service without a restart.
//
// After a failed write or fsync the log's files are in an unknown state (a
// torn batch, pages the kernel dropped), and the caller's state already holds
// changes whose records were lost, so appending those records again would
// be wrong. Instead the caller's whole state becomes a snapshot:
//
//  1. Recover calls snapshot(index) with an index at or past every record
//     that may have reached the disk. snapshot must store the caller's
//     complete state as covering every index <= index, durably (for
//     example WriteSnapshot, which fsyncs the file and the directory).
//  2. Once snapshot returns nil, every segment file is deleted and the log
//     restarts empty, its next record getting index+1 (the crash-safe
//     protocol of TruncateFront past the end: an empty <index+1>.START file
//     that Open finishes if a crash interrupts it).
//
// A crash between the two steps is safe: the startup sequence (ReadSnapshot,
// Open, TruncateFront(index+1), Replay) finds the snapshot ahead of the log and
// moves the log past it. If either step fails, the Log stays failed and
// Recover may be called again later, with the same index.
//
// On a healthy Log Recover does nothing and returns nil.
func (l *Log) Recover(snapshot func(index uint64) error) error {
	if l.closed {
		return ErrClosed
	}
	if l.err == nil {
		return nil
	}
	if err := l.fault("recover"); err != nil {
		return fmt.Errorf("wal: recover %s: %w", l.dir, err)
	}
	index := max(l.high, l.last)
	if err := snapshot(index); err != nil {
		return err
	}
	if l.tw != nil {
		// tidwall's view of the files is stale after the failure; the
		// files are about to go, so its close errors do not matter. A close
		// whose fsync failed leaves the file open: the second call closes
		// it (the kernel reports a writeback error once per file).
		if err := l.tw.Close(); err != nil && !errors.Is(err, twal.ErrClosed) {
			l.tw.Close()
		}
		l.tw = nil
	}
	if err := l.openEmptyAt(index + 1); err != nil {
		return fmt.Errorf("wal: recover %s: restart empty at index %d: %w", l.dir, index+1, err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("wal: recover %s: %w", l.dir, err)
	}
	if err := l.loadState(); err != nil {
		return fmt.Errorf("wal: recover %s: %w", l.dir, err)
	}
	l.err, l.high, l.dirDirty = nil, 0, false
	return nil
}
