package netfuzz

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// WriteSummary writes the result for a person: counts, the control
// client's round trips, and every failure with the seeds to replay.
func (r *Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seed            %d (%#x)\n", r.Seed, r.Seed)
	fmt.Fprintf(&b, "elapsed         %v\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "connections     %d (%s), %d dial errors\n", r.Connections, counts(r.Kinds), r.DialErrors)
	fmt.Fprintf(&b, "endings         %s; %d closed early by the broker, %d write stalls\n", counts(r.Endings), r.BrokerClosed, r.WriteStalls)
	fmt.Fprintf(&b, "sent            %d packets, %s (%d bytes)\n", r.Packets, humanize.IBytes(uint64(r.BytesSent)), r.BytesSent)
	fmt.Fprintf(&b, "received        %d packets, %s\n", r.PacketsReceived, humanize.IBytes(uint64(r.BytesReceived)))
	c := r.Control
	fmt.Fprintf(&b, "control         %d round trips, %d missed, %d reconnects; latency p50 %v, p99 %v, max %v\n",
		c.RoundTrips, c.Misses, c.Reconnects, c.P50.Round(time.Microsecond), c.P99.Round(time.Microsecond), c.Max.Round(time.Microsecond))
	if r.BrokerPeakRSS > 0 {
		fmt.Fprintf(&b, "broker peak RSS %s\n", humanize.IBytes(uint64(r.BrokerPeakRSS)))
	}
	if r.CleanupError != "" {
		fmt.Fprintf(&b, "cleanup         %s\n", r.CleanupError)
	}
	if len(r.Failures) == 0 {
		b.WriteString("result          PASS\n")
	} else {
		fmt.Fprintf(&b, "result          FAIL: %d failure(s)\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "  at %v: %s\n", f.At.Round(time.Millisecond), f.What)
			if len(f.Seeds) > 0 {
				seeds := make([]string, len(f.Seeds))
				for i, s := range f.Seeds {
					seeds[i] = fmt.Sprintf("%#x", s)
				}
				fmt.Fprintf(&b, "    connections running then (replay: --replay %s)\n", strings.Join(seeds, " --replay "))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func counts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
