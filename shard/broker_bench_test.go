package shard

import (
	"context"
	"fmt"
	"testing"
	"time"

	"iotd/loadtest"
)

// BenchmarkBroker drives an in-process broker with the bundled load tester,
// for profiling the whole publish path (go test -bench Broker -cpuprofile).
// Load generator and broker share the process, so msg/s here is lower than
// the side-by-side numbers in BENCHMARKS.md.
func BenchmarkBroker(b *testing.B) {
	for _, sc := range []loadtest.Scenario{loadtest.Fanin, loadtest.Fanout, loadtest.Pairs} {
		for _, qos := range []byte{0, 1, 2} {
			b.Run(fmt.Sprintf("%s/qos%d", sc, qos), func(b *testing.B) {
				tb := runBroker(b, Config{Shards: 2, MaxInflight: 1000, MaxQueuedMessages: 100000})
				var total float64
				for b.Loop() {
					res, err := loadtest.Run(context.Background(), loadtest.Config{
						Scenario: sc, Addr: tb.addr, QoS: qos, Duration: time.Second, Drain: time.Second,
					})
					if err != nil {
						b.Fatal(err)
					}
					if res.Lost > 0 && qos > 0 {
						b.Fatalf("lost %d messages at QoS %d", res.Lost, qos)
					}
					total += res.MsgsPerSec
				}
				b.ReportMetric(total/float64(b.N), "msg/s")
			})
		}
	}
}
