package main

// A real full disk under the real binary: the data directory is on a small
// tmpfs that a balloon file fills. While it is full QoS 1 publishes get no
// PUBACK, QoS 0 still flows, and the metrics and the log say why; once the
// balloon is gone the held PUBACKs arrive, and after kill -9 and a restart
// every acknowledged message reaches its persistent subscriber.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// mountTmpfs mounts a tmpfs of size bytes on a new temp directory, or skips
// the test where mounting is not permitted (not root).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("this test fills a small tmpfs, and mounting one is not permitted here (%v); run it as root to include it", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fill writes path until the file system is full and returns its size.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling the disk: %v", err)
			return n
		}
	}
}

func TestDiskFullHoldsAcksAndRecovers(t *testing.T) {
	mnt := mountTmpfs(t, 8<<20)
	bin := buildIotd(t)
	data := filepath.Join(mnt, "data")
	args := []string{"--listen", "tcp://127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", data, "--shards", "2"}
	p := startIotd(t, bin, args...)
	addr := p.addrs["tcp"]

	sub, _, err := dialMQTT(addr, "durable", false)
	require.NoError(t, err)
	sub.subscribe(t, wire.Subscription{Filter: "d/#", QoS: 1})
	sub.disconnect(t)
	live, _, err := dialMQTT(addr, "live", true)
	require.NoError(t, err)
	defer live.close()
	live.subscribe(t, wire.Subscription{Filter: "live/#", QoS: 0})
	pub, _, err := dialMQTT(addr, "pub", true)
	require.NoError(t, err)
	defer pub.close()

	balloon := filepath.Join(mnt, "balloon")
	t.Logf("disk filled with a %d-byte balloon", fill(t, balloon))

	// Every message needs a new page of the full tmpfs (an 8 KiB topic; the
	// subscriber's checks read the payload): none can be stored.
	const held = 10
	big := strings.Repeat("x", 8<<10)
	for i := range held {
		require.NoError(t, pub.send(&wire.Publish{QoS: 1, Topic: []byte("d/a/" + big), PacketID: uint16(i + 1), Payload: []byte(fmt.Sprintf("a %d", i))}, false))
	}
	require.NoError(t, pub.send(&wire.Publish{QoS: 1, Retain: true, Topic: []byte("r/" + big), PacketID: held + 1, Payload: []byte("r 0")}, true))

	// QoS 0 keeps flowing; no PUBACK comes.
	require.NoError(t, pub.send(&wire.Publish{QoS: 0, Topic: []byte("live/x"), Payload: []byte("zero")}, true))
	pk, err := live.next(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "zero", string(pk.(*wire.Publish).Payload))
	pk, err = pub.next(2 * time.Second)
	require.True(t, isTimeout(err), "the broker acknowledged with a full disk: %#v %v", pk, err)

	// The metrics and the log say why.
	walFailed := func() (failed, errs, recovered float64) {
		for k, v := range scrapeProc(t, p.metrics) {
			switch {
			case strings.HasPrefix(k, "iotd_wal_failed,"):
				failed += v
			case strings.HasPrefix(k, "iotd_wal_errors_total,"):
				errs += v
			case strings.HasPrefix(k, "iotd_wal_recoveries_total,"):
				recovered += v
			}
		}
		return
	}
	failed, errs, _ := walFailed()
	require.GreaterOrEqual(t, failed, 2.0, "the shard log and the retained log failed")
	require.GreaterOrEqual(t, errs, failed)
	p.log.waitFor(t, "shard log write failed", 1)
	p.log.waitFor(t, "retained log write failed", 1)
	require.Contains(t, p.log.String(), "errno=ENOSPC")
	require.Contains(t, p.log.String(), "file="+data)

	// Space returns: every held PUBACK arrives, in order.
	require.NoError(t, os.Remove(balloon))
	for i := range held + 1 {
		pk, err := pub.next(20 * time.Second)
		require.NoError(t, err, "PUBACK %d of %d after the space returned", i+1, held+1)
		require.Equal(t, uint16(i+1), pk.(*wire.Puback).PacketID)
	}
	failed, _, recovered := walFailed()
	require.Zero(t, failed)
	require.GreaterOrEqual(t, recovered, 2.0)
	p.log.waitFor(t, "shard log recovered", 1)
	p.log.waitFor(t, "retained log recovered", 1)
	require.Equal(t, 1, p.log.count("retained log write failed"), "the failure is logged once")

	// Healthy again; then kill -9 and restart on the same disk.
	const after = 5
	for i := range after {
		require.NoError(t, pub.send(&wire.Publish{QoS: 1, Topic: []byte("d/b"), PacketID: uint16(100 + i), Payload: []byte(fmt.Sprintf("b %d", i))}, true))
		pk, err := pub.next(10 * time.Second)
		require.NoError(t, err)
		require.Equal(t, uint16(100+i), pk.(*wire.Puback).PacketID)
	}
	p.kill9(t)

	p2 := startIotd(t, bin, args...)
	sub, ack, err := dialMQTT(p2.addrs["tcp"], "durable", false)
	require.NoError(t, err)
	require.True(t, ack.SessionPresent, "the persistent session survived")
	r := newReceiver(t, sub)
	r.drain(map[string]int{"a": held, "b": after}, 300*time.Millisecond, 20*time.Second)
	require.Equal(t, held, r.next["a"])
	require.Equal(t, after, r.next["b"])
	sub.disconnect(t)

	rs, _, err := dialMQTT(p2.addrs["tcp"], "retained-check", true)
	require.NoError(t, err)
	defer rs.close()
	rs.subscribe(t, wire.Subscription{Filter: "r/#", QoS: 1})
	pk, err = rs.next(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "r/"+big, string(pk.(*wire.Publish).Topic))
	require.True(t, pk.(*wire.Publish).Retain)
}
