package shard

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

func assertEventually(cond func() bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// After 100,000 connect/subscribe/publish/disconnect cycles the broker's
// goroutines and heap return to their starting level: nothing is kept per
// client once its clean session ends.
func TestNoLeakAfterConnectCycles(t *testing.T) {
	cycles := 100_000
	if testing.Short() || raceEnabled {
		// The full count takes about 80 s under the race detector; make
		// test (which runs with -race) checks 20,000 and `go test` without
		// -race the full 100,000 in a few seconds.
		cycles = 20_000
	}
	b := runBroker(t, Config{Shards: 4})
	baseline := func() (int, uint64) {
		var m runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapAlloc
	}
	// One warm-up round fills the pools before the baseline.
	cycle := func(id string) error {
		conn, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := wire.NewReader(conn, 1<<20)
		defer r.Release()
		var out []byte
		out = (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true}).Append(out)
		out = (&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "leak/" + id, QoS: 1}}}).Append(out)
		out = (&wire.Publish{Topic: []byte("leak/" + id), Payload: []byte("x"), QoS: 1, PacketID: 2}).Append(out)
		if _, err := conn.Write(out); err != nil {
			return err
		}
		// CONNACK, SUBACK, then the PUBACK and the message itself.
		for seen := 0; seen < 4; seen++ {
			if _, _, err := r.ReadPacket(); err != nil {
				return fmt.Errorf("%s: packet %d: %w", id, seen, err)
			}
		}
		_, err = conn.Write((&wire.Disconnect{}).Append(nil))
		return err
	}
	run := func(n int, prefix string) {
		const workers = 16
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if err := cycle(fmt.Sprintf("%s-%d", prefix, i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	run(2_000, "warm")
	require.Eventually(t, func() bool { return b.Stats().Connections == 0 }, 10*time.Second, 10*time.Millisecond)
	g0, h0 := baseline()

	run(cycles, "c")
	require.Eventually(t, func() bool { return b.Stats().Connections == 0 }, 10*time.Second, 10*time.Millisecond)
	if !assertEventually(func() bool { g, _ := baseline(); return g <= g0 }, 10*time.Second) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines %d, started from %d:\n%s", runtime.NumGoroutine(), g0, buf[:n])
	}
	_, h1 := baseline()
	st := b.Stats()
	require.Zero(t, st.Subscriptions, "subscriptions left")
	require.Zero(t, st.Shards[0].Sessions+st.Shards[1].Sessions+st.Shards[2].Sessions+st.Shards[3].Sessions, "sessions left")
	// A leak of even 50 bytes per cycle would show as 5 MB.
	require.Less(t, int64(h1)-int64(h0), int64(2<<20), "heap grew from %d to %d bytes over %d cycles", h0, h1, cycles)
	t.Logf("%d cycles: goroutines %d -> %d, heap %d -> %d bytes", cycles, g0, runtime.NumGoroutine(), h0, h1)
}
