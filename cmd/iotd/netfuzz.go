package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"iotd/netfuzz"
)

// netfuzzCommand is `iotd netfuzz`: hostile byte streams against a live
// broker while a control client checks that it keeps serving.
func netfuzzCommand() *cli.Command {
	return &cli.Command{
		Name:      "netfuzz",
		Usage:     "send random and mutated MQTT byte streams to a broker on this machine and check it keeps serving a control client",
		UsageText: "iotd netfuzz [--addr HOST:PORT | --spawn-broker] [--seed N] [--duration D] [--connections K] [flags]",
		Description: `--connections connections at a time send random bytes, valid packet sequences in hostile orders, and
mutated ones (bad UTF-8, zero-length fields, wrong flags, huge remaining lengths, bit flips, insertions,
deletions, splices, truncation), cut into writes of every size, with stalls, half-closes, resets and
disconnects mid-packet. Meanwhile a control client does a QoS 1 publish -> own subscription round trip
every --control-interval. The run FAILS when a round trip takes longer than --control-timeout, when the
broker dies (--broker-pid, or the broker --spawn-broker started), or when the broker sends a fuzzing
connection anything that is not valid MQTT.

Every stream derives from --seed (printed; random when not given): connection n of worker w uses
seed ConnSeed(seed, w, n). A failure lists the seeds of the connections running then; --replay SEED
plays exactly those streams again. --conn-log FILE records every connection (seed, kind, bytes, outcome).

Only loopback addresses are fuzzed unless --allow-remote is given. The run stops by itself after
--duration. Exit status: 0 passed, 1 failed, 2 could not start (bad flags, broker unreachable).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: netfuzz.DefaultAddr, Usage: "broker `HOST:PORT` (loopback only, see --allow-remote)"},
			&cli.BoolFlag{Name: "spawn-broker", Usage: "start this iotd binary on 127.0.0.1:<ephemeral> with a temporary --data-dir, fuzz it, and require a clean exit on SIGTERM at the end (--addr is ignored)"},
			&cli.StringSliceFlag{Name: "broker-arg", Usage: "with --spawn-broker: an extra argument for `iotd serve` (repeat for several, e.g. --broker-arg=--persistence=off)"},
			&cli.StringFlag{Name: "seed", Usage: "run seed, decimal or 0x hex", DefaultText: "random, printed"},
			&cli.DurationFlag{Name: "duration", Value: netfuzz.DefaultDuration, Usage: "how long to fuzz"},
			&cli.IntFlag{Name: "connections", Value: netfuzz.DefaultConnections, Usage: "fuzzing connections open at once"},
			&cli.StringSliceFlag{Name: "replay", Usage: "play only this connection `SEED` (from a failure report or --conn-log); repeat for several"},
			&cli.DurationFlag{Name: "control-interval", Value: netfuzz.DefaultControlInterval, Usage: "time between control round trips"},
			&cli.DurationFlag{Name: "control-timeout", Value: netfuzz.DefaultControlTimeout, Usage: "a control round trip slower than this fails the run"},
			&cli.IntFlag{Name: "broker-pid", Usage: "the broker's `PID` on this machine: the run fails if it exits", DefaultText: "none"},
			&cli.StringFlag{Name: "conn-log", Usage: "write one line per fuzzing connection to `FILE`"},
			&cli.BoolFlag{Name: "allow-remote", Usage: "allow an --addr that is not a loopback address (never point this at a broker you do not own)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object instead of the summary"},
		},
		Action: runNetfuzz,
	}
}

func runNetfuzz(cctx *cli.Context) error {
	if cctx.NArg() != 0 {
		return cli.Exit(fmt.Sprintf("unexpected arguments %q", cctx.Args().Slice()), 2)
	}
	cfg := netfuzz.Config{
		Addr:            cctx.String("addr"),
		AllowRemote:     cctx.Bool("allow-remote"),
		Duration:        cctx.Duration("duration"),
		Connections:     cctx.Int("connections"),
		ControlInterval: cctx.Duration("control-interval"),
		ControlTimeout:  cctx.Duration("control-timeout"),
		Progress:        os.Stderr,
	}
	if cfg.Duration <= 0 || cfg.Connections <= 0 || cfg.ControlInterval <= 0 || cfg.ControlTimeout <= 0 {
		return cli.Exit("--duration, --connections, --control-interval and --control-timeout must be positive", 2)
	}
	if s := cctx.String("seed"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--seed %q: want a decimal or 0x hex 64-bit number", s), 2)
		}
		cfg.Seed = v
	} else {
		var b [8]byte
		rand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:])
	}
	for _, s := range cctx.StringSlice("replay") {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--replay %q: want a decimal or 0x hex 64-bit number", s), 2)
		}
		cfg.Replay = append(cfg.Replay, v)
	}
	if path := cctx.String("conn-log"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--conn-log: %v", err), 2)
		}
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		cfg.ConnLog = w
	}
	if pid := cctx.Int("broker-pid"); pid > 0 {
		if err := processAlive(pid); err != nil {
			return cli.Exit(fmt.Sprintf("--broker-pid %d: %v", pid, err), 2)
		}
		cfg.BrokerAlive = func() error { return processAlive(pid) }
		cfg.BrokerPeakRSS = func() (int64, error) { return peakRSS(pid) }
	}

	// Ctrl-C ends the run early; the result so far is still printed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var broker *spawnedBroker
	if cctx.Bool("spawn-broker") {
		var err error
		if broker, err = spawnBroker(cctx.StringSlice("broker-arg")); err != nil {
			return cli.Exit("netfuzz: "+err.Error(), 2)
		}
		defer broker.cleanup()
		cfg.Addr = broker.addr
		cfg.BrokerAlive = broker.alive
		cfg.BrokerPeakRSS = func() (int64, error) { return peakRSS(broker.cmd.Process.Pid) }
		fmt.Fprintf(os.Stderr, "netfuzz: started iotd pid %d on %s (log %s)\n", broker.cmd.Process.Pid, broker.addr, broker.logPath)
	}
	fmt.Fprintf(os.Stderr, "netfuzz: seed %d (%#x), %d connections, %v, broker %s\n", cfg.Seed, cfg.Seed, cfg.Connections, cfg.Duration, cfg.Addr)

	res, err := netfuzz.Run(ctx, cfg)
	if res == nil {
		if broker != nil {
			broker.showLog()
		}
		return cli.Exit("netfuzz: "+err.Error(), 2)
	}
	if broker != nil {
		// After fuzzing the broker must still stop cleanly.
		if serr := broker.stop(); serr != nil {
			res.Failures = append(res.Failures, netfuzz.Failure{At: res.Elapsed, What: "broker shutdown: " + serr.Error()})
		}
		if len(res.Failures) > 0 {
			broker.showLog()
		}
	}
	if cctx.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err := res.WriteSummary(os.Stdout); err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return cli.Exit("netfuzz: "+err.Error(), 1)
	}
	return nil
}

// processAlive reports an error once pid has exited (a zombie counts as
// exited: it no longer serves anything).
func processAlive(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Signal(syscall.Signal(0)); err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) S ...: the state follows the last ')'.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return fmt.Errorf("process %d has exited (zombie)", pid)
		}
	}
	return nil
}

// peakRSS reads the peak resident set size (VmHWM) of pid from /proc.
func peakRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in " + fmt.Sprintf("/proc/%d/status", pid))
}

// spawnedBroker is an iotd started by --spawn-broker.
type spawnedBroker struct {
	cmd     *exec.Cmd
	dir     string // temporary: data directory and log
	logPath string
	addr    string
	exited  chan struct{}
	waitErr error // set before exited closes
	keepDir bool
}

func spawnBroker(extra []string) (*spawnedBroker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "iotd-netfuzz-")
	if err != nil {
		return nil, err
	}
	b := &spawnedBroker{dir: dir, logPath: filepath.Join(dir, "iotd.log"), exited: make(chan struct{})}
	logFile, err := os.Create(b.logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := append([]string{"serve", "--listen", "tcp://127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn"}, extra...)
	b.cmd = exec.Command(self, args...)
	b.cmd.Stderr = logFile
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	logFile.Close() // the child has its own descriptor
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), " ready: ") {
				select {
				case ready <- sc.Text():
				default:
				}
			}
		}
	}()
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.exited)
	}()
	select {
	case line := <-ready:
		m := regexp.MustCompile(`listeners=tcp://([^, ]+)`).FindStringSubmatch(line)
		if m == nil {
			b.keepDir = true
			b.stop()
			return nil, fmt.Errorf("no tcp listener in the ready line %q", line)
		}
		b.addr = m[1]
		return b, nil
	case <-b.exited:
		b.showLog()
		b.keepDir = true
		return nil, fmt.Errorf("iotd exited before it was ready: %v (log %s)", b.waitErr, b.logPath)
	case <-time.After(30 * time.Second):
		b.keepDir = true
		b.stop()
		return nil, fmt.Errorf("iotd was not ready within 30s (log %s)", b.logPath)
	}
}

func (b *spawnedBroker) alive() error {
	select {
	case <-b.exited:
		b.keepDir = true
		return fmt.Errorf("iotd pid %d exited: %v (log %s)", b.cmd.Process.Pid, b.waitErr, b.logPath)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 15 s).
func (b *spawnedBroker) stop() error {
	select {
	case <-b.exited:
		b.keepDir = true
		return fmt.Errorf("iotd had already exited: %v", b.waitErr)
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
		b.keepDir = true
		return errors.New("iotd did not exit within 15s of SIGTERM")
	}
	if b.waitErr != nil {
		b.keepDir = true
		return fmt.Errorf("iotd exited with %v after SIGTERM", b.waitErr)
	}
	return nil
}

// showLog copies the tail of the broker's log (a panic's stack trace, say)
// to stderr.
func (b *spawnedBroker) showLog() {
	f, err := os.Open(b.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
		f.Seek(-64<<10, io.SeekEnd)
	}
	fmt.Fprintf(os.Stderr, "netfuzz: tail of %s:\n", b.logPath)
	io.Copy(os.Stderr, f)
}

// cleanup kills a broker still running and removes the temporary directory
// unless something went wrong (then it is kept for the post-mortem).
func (b *spawnedBroker) cleanup() {
	select {
	case <-b.exited:
	default:
		b.cmd.Process.Kill()
		<-b.exited
	}
	if b.keepDir {
		fmt.Fprintf(os.Stderr, "netfuzz: kept %s (broker log and data directory)\n", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}
