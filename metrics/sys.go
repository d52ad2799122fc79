package metrics

import (
	"math"
	"strconv"
	"time"

	"iotd/shard"
)

// SysPrefix is the root of the broker's statistics topics.
const SysPrefix = "$SYS/broker/"

// Publisher is what Sys needs from the broker; *shard.Broker is one.
type Publisher interface {
	Stats() shard.Stats
	Publish(topic string, payload []byte, qos byte, retain bool) error
}

// Sys publishes Mosquitto's $SYS/broker/... topics, retained, from the
// broker's Stats. Mosquitto's names are kept so that dashboards and tools
// written for it work; where iotd counts differently the value says what
// iotd has:
//
//	version                           "iotd <version>"
//	uptime                            "<n> seconds"
//	clients/connected                 open network connections
//	clients/total                     sessions held (connected or not), at least clients/connected
//	clients/disconnected              clients/total - clients/connected
//	clients/maximum                   the most clients/total seen since start
//	messages/received, messages/sent  PUBLISH packets (Mosquitto counts every packet type)
//	publish/messages/received, /sent  PUBLISH packets
//	publish/messages/dropped          messages dropped (full queues, ACL, $SYS publishes)
//	bytes/received, bytes/sent        PUBLISH payload bytes (Mosquitto counts every byte)
//	publish/bytes/received, /sent     PUBLISH payload bytes
//	subscriptions/count               topic filters subscribed
//	retained messages/count           retained messages (the space is Mosquitto's)
//	messages/stored, store/messages/count  QoS 1/2 messages queued or in flight
//	load/{messages,publish}/{received,sent}/{1min,5min,15min}
//	load/publish/dropped/..., load/bytes/{received,sent}/..., load/sockets/...
//	                                  per-minute rates, exponentially averaged
//	                                  over 1, 5 and 15 minutes as Mosquitto does
type Sys struct {
	b        Publisher
	version  string
	interval time.Duration

	last      time.Time // of the previous update; zero before the first
	prev      counts
	loads     map[string]*[3]float64 // load topic -> 1, 5, 15 minute averages
	maxClient int64
}

type counts struct {
	received, sent, dropped, bytesIn, bytesOut, sockets int64
}

// NewSys returns a $SYS publisher for b.
func NewSys(b Publisher, version string, interval time.Duration) *Sys {
	return &Sys{b: b, version: version, interval: interval, loads: make(map[string]*[3]float64)}
}

// Run publishes at once and then every interval until stop closes.
func (s *Sys) Run(stop <-chan struct{}) {
	s.Update(time.Now())
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.Update(now)
		}
	}
}

// Update publishes every topic once, for the statistics at now.
func (s *Sys) Update(now time.Time) {
	for _, m := range s.Messages(now) {
		s.b.Publish(SysPrefix+m.Topic, []byte(m.Value), 0, true)
	}
}

// SysMessage is one $SYS topic (under SysPrefix) and its value.
type SysMessage struct{ Topic, Value string }

// Messages computes every topic's value at now and advances the load
// averages; Update publishes them.
func (s *Sys) Messages(now time.Time) []SysMessage {
	st := s.b.Stats()
	var sessions int64
	for _, sh := range st.Shards {
		sessions += sh.Sessions
	}
	connected := int64(st.Connections)
	total := max(sessions, connected)
	s.maxClient = max(s.maxClient, total)
	dropped := st.DroppedQoS0 + st.DroppedQueueFull + st.DroppedSys
	if sec, ok := s.b.(interface{ SecurityStats() shard.SecurityStats }); ok {
		ss := sec.SecurityStats()
		dropped += ss.DeniedPublishes + ss.DeniedDeliveries
	}
	cur := counts{
		received: st.Received[0] + st.Received[1] + st.Received[2],
		sent:     st.Sent[0] + st.Sent[1] + st.Sent[2],
		dropped:  dropped,
		bytesIn:  st.ReceivedBytes,
		bytesOut: st.SentBytes,
		sockets:  st.ConnectionsTotal,
	}
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	msgs := []SysMessage{
		{"version", "iotd " + s.version},
		{"uptime", n(int64(st.Uptime/time.Second)) + " seconds"},
		{"clients/connected", n(connected)},
		{"clients/total", n(total)},
		{"clients/disconnected", n(total - connected)},
		{"clients/maximum", n(s.maxClient)},
		{"messages/received", n(cur.received)},
		{"messages/sent", n(cur.sent)},
		{"publish/messages/received", n(cur.received)},
		{"publish/messages/sent", n(cur.sent)},
		{"publish/messages/dropped", n(cur.dropped)},
		{"bytes/received", n(cur.bytesIn)},
		{"bytes/sent", n(cur.bytesOut)},
		{"publish/bytes/received", n(cur.bytesIn)},
		{"publish/bytes/sent", n(cur.bytesOut)},
		{"subscriptions/count", n(st.Subscriptions)},
		{"retained messages/count", n(int64(st.Retained))},
		{"messages/stored", n(st.Queued + st.Inflight)},
		{"store/messages/count", n(st.Queued + st.Inflight)},
	}

	// Load averages, as Mosquitto's sys_tree: the rate per minute over the
	// last interval, folded into exponentially decaying averages over 1, 5
	// and 15 minutes. The first update reports 0.
	first := s.last.IsZero()
	dt := now.Sub(s.last).Seconds()
	for _, l := range []struct {
		topic     string
		cur, prev int64
	}{
		{"messages/received", cur.received, s.prev.received},
		{"messages/sent", cur.sent, s.prev.sent},
		{"publish/received", cur.received, s.prev.received},
		{"publish/sent", cur.sent, s.prev.sent},
		{"publish/dropped", cur.dropped, s.prev.dropped},
		{"bytes/received", cur.bytesIn, s.prev.bytesIn},
		{"bytes/sent", cur.bytesOut, s.prev.bytesOut},
		{"sockets", cur.sockets, s.prev.sockets},
	} {
		avg := s.loads[l.topic]
		if avg == nil {
			avg = new([3]float64)
			s.loads[l.topic] = avg
		}
		for i, window := range []float64{60, 300, 900} {
			if !first && dt > 0 {
				rate := float64(l.cur-l.prev) * 60 / dt
				e := math.Exp(-dt / window)
				avg[i] = rate + e*(avg[i]-rate)
			}
			msgs = append(msgs, SysMessage{
				"load/" + l.topic + "/" + [3]string{"1min", "5min", "15min"}[i],
				strconv.FormatFloat(avg[i], 'f', 2, 64),
			})
		}
	}
	s.last, s.prev = now, cur
	return msgs
}
