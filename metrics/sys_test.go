package metrics_test

import (
	"math"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"iotd/metrics"
	"iotd/shard"
)

// fakeBroker returns programmed stats and records what is published.
type fakeBroker struct {
	mu        sync.Mutex
	st        shard.Stats
	published map[string]string
	retained  bool
}

func (f *fakeBroker) Stats() shard.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeBroker) Publish(topic string, payload []byte, qos byte, retain bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.published == nil {
		f.published = make(map[string]string)
	}
	f.published[topic] = string(payload)
	f.retained = retain
	return nil
}

func TestSysLoadAveragesFollowMosquitto(t *testing.T) {
	f := &fakeBroker{st: shard.Stats{Shards: []shard.ShardStats{{Sessions: 4}, {Sessions: 1}}, Connections: 3}}
	s := metrics.NewSys(f, "v9", time.Minute)
	t0 := time.Unix(1000, 0)
	s.Update(t0)
	require.True(t, f.retained, "$SYS messages are retained")
	require.Equal(t, "iotd v9", f.published["$SYS/broker/version"])
	require.Equal(t, "3", f.published["$SYS/broker/clients/connected"])
	require.Equal(t, "5", f.published["$SYS/broker/clients/total"])
	require.Equal(t, "2", f.published["$SYS/broker/clients/disconnected"])
	require.Equal(t, "5", f.published["$SYS/broker/clients/maximum"])
	require.Equal(t, "0.00", f.published["$SYS/broker/load/messages/received/1min"], "the first update reports 0")

	// 600 PUBLISHes in the next minute: a rate of 600/min, folded in as
	// Mosquitto does: new = rate + exp(-dt/window) * (old - rate).
	f.st.Received = [3]int64{100, 200, 300}
	f.st.ReceivedBytes = 6000
	f.st.Shards = []shard.ShardStats{{Sessions: 1}}
	s.Update(t0.Add(time.Minute))
	load := func(topic string) float64 {
		v, err := strconv.ParseFloat(f.published["$SYS/broker/load/"+topic], 64)
		require.NoError(t, err, topic)
		return v
	}
	require.InDelta(t, 600*(1-math.Exp(-1)), load("messages/received/1min"), 0.01)
	require.InDelta(t, 600*(1-math.Exp(-0.2)), load("messages/received/5min"), 0.01)
	require.InDelta(t, 600*(1-math.Exp(-1.0/15)), load("publish/received/15min"), 0.01)
	require.InDelta(t, 6000*(1-math.Exp(-1)), load("bytes/received/1min"), 0.01)
	require.Equal(t, 0.0, load("messages/sent/1min"))
	require.Equal(t, "600", f.published["$SYS/broker/messages/received"])
	require.Equal(t, "3", f.published["$SYS/broker/clients/total"], "at least the connected clients")
	require.Equal(t, "5", f.published["$SYS/broker/clients/maximum"], "the maximum stays")

	// A quiet minute decays the 1 minute average by e.
	prev := load("messages/received/1min")
	s.Update(t0.Add(2 * time.Minute))
	require.InDelta(t, prev*math.Exp(-1), load("messages/received/1min"), 0.01)
}

// Against a real broker: after known traffic, a client subscribing to
// $SYS/broker/# gets the retained statistics with the exact counts.
func TestSysTopicsAfterKnownTraffic(t *testing.T) {
	b, addr := startBroker(t, shard.Config{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); metrics.NewSys(b, "test", 20*time.Millisecond).Run(stop) }()
	defer func() { close(stop); <-done }()

	got := make(chan mqtt.Message, 100)
	sub := pahoConnect(t, addr, "sub")
	wait(t, sub.Subscribe("t/#", 2, func(_ mqtt.Client, m mqtt.Message) { got <- m }))
	pub := pahoConnect(t, addr, "pub")
	for range 3 {
		wait(t, pub.Publish("t/a", 0, false, "abc")) // 3 bytes
	}
	wait(t, pub.Publish("t/b", 1, true, "defg")) // retained, 4 bytes
	wait(t, pub.Publish("t/c", 2, false, "hijkl"))
	for range 5 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("subscriber did not get the 5 messages")
		}
	}
	// The next tick has run once these counts are visible in a fresh update.
	time.Sleep(100 * time.Millisecond)

	sys := make(chan mqtt.Message, 1000)
	mon := pahoConnect(t, addr, "monitor")
	wait(t, mon.Subscribe("$SYS/broker/#", 0, func(_ mqtt.Client, m mqtt.Message) { sys <- m }))
	want := map[string]*regexp.Regexp{
		"version":                     regexp.MustCompile(`^iotd test$`),
		"uptime":                      regexp.MustCompile(`^\d+ seconds$`),
		"clients/connected":           regexp.MustCompile(`^[23]$`), // 3 once the monitor's connection counts
		"clients/total":               regexp.MustCompile(`^[23]$`),
		"messages/received":           regexp.MustCompile(`^5$`),
		"publish/messages/received":   regexp.MustCompile(`^5$`),
		"messages/sent":               regexp.MustCompile(`^5$`),
		"publish/messages/sent":       regexp.MustCompile(`^5$`),
		"publish/messages/dropped":    regexp.MustCompile(`^0$`),
		"bytes/received":              regexp.MustCompile(`^18$`),
		"bytes/sent":                  regexp.MustCompile(`^18$`),
		"subscriptions/count":         regexp.MustCompile(`^1$`),                                   // t/#; the monitor's comes after these values
		"retained messages/count":     regexp.MustCompile("^" + strconv.Itoa(1+sysTopics()) + "$"), // t/b and every $SYS topic, as Mosquitto counts
		"messages/stored":             regexp.MustCompile(`^0$`),
		"load/messages/received/1min": regexp.MustCompile(`^\d+\.\d\d$`),
		"load/bytes/sent/15min":       regexp.MustCompile(`^\d+\.\d\d$`),
	}
	// The first (retained) value of each topic was computed before the
	// monitor subscribed, so its own $SYS deliveries are not in it.
	first := make(map[string]string)
	deadline := time.After(5 * time.Second)
	for len(first) < len(want) {
		select {
		case m := <-sys:
			topic := m.Topic()[len(metrics.SysPrefix):]
			if _, seen := first[topic]; !seen && want[topic] != nil {
				require.True(t, m.Retained(), "%s arrives retained on subscription", topic)
				first[topic] = string(m.Payload())
			}
		case <-deadline:
			t.Fatalf("got only %v", first)
		}
	}
	for topic, re := range want {
		require.Regexp(t, re, first[topic], topic)
	}
}

// sysTopics is the number of topics Sys publishes.
func sysTopics() int {
	f := &fakeBroker{}
	metrics.NewSys(f, "", time.Second).Update(time.Now())
	return len(f.published)
}
