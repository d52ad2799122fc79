package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// `iotd netfuzz --spawn-broker` fuzzes the real binary for a few seconds,
// stops it with SIGTERM, and passes only if it exited cleanly; the seed and
// every connection are logged.
func TestNetfuzzSpawnBroker(t *testing.T) {
	bin := buildIotd(t)
	connLog := filepath.Join(t.TempDir(), "conns.log")
	cmd := exec.Command(bin, "netfuzz", "--spawn-broker", "--seed", "0x2a", "--duration", "4s", "--connections", "4",
		"--control-timeout", "10s", "--conn-log", connLog, "--broker-arg=--shards=2")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "netfuzz: seed 42 (0x2a)")
	require.Contains(t, string(out), "result          PASS")
	require.Regexp(t, `control +[1-9][0-9]* round trips, 0 missed`, string(out))
	require.Regexp(t, `broker peak RSS [0-9.]+ [KMG]iB`, string(out))
	log, err := os.ReadFile(connLog)
	require.NoError(t, err)
	require.Contains(t, string(log), "seed=0x")
}

// A broker process that dies fails the run with exit status 1, and the
// flags are checked before anything is sent.
func TestNetfuzzFailsAndRefuses(t *testing.T) {
	bin := buildIotd(t)
	broker := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--data-dir", t.TempDir())
	go func() {
		time.Sleep(1500 * time.Millisecond)
		broker.cmd.Process.Signal(syscall.SIGKILL)
	}()
	cmd := exec.Command(bin, "netfuzz", "--addr", broker.addr, "--broker-pid", strconv.Itoa(broker.cmd.Process.Pid),
		"--duration", "60s", "--connections", "2", "--control-timeout", "2s")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), string(out))
	require.Less(t, time.Since(start), 30*time.Second)
	require.Contains(t, string(out), "result          FAIL")
	require.Contains(t, string(out), "--replay 0x")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "192.0.2.1:1883"}, "not a loopback address"},
		{[]string{"--seed", "forty-two"}, "--seed \"forty-two\""},
		{[]string{"--replay", "x"}, "--replay \"x\""},
		{[]string{"--connections", "0"}, "must be positive"},
	} {
		cmd := exec.Command(bin, append([]string{"netfuzz", "--duration", "1s"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, tc.args)
		require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%v: %s", tc.args, out)
		require.True(t, strings.Contains(string(out), tc.want), "%v: %s", tc.args, out)
	}
}
