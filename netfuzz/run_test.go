package netfuzz

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"iotd/internal/syncbuf"
	"iotd/shard"
	"iotd/shard/shardtest"
)

// Every test must leave no goroutine behind: fuzzing connections, their
// readers, the control client and the in-process broker all stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startBroker runs an in-process broker, persistent like the default
// binary, on an ephemeral loopback port. stop ends it early (idempotent);
// it is also called when the test ends.
func startBroker(t *testing.T) (addr string, stop func()) {
	t.Helper()
	return shardtest.StartBroker(t, shard.Config{Shards: 2, Persistence: true, DataDir: t.TempDir()})
}

// The short version of the long run: a few seconds of every kind of stream
// against a live broker, which must not panic (a panic in any broker
// goroutine ends this test binary), must keep answering the control
// client within a generous bound, and must never send a fuzzing connection
// anything but valid MQTT.
func TestFuzzBrokerKeepsServing(t *testing.T) {
	addr, _ := startBroker(t)
	var log, progress syncbuf.Buffer
	res, err := Run(context.Background(), Config{
		Addr:             addr,
		Seed:             20240601,
		Duration:         7 * time.Second,
		Connections:      6,
		ControlTimeout:   10 * time.Second, // generous: -race on 2 busy cores
		ConnLog:          &log,
		Progress:         &progress,
		ProgressInterval: 2 * time.Second,
	})
	var sum strings.Builder
	if res != nil {
		require.NoError(t, res.WriteSummary(&sum))
	}
	t.Logf("\n%s%s", progress.String(), sum.String())
	if err != nil || t.Failed() {
		t.Logf("connections:\n%s", log.String())
	}
	require.NoError(t, err)
	require.Empty(t, res.Failures)
	require.Zero(t, res.Control.Misses)
	require.GreaterOrEqual(t, res.Control.RoundTrips, int64(10), "the control client ran throughout")
	require.GreaterOrEqual(t, res.Connections, int64(12))
	require.Positive(t, res.Packets)
	require.Positive(t, res.BytesSent)
	require.Positive(t, res.PacketsReceived, "the broker answered some fuzzing connections")
	require.Positive(t, res.BrokerClosed, "the broker closed connections that broke the protocol")
	require.Empty(t, res.CleanupError)
	// A dial cut short by the end of the run is logged and counted too.
	require.Equal(t, res.Connections+res.DialErrors, int64(strings.Count(log.String(), "\n")), "one log line per connection")
}

// A broker that stops serving fails the run, early, with the seeds of the
// connections running then.
func TestFuzzFailsWhenTheBrokerStops(t *testing.T) {
	addr, stop := startBroker(t)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		stop()
	}()
	start := time.Now()
	res, err := Run(context.Background(), Config{
		Addr: addr, Seed: 1, Duration: 60 * time.Second, Connections: 2, ControlTimeout: 2 * time.Second,
	})
	require.Error(t, err)
	require.NotNil(t, res)
	require.Less(t, time.Since(start), 30*time.Second, "the run ends when the broker is gone")
	require.NotEmpty(t, res.Failures)
	last := res.Failures[len(res.Failures)-1]
	require.Contains(t, last.What, "control client cannot reconnect")
	require.NotEmpty(t, res.Failures[0].Seeds, "a failure names the connections to replay")
	var sum strings.Builder
	require.NoError(t, res.WriteSummary(&sum))
	require.Contains(t, sum.String(), "FAIL")
	require.Contains(t, sum.String(), "--replay 0x")
}

// BrokerAlive reporting a dead process ends the run as a failure.
func TestFuzzFailsWhenBrokerAliveFails(t *testing.T) {
	addr, _ := startBroker(t)
	var polls atomic.Int64
	res, err := Run(context.Background(), Config{
		Addr: addr, Seed: 2, Duration: 60 * time.Second, Connections: 1,
		BrokerAlive: func() error {
			if polls.Add(1) > 3 {
				return errors.New("exit status 2")
			}
			return nil
		},
	})
	require.Error(t, err)
	require.Contains(t, res.Failures[0].What, "broker died: exit status 2")
	require.Less(t, res.Elapsed, 30*time.Second)
}

// Replay plays exactly the given connection seeds, then stops.
func TestFuzzReplay(t *testing.T) {
	addr, _ := startBroker(t)
	var log syncbuf.Buffer
	seeds := []uint64{ConnSeed(5, 0, 0), ConnSeed(5, 3, 17)}
	res, err := Run(context.Background(), Config{Addr: addr, Replay: seeds, Duration: time.Minute, ConnLog: &log})
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Connections)
	require.Less(t, res.Elapsed, 30*time.Second)
	for _, s := range seeds {
		require.Contains(t, log.String(), NewScript(s).Kind.String())
	}
	var wrote int64
	for _, s := range seeds {
		wrote += int64(len(NewScript(s).Bytes()))
	}
	require.LessOrEqual(t, res.BytesSent, wrote)
}

func TestFuzzRefusesNonLoopback(t *testing.T) {
	_, err := Run(context.Background(), Config{Addr: "192.0.2.1:1883", Duration: time.Second})
	require.ErrorContains(t, err, "not a loopback address")
	_, err = Run(context.Background(), Config{Addr: "no-port", Duration: time.Second})
	require.Error(t, err)
}

// checkBrokerOutput names what a broker must never send a client.
func TestCheckBrokerOutput(t *testing.T) {
	connack := []byte{0x20, 0x02, 0x00, 0x00}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"connack, pingresp, eof", append(connack, 0xd0, 0x00), ""},
		{"connack, publish cut by close", append(connack, 0x30, 0x10, 0x00, 0x01), ""},
		{"nothing", nil, ""},
		{"publish first", []byte{0x30, 0x03, 0x00, 0x01, 't'}, "before CONNACK"},
		{"malformed suback", append(connack, 0x90, 0x03, 0x00, 0x01, 0x07), "malformed SUBACK"},
		{"reserved type", append(connack, 0xf0, 0x00), "bad packet #2"},
		{"second connack", append(connack, connack...), "second CONNACK"},
		{"client packet", append(connack, 0xc0, 0x00), "client-only"},
	} {
		var n atomic.Int64
		got := checkBrokerOutput(bytes.NewReader(tc.in), &n)
		if tc.want == "" {
			require.Empty(t, got, tc.name)
		} else {
			require.Contains(t, got, tc.want, tc.name)
		}
	}
}
