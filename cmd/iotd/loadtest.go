package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"iotd/loadtest"
)

// scenarioUsage is the one-line description of each scenario.
var scenarioUsage = map[loadtest.Scenario]string{
	loadtest.Fanin:    "P publishers, each on its own topic -> S subscribers with one wildcard filter (default 10 -> 1)",
	loadtest.Fanout:   "P publishers -> S subscribers of every publisher's exact topic (default 1 -> 10)",
	loadtest.Pairs:    "--clients clients in pairs, each publishing to its peer's topic, subscribed to its own (default 10)",
	loadtest.Latency:  "like fanin at a fixed total --rate (default 1000 msg/s, 1 -> 1): latency p50/p90/p99/max",
	loadtest.Connect:  "--clients connections (default 1000) held idle for --hold: connects/s, broker RSS per connection",
	loadtest.Retained: "store --count retained messages (default 1000), time S wildcard subscribers receiving them",
	loadtest.Offline:  "S persistent sessions go offline, get a backlog of --count messages (default 500): backlog msg/s; --phase fill|drain splits it across a broker restart",
}

// loadtestCommand is `iotd loadtest SCENARIO`. Each scenario is a
// subcommand so that flags work after it (urfave/cli v2 stops parsing flags
// at the first argument); the same flags are accepted before it too.
func loadtestCommand() *cli.Command {
	var subs []*cli.Command
	for _, s := range loadtest.Scenarios {
		subs = append(subs, &cli.Command{
			Name:      string(s),
			Usage:     scenarioUsage[s],
			UsageText: "iotd loadtest " + string(s) + " [flags]",
			Flags:     loadtestFlags(),
			Action:    func(cctx *cli.Context) error { return runLoadtest(cctx, s) },
		})
	}
	return &cli.Command{
		Name:      "loadtest",
		Usage:     "generate MQTT load against a broker (iotd or any MQTT 3.1.1 broker) and report msg/s, loss and latency",
		UsageText: "iotd loadtest SCENARIO [flags]   (flags may also come before SCENARIO; iotd loadtest SCENARIO --help lists them)",
		Description: `Every message carries its publisher, sequence number and send time: the report counts lost (after
--drain), duplicated and out-of-order deliveries per publisher -> subscriber stream. Subscribers
subscribe and get their SUBACK before anything is published. A publisher keeps up to --inflight QoS 1/2
messages unacknowledged and runs at most --e2e-window messages (shared by the publishers feeding one
subscriber) ahead of what its subscribers received, so msg/s is the delivery rate, not queue depth;
keep --e2e-window within the broker's per-session queue limit (1000 in iotd and Mosquitto).

A progress line goes to stderr every second; the summary (or, with --json, one JSON object) to stdout.
The run stops by itself after --duration or --count, and --timeout ends it whatever happens. Exit
status: 0 when the run completed (read lost/duplicated/errors in the report), 1 when it could not
(no connection, refused subscription, hard timeout), 2 for bad flags.`,
		Flags:           loadtestFlags(),
		Subcommands:     subs,
		HideHelpCommand: true,
		Action: func(cctx *cli.Context) error {
			if cctx.NArg() == 0 {
				cli.ShowSubcommandHelp(cctx)
				return cli.Exit("", 2)
			}
			return cli.Exit(fmt.Sprintf("unknown scenario %q: want one of %v", cctx.Args().First(), loadtest.Scenarios), 2)
		},
	}
}

// loadtestFlags returns new flag values each call: the parent command and
// every scenario need their own.
func loadtestFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: loadtest.DefaultAddr, Usage: "broker `HOST:PORT`"},
		&cli.IntFlag{Name: "qos", Value: 0, Usage: "QoS of publishes and subscriptions: 0, 1 or 2"},
		&cli.GenericFlag{Name: "payload", Value: newSize(loadtest.DefaultPayloadSize), Usage: fmt.Sprintf("payload size per message, at least %d bytes (the header every message carries)", loadtest.HeaderSize)},
		&cli.IntFlag{Name: "publishers", Aliases: []string{"P"}, Usage: "publishing clients", DefaultText: "per scenario"},
		&cli.IntFlag{Name: "subscribers", Aliases: []string{"S"}, Usage: "subscribing clients", DefaultText: "per scenario"},
		&cli.IntFlag{Name: "clients", Aliases: []string{"c"}, Usage: "pairs: clients; connect: connections", DefaultText: "per scenario"},
		&cli.Float64Flag{Name: "rate", Usage: "total messages per second over all publishers (0 = as fast as flow control allows)", DefaultText: "0, latency 1000"},
		&cli.DurationFlag{Name: "duration", Usage: "how long to publish", DefaultText: "10s, none with --count"},
		&cli.Int64Flag{Name: "count", Usage: "messages to publish, shared by all publishers (0 = bounded by --duration only)", DefaultText: "0, retained 1000, offline 500"},
		&cli.IntFlag{Name: "inflight", Value: loadtest.DefaultInflight, Usage: "unacknowledged QoS 1/2 messages per publisher (1-65535)"},
		&cli.IntFlag{Name: "e2e-window", Value: loadtest.DefaultE2EWindow, Usage: "messages a subscriber may have outstanding end to end, shared by the publishers feeding it (-1 = unbounded)"},
		&cli.DurationFlag{Name: "drain", Value: loadtest.DefaultDrain, Usage: "wait this long for messages still in flight once publishing stops (ends early when all arrived)"},
		&cli.DurationFlag{Name: "timeout", Usage: "hard limit on the whole run", DefaultText: "duration + drain + 1m, or 5m"},
		&cli.DurationFlag{Name: "hold", Value: loadtest.DefaultHold, Usage: "connect: how long to hold the connections idle"},
		&cli.StringSliceFlag{Name: "source-addrs", Usage: "local IP addresses the connections come from, in turn (comma-separated or repeated); they must be addresses of this host", DefaultText: "the kernel's choice; 127.0.0.1-127.0.0.8 for a loopback --addr"},
		&cli.IntFlag{Name: "connect-parallelism", Value: loadtest.DefaultConnectParallelism, Usage: "connection attempts in flight at once"},
		&cli.IntFlag{Name: "broker-pid", Usage: "connect: the broker's `PID`, to read its VmRSS from /proc before and after (same machine)", DefaultText: "none"},
		&cli.DurationFlag{Name: "keepalive", Value: loadtest.DefaultKeepAlive, Usage: "keep-alive sent in CONNECT; a PINGREQ goes out every half of it"},
		&cli.StringFlag{Name: "topic-prefix", Usage: "prefix of every topic, so concurrent runs do not collide", DefaultText: "loadtest/<run id>"},
		&cli.StringFlag{Name: "run-id", Usage: "name of the run in client ids, topics and payloads (1-12 letters or digits); offline --phase fill and drain need the same one", DefaultText: "random"},
		&cli.BoolFlag{Name: "persistent-sessions", Usage: "fanin, fanout, pairs, latency: subscribers connect with clean session 0, so a persistent broker logs every QoS 1/2 delivery (removed at the end)"},
		&cli.StringFlag{Name: "phase", Value: string(loadtest.PhaseAll), Usage: "offline: all; fill (subscribe, go offline, publish the backlog, exit, leaving it queued); drain (reconnect the sessions fill left, e.g. after a broker restart, receive and check the backlog, remove them)"},
		&cli.StringFlag{Name: "username", Usage: "user name sent in CONNECT"},
		&cli.StringFlag{Name: "password", Usage: "password sent in CONNECT (with --username)"},
		&cli.BoolFlag{Name: "tls", Usage: "connect with TLS"},
		&cli.StringFlag{Name: "tls-ca", Usage: "PEM `FILE` of CA certificates to verify the broker with (implies --tls)", DefaultText: "the system roots"},
		&cli.BoolFlag{Name: "tls-insecure", Usage: "do not verify the broker's certificate (implies --tls)"},
		&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object instead of the summary"},
	}
}

// flagCtx returns the context in which flag name was given: the scenario's
// (after SCENARIO) or loadtest's (before it); the scenario's for defaults.
func flagCtx(cctx *cli.Context, name string) *cli.Context {
	for _, c := range cctx.Lineage() {
		if c.Command != nil && c.IsSet(name) {
			return c
		}
	}
	return cctx
}

func runLoadtest(cctx *cli.Context, scenario loadtest.Scenario) error {
	if cctx.NArg() != 0 {
		return cli.Exit(fmt.Sprintf("unexpected arguments %q after the scenario (only flags may follow it)", cctx.Args().Slice()), 2)
	}
	str := func(n string) string { return flagCtx(cctx, n).String(n) }
	num := func(n string) int { return flagCtx(cctx, n).Int(n) }
	dur := func(n string) time.Duration { return flagCtx(cctx, n).Duration(n) }
	flag := func(n string) bool { return flagCtx(cctx, n).Bool(n) }
	qos := num("qos")
	if qos < 0 || qos > 2 {
		return cli.Exit(fmt.Sprintf("--qos %d: want 0, 1 or 2", qos), 2)
	}
	cfg := loadtest.Config{
		Scenario:           scenario,
		Addr:               str("addr"),
		Username:           str("username"),
		Password:           str("password"),
		QoS:                byte(qos),
		PayloadSize:        sizeFlag(flagCtx(cctx, "payload"), "payload"),
		Publishers:         num("publishers"),
		Subscribers:        num("subscribers"),
		Clients:            num("clients"),
		Rate:               flagCtx(cctx, "rate").Float64("rate"),
		Duration:           dur("duration"),
		Count:              flagCtx(cctx, "count").Int64("count"),
		Inflight:           num("inflight"),
		E2EWindow:          num("e2e-window"),
		Drain:              dur("drain"),
		Timeout:            dur("timeout"),
		Hold:               dur("hold"),
		ConnectParallelism: num("connect-parallelism"),
		BrokerPID:          num("broker-pid"),
		KeepAlive:          dur("keepalive"),
		TopicPrefix:        str("topic-prefix"),
		RunID:              str("run-id"),
		PersistentSessions: flag("persistent-sessions"),
		Phase:              loadtest.Phase(str("phase")),
		Progress:           os.Stderr,
	}
	for _, list := range flagCtx(cctx, "source-addrs").StringSlice("source-addrs") {
		for _, a := range strings.Split(list, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(a))
			if err != nil {
				return cli.Exit(fmt.Sprintf("--source-addrs: %v", err), 2)
			}
			cfg.SourceAddrs = append(cfg.SourceAddrs, ip)
		}
	}
	if cfg.Password != "" && cfg.Username == "" {
		return cli.Exit("--password needs --username (MQTT 3.1.1 sends no password without a user name)", 2)
	}
	if flag("tls") || str("tls-ca") != "" || flag("tls-insecure") {
		tc, err := loadtestTLS(cfg.Addr, str("tls-ca"), flag("tls-insecure"))
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		cfg.TLS = tc
	}

	// Ctrl-C ends the run early; the result so far is still printed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadtest.Run(ctx, cfg)
	if res == nil {
		return cli.Exit("loadtest: "+err.Error(), 2)
	}
	if flag("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err == nil || res.Connections > 0 {
		// A run that never connected has nothing to summarize.
		if err := res.WriteSummary(os.Stdout); err != nil {
			return err
		}
	}
	if err != nil {
		return cli.Exit("loadtest: "+err.Error(), 1)
	}
	return nil
}

// loadtestTLS builds the client TLS config: server name from --addr, CA
// pool from caFile (or the system roots), or no verification at all.
func loadtestTLS(addr, caFile string, insecure bool) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--addr %q: %v", addr, err)
	}
	tc := &tls.Config{ServerName: host, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificates found", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
