package main

// The real binary under test: build it, start it and wait for its ready
// line, collect its log, stop or kill it. Every process test (main, ops,
// security, durability, overload, diskfull, soak, storm) goes through here.

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/internal/syncbuf"
)

// buildIotd compiles the real binary once per test run.
func buildIotd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "iotd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// procLog collects a process's stderr for assertions. Set IOTD_LOGGING=1
// to see it as it is written; a failed test prints it at the end.
type procLog struct{ syncbuf.Buffer }

func (l *procLog) Write(p []byte) (int, error) {
	if os.Getenv("IOTD_LOGGING") != "" {
		os.Stderr.Write(p)
	}
	return l.Buffer.Write(p)
}

// count is how many times s appears in the log so far.
func (l *procLog) count(s string) int { return strings.Count(l.String(), s) }

// waitFor polls until the log holds want at least n times.
func (l *procLog) waitFor(t *testing.T, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.count(want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q %d times; log:\n%s", want, n, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// iotdProc is one run of the binary with the addresses from its ready line.
type iotdProc struct {
	cmd     *exec.Cmd
	addr    string            // host:port of the first tcp:// listener
	addrs   map[string]string // scheme -> host:port of the first such listener
	metrics string            // host:port of the metrics listener, if any
	log     *procLog
	done    chan struct{} // closed once the process has exited and been waited for
	err     error         // Wait's result, set before done is closed
}

// readyTimeout bounds the start of the binary up to its ready line; it is
// generous because -race on two busy cores is slow to start.
const readyTimeout = 15 * time.Second

// startIotd runs the binary with args (and a fresh --data-dir unless args
// set one) and waits for its ready line. It kills the process when the
// test ends.
func startIotd(t *testing.T, bin string, args ...string) *iotdProc {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "--data-dir") {
		args = append(args, "--data-dir", t.TempDir())
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &iotdProc{cmd: cmd, addrs: make(map[string]string), log: &procLog{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	require.NoError(t, cmd.Start())
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), " ready: ") {
				ready <- sc.Text()
			}
		}
		// Wait only once stdout is drained (os/exec's rule for StdoutPipe).
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("iotd %s log:\n%s", strings.Join(args, " "), p.log.String())
		}
	})
	select {
	case line := <-ready:
		require.Contains(t, line, "shards=")
		require.Contains(t, line, "data-dir=")
		for _, m := range regexp.MustCompile(`(tcp|tls|wss?)://([^, /]+)`).FindAllStringSubmatch(line, -1) {
			if p.addrs[m[1]] == "" {
				p.addrs[m[1]] = m[2]
			}
		}
		p.addr = p.addrs["tcp"]
		if m := regexp.MustCompile(`metrics=http://([^/ ]+)/metrics`).FindStringSubmatch(line); m != nil {
			p.metrics = m[1]
		}
		return p
	case <-p.done:
		t.Fatalf("iotd exited before it was ready (%v)", p.err)
	case <-time.After(readyTimeout):
		t.Fatalf("iotd did not print its ready line within %v", readyTimeout)
	}
	return nil
}

// wait returns the exit error once the process has ended (nil for status 0).
func (p *iotdProc) wait() error {
	<-p.done
	return p.err
}

// running reports whether the process has not exited yet.
func (p *iotdProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stopWithin sends sig and returns the exit error (nil for status 0); the
// process must exit within limit.
func (p *iotdProc) stopWithin(t *testing.T, sig syscall.Signal, limit time.Duration) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		t.Fatalf("iotd did not exit within %v of %s", limit, sig)
		return nil
	}
}

// stop is stopWithin the broker's own shutdown bound and some slack.
func (p *iotdProc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	return p.stopWithin(t, sig, shutdownTimeout+5*time.Second)
}

// terminate ends the broker with SIGTERM and expects a clean exit, however
// long its last sync takes.
func (p *iotdProc) terminate(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.wait())
}

// kill9 ends the broker with SIGKILL and waits for it.
func (p *iotdProc) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	err := p.wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "iotd exited with %v before the SIGKILL", err)
	ws := ee.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "iotd ended with %v, not by SIGKILL (did it crash?)", err)
}

// writeFile writes content to a new file name in a temp dir and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}
