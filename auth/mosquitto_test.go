package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"iotd/internal/syncbuf"
)

// Interoperability with a real Mosquitto broker. These tests skip when the
// Debian mosquitto and mosquitto-clients packages are not installed.

func lookMosquitto(t *testing.T) (broker, pub string) {
	t.Helper()
	broker, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Skip("mosquitto broker not installed (apt-get install mosquitto)")
		}
		broker = "/usr/sbin/mosquitto"
	}
	pub, err = exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients)")
	}
	return broker, pub
}

// startMosquitto runs the broker on 127.0.0.1 with extra config lines and
// returns its port and log. It stops the broker when the test ends.
func startMosquitto(t *testing.T, bin, extra string) (int, *syncbuf.Buffer) {
	t.Helper()
	// When the test runs as root, mosquitto would drop to the "mosquitto"
	// user, which cannot read t.TempDir(); "user" names who to run as.
	runAs := ""
	if u, err := user.Current(); err == nil {
		runAs = "user " + u.Username + "\n"
	}
	var lastLog string
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		conf := filepath.Join(t.TempDir(), "mosquitto.conf")
		text := fmt.Sprintf("listener %d 127.0.0.1\n%s%s", port, runAs, extra)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		log := &syncbuf.Buffer{}
		cmd := exec.Command(bin, "-c", conf, "-v")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting mosquitto: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			select {
			case <-exited:
				return
			default:
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		if waitListening(port, exited) {
			t.Cleanup(stop)
			return port, log
		}
		stop()
		lastLog = log.String()
	}
	t.Fatalf("mosquitto did not start:\n%s", lastLog)
	return 0, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(port int, exited <-chan struct{}) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// publish runs mosquitto_pub and returns its exit code (0: connected and
// published; 5: CONNACK "not authorised").
func publish(t *testing.T, pub string, port int, user, pass string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pub, "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-u", user, "-P", pass, "-t", "iotd/test", "-m", "hello", "-q", "1").CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		t.Logf("mosquitto_pub -u %s: %s", user, bytes.TrimSpace(out))
		return ee.ExitCode()
	}
	t.Fatalf("mosquitto_pub: %v", err)
	return -1
}

// TestMosquittoAcceptsOurHashes: a password file written by HashPassword
// and SetPassword logs in to a real mosquitto with allow_anonymous false.
func TestMosquittoAcceptsOurHashes(t *testing.T) {
	broker, pub := lookMosquitto(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	h, err := HashPassword([]byte("hashed pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("# ours\nhashed:"+h+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "viaset", []byte("set pw: with $ and spaces")); err != nil {
		t.Fatal(err)
	}
	port, log := startMosquitto(t, broker, "allow_anonymous false\npassword_file "+path+"\n")
	for _, c := range []struct {
		user, pass string
		want       int
	}{
		{"hashed", "hashed pw", 0},
		{"viaset", "set pw: with $ and spaces", 0},
		{"hashed", "wrong", 5},
		{"viaset", "set pw", 5},
		{"nobody", "hashed pw", 5},
	} {
		if got := publish(t, pub, port, c.user, c.pass); got != c.want {
			t.Errorf("mosquitto_pub -u %s -P %q exit %d, want %d\nbroker log:\n%s", c.user, c.pass, got, c.want, log)
		}
	}
}

// TestMosquittoLoadsOurACLFixture: the ACL file used by the ACL tests is one
// Mosquitto itself loads (it refuses to start on a line it cannot parse).
func TestMosquittoLoadsOurACLFixture(t *testing.T) {
	broker, _ := lookMosquitto(t)
	path := writeFile(t, "acl", aclFixture)
	startMosquitto(t, broker, "allow_anonymous true\nacl_file "+path+"\n")
}
