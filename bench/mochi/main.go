// Command mochi runs a mochi-mqtt v2 broker for bench/compare.sh: one TCP
// listener on 127.0.0.1, every client allowed, no persistence, no inline
// client, and the per-client limits raised so that none of them, rather than
// the broker's delivery path, sets the numbers.
//
// It lives in its own module so that iotd never depends on mochi-mqtt.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	var (
		addr     = flag.String("addr", "127.0.0.1:1883", "TCP address to listen on (loopback only for benchmarks)")
		inflight = flag.Int("max-inflight", 65535, "QoS 1/2 messages held in flight per client (MaximumInflight and ReceiveMaximum, 1-65535)")
		pending  = flag.Int("writes-pending", 8192, "packets queued for writing per client (MaximumClientWritesPending); allocated per connection, so it counts in idle RSS")
		wbuf     = flag.Int("write-buffer", 64<<10, "bytes a client's writes are batched into before a flush (ClientNetWriteBufferSize)")
		logLevel = flag.String("log-level", "warn", "debug, info, warn or error")
		version  = flag.Bool("version", false, "print the mochi-mqtt version and exit")
	)
	flag.Parse()
	if *version {
		fmt.Println("mochi-mqtt", mochiVersion())
		return
	}
	if *inflight < 1 || *inflight > math.MaxUint16 {
		fail("-max-inflight %d: want 1 to 65535 (MQTT packet ids are 16 bits)", *inflight)
	}
	if *pending < 1 || *pending > math.MaxInt32 {
		fail("-writes-pending %d: want at least 1", *pending)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("-log-level %q: %v", *logLevel, err)
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = uint16(*inflight)
	caps.ReceiveMaximum = uint16(*inflight)
	caps.MaximumClientWritesPending = int32(*pending)
	caps.MaximumSessionExpiryInterval = math.MaxUint32
	caps.MaximumClients = math.MaxInt64

	server := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetWriteBufferSize: *wbuf,
		InlineClient:             false,
		Logger:                   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		fail("adding the allow-all auth hook: %v", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})
	if err := server.AddListener(tcp); err != nil {
		fail("listening on %s: %v", *addr, err)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := server.Serve(); err != nil {
		fail("serving: %v", err)
	}
	<-sigs
	if err := server.Close(); err != nil {
		fail("closing: %v", err)
	}
}

// mochiVersion is the mochi-mqtt module version this binary was built with.
func mochiVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/mochi-mqtt/server/v2" {
				return d.Version
			}
		}
	}
	return "unknown"
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mochi: "+format+"\n", args...)
	os.Exit(1)
}
