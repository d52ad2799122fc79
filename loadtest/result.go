package loadtest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Result is what one run measured. Message counts are deliveries: in
// fanout one published message delivered to ten subscribers counts ten
// times in Expected and Received.
type Result struct {
	Scenario     string `json:"scenario"`
	Addr         string `json:"addr"`
	QoS          int    `json:"qos"`
	PayloadBytes int    `json:"payload_bytes"`
	TopicPrefix  string `json:"topic_prefix"`
	RunID        string `json:"run_id"`
	Phase        string `json:"phase,omitempty"` // offline: all, fill or drain
	Publishers   int    `json:"publishers"`
	Subscribers  int    `json:"subscribers"`
	Connections  int    `json:"connections"` // opened during the run

	Sent       uint64  `json:"sent"`         // messages published
	Expected   uint64  `json:"expected"`     // deliveries the subscriptions call for
	Received   uint64  `json:"received"`     // deliveries, duplicates included
	MsgsPerSec float64 `json:"msgs_per_sec"` // Received / ElapsedSec
	ElapsedSec float64 `json:"elapsed_s"`    // from the first publish (or subscribe, reconnect) to the last delivery
	Lost       uint64  `json:"lost"`         // Expected minus distinct deliveries, after the drain period
	Duplicated uint64  `json:"duplicated"`   // deliveries of a message already delivered to that subscriber
	OutOfOrder uint64  `json:"out_of_order"` // deliveries that came after a later message of the same publisher

	// Latency is publish to delivery; in retained from SUBSCRIBE and in
	// offline from the reconnect to delivery; in connect, CONNECT to
	// CONNACK.
	Latency Percentiles `json:"latency_ms"`
	// AckLatency is publish to the broker's acknowledgement: PUBACK at
	// QoS 1, PUBREC at QoS 2 (with persistence, the time to make the
	// message durable). Empty at QoS 0.
	AckLatency Percentiles `json:"ack_latency_ms"`

	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	Stalls       int64    `json:"flow_stalls,omitempty"` // end-to-end windows given up because nothing arrived
	Failure      string   `json:"failure,omitempty"`     // why the run could not complete

	// Connect scenario.
	ConnectsPerSec  float64 `json:"connects_per_sec,omitempty"`
	RSSBeforeBytes  int64   `json:"broker_rss_before_bytes,omitempty"`
	RSSAfterBytes   int64   `json:"broker_rss_after_bytes,omitempty"`
	RSSPerConnBytes float64 `json:"broker_rss_per_conn_bytes,omitempty"`

	// Offline scenario: delivery rate of the queued backlog.
	BacklogMsgsPerSec float64 `json:"backlog_msgs_per_sec,omitempty"`

	measureFrom int64 // ns since the run's epoch; start of the timed phase
}

// WriteSummary prints the result for people.
func (res *Result) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...))
	}
	line("scenario", "%s", res.Scenario)
	line("broker", "%s", res.Addr)
	if res.Scenario == string(Connect) {
		line("connections", "%d", res.Connections)
		line("connects/s", "%.0f", res.ConnectsPerSec)
		line("connect latency ms", "p50 %.3f  p90 %.3f  p99 %.3f  max %.3f", res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max)
		if res.RSSAfterBytes > 0 {
			line("broker RSS", "%s before, %s after, %.0f bytes per connection",
				mib(res.RSSBeforeBytes), mib(res.RSSAfterBytes), res.RSSPerConnBytes)
		}
	} else {
		line("qos", "%d", res.QoS)
		line("payload", "%d bytes", res.PayloadBytes)
		line("clients", "%s, %s, %s", plural(res.Publishers, "publisher"), plural(res.Subscribers, "subscriber"), plural(res.Connections, "connection"))
		line("sent", "%d", res.Sent)
		if res.Phase == string(PhaseFill) {
			line("queued", "%d deliveries left in the broker for --phase drain (run id %s)", res.Expected, res.RunID)
		} else {
			line("received", "%d of %d expected deliveries", res.Received, res.Expected)
		}
		if res.Phase == string(PhaseFill) {
			line("published in", "%.2fs", res.ElapsedSec)
		} else {
			line("msg/s", "%.0f deliveries/s over %.2fs", res.MsgsPerSec, res.ElapsedSec)
		}
		if res.Scenario == string(Offline) && res.Phase != string(PhaseFill) {
			line("backlog msg/s", "%.0f", res.BacklogMsgsPerSec)
		}
		line("lost", "%d", res.Lost)
		line("duplicated", "%d", res.Duplicated)
		line("out-of-order", "%d", res.OutOfOrder)
		if res.Phase != string(PhaseFill) {
			line("latency ms", "p50 %.3f  p90 %.3f  p99 %.3f  max %.3f", res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max)
		}
		if a := res.AckLatency; a.Count > 0 {
			ack := "PUBACK"
			if res.QoS == 2 {
				ack = "PUBREC"
			}
			line("ack latency ms", "p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (publish to %s)", a.P50, a.P90, a.P99, a.Max, ack)
		}
	}
	line("errors", "%d", res.Errors)
	if res.Stalls > 0 {
		line("flow stalls", "%d", res.Stalls)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range res.ErrorSamples {
		if _, err := fmt.Fprintf(w, "  error: %s\n", s); err != nil {
			return err
		}
	}
	if res.Failure != "" {
		_, err := fmt.Fprintf(w, "FAILED: %s\n", strings.TrimSpace(res.Failure))
		return err
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
