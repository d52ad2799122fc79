package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"iotd/wal"
)

// A log fails when a write, fsync or truncation returns an error: a full
// disk, an I/O error. The broker keeps running on its in-memory state:
//
//   - Acknowledgements (PUBACK, PUBREC, PUBCOMP) that wait for records the
//     failure lost are held, not sent; everything that needs no record (QoS 0,
//     clean sessions) keeps flowing.
//   - The log's owner retries recovery with backoff: the in-memory state,
//     which includes every lost change, becomes a snapshot, and the log
//     restarts empty after it (wal.Log.Recover). Only then are the held
//     acknowledgements released: the snapshot holds their messages.
//   - The failure and the recovery are logged once each, and counted in
//     metrics (iotd_wal_failed, iotd_wal_errors_total, iotd_wal_recoveries_total).

// Recovery attempts start soon after the failure and back off to one every
// recoverMaxDelay: each attempt encodes and writes a full snapshot.
const (
	recoverFirstDelay = 100 * time.Millisecond
	recoverMaxDelay   = 5 * time.Second
)

// logFault follows one log through a failure and its recovery. It is owned by
// the goroutine that writes the log (a shard's, or the retained log's); the
// counters are read by Stats.
type logFault struct {
	err      error     // the failure being recovered from; nil while healthy
	since    time.Time // of the failure
	attempts int       // recovery attempts since the failure
	held     []*ticket // one share each, released once a recovery snapshot holds their state
	delay    time.Duration
	timer    *time.Timer
	retry    <-chan time.Time // fires when a recovery attempt is due; nil while healthy
	need     int64            // bytes of the last recovery snapshot tried; 0 before the first

	failed     atomic.Bool
	errors     atomic.Int64 // failures and failed recovery attempts
	recoveries atomic.Int64
}

// fail records that the log failed with err. The first failure logs msg at
// error level with the file and errno, and starts the recovery timer; later
// ones (the same sticky error) change nothing.
func (f *logFault) fail(logger *slog.Logger, err error, msg string, args ...any) {
	if f.err != nil {
		return
	}
	f.err, f.since, f.attempts = err, time.Now(), 0
	f.failed.Store(true)
	f.errors.Add(1)
	logger.Error(msg, append(args, errorAttrs(err)...)...)
	f.delay = recoverFirstDelay
	if f.timer == nil {
		f.timer = time.NewTimer(f.delay)
	} else {
		f.timer.Reset(f.delay)
	}
	f.retry = f.timer.C
}

// attempted records the outcome of a recovery attempt and reports whether
// the log is healthy again; the caller then releases the held shares
// (takeHeld). A failed attempt backs off and is logged at debug level only:
// the failure was logged once already.
func (f *logFault) attempted(logger *slog.Logger, err error, msg string, args ...any) bool {
	f.attempts++
	if err != nil {
		f.errors.Add(1)
		f.pruneAbandoned()
		f.delay = min(2*f.delay, recoverMaxDelay)
		f.timer.Reset(f.delay)
		logger.Debug("log recovery attempt failed; retrying", append(args, "next_attempt_in", f.delay, "err", err)...)
		return false
	}
	logger.Info(msg, append(args, "failed_for", time.Since(f.since).Round(time.Millisecond), "attempts", f.attempts, "acks_released", len(f.held))...)
	f.err, f.retry, f.need = nil, nil, 0
	f.failed.Store(false)
	f.recoveries.Add(1)
	return true
}

// pruneAbandoned stops holding the tickets of connections that are gone, so
// that clients reconnecting and publishing again during a long failure do not
// pile up tickets. Their shares are never released: nothing waits for them.
func (f *logFault) pruneAbandoned() {
	kept := f.held[:0]
	for _, t := range f.held {
		if !t.abandoned.Load() {
			kept = append(kept, t)
		}
	}
	clear(f.held[len(kept):])
	f.held = kept
}

// roomFor reports why a recovery attempt in dir is pointless: the file
// system has less free space than the last snapshot tried. Encoding the
// whole state costs the log's goroutine as long as a compaction, so on a
// disk that stays full only the first attempt pays it.
func (f *logFault) roomFor(dir string) error {
	if f.need == 0 {
		return nil
	}
	free, err := freeBytes(dir)
	if err != nil || free >= f.need {
		return nil // unknown: try
	}
	return fmt.Errorf("no room for the recovery snapshot in %s: %d bytes free, it needs about %d", dir, free, f.need)
}

// writeSnapshot is wal.WriteSnapshot for a recovery, remembering its size.
func (f *logFault) writeSnapshot(path string, index uint64, data []byte) error {
	f.need = int64(len(data))
	return wal.WriteSnapshot(path, index, data)
}

// takeHeld returns the held shares and forgets them.
func (f *logFault) takeHeld() []*ticket {
	held := f.held
	f.held = nil
	return held
}

func (f *logFault) stop() {
	if f.timer != nil {
		f.timer.Stop()
	}
}

// errorAttrs names the file and errno of a disk error, for the log line.
func errorAttrs(err error) []any {
	var attrs []any
	var pe *os.PathError
	if errors.As(err, &pe) {
		attrs = append(attrs, "file", pe.Path)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		attrs = append(attrs, "errno", errnoName(errno))
	}
	return append(attrs, "err", err)
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.EDQUOT:
		return "EDQUOT"
	case syscall.EIO:
		return "EIO"
	case syscall.EROFS:
		return "EROFS"
	case syscall.EFBIG:
		return "EFBIG"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EMFILE:
		return "EMFILE"
	}
	return "errno " + strconv.Itoa(int(e))
}

// --- a shard's log ---

// recover writes the live state as a snapshot and restarts the failed log
// after it (wal.Log.Recover).
func (p *persister) recover(f *logFault, sessions map[string]*session, unrouted map[uint64]*Message, marks originMarks) error {
	if err := f.roomFor(p.dir); err != nil {
		return err
	}
	return p.log.Recover(func(index uint64) error {
		return f.writeSnapshot(p.snapshotPath, index, encodeSnapshot(sessions, p.seq, unrouted, marks))
	})
}

// logFailed starts holding acknowledgements: the log lost records.
func (s *Shard) logFailed(err error) {
	s.fault.fail(s.b.cfg.Logger, err,
		"shard log write failed: QoS 1/2 publishes that reach persistent sessions on this shard are not acknowledged "+
			"until it recovers; QoS 0 and clean sessions keep flowing. Free disk space or fix the disk: iotd retries on its own",
		"shard", s.index)
}

// holdShares keeps this iteration's ticket shares after a failed commit:
// they are released by the recovery snapshot, not before.
func (s *Shard) holdShares(err error) {
	s.logFailed(err)
	s.fault.held = append(s.fault.held, s.shares...)
	clear(s.shares)
	s.shares = s.shares[:0]
}

// handleWhileFailed handles ev while the log is failed. Shares taken by an
// event that logged nothing (a QoS 1/2 publish that reached only clean
// sessions, a repeated QoS 2 PUBLISH) depend on no lost record, so they are
// released now instead of waiting for the recovery.
func (s *Shard) handleWhileFailed(ev *event) {
	n, records := len(s.shares), s.p.records
	repeat := s.mayRepeat(ev)
	s.dispatch(ev)
	if s.p.records != records || len(s.shares) == n || repeat {
		return
	}
	for _, t := range s.shares[n:] {
		t.releaseOn(s)
	}
	clear(s.shares[n:])
	s.shares = s.shares[:n]
}

// mayRepeat reports whether ev may repeat an earlier packet whose records the
// failure lost: a QoS 2 PUBLISH or a PUBREL from a persistent session (sent
// again after a reconnect, say). It logs nothing itself, yet its
// acknowledgement says that the first one is stored.
func (s *Shard) mayRepeat(ev *event) bool {
	c := ev.c
	if c == nil || c.sess == nil || !s.durable(c.sess) {
		return false
	}
	return ev.kind == evPubrel || ev.kind == evPublish && ev.msg.QoS == 2
}

// recoverLog attempts the recovery of the failed log and, once it worked,
// releases the acknowledgements held since the failure.
func (s *Shard) recoverLog() {
	start := time.Now()
	err := s.p.recover(&s.fault, s.sessions, s.unrouted, s.marks)
	if !s.fault.attempted(s.b.cfg.Logger, err,
		"shard log recovered: its state is in a new snapshot and held acknowledgements are sent", "shard", s.index, "snapshot_took", time.Since(start).Round(time.Microsecond)) {
		return
	}
	s.stats.logBytes.Store(s.p.log.Size())
	for _, t := range s.fault.takeHeld() {
		t.releaseOn(s)
	}
}

// --- the retained log ---

// recover attempts the recovery of the failed retained log and, once it
// worked, releases the acknowledgements held since the failure.
func (r *retainLog) recover() {
	err := r.fault.roomFor(r.dir)
	if err == nil {
		err = r.log.Recover(func(index uint64) error {
			return r.fault.writeSnapshot(r.snapshotPath, index, r.encodeSnapshot())
		})
	}
	if !r.fault.attempted(r.logger, err, "retained log recovered: retained messages are in a new snapshot and held acknowledgements are sent", "dir", r.dir) {
		return
	}
	for _, t := range r.fault.takeHeld() {
		t.release()
	}
}

// freeBytes is the space this process can still write on dir's file system
// (root may use the blocks reserved for it).
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	blocks := uint64(st.Bavail)
	if os.Geteuid() == 0 {
		blocks = uint64(st.Bfree)
	}
	return int64(blocks) * int64(st.Bsize), nil
}
