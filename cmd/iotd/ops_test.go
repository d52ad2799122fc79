package main

// Operations on the real binary: the config file at startup, the metrics
// listener and pprof, $SYS topics, SIGHUP reload of the log level, SIGTERM
// shutdown, and the connection limits driven by flags and config keys.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"iotd/tlsconf/tlstest"
	"iotd/wire"
)

// opsClient is a small raw MQTT client.
type opsClient struct {
	t    *testing.T
	conn net.Conn
	r    *wire.Reader
}

func opsDial(t *testing.T, addr string) *opsClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &opsClient{t: t, conn: conn, r: wire.NewReader(conn, 1<<20)}
}

func (c *opsClient) send(p wire.Packet) {
	c.t.Helper()
	_, err := c.conn.Write(p.Append(nil))
	require.NoError(c.t, err)
}

func (c *opsClient) read() (wire.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	fh, body, err := c.r.ReadPacket()
	if err != nil {
		return nil, err
	}
	return wire.Decode(fh, body)
}

func (c *opsClient) mustRead() wire.Packet {
	c.t.Helper()
	p, err := c.read()
	require.NoError(c.t, err)
	return p
}

// connect sends CONNECT and returns the CONNACK's return code.
func (c *opsClient) connect(id string) byte {
	c.t.Helper()
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true})
	ack, ok := c.mustRead().(*wire.Connack)
	require.True(c.t, ok, "CONNACK")
	return ack.ReturnCode
}

// ping round-trips a PINGREQ: the connection is alive and every packet
// sent before it has been handled.
func (c *opsClient) ping() error {
	if _, err := c.conn.Write((&wire.Pingreq{}).Append(nil)); err != nil {
		return err
	}
	for {
		p, err := c.read()
		if err != nil {
			return err
		}
		if _, ok := p.(*wire.Pingresp); ok {
			return nil
		}
	}
}

// closed reports whether the server closes the connection within d.
func (c *opsClient) closed(d time.Duration) bool {
	c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := c.conn.Read(make([]byte, 1))
	return err == io.EOF || err != nil && !isNetTimeout(err)
}

func isNetTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func scrapeProc(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, lp := range m.GetLabel() {
				key += fmt.Sprintf(",%s=%s", lp.GetName(), lp.GetValue())
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// The operations flags from a config file: metrics on an ephemeral port
// with pprof, $SYS every 50ms; SIGTERM then stops everything with status 0.
func TestMetricsAndSysFromConfigFile(t *testing.T) {
	bin := buildIotd(t)
	cfg := writeConfig(t, `
listen = ["tcp://127.0.0.1:0"]
metrics-listen = "127.0.0.1:0"
pprof = true
sys-interval = "50ms"
shards = 2
`)
	p := startIotd(t, bin, "--config", cfg)
	require.NotEmpty(t, p.metrics, "the ready line names the metrics listener")

	c := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, c.connect("metrics-client"))
	c.send(&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "$SYS/broker/version", QoS: 0}}})
	_, ok := c.mustRead().(*wire.Suback)
	require.True(t, ok)
	pub, ok := c.mustRead().(*wire.Publish)
	require.True(t, ok, "the retained $SYS version")
	require.Equal(t, "$SYS/broker/version", string(pub.Topic))
	require.Equal(t, "iotd "+version, string(pub.Payload), "the test binary is unstamped")
	require.True(t, pub.Retain)
	for range 3 {
		c.send(&wire.Publish{Topic: []byte("a/b"), Payload: []byte("hello")})
	}
	require.NoError(t, c.ping())

	m := scrapeProc(t, p.metrics)
	require.Equal(t, 3.0, m["iotd_messages_received_total,qos=0"])
	require.Equal(t, 15.0, m["iotd_received_payload_bytes_total,qos=0"])
	require.Equal(t, 1.0, m["iotd_connections_current"])
	require.Equal(t, 1.0, m["iotd_build_info,version="+version])
	require.Contains(t, m, "iotd_shard_mailbox_depth,shard=1", "shards = 2 from the file")
	require.NotContains(t, m, "iotd_shard_mailbox_depth,shard=2")

	resp, err := http.Get("http://" + p.metrics + "/debug/pprof/cmdline")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "--pprof")
	require.Contains(t, string(body), "iotd")

	require.NoError(t, p.stop(t, syscall.SIGTERM), "exit status 0")
	_, err = net.DialTimeout("tcp", p.metrics, time.Second)
	require.Error(t, err, "the metrics listener is closed")
}

// --sys-interval 0 publishes no $SYS topics; metrics are off by default.
func TestSysIntervalZeroAndMetricsOffByDefault(t *testing.T) {
	bin := buildIotd(t)
	p := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--sys-interval", "0")
	require.Empty(t, p.metrics)
	require.NotContains(t, p.log.String(), "metrics")
	c := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, c.connect("sys-off"))
	c.send(&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "$SYS/#", QoS: 0}}})
	_, ok := c.mustRead().(*wire.Suback)
	require.True(t, ok)
	c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, _, err := c.r.ReadPacket()
	require.True(t, isNetTimeout(err), "no $SYS message: %v", err)
}

func TestOpsFlagErrors(t *testing.T) {
	bin := buildIotd(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pprof"}, "--pprof serves on the metrics listener: set --metrics-listen"},
		{[]string{"--metrics-listen", "9234"}, "--metrics-listen \"9234\": want HOST:PORT"},
		{[]string{"--sys-interval", "-1s"}, "--sys-interval -1s"},
	} {
		out, err := exec.Command(bin, append(tc.args, "--data-dir", t.TempDir())...).CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%v: %s", tc.args, out)
		require.Equal(t, 2, ee.ExitCode(), "%v: %s", tc.args, out)
		require.Contains(t, string(out), tc.want)
	}
}

// SIGHUP re-reads log-level from the config file without dropping
// connections; a level on the command line is kept; SIGTERM exits 0.
func TestSIGHUPReloadsLogLevel(t *testing.T) {
	bin := buildIotd(t)
	cfg := writeConfig(t, "listen = [\"tcp://127.0.0.1:0\"]\nlog-level = \"info\"\n")
	p := startIotd(t, bin, "--config", cfg)
	first := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, first.connect("first"))
	p.log.waitFor(t, `msg="client connected" client=first`, 1)

	// Quieter: a connect is no longer logged, the open connection stays.
	require.NoError(t, os.WriteFile(cfg, []byte("listen = [\"tcp://127.0.0.1:0\"]\nlog-level = \"warn\"\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	p.log.waitFor(t, `msg="log level changed" from=INFO to=WARN`, 1)
	second := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, second.connect("second"))
	require.NoError(t, second.ping())
	require.NoError(t, first.ping(), "SIGHUP drops no connection")
	require.NotContains(t, p.log.String(), "client=second")

	// A bad level keeps the current one and says why, with the line.
	require.NoError(t, os.WriteFile(cfg, []byte("listen = [\"tcp://127.0.0.1:0\"]\n\nlog-level = \"chatty\"\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	p.log.waitFor(t, `level=ERROR msg="SIGHUP: reload failed; keeping the previous settings" what="log level"`, 1)
	require.Contains(t, p.log.String(), fmt.Sprintf(`config file %s:3: key \"log-level\"`, cfg))

	// Louder: debug lines appear.
	require.NoError(t, os.WriteFile(cfg, []byte("log-level = \"debug\"\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	p.log.waitFor(t, `msg="log level changed" from=WARN to=DEBUG`, 1)
	third := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, third.connect("third"))
	p.log.waitFor(t, `msg="client connected" client=third`, 1)
	require.NoError(t, first.ping())

	require.NoError(t, p.stop(t, syscall.SIGTERM), "exit status 0 after SIGTERM")
	require.True(t, first.closed(time.Second), "shutdown closes connections")
	require.Contains(t, p.log.String(), `msg="shutting down" signal=terminated`)
	require.Contains(t, p.log.String(), `msg=stopped`)

	// A level given on the command line wins over the file, on SIGHUP too.
	require.NoError(t, os.WriteFile(cfg, []byte("listen = [\"tcp://127.0.0.1:0\"]\nlog-level = \"debug\"\n"), 0o600))
	p = startIotd(t, bin, "--config", cfg, "--log-level", "warn")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	time.Sleep(200 * time.Millisecond) // the reload logs at info: nothing to wait for at warn
	c := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, c.connect("quiet"))
	require.NoError(t, c.ping())
	require.NotContains(t, p.log.String(), "client=quiet")
	require.NotContains(t, p.log.String(), "log level changed")
	require.NoError(t, p.stop(t, syscall.SIGINT), "exit status 0 after SIGINT")
}

// ws:// and wss:// listeners on the real binary, with a stock client; wss
// takes the --tls-* flags of tls:// listeners.
func TestWebSocketListeners(t *testing.T) {
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true, "127.0.0.1")
	p := startIotd(t, bin, "--listen", "ws://127.0.0.1:0/mqtt", "--listen", "wss://127.0.0.1:0/mqtt",
		"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile)
	require.NotEmpty(t, p.addrs["ws"])
	require.NotEmpty(t, p.addrs["wss"])

	connect := func(url, id string, cfg *tls.Config) mqtt.Client {
		o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		if cfg != nil {
			o.SetTLSConfig(cfg)
		}
		c := mqtt.NewClient(o)
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error(), url)
		t.Cleanup(func() { c.Disconnect(50) })
		return c
	}
	sub := connect("ws://"+p.addrs["ws"]+"/mqtt", "ws-sub", nil)
	pub := connect("wss://"+p.addrs["wss"]+"/mqtt", "wss-pub", tlstest.ClientConfig(ca, nil))
	got := make(chan string, 1)
	tok := sub.Subscribe("ws/+", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	tok = pub.Publish("ws/x", 1, false, "from wss to ws")
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	select {
	case m := <-got:
		require.Equal(t, "from wss to ws", m)
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	require.NoError(t, p.stop(t, syscall.SIGTERM))
}

// The limits set by flags and config keys reach the broker: each is hit on
// the real binary and shows in /metrics. (The shard tests cover each in
// depth: shard/limits_test.go lists them.)
func TestLimitsOnTheRealBinary(t *testing.T) {
	bin := buildIotd(t)
	cfg := writeConfig(t, `
max-client-id-length = 8
max-packet-size = "1KiB"
max-subscriptions = 2
max-inflight = 2
max-queued-messages = 3
connect-timeout = "300ms"
`)
	p := startIotd(t, bin, "--config", cfg, "--listen", "tcp://127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--max-connections", "4", "--sys-interval", "0")
	addr := p.addrs["tcp"]
	limit := func(name string) float64 { return scrapeProc(t, p.metrics)["iotd_limit_hits_total,limit="+name] }

	// max-client-id-length: CONNACK 0x02, then close.
	c := opsDial(t, addr)
	require.Equal(t, wire.RefusedIdentifierRejected, c.connect("123456789"))
	require.True(t, c.closed(5*time.Second))
	require.Equal(t, 1.0, limit("max-client-id-length"))
	require.Equal(t, 1.0, scrapeProc(t, p.metrics)["iotd_connections_refused_total,reason=client-id-too-long"])

	// connect-timeout: a silent connection is closed.
	start := time.Now()
	c = opsDial(t, addr)
	require.True(t, c.closed(5*time.Second))
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, 1.0, limit("connect-timeout"))

	// max-subscriptions: the third filter gets 0x80.
	sub := opsDial(t, addr)
	require.Equal(t, wire.Accepted, sub.connect("sub"))
	sub.send(&wire.Subscribe{PacketID: 1, Subscriptions: []wire.Subscription{{Filter: "q", QoS: 1}, {Filter: "b", QoS: 0}, {Filter: "c", QoS: 0}}})
	ack, ok := sub.mustRead().(*wire.Suback)
	require.True(t, ok)
	require.Equal(t, []byte{1, 0, wire.SubackFailure}, ack.ReturnCodes)
	require.Equal(t, 1.0, limit("max-subscriptions"))

	// max-inflight 2: of 5 QoS 1 messages the subscriber gets 2 until it
	// acknowledges; max-queued-messages 3 then holds the other 3, and a
	// sixth is dropped.
	pub := opsDial(t, addr)
	require.Equal(t, wire.Accepted, pub.connect("pub"))
	for i := range 6 {
		pub.send(&wire.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: []byte("q"), Payload: []byte{byte('0' + i)}})
		_, ok := pub.mustRead().(*wire.Puback)
		require.True(t, ok)
	}
	var got []string
	for range 2 {
		m, ok := sub.mustRead().(*wire.Publish)
		require.True(t, ok)
		got = append(got, string(m.Payload))
	}
	sub.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, _, err := sub.r.ReadPacket()
	require.True(t, isNetTimeout(err), "only max-inflight messages before an ack: %v", err)
	require.Equal(t, 1.0, limit("max-queued-messages"))
	require.Equal(t, 1.0, scrapeProc(t, p.metrics)["iotd_messages_dropped_total,reason=queue-full"])
	for i := uint16(1); len(got) < 5; i++ {
		sub.send(&wire.Puback{PacketID: i})
		m, ok := sub.mustRead().(*wire.Publish)
		require.True(t, ok)
		got = append(got, string(m.Payload))
	}
	require.Equal(t, []string{"0", "1", "2", "3", "4"}, got, "in order; the sixth was dropped")

	// max-packet-size: a 2 KiB PUBLISH closes the connection.
	pub.send(&wire.Publish{Topic: []byte("big"), Payload: make([]byte, 2048)})
	require.True(t, pub.closed(5*time.Second))
	require.Equal(t, 1.0, limit("max-packet-size"))

	// max-connections 4 (command line): sub is open; three more fit, the
	// next is closed at once and the others keep working.
	var open []*opsClient
	for i := range 3 {
		c := opsDial(t, addr)
		require.Equal(t, wire.Accepted, c.connect(fmt.Sprintf("c%d", i)))
		open = append(open, c)
	}
	over := opsDial(t, addr)
	require.True(t, over.closed(2*time.Second), "closed at accept")
	require.Equal(t, 1.0, limit("max-connections"))
	for _, c := range append(open, sub) {
		require.NoError(t, c.ping())
	}
	p.log.waitFor(t, "limit=max-connections", 1)
	for _, l := range []string{"max-client-id-length", "connect-timeout", "max-subscriptions", "max-queued-messages", "max-packet-size"} {
		require.Contains(t, p.log.String(), "limit="+l)
	}
}

// One info line per connect and per disconnect, with client id, address and
// reason, in JSON with --log-format json; debug lines only at debug level.
func TestConnectDisconnectLogLinesJSON(t *testing.T) {
	bin := buildIotd(t)
	p := startIotd(t, bin, "--listen", "tcp://127.0.0.1:0", "--log-format", "json")
	c := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, c.connect("json-1"))
	local := c.conn.LocalAddr().String()
	c.send(&wire.Disconnect{})
	require.True(t, c.closed(5*time.Second))
	d := opsDial(t, p.addrs["tcp"])
	require.Equal(t, wire.Accepted, d.connect("json-2"))
	d.conn.Close()
	p.log.waitFor(t, `"client":"json-2"`, 2)

	type line struct {
		Level, Msg, Client, Remote, Reason string
	}
	var lines []line
	for _, raw := range strings.Split(strings.TrimSpace(p.log.String()), "\n") {
		var l line
		require.NoError(t, json.Unmarshal([]byte(raw), &l), "every log line is JSON: %s", raw)
		if l.Client != "" {
			lines = append(lines, l)
		}
	}
	require.Equal(t, []line{
		{Level: "INFO", Msg: "client connected", Client: "json-1", Remote: local},
		{Level: "INFO", Msg: "client disconnected", Client: "json-1", Remote: local, Reason: "client sent DISCONNECT"},
		{Level: "INFO", Msg: "client connected", Client: "json-2", Remote: d.conn.LocalAddr().String()},
		{Level: "INFO", Msg: "client disconnected", Client: "json-2", Remote: d.conn.LocalAddr().String(), Reason: "connection closed by client"},
	}, lines)
}

// The container image's configuration (docker/iotd.toml, run by the
// Dockerfile) loads, matches what the Dockerfile exposes, and obeys the
// rule for listeners other hosts can reach: without its password file iotd
// refuses to start; with it, clients log in and anonymous ones are refused.
func TestDockerImageConfig(t *testing.T) {
	const conf = "../../docker/iotd.toml"
	vals, _, err := applyArgs(t, "--config", conf)
	require.NoError(t, err)
	require.Equal(t, "[tcp://0.0.0.0:1883 ws://0.0.0.0:8083/mqtt]", vals["listen"])
	require.Equal(t, "/data", vals["data-dir"])
	require.Equal(t, "0.0.0.0:9234", vals["metrics-listen"])
	df, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	for _, want := range []string{"EXPOSE 1883 8883 8083 9234", `VOLUME ["/data"]`, "CGO_ENABLED=0", "COPY docker/iotd.toml /etc/iotd/iotd.toml",
		`CMD ["--config", "/etc/iotd/iotd.toml"]`, "-X main.version=${VERSION}", "USER nonroot"} {
		require.Contains(t, string(df), want)
	}

	bin := buildIotd(t)
	// Ephemeral ports on every interface, as in the container; traffic
	// goes to loopback only.
	args := []string{"--config", conf, "--listen", "tcp://0.0.0.0:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
	missing := filepath.Join(t.TempDir(), "passwd")
	out, err := exec.Command(bin, append(args, "--password-file", missing)...).CombinedOutput()
	require.Error(t, err, "no password file: no start")
	require.Contains(t, string(out), missing)

	cmd := exec.Command(bin, "passwd", "--password-stdin", missing, "alice")
	cmd.Stdin = strings.NewReader("s3cret\n")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	p := startIotd(t, bin, append(args, "--password-file", missing)...)
	_, port, err := net.SplitHostPort(p.addrs["tcp"])
	require.NoError(t, err)
	c := opsDial(t, "127.0.0.1:"+port)
	c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "a", CleanSession: true, UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("s3cret")})
	ack, ok := c.mustRead().(*wire.Connack)
	require.True(t, ok)
	require.Equal(t, wire.Accepted, ack.ReturnCode)
	anon := opsDial(t, "127.0.0.1:"+port)
	require.Equal(t, wire.RefusedNotAuthorized, anon.connect("anon"))
	require.NoError(t, p.stop(t, syscall.SIGTERM))
}
