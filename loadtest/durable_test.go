package loadtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/shard"
	"iotd/shard/shardtest"
	"iotd/wire"
)

// persistentBroker is an in-process iotd with persistence on dir; stop
// closes it (the test can start another on the same dir: a restart).
func persistentBroker(t *testing.T, dir string) (addr string, stop func()) {
	t.Helper()
	return shardtest.StartBroker(t, shard.Config{Shards: 2, Persistence: true, DataDir: dir, MaxQueuedMessages: 10_000})
}

// sessionPresent connects id with clean session 0 and reports whether the
// broker still had a session for it; it then discards it again.
func sessionPresent(t *testing.T, addr, id string) bool {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write((&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id}).Append(nil))
	require.NoError(t, err)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	fh, body, err := wire.NewReader(nc, 0).ReadPacket()
	require.NoError(t, err)
	p, err := wire.Decode(fh, body)
	require.NoError(t, err)
	present := p.(*wire.Connack).SessionPresent
	nc.Write((&wire.Disconnect{}).Append(nil))
	// Discard what this probe created.
	nc2, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer nc2.Close()
	nc2.Write((&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true}).Append(nil))
	nc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = wire.NewReader(nc2, 0).ReadPacket()
	require.NoError(t, err)
	nc2.Write((&wire.Disconnect{}).Append(nil))
	return present
}

func TestPersistentSessionSubscribers(t *testing.T) {
	addr, _ := persistentBroker(t, t.TempDir())
	for _, s := range []Scenario{Fanin, Pairs} {
		cfg := brief(addr, s, 1)
		cfg.PersistentSessions = true
		if s == Fanin {
			cfg.Publishers = 3
		} else {
			cfg.Clients = 4
		}
		res := run(t, cfg)
		checkCounts(t, res, 1)
		// Acknowledged only once durable: the ack time is real.
		require.Positive(t, res.AckLatency.P50)
		// The run removed the sessions it created.
		for i := range res.Subscribers {
			id := (&runner{runID: res.RunID}).clientID('s', i)
			require.False(t, sessionPresent(t, addr, id), "session %s left behind", id)
		}
	}
}

// TestOfflinePhasesAcrossRestart: fill leaves a backlog in 3 persistent
// sessions, the broker restarts (recovering it from its log), drain
// receives every message once, in order, and removes the sessions.
func TestOfflinePhasesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	addr, stop := persistentBroker(t, dir)
	fill := brief(addr, Offline, 1)
	fill.Phase, fill.RunID, fill.Count, fill.Subscribers, fill.Publishers = PhaseFill, "phases1", 300, 3, 2
	res := run(t, fill)
	require.Equal(t, "fill", res.Phase)
	require.Equal(t, uint64(300), res.Sent)
	require.Equal(t, uint64(900), res.Expected)
	require.Zero(t, res.Received)
	require.Zero(t, res.Lost, "fill does not count the backlog as lost")
	require.Equal(t, int64(300), res.AckLatency.Count)
	require.Positive(t, res.ElapsedSec)

	stop()
	addr, _ = persistentBroker(t, dir)
	drain := fill
	drain.Addr, drain.Phase = addr, PhaseDrain
	res = run(t, drain)
	require.Equal(t, "drain", res.Phase)
	require.Equal(t, uint64(900), res.Received)
	checkCountsDrain(t, res)
	for i := range 3 {
		id := (&runner{runID: "phases1"}).clientID('s', i)
		require.False(t, sessionPresent(t, addr, id), "drain removed session %s", id)
	}

	// A drain with nothing to drain says so: no session, everything lost.
	res, err := Run(context.Background(), drain)
	require.NoError(t, err)
	require.Equal(t, uint64(900), res.Lost)
	require.NotZero(t, res.Errors)
	require.Contains(t, res.ErrorSamples[0], "did not keep its session")
}

// checkCountsDrain: a drain publishes nothing itself; what fill sent all
// arrived, once, in order.
func checkCountsDrain(t *testing.T, res *Result) {
	t.Helper()
	require.Equal(t, res.Sent*uint64(res.Subscribers), res.Expected)
	require.Equal(t, res.Expected, res.Received)
	require.Zero(t, res.Lost)
	require.Zero(t, res.Duplicated)
	require.Zero(t, res.OutOfOrder)
	require.Equal(t, int64(res.Received), res.Latency.Count)
	require.Positive(t, res.BacklogMsgsPerSec)
	require.Zero(t, res.AckLatency.Count, "drain publishes nothing")
	require.Less(t, res.Latency.Max, 10_000.0, "latency counts from the reconnect, not from fill's clock")
}
