package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseEntriesInOrderWithLines(t *testing.T) {
	f, err := Parse("a.toml", []byte(`# comment

listen = ["tcp://127.0.0.1:1883", "ws://127.0.0.1:8083/mqtt"]
"shards" = 4
max-packet-size = "16MiB"
connect-timeout = "10s"   # trailing comment
persistence = 'off'
allow = true
ratio = 0.5
`))
	require.NoError(t, err)
	require.Equal(t, []Entry{
		{Key: "listen", Line: 3, Value: []any{"tcp://127.0.0.1:1883", "ws://127.0.0.1:8083/mqtt"}},
		{Key: "shards", Line: 4, Value: int64(4)},
		{Key: "max-packet-size", Line: 5, Value: "16MiB"},
		{Key: "connect-timeout", Line: 6, Value: "10s"},
		{Key: "persistence", Line: 7, Value: "off"},
		{Key: "allow", Line: 8, Value: true},
		{Key: "ratio", Line: 9, Value: 0.5},
	}, f.Entries)
	e, ok := f.Lookup("persistence")
	require.True(t, ok)
	require.Equal(t, 7, e.Line)
	_, ok = f.Lookup("nope")
	require.False(t, ok)
	require.EqualError(t, f.Errorf(e, "want %s", "on or off"), `config file a.toml:7: key "persistence": want on or off`)
}

func TestParseMultilineArrayKeepsTheKeyLine(t *testing.T) {
	f, err := Parse("a.toml", []byte("shards = 1\nlisten = [\n  \"tcp://127.0.0.1:1\",\n  \"tcp://127.0.0.1:2\",\n]\nlog-level = \"debug\"\n"))
	require.NoError(t, err)
	require.Equal(t, 2, f.Entries[1].Line)
	require.Equal(t, 6, f.Entries[2].Line)
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line      int
		key       string
		reason    string
	}{
		{"syntax", "shards = 1\nlisten = [\"tcp://a:1\"\n", 2, "", "TOML syntax"},
		{"no value", "shards = 1\n\nlog-level =\n", 3, "", "TOML syntax"},
		{"duplicate key", "shards = 1\nshards = 2\n", 2, "shards", "TOML syntax"},
		{"table", "shards = 1\n[tls]\ncert = \"x\"\n", 2, "tls", "unknown table"},
		{"array table", "shards = 1\n\n[[listener]]\n", 3, "listener", "unknown table"},
		{"dotted key", "shards = 1\ntls.cert = \"x\"\n", 2, "tls.cert", "unknown key"},
		{"integer overflow", "shards = 99999999999999999999\n", 1, "shards", "TOML syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tc.doc))
			var ce *Error
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, "x.toml", ce.File)
			require.Equal(t, tc.line, ce.Line, "%v", err)
			if tc.key != "" {
				require.Equal(t, tc.key, ce.Key, "%v", err)
			}
			require.Contains(t, ce.Reason, tc.reason)
			require.Contains(t, err.Error(), "x.toml:")
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iotd.toml")
	_, err := Load(path)
	require.ErrorContains(t, err, "config file "+path+": open")

	require.NoError(t, os.WriteFile(path, []byte("shards = 2\n"), 0o600))
	f, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, path, f.Path)
	require.Equal(t, []Entry{{Key: "shards", Line: 1, Value: int64(2)}}, f.Entries)

	require.NoError(t, os.WriteFile(path, nil, 0o600))
	f, err = Load(path)
	require.NoError(t, err, "an empty file is a valid configuration")
	require.Empty(t, f.Entries)
}
