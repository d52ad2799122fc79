package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"iotd/loadtest"
)

func loadtestCommand() *cli.Command {
	var names []string
	for _, s := range loadtest.Scenarios {
		names = append(names, string(s))
	}
	return &cli.Command{
		Name:      "loadtest",
		Usage:     "generate MQTT load against a broker (iotd or any MQTT 3.1.1 broker) and report msg/s, loss and latency",
		ArgsUsage: "SCENARIO (" + strings.Join(names, ", ") + ")",
		Description: `Scenarios:
   fanin     P publishers, each on its own topic -> S subscribers with one wildcard filter (default 10 -> 1)
   fanout    P publishers -> S subscribers of every publisher's exact topic (default 1 -> 10)
   pairs     --clients clients in pairs, each publishing to its peer and subscribed to its own topic (default 10)
   latency   like fanin at a fixed total --rate (default 1000 msg/s, 1 -> 1): p50/p90/p99/max
   connect   --clients connections (default 1000), --connect-parallelism at a time, held idle for --hold;
             connects/s, and the broker's RSS per connection with --broker-pid
   retained  store --count retained messages (default 1000) in a topic tree, then time S wildcard
             subscribers receiving all of them; the messages are deleted afterwards
   offline   S persistent sessions (clean session 0) subscribe and disconnect, P publishers send a backlog
             of --count messages (default 500), the sessions reconnect: backlog msg/s

Every message carries its publisher, sequence number and send time: the report counts lost (after
--drain), duplicated and out-of-order deliveries per publisher -> subscriber stream. Subscribers
subscribe and get their SUBACK before anything is published. A publisher keeps up to --inflight QoS 1/2
messages unacknowledged and runs at most --e2e-window messages (shared by the publishers feeding one
subscriber) ahead of what its subscribers received, so msg/s is the delivery rate, not queue depth;
keep --e2e-window within the broker's per-session queue limit (1000 in iotd and Mosquitto).

A progress line goes to stderr every second; the summary (or, with --json, one JSON object) to stdout.
The run stops by itself after --duration or --count, and --timeout ends it whatever happens.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: loadtest.DefaultAddr, Usage: "broker `HOST:PORT`"},
			&cli.IntFlag{Name: "qos", Value: 0, Usage: "QoS of publishes and subscriptions: 0, 1 or 2"},
			&cli.GenericFlag{Name: "payload", Value: newSize(loadtest.DefaultPayloadSize), Usage: fmt.Sprintf("payload size per message, at least %d bytes (the header every message carries)", loadtest.HeaderSize)},
			&cli.IntFlag{Name: "publishers", Aliases: []string{"P"}, Usage: "publishing clients (0 = the scenario's default)"},
			&cli.IntFlag{Name: "subscribers", Aliases: []string{"S"}, Usage: "subscribing clients (0 = the scenario's default)"},
			&cli.IntFlag{Name: "clients", Aliases: []string{"c"}, Usage: "pairs: clients; connect: connections (0 = the scenario's default)"},
			&cli.Float64Flag{Name: "rate", Usage: "total messages per second over all publishers (0 = as fast as flow control allows)"},
			&cli.DurationFlag{Name: "duration", Usage: "how long to publish (default 10s unless --count is given)"},
			&cli.Int64Flag{Name: "count", Usage: "messages to publish, shared by all publishers (0 = bounded by --duration only)"},
			&cli.IntFlag{Name: "inflight", Value: loadtest.DefaultInflight, Usage: "unacknowledged QoS 1/2 messages per publisher (1-65535)"},
			&cli.IntFlag{Name: "e2e-window", Value: loadtest.DefaultE2EWindow, Usage: "messages a subscriber may have outstanding end to end, shared by the publishers feeding it (-1 = unbounded)"},
			&cli.DurationFlag{Name: "drain", Value: loadtest.DefaultDrain, Usage: "wait this long for messages still in flight once publishing stops (ends early when all arrived)"},
			&cli.DurationFlag{Name: "timeout", Usage: "hard limit on the whole run (0 = duration + drain + 1m, or 5m with --count only)"},
			&cli.DurationFlag{Name: "hold", Value: loadtest.DefaultHold, Usage: "connect: how long to hold the connections idle"},
			&cli.IntFlag{Name: "connect-parallelism", Value: loadtest.DefaultConnectParallelism, Usage: "connection attempts in flight at once"},
			&cli.IntFlag{Name: "broker-pid", Usage: "connect: the broker's `PID`, to read its VmRSS from /proc before and after (same machine)"},
			&cli.DurationFlag{Name: "keepalive", Value: loadtest.DefaultKeepAlive, Usage: "keep-alive sent in CONNECT; a PINGREQ goes out every half of it"},
			&cli.StringFlag{Name: "topic-prefix", Usage: "prefix of every topic, so concurrent runs do not collide (default loadtest/<random run id>)"},
			&cli.StringFlag{Name: "username", Usage: "user name sent in CONNECT"},
			&cli.StringFlag{Name: "password", Usage: "password sent in CONNECT (with --username)"},
			&cli.BoolFlag{Name: "tls", Usage: "connect with TLS"},
			&cli.StringFlag{Name: "tls-ca", Usage: "PEM `FILE` of CA certificates to verify the broker with (implies --tls; default: the system roots)"},
			&cli.BoolFlag{Name: "tls-insecure", Usage: "do not verify the broker's certificate (implies --tls)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object instead of the summary"},
		},
		Action: runLoadtest,
	}
}

func runLoadtest(cctx *cli.Context) error {
	if cctx.NArg() != 1 {
		return cli.Exit("loadtest needs exactly one scenario: iotd loadtest [flags] SCENARIO (see --help)", 2)
	}
	qos := cctx.Int("qos")
	if qos < 0 || qos > 2 {
		return cli.Exit(fmt.Sprintf("--qos %d: want 0, 1 or 2", qos), 2)
	}
	cfg := loadtest.Config{
		Scenario:           loadtest.Scenario(cctx.Args().First()),
		Addr:               cctx.String("addr"),
		Username:           cctx.String("username"),
		Password:           cctx.String("password"),
		QoS:                byte(qos),
		PayloadSize:        sizeFlag(cctx, "payload"),
		Publishers:         cctx.Int("publishers"),
		Subscribers:        cctx.Int("subscribers"),
		Clients:            cctx.Int("clients"),
		Rate:               cctx.Float64("rate"),
		Duration:           cctx.Duration("duration"),
		Count:              cctx.Int64("count"),
		Inflight:           cctx.Int("inflight"),
		E2EWindow:          cctx.Int("e2e-window"),
		Drain:              cctx.Duration("drain"),
		Timeout:            cctx.Duration("timeout"),
		Hold:               cctx.Duration("hold"),
		ConnectParallelism: cctx.Int("connect-parallelism"),
		BrokerPID:          cctx.Int("broker-pid"),
		KeepAlive:          cctx.Duration("keepalive"),
		TopicPrefix:        cctx.String("topic-prefix"),
		Progress:           os.Stderr,
	}
	if cfg.Password != "" && cfg.Username == "" {
		return cli.Exit("--password needs --username (MQTT 3.1.1 sends no password without a user name)", 2)
	}
	if cctx.Bool("tls") || cctx.String("tls-ca") != "" || cctx.Bool("tls-insecure") {
		tc, err := loadtestTLS(cfg.Addr, cctx.String("tls-ca"), cctx.Bool("tls-insecure"))
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
	if cctx.Bool("json") {
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
