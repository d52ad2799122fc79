package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"iotd/listener"
	"iotd/shard"
)

// shutdownTimeout bounds a graceful stop after SIGINT/SIGTERM.
const shutdownTimeout = 10 * time.Second

func serveCommand() *cli.Command {
	d := shard.DefaultConfig()
	return &cli.Command{
		Name:  "serve",
		Usage: "run the broker (the default command)",
		Flags: append([]cli.Flag{
			configFlag(),
			&cli.StringSliceFlag{Name: "listen", Value: cli.NewStringSlice("tcp://127.0.0.1:1883"), Usage: "listener URL `tcp://HOST:PORT`, tls://HOST:PORT, ws://HOST:PORT/PATH (MQTT over WebSocket) or wss://HOST:PORT/PATH (TLS settings: the --tls-* flags, shared by every tls:// and wss:// listener); repeat for several"},
			&cli.IntFlag{Name: "shards", Value: 0, Usage: "number of shards (session-owning goroutines); 0 = one per CPU"},
			&cli.StringFlag{Name: "data-dir", Value: "./data", Usage: "directory for durable state, created if missing"},
			&cli.StringFlag{Name: "persistence", Value: "on", Usage: "on: persistent sessions and retained messages survive restarts and kill -9; off: everything in memory"},
			&cli.StringFlag{Name: "fsync", Value: "always", Usage: "always: acknowledge QoS 1/2 only after fsync; interval:<duration> (e.g. interval:1s): fsync on a timer, faster, may lose the last interval on power loss"},
			&cli.IntFlag{Name: "max-pending-handshakes", Value: d.MaxPendingHandshakes, Usage: "connections still without CONNECT; past it the oldest is closed to make room (slowloris floods cannot lock clients out)"},
			&cli.IntFlag{Name: "max-connections", Value: d.MaxConnections, Usage: "open network connections; more are closed at accept, counted (iotd_connections_refused_total{reason=\"max-connections\"}) and logged"},
			&cli.IntFlag{Name: "max-accept-rate", Value: d.MaxAcceptRate, Usage: "new connections per second over all listeners (a token bucket); more are closed at accept, before anything is read, counted (iotd_connections_refused_total{reason=\"accept-rate\"}) and logged; 0 = no limit"},
			&cli.IntFlag{Name: "max-accept-burst", Value: d.MaxAcceptBurst, Usage: "new connections accepted at once before --max-accept-rate applies (the bucket's size); 0 = one second's worth"},
			&cli.IntFlag{Name: "max-tls-handshakes", Value: d.MaxTLSHandshakes, Usage: "TLS handshakes in progress (tls:// and wss:// listeners); more TLS connections are closed at accept, counted (reason=\"tls-handshakes\") and logged; 0 = no cap"},
			&cli.GenericFlag{Name: "max-packet-size", Value: newSize(d.MaxPacketSize), Usage: "largest packet accepted (e.g. 16MiB); a larger one closes the connection before its payload is read"},
			&cli.DurationFlag{Name: "connect-timeout", Value: d.ConnectTimeout, Usage: "time a new connection has to send CONNECT"},
			&cli.IntFlag{Name: "max-client-id-length", Value: d.MaxClientIDLen, Usage: "longest client id accepted (bytes); longer ids get CONNACK 0x02"},
			&cli.IntFlag{Name: "max-inflight", Value: d.MaxInflight, Usage: "unacknowledged QoS 1/2 messages per client; more wait in the session queue"},
			&cli.IntFlag{Name: "max-queued-messages", Value: d.MaxQueuedMessages, Usage: "QoS 1/2 messages queued per session; beyond it new ones are dropped and counted"},
			&cli.GenericFlag{Name: "max-outbound-bytes", Value: newSize(d.MaxOutboundBytes), Usage: "bytes queued for writing per connection; beyond it QoS 0 is dropped and QoS 1/2 wait in the session"},
			&cli.IntFlag{Name: "max-subscriptions", Value: d.MaxSubscriptions, Usage: "topic filters per session; more are refused with SUBACK 0x80"},
			&cli.DurationFlag{Name: "retry-interval", Value: 0, Usage: "re-send unacknowledged QoS 1/2 messages after this long (0 = only on reconnect, as MQTT 3.1.1 requires)"},
			&cli.IntFlag{Name: "retry-limit", Value: d.RetryLimit, Usage: "in-session re-sends per message when --retry-interval is set (0 = unlimited)"},
			&cli.DurationFlag{Name: "write-timeout", Value: d.WriteTimeout, Usage: "close a connection whose socket accepts no bytes for this long"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		}, append(securityFlags(), opsFlags()...)...),
		Action: runServe,
	}
}

func runServe(cctx *cli.Context) error {
	cfgState, err := applyConfig(cctx, serveCommand().Flags)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	logLevel := new(slog.LevelVar)
	logger, err := newLogger(cctx.String("log-level"), cctx.String("log-format"), logLevel)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	var specs []listener.Spec
	for _, raw := range cctx.StringSlice("listen") {
		spec, err := listener.Parse(raw)
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		specs = append(specs, spec)
	}
	sec, err := newSecurity(cctx, specs, logger)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if cctx.Int("max-connections") < 1 {
		return cli.Exit(fmt.Sprintf("--max-connections must be at least 1, got %d", cctx.Int("max-connections")), 2)
	}
	for _, name := range []string{"max-accept-rate", "max-accept-burst", "max-tls-handshakes"} {
		if cctx.Int(name) < 0 {
			return cli.Exit(fmt.Sprintf("--%s must be 0 or more, got %d", name, cctx.Int(name)), 2)
		}
	}
	if cctx.Int("shards") < 0 {
		return cli.Exit(fmt.Sprintf("--shards must be 0 (one per CPU) or more, got %d", cctx.Int("shards")), 2)
	}
	ops, err := newOps(cctx)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	dataDir := cctx.String("data-dir")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return cli.Exit(fmt.Sprintf("cannot create --data-dir %s: %v", dataDir, err), 1)
	}

	persist, err := parsePersistence(cctx.String("persistence"))
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	fsyncInterval, err := parseFsync(cctx.String("fsync"))
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}

	cfg := shard.Config{
		Persistence:          persist,
		DataDir:              dataDir,
		FsyncInterval:        fsyncInterval,
		Shards:               cctx.Int("shards"),
		MaxConnections:       cctx.Int("max-connections"),
		MaxPendingHandshakes: cctx.Int("max-pending-handshakes"),
		MaxAcceptRate:        cctx.Int("max-accept-rate"),
		MaxAcceptBurst:       cctx.Int("max-accept-burst"),
		MaxTLSHandshakes:     cctx.Int("max-tls-handshakes"),
		MaxPacketSize:        sizeFlag(cctx, "max-packet-size"),
		ConnectTimeout:       cctx.Duration("connect-timeout"),
		MaxClientIDLen:       cctx.Int("max-client-id-length"),
		MaxInflight:          cctx.Int("max-inflight"),
		MaxQueuedMessages:    cctx.Int("max-queued-messages"),
		MaxOutboundBytes:     sizeFlag(cctx, "max-outbound-bytes"),
		MaxSubscriptions:     cctx.Int("max-subscriptions"),
		RetryInterval:        cctx.Duration("retry-interval"),
		RetryLimit:           cctx.Int("retry-limit"),
		WriteTimeout:         cctx.Duration("write-timeout"),
		Logger:               logger,
	}
	sec.configure(&cfg)

	// Signals are caught from here on, so a stop request that arrives while
	// starting up still shuts down cleanly.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)

	// Bind every listener before accepting on any.
	var lns []net.Listener
	for _, spec := range specs {
		ln, err := sec.listen(spec)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return cli.Exit(err.Error()+" (is another broker running on that port?)", 1)
		}
		lns = append(lns, ln)
	}
	if err := ops.listen(); err != nil {
		for _, l := range lns {
			l.Close()
		}
		return cli.Exit(err.Error(), 1)
	}

	b, err := shard.New(cfg)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		ops.stop()
		return cli.Exit(err.Error(), 1)
	}
	errc := make(chan error, len(lns))
	var names []string
	for i, ln := range lns {
		names = append(names, specs[i].Scheme+"://"+ln.Addr().String()+specs[i].Path)
		opts := sec.options(specs[i])
		go func() { errc <- b.ServeListener(ln, opts) }()
	}
	durability := "persistence=off"
	if persist {
		durability = "fsync=" + cctx.String("fsync")
	}
	ops.start(b, logger)
	fmt.Printf("iotd %s ready: listeners=%s shards=%d data-dir=%s %s%s\n", version, strings.Join(names, ","), b.Config().Shards, dataDir, durability, ops.describe())

	// SIGHUP runs every reloader in turn (reload.go), without dropping
	// connections. Whatever else can be reloaded appends here.
	reloaders := []reloader{
		{"log level", func() error { return reloadLogLevel(cfgState, logLevel, logger) }},
		{"password and ACL files", sec.reloadFiles},
		{"TLS certificate", sec.reloadTLS},
	}
	var serveErr error
wait:
	for {
		select {
		case sig := <-sigc:
			if sig == syscall.SIGHUP {
				reload(logger, reloaders)
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
		case serveErr = <-errc:
			logger.Error("listener failed; shutting down", "err", serveErr)
		}
		break wait
	}
	for _, ln := range lns {
		ln.Close()
	}
	ops.stop()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	logger.Info("stopped")
	if serveErr != nil {
		return cli.Exit(serveErr.Error(), 1)
	}
	return nil
}

func parsePersistence(v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("--persistence %q: want on or off", v)
}

// parseFsync reads --fsync: "always" (0) or "interval:<duration>".
func parseFsync(v string) (time.Duration, error) {
	if v == "always" {
		return 0, nil
	}
	if rest, ok := strings.CutPrefix(v, "interval:"); ok {
		d, err := time.ParseDuration(rest)
		if err == nil && d > 0 {
			return d, nil
		}
	}
	return 0, fmt.Errorf("--fsync %q: want always or interval:<duration> such as interval:1s", v)
}

// newLogger builds the logger; its level is held in lv (when not nil) so
// that SIGHUP can change it.
func newLogger(level, format string, lv *slog.LevelVar) (*slog.Logger, error) {
	l, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	if lv == nil {
		lv = new(slog.LevelVar)
	}
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: addrAsString}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// size is a byte count flag that accepts units: 16MiB, 512KB, 1048576.
type size struct{ n int }

func newSize(n int) *size { return &size{n: n} }

func (s *size) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("%q is not a size (try 16MiB or 1048576)", v)
	}
	if n > 1<<40 {
		return fmt.Errorf("%q is too large", v)
	}
	s.n = int(n)
	return nil
}

func (s *size) String() string {
	if s == nil {
		return ""
	}
	return humanize.IBytes(uint64(s.n))
}

func sizeFlag(cctx *cli.Context, name string) int {
	return cctx.Generic(name).(*size).n
}
