package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

func TestServeStopsCleanlyOnSignals(t *testing.T) {
	bin := buildIotd(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		dir := filepath.Join(t.TempDir(), "state")
		p := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--shards", "3", "--data-dir", dir)
		require.NotEmpty(t, p.addr, "a tcp:// listener")
		_, err := os.Stat(dir)
		require.NoError(t, err, "--data-dir is created")

		conn, err := net.Dial("tcp", p.addr)
		require.NoError(t, err)
		_, err = conn.Write((&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "c", CleanSession: true}).Append(nil))
		require.NoError(t, err)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		_, err = conn.Read(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{0x20, 2, 0, 0}, buf)

		start := time.Now()
		require.NoError(t, p.cmd.Process.Signal(sig))
		require.NoError(t, p.wait(), "exit status 0 after %s", sig)
		require.Less(t, time.Since(start), 10*time.Second)
		// The open connection was closed by the shutdown.
		_, err = conn.Read(buf)
		require.Error(t, err)
		conn.Close()
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	bin := buildIotd(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "udp://127.0.0.1:0"}, "unsupported scheme"},
		{[]string{"--shards", "-1"}, "--shards must be 0 (one per CPU) or more"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--max-packet-size", "lots"}, "is not a size"},
		{[]string{"--connect-timeout", "10"}, "connect-timeout"},
		{[]string{"--persistence", "maybe"}, "--persistence \"maybe\": want on or off"},
		{[]string{"--fsync", "sometimes"}, "want always or interval:<duration>"},
		{[]string{"--fsync", "interval:0s"}, "want always or interval:<duration>"},
		{[]string{"--max-accept-rate", "-1"}, "--max-accept-rate must be 0 or more"},
		{[]string{"--max-tls-handshakes", "-5"}, "--max-tls-handshakes must be 0 or more"},
	} {
		cmd := exec.Command(bin, append(tc.args, "--data-dir", t.TempDir())...)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, tc.args)
		require.Contains(t, string(out), tc.want, tc.args)
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	bin := buildIotd(t)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	require.NoError(t, err)
	for _, f := range serveCommand().Flags {
		require.Contains(t, string(out), "--"+f.Names()[0], "iotd --help")
	}
}

func TestListenerInUseFails(t *testing.T) {
	bin := buildIotd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	out, err := exec.Command(bin, "--listen", "tcp://"+ln.Addr().String(), "--data-dir", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "listen on tcp://"+ln.Addr().String())
}
