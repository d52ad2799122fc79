package shard

// A failing disk, injected into every log (wal.Options.Fault): durable
// acknowledgements are held while QoS 0 and clean sessions keep flowing, the
// failure shows in Stats and the log, and once the disk works again a
// recovery snapshot releases what was held, with nothing acknowledged lost.

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/internal/syncbuf"
	"iotd/wire"
)

// diskFaults fails the logs' disk operations while set; safe for every
// log's goroutine.
type diskFaults struct {
	mu  sync.Mutex
	err syscall.Errno // 0: the disk works
	ops map[string]bool
}

func (f *diskFaults) hook(dir, op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == 0 || !f.ops[op] {
		return nil
	}
	return &os.PathError{Op: "write", Path: filepath.Join(dir, "00000000000000000001"), Err: f.err}
}

func (f *diskFaults) set(err syscall.Errno, ops ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	f.ops = map[string]bool{}
	for _, op := range ops {
		f.ops[op] = true
	}
}

// failedLogs counts the logs Stats reports failed, and their errors.
func failedLogs(st Stats) (failed int, errors, recovered int64) {
	for _, s := range st.Shards {
		if s.LogFailed {
			failed++
		}
		errors += s.LogErrors
		recovered += s.LogRecovered
	}
	if st.RetainedLogFailed {
		failed++
	}
	return failed, errors + st.RetainedLogErrors, recovered + st.RetainedLogRecovered
}

func TestDiskFullHoldsDurableAcksAndRecovers(t *testing.T) {
	faults := &diskFaults{}
	logs := &syncbuf.Buffer{}
	dir := t.TempDir()
	cfg := Config{
		Shards:   3,
		DataDir:  dir,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		walFault: faults.hook,
	}
	b := startDurable(t, cfg)

	// A persistent subscriber, offline: messages for it are queued and logged.
	durable, _ := b.connect(t, "durable", false)
	durable.subscribe(1, wire.Subscription{Filter: "d/#", QoS: 1})
	durable.disconnect()
	// A clean subscriber: nothing for it touches the disk.
	live := b.subscriber(t, "live", "live/#", 1)
	// A persistent QoS 2 publisher with a flow half done: PUBREC received.
	pp, _ := b.connect(t, "pp", false)
	pp.publish("d/qos2", "q2", 2, false, 7)
	require.Equal(t, uint16(7), pp.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	pub, _ := b.connect(t, "pub", true)
	clean, _ := b.connect(t, "clean-pub", true)

	// The disk fills: writes and recovery snapshots fail.
	faults.set(syscall.ENOSPC, "commit", "sync", "truncate", "recover")
	pub.publish("d/1", "one", 1, false, 1)
	pub.publish("r/1", "kept", 1, true, 2) // retained: its own log
	pp.send(&wire.Pubrel{PacketID: 7})     // PUBCOMP frees id 7: it waits for the release record
	pp.publish("d/qos2b", "q2b", 2, false, 9)

	require.Eventually(t, func() bool {
		failed, _, _ := failedLogs(b.Stats())
		return failed >= 3 // durable's shard, pp's shard (if another) and the retained log
	}, 10*time.Second, 10*time.Millisecond, "the failed logs show in Stats")

	// QoS 0 and clean sessions keep flowing, QoS 1 included.
	pub.publish("live/0", "zero", 0, false, 0)
	live.expectMessage("live/0", "zero")
	clean.publish("live/1", "clean", 1, false, 3)
	require.Equal(t, uint16(3), clean.expect(wire.PUBACK).(*wire.Puback).PacketID)
	live.expectMessage("live/1", "clean")

	// Recovery attempts keep failing while the disk is full; nothing durable
	// is acknowledged.
	failed, errs, _ := failedLogs(b.Stats())
	require.Eventually(t, func() bool { _, e, _ := failedLogs(b.Stats()); return e >= errs+int64(failed) },
		10*time.Second, 10*time.Millisecond, "failed recovery attempts are counted")
	pub.expectSilence(300 * time.Millisecond)
	pp.expectSilence(10 * time.Millisecond)
	// pp reconnects and repeats both flows. Neither repeat logs anything,
	// but the records of the first ones are lost: still no acknowledgement.
	pp.kill()
	pp, ack := b.connect(t, "pp", false)
	require.True(t, ack.SessionPresent)
	pp.send(&wire.Pubrel{PacketID: 7})
	pp.send(&wire.Publish{Dup: true, QoS: 2, Topic: []byte("d/qos2b"), Payload: []byte("q2b"), PacketID: 9})
	pp.expectSilence(300 * time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "retained log write failed"), logs.String())
	require.Equal(t, failed-1, strings.Count(logs.String(), "shard log write failed"), "one error line per failed log:\n%s", logs.String())
	require.Contains(t, logs.String(), "errno=ENOSPC")
	require.Contains(t, logs.String(), "file="+dir)

	// Space returns: the held acknowledgements arrive, in order.
	faults.set(0)
	require.Equal(t, uint16(1), pub.expect(wire.PUBACK).(*wire.Puback).PacketID)
	require.Equal(t, uint16(2), pub.expect(wire.PUBACK).(*wire.Puback).PacketID)
	require.Equal(t, uint16(7), pp.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
	require.Equal(t, uint16(9), pp.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	pp.send(&wire.Pubrel{PacketID: 9})
	require.Equal(t, uint16(9), pp.expect(wire.PUBCOMP).(*wire.Pubcomp).PacketID)
	require.Eventually(t, func() bool { f, _, r := failedLogs(b.Stats()); return f == 0 && r >= int64(failed) },
		10*time.Second, 10*time.Millisecond)
	require.Equal(t, failed, strings.Count(logs.String(), "log recovered"), logs.String())

	// Healthy again: a new publish is acknowledged as usual.
	pub.publishAcked("d/2", "two", false, 4)
	pub.ping()

	// Crash: the data directory as it is now, with the broker still running,
	// is what kill -9 would leave. A broker started on it has every
	// acknowledged message.
	crashed := filepath.Join(t.TempDir(), "crashed")
	require.NoError(t, os.CopyFS(crashed, os.DirFS(dir)))
	b2 := startDurable(t, Config{Shards: 3, DataDir: crashed})
	sub, ack := b2.connect(t, "durable", false)
	require.True(t, ack.SessionPresent)
	var got []string
	for range 4 {
		p := sub.expectPublish()
		sub.ack(p)
		got = append(got, string(p.Payload))
	}
	// Two publishers at once: each one's messages arrive in the order sent.
	require.ElementsMatch(t, []string{"q2", "q2b", "one", "two"}, got)
	require.Less(t, slices.Index(got, "q2"), slices.Index(got, "q2b"))
	require.Less(t, slices.Index(got, "one"), slices.Index(got, "two"))
	sub.expectSilence(200 * time.Millisecond)
	r := b2.subscriber(t, "r", "r/#", 1)
	p := r.expectPublish()
	require.Equal(t, "kept", string(p.Payload))
	require.True(t, p.Retain)
	// The QoS 2 release survived too: id 7 is free for a new message.
	pp2, ack := b2.connect(t, "pp", false)
	require.True(t, ack.SessionPresent)
	pp2.publish("d/new", "new", 2, false, 7)
	require.Equal(t, uint16(7), pp2.expect(wire.PUBREC).(*wire.Pubrec).PacketID)
	sub.expectMessage("d/new", "new")
}

// In --fsync interval mode a failed timed fsync fails the log even with no
// traffic, and it recovers the same way.
func TestFailedIntervalSyncRecovers(t *testing.T) {
	faults := &diskFaults{}
	b := startDurable(t, Config{Shards: 1, DataDir: t.TempDir(), FsyncInterval: 20 * time.Millisecond, walFault: faults.hook})
	sub, _ := b.connect(t, "s", false)
	sub.subscribe(1, wire.Subscription{Filter: "t", QoS: 1})
	faults.set(syscall.EIO, "sync", "recover")
	require.Eventually(t, func() bool { return b.Stats().Shards[0].LogFailed }, 10*time.Second, 5*time.Millisecond)
	pub, _ := b.connect(t, "p", true)
	pub.publish("t", "while failed", 1, false, 1)
	pub.expectSilence(200 * time.Millisecond)
	faults.set(0)
	require.Eventually(t, func() bool { s := b.Stats().Shards[0]; return !s.LogFailed && s.LogRecovered == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, uint16(1), pub.expect(wire.PUBACK).(*wire.Puback).PacketID)
	pub.publishAcked("t", "after", false, 2)
	sub.expectMessage("t", "while failed")
	sub.expectMessage("t", "after")
}

// A recovery attempt is skipped, without encoding the state, while the file
// system has less room than the last snapshot tried.
func TestRecoveryWaitsForRoom(t *testing.T) {
	dir := t.TempDir()
	var f logFault
	require.NoError(t, f.roomFor(dir), "the first attempt always runs")
	require.NoError(t, f.writeSnapshot(filepath.Join(dir, "snapshot"), 1, []byte("state")))
	require.NoError(t, f.roomFor(dir), "room for 5 bytes")
	free, err := freeBytes(dir)
	require.NoError(t, err)
	require.Positive(t, free)
	f.need = free + 1<<30
	require.ErrorContains(t, f.roomFor(dir), "no room for the recovery snapshot")
}
