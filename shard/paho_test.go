package shard

// Interoperability with a stock MQTT 3.1.1 client (Eclipse Paho Go): the
// broker works with another conformant implementation and needs no
// extension [MQTT-7.0.0-2], over plain TCP [MQTT-7.1.1-1].

import (
	"net"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
)

// pahoClient connects a Paho client to b; it disconnects when the test ends
// (before the broker stops, as cleanups run last-registered first).
func pahoClient(t *testing.T, b *testBroker, id string, clean bool, configure func(*mqtt.ClientOptions)) (mqtt.Client, bool) {
	t.Helper()
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + b.addr).
		SetClientID(id).
		SetCleanSession(clean).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second)
	if configure != nil {
		configure(o)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second), "paho connect timed out")
	require.NoError(t, tok.Error()) // [MQTT-7.0.0-2] [MQTT-7.1.1-1] a stock client over TCP
	t.Cleanup(func() { c.Disconnect(50) })
	return c, tok.(*mqtt.ConnectToken).SessionPresent()
}

func wait(t *testing.T, tok mqtt.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(5*time.Second), "paho operation timed out")
	require.NoError(t, tok.Error())
}

// collector gathers messages from a Paho handler.
type collector chan mqtt.Message

func newCollector() collector { return make(collector, 100) }

func (c collector) handler(_ mqtt.Client, m mqtt.Message) { c <- m }

func (c collector) next(t *testing.T) mqtt.Message {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

func (c collector) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-c:
		t.Fatalf("unexpected message %s %q", m.Topic(), m.Payload())
	case <-time.After(d):
	}
}

func TestPahoPublishSubscribeWildcards(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	got := newCollector()
	sub, _ := pahoClient(t, b, "paho-sub", true, nil)
	wait(t, sub.SubscribeMultiple(map[string]byte{"sport/+/score": 1, "news/#": 2}, got.handler))
	pub, _ := pahoClient(t, b, "paho-pub", true, nil)

	sends := []struct {
		topic string
		qos   byte
	}{
		{"sport/tennis/score", 0}, {"sport/golf/score", 1}, {"sport/golf/players", 2},
		{"news", 2}, {"news/world/europe", 1}, {"weather", 1},
	}
	for _, s := range sends {
		wait(t, pub.Publish(s.topic, s.qos, false, "payload "+s.topic))
	}
	want := map[string]byte{ // topic -> min(published, granted)
		"sport/tennis/score": 0, "sport/golf/score": 1, "news": 2, "news/world/europe": 1,
	}
	for range len(want) {
		m := got.next(t)
		q, ok := want[m.Topic()]
		require.True(t, ok, "unexpected topic %s", m.Topic())
		require.Equal(t, q, m.Qos())
		require.Equal(t, "payload "+m.Topic(), string(m.Payload()))
		require.False(t, m.Retained())
		delete(want, m.Topic())
	}
	got.none(t, 200*time.Millisecond) // [MQTT-7.0.0-2]

	// An empty client id with a clean session gets one assigned.
	anon, _ := pahoClient(t, b, "", true, nil)
	wait(t, anon.Publish("news/anon", 1, false, "from anon"))
	require.Equal(t, "news/anon", got.next(t).Topic()) // [MQTT-7.0.0-2]
}

func TestPahoRetained(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	pub, _ := pahoClient(t, b, "paho-pub", true, nil)
	wait(t, pub.Publish("status/a", 1, true, "a online"))
	wait(t, pub.Publish("status/b", 2, true, "b online"))
	wait(t, pub.Publish("status/c", 0, true, "c online"))
	wait(t, pub.Publish("status/c", 1, true, "")) // deletes status/c

	got := newCollector()
	sub, _ := pahoClient(t, b, "paho-sub", true, nil)
	wait(t, sub.Subscribe("status/#", 2, got.handler))
	var topics []string
	for range 2 {
		m := got.next(t)
		require.True(t, m.Retained()) // [MQTT-7.0.0-2]
		topics = append(topics, m.Topic())
	}
	sort.Strings(topics)
	require.Equal(t, []string{"status/a", "status/b"}, topics)
	got.none(t, 200*time.Millisecond)

	wait(t, pub.Publish("status/a", 1, true, "a offline"))
	m := got.next(t)
	require.Equal(t, "a offline", string(m.Payload()))
	require.False(t, m.Retained()) // live copy [MQTT-7.0.0-2]
}

func TestPahoWillOnAbruptClose(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	got := newCollector()
	watch, _ := pahoClient(t, b, "paho-watch", true, nil)
	wait(t, watch.Subscribe("clients/+/state", 1, got.handler))

	var mu sync.Mutex
	var conn net.Conn
	pahoClient(t, b, "paho-dev", true, func(o *mqtt.ClientOptions) {
		o.SetWill("clients/paho-dev/state", "offline", 1, true)
		o.SetCustomOpenConnectionFn(func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", uri.Host, 5*time.Second)
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		})
	})
	mu.Lock()
	conn.Close() // the device vanishes without DISCONNECT
	mu.Unlock()
	m := got.next(t)
	require.Equal(t, "clients/paho-dev/state", m.Topic()) // [MQTT-7.0.0-2]
	require.Equal(t, "offline", string(m.Payload()))
	require.Equal(t, byte(1), m.Qos())

	// Will Retain was set: a later subscriber still sees the device offline.
	late := newCollector()
	sub, _ := pahoClient(t, b, "paho-late", true, nil)
	wait(t, sub.Subscribe("clients/#", 1, late.handler))
	m = late.next(t)
	require.Equal(t, "offline", string(m.Payload()))
	require.True(t, m.Retained())

	// A clean Paho Disconnect discards the will.
	quiet, _ := pahoClient(t, b, "paho-quiet", true, func(o *mqtt.ClientOptions) {
		o.SetWill("clients/paho-quiet/state", "offline", 1, false)
	})
	quiet.Disconnect(50)
	got.none(t, 300*time.Millisecond)
}

func TestPahoCleanSessionResume(t *testing.T) {
	t.Parallel()
	b := runBroker(t, Config{})
	dev, present := pahoClient(t, b, "paho-resume", false, nil)
	require.False(t, present)
	wait(t, dev.Subscribe("cmd/paho-resume/#", 1, func(mqtt.Client, mqtt.Message) {}))
	dev.Disconnect(50)

	pub, _ := pahoClient(t, b, "paho-pub", true, nil)
	for _, p := range []string{"one", "two", "three"} {
		wait(t, pub.Publish("cmd/paho-resume/run", 1, false, p))
	}

	got := newCollector()
	dev, present = pahoClient(t, b, "paho-resume", false, func(o *mqtt.ClientOptions) {
		o.SetDefaultPublishHandler(got.handler)
	})
	require.True(t, present) // [MQTT-7.0.0-2] the stored session is reported
	for _, p := range []string{"one", "two", "three"} {
		m := got.next(t)
		require.Equal(t, p, string(m.Payload())) // queued while offline, in order
		require.Equal(t, byte(1), m.Qos())
	}
	// Still subscribed: live messages arrive too.
	wait(t, pub.Publish("cmd/paho-resume/run", 1, false, "four"))
	require.Equal(t, "four", string(got.next(t).Payload()))
	dev.Disconnect(50)

	// A clean connect ends the session.
	_, present = pahoClient(t, b, "paho-resume", true, nil)
	require.False(t, present)
}
