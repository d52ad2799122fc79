package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"iotd/config"
)

// applyArgs parses args as `iotd` does, applies the --config file, and
// returns every flag's value afterwards.
func applyArgs(t *testing.T, args ...string) (map[string]string, *configState, error) {
	t.Helper()
	flags := serveCommand().Flags
	var (
		vals    map[string]string
		cs      *configState
		cfgErr  error
		appFlag = serveCommand().Flags
	)
	app := &cli.App{Name: "iotd", Flags: appFlag, Action: func(c *cli.Context) error {
		cs, cfgErr = applyConfig(c, flags)
		vals = make(map[string]string)
		for _, f := range flags {
			name := f.Names()[0]
			switch f.(type) {
			case *cli.GenericFlag:
				vals[name] = fmt.Sprint(c.Generic(name))
			case *cli.StringSliceFlag:
				vals[name] = fmt.Sprint(c.StringSlice(name))
			default:
				vals[name] = fmt.Sprint(c.Value(name))
			}
		}
		return nil
	}}
	require.NoError(t, app.Run(append([]string{"iotd"}, args...)))
	return vals, cs, cfgErr
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	return writeFile(t, "iotd.toml", body)
}

// The example file is the reference for operators: it must name every flag
// once (so a new flag cannot be left out), load cleanly, and give exactly
// the defaults.
func TestExampleConfigHasEveryFlagWithItsDefault(t *testing.T) {
	const example = "../../iotd.example.toml"
	f, err := config.Load(example)
	require.NoError(t, err)
	var keys, flags []string
	for _, e := range f.Entries {
		keys = append(keys, e.Key)
	}
	for _, fl := range serveCommand().Flags {
		if name := fl.Names()[0]; name != configFlagName {
			flags = append(flags, name)
		}
	}
	slices.Sort(keys)
	slices.Sort(flags)
	require.Equal(t, flags, keys, "iotd.example.toml must have exactly one key per flag of `iotd serve`")

	defaults, _, err := applyArgs(t)
	require.NoError(t, err)
	fromFile, cs, err := applyArgs(t, "--config", example)
	require.NoError(t, err)
	require.Equal(t, example, cs.path)
	delete(fromFile, configFlagName)
	delete(defaults, configFlagName)
	require.Equal(t, defaults, fromFile, "every value in iotd.example.toml is the flag's default")
}

func TestConfigFileSetsFlagsAndCommandLineWins(t *testing.T) {
	path := writeConfig(t, `
listen = ["tcp://127.0.0.1:0", "tcp://127.0.0.1:1"]
log-level = "debug"
max-inflight = 10
max-packet-size = 4096
max-outbound-bytes = "64KiB"
connect-timeout = "2s"
retry-interval = 0
data-dir = "/tmp/x"
`)
	vals, cs, err := applyArgs(t, "--config", path, "--max-inflight", "20", "--data-dir", "/tmp/y")
	require.NoError(t, err)
	require.Equal(t, "[tcp://127.0.0.1:0 tcp://127.0.0.1:1]", vals["listen"], "the file's list replaces the default")
	require.Equal(t, "debug", vals["log-level"])
	require.Equal(t, "20", vals["max-inflight"], "the command line wins")
	require.Equal(t, "/tmp/y", vals["data-dir"], "the command line wins")
	require.Equal(t, "4.0 KiB", vals["max-packet-size"])
	require.Equal(t, "64 KiB", vals["max-outbound-bytes"])
	require.Equal(t, "2s", vals["connect-timeout"])
	require.Equal(t, "0s", vals["retry-interval"])
	require.True(t, cs.cmdline["max-inflight"])
	require.True(t, cs.cmdline["config"])
	require.False(t, cs.cmdline["log-level"])

	vals, _, err = applyArgs(t, "--config", path, "--listen", "tcp://127.0.0.1:2")
	require.NoError(t, err)
	require.Equal(t, "[tcp://127.0.0.1:2]", vals["listen"], "--listen on the command line replaces the file's list")

	path = writeConfig(t, `listen = "tcp://127.0.0.1:3"`)
	vals, _, err = applyArgs(t, "--config", path)
	require.NoError(t, err)
	require.Equal(t, "[tcp://127.0.0.1:3]", vals["listen"], "a single string is a list of one")
}

func TestConfigErrorsNameFileLineKeyAndReason(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		line       int
		key        string
		reason     string
	}{
		{"unknown key", "shards = 1\nmax-conections = 5\n", 2, "max-conections", "unknown key"},
		{"config names a config", "config = \"other.toml\"\n", 1, "config", "cannot name another"},
		{"string for an integer", "max-inflight = \"32\"\n", 1, "max-inflight", `want an integer, got the string "32"`},
		{"float for an integer", "\n\nmax-inflight = 3.5\n", 3, "max-inflight", "want an integer, got the float 3.5"},
		{"integer out of range", "max-inflight = 99999999999\n", 1, "max-inflight", "out of range"},
		{"integer for a duration", "connect-timeout = 10\n", 1, "connect-timeout", "want a duration string with a unit"},
		{"bad duration", "write-timeout = \"ten seconds\"\n", 1, "write-timeout", "want a duration such as"},
		{"bad size", "max-packet-size = \"lots\"\n", 1, "max-packet-size", `"lots" is not a size`},
		{"float size", "max-outbound-bytes = 1.5\n", 1, "max-outbound-bytes", "want a size such as"},
		{"array for a string", "data-dir = [\"a\"]\n", 1, "data-dir", "want a string, got an array"},
		{"integer for a string", "log-level = 1\n", 1, "log-level", "want a string, got the integer 1"},
		{"empty listen", "listen = []\n", 1, "listen", "want at least one string"},
		{"listen element not a string", "listen = [\"tcp://127.0.0.1:1\", 2]\n", 1, "listen", "element 2 is the integer 2"},
		{"bad listener scheme", "shards = 2\nlisten = [\"udp://127.0.0.1:1883\"]\n", 2, "listen", `unsupported scheme "udp"`},
		{"listener without port", "listen = [\"tcp://127.0.0.1\"]\n", 1, "listen", "missing port"},
		{"bad persistence", "persistence = \"maybe\"\n", 1, "persistence", "want on or off"},
		{"bad fsync", "fsync = \"sometimes\"\n", 1, "fsync", "want always or interval"},
		{"bad log level", "log-level = \"loud\"\n", 1, "log-level", "want debug, info, warn or error"},
		{"bad log format", "log-format = \"xml\"\n", 1, "log-format", "want text or json"},
		{"negative shards", "shards = -1\n", 1, "shards", "want 0 (one per CPU) or more"},
		{"negative accept rate", "max-accept-rate = -1\n", 1, "max-accept-rate", "want 0 or more"},
		{"negative TLS handshakes", "\nmax-tls-handshakes = -3\n", 2, "max-tls-handshakes", "want 0 or more"},
		{"table", "shards = 1\n[limits]\nmax-inflight = 3\n", 2, "limits", "unknown table"},
		{"syntax error", "shards = 1\nlog-level = \"debug\n", 2, "log-level", "TOML syntax"},
		{"duplicate key", "shards = 1\nshards = 2\n", 2, "shards", "TOML syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			_, _, err := applyArgs(t, "--config", path)
			require.Error(t, err)
			want := fmt.Sprintf("config file %s:%d: key %q: ", path, tc.line, tc.key)
			require.True(t, strings.HasPrefix(err.Error(), want), "got  %s\nwant %s...", err, want)
			require.Contains(t, err.Error(), tc.reason)
		})
	}

	_, _, err := applyArgs(t, "--config", filepath.Join(t.TempDir(), "missing.toml"))
	require.ErrorContains(t, err, "missing.toml: open")
}

// A bad file stops the real binary with exit status 2 and the message on
// stderr, before it binds anything.
func TestConfigErrorExitsWithStatus2(t *testing.T) {
	bin := buildIotd(t)
	path := writeConfig(t, "listen = [\"tcp://127.0.0.1:0\"]\n\nmax-packet-size = \"huge\"\n")
	cmd := exec.Command(bin, "--config", path, "--data-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, string(out))
	require.Equal(t, 2, ee.ExitCode(), string(out))
	require.Contains(t, string(out), fmt.Sprintf(`config file %s:3: key "max-packet-size": "huge" is not a size`, path))

	cmd = exec.Command(bin, "serve", "--config", path, "--data-dir", t.TempDir())
	out, err = cmd.CombinedOutput()
	require.ErrorAs(t, err, &ee, string(out))
	require.Equal(t, 2, ee.ExitCode(), "iotd serve --config: %s", out)
}
