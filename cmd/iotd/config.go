package main

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"iotd/config"
	"iotd/listener"
)

// The configuration file (--config) has one key per flag of `iotd serve`,
// with the flag's name: `max-packet-size = "16MiB"`. A flag given on the
// command line wins over the file. iotd.example.toml documents every key
// with its default, and a test holds it to the flag list.
const configFlagName = "config"

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: configFlagName, Usage: "read settings from this TOML `FILE` (one key per flag, see iotd.example.toml); flags on the command line override it"}
}

// configChecks validate a value beyond its type, so that a value from the
// file that would fail at startup is reported with its file and line. Each
// gets one string as the flag would (one per element for a list). A flag
// whose value needs checking at startup belongs here.
var configChecks = map[string]func(string) error{
	"listen": func(v string) error { _, err := listener.Parse(v); return err },
	"shards": func(v string) error {
		if n, _ := strconv.Atoi(v); n < 0 {
			return fmt.Errorf("want 0 (one per CPU) or more, got %s", v)
		}
		return nil
	},
	"max-connections": func(v string) error {
		if n, _ := strconv.Atoi(v); n < 1 {
			return fmt.Errorf("want at least 1, got %s", v)
		}
		return nil
	},
	"persistence":     func(v string) error { _, err := parsePersistence(v); return err },
	"fsync":           func(v string) error { _, err := parseFsync(v); return err },
	"log-level":       func(v string) error { _, err := parseLogLevel(v); return err },
	"log-format":      func(v string) error { _, err := newLogger("info", v, nil); return err },
	"tls-client-auth": checkClientAuth,
	"metrics-listen":  checkMetricsListen,
	"sys-interval": func(v string) error {
		if d, _ := time.ParseDuration(v); d < 0 {
			return fmt.Errorf("want \"0s\" (off) or a positive duration, got %s", v)
		}
		return nil
	},
	"max-accept-rate":    checkNotNegative,
	"max-accept-burst":   checkNotNegative,
	"max-tls-handshakes": checkNotNegative,
}

func checkNotNegative(v string) error {
	if n, _ := strconv.Atoi(v); n < 0 {
		return fmt.Errorf("want 0 or more, got %s", v)
	}
	return nil
}

// configState is where the settings came from, kept for SIGHUP.
type configState struct {
	path    string          // "" without --config
	cmdline map[string]bool // flags set on the command line: the file does not change them
}

// applyConfig reads the --config file, if any, and sets every flag that the
// command line did not. An error names the file, line, key and reason.
func applyConfig(cctx *cli.Context, flags []cli.Flag) (*configState, error) {
	cs := &configState{path: cctx.String(configFlagName), cmdline: make(map[string]bool)}
	byName := make(map[string]cli.Flag)
	for _, f := range flags {
		name := f.Names()[0]
		byName[name] = f
		if cctx.IsSet(name) {
			cs.cmdline[name] = true
		}
	}
	if cs.path == "" {
		return cs, nil
	}
	file, err := config.Load(cs.path)
	if err != nil {
		return nil, err
	}
	for _, e := range file.Entries {
		f, ok := byName[e.Key]
		if !ok || e.Key == configFlagName {
			reason := "unknown key (the keys are the flags listed by `iotd serve --help`, without the dashes)"
			if e.Key == configFlagName {
				reason = "a configuration file cannot name another one"
			}
			return nil, file.Errorf(e, "%s", reason)
		}
		vals, err := flagStrings(f, e.Value)
		if err != nil {
			return nil, file.Errorf(e, "%v", err)
		}
		check := configChecks[e.Key]
		for _, v := range vals {
			if check != nil {
				if err := check(v); err != nil {
					return nil, file.Errorf(e, "%v", err)
				}
			}
		}
		if cs.cmdline[e.Key] {
			continue // the command line wins
		}
		for _, v := range vals {
			if err := cctx.Set(e.Key, v); err != nil {
				return nil, file.Errorf(e, "%v", err)
			}
		}
	}
	return cs, nil
}

// flagStrings turns a TOML value into the strings the flag would get on the
// command line, checking that its type suits the flag.
func flagStrings(f cli.Flag, v any) ([]string, error) {
	switch f.(type) {
	case *cli.StringSliceFlag:
		switch v := v.(type) {
		case string:
			return []string{v}, nil
		case []any:
			if len(v) == 0 {
				return nil, fmt.Errorf("want at least one string")
			}
			out := make([]string, len(v))
			for i, x := range v {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("element %d is %s; want strings", i+1, tomlType(x))
				}
				out[i] = s
			}
			return out, nil
		}
		return nil, fmt.Errorf("want a string or an array of strings, got %s", tomlType(v))
	case *cli.StringFlag, *cli.PathFlag:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		return nil, fmt.Errorf("want a string, got %s", tomlType(v))
	case *cli.BoolFlag:
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", tomlType(v))
	case *cli.IntFlag:
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want an integer, got %s", tomlType(v))
		}
		if n > math.MaxInt32 || n < math.MinInt32 {
			return nil, fmt.Errorf("%d is out of range", n)
		}
		return []string{strconv.FormatInt(n, 10)}, nil
	case *cli.DurationFlag:
		switch v := v.(type) {
		case string:
			if _, err := time.ParseDuration(v); err != nil {
				return nil, fmt.Errorf("want a duration such as \"10s\", \"1m30s\" or \"0s\": %v", err)
			}
			return []string{v}, nil
		case int64:
			if v == 0 {
				return []string{"0s"}, nil
			}
		}
		return nil, fmt.Errorf("want a duration string with a unit, such as \"10s\", got %s", tomlType(v))
	case *cli.GenericFlag: // sizes: "16MiB" or a number of bytes
		switch v := v.(type) {
		case string:
			return []string{v}, nil
		case int64:
			return []string{strconv.FormatInt(v, 10)}, nil
		}
		return nil, fmt.Errorf("want a size such as \"16MiB\" or a number of bytes, got %s", tomlType(v))
	}
	switch v.(type) {
	case string, int64, float64, bool:
		return []string{fmt.Sprint(v)}, nil
	}
	return nil, fmt.Errorf("want a string, number or boolean, got %s", tomlType(v))
}

func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// reloadLogLevel sets the log level from the configuration file again
// (SIGHUP). A level given on the command line stays; a file without the key
// means the flag's default.
func reloadLogLevel(cs *configState, level *slog.LevelVar, logger *slog.Logger) error {
	if cs.path == "" || cs.cmdline["log-level"] {
		return nil
	}
	file, err := config.Load(cs.path)
	if err != nil {
		return err
	}
	want := "info"
	e, ok := file.Lookup("log-level")
	if ok {
		s, isString := e.Value.(string)
		if !isString {
			return file.Errorf(e, "want a string, got %s", tomlType(e.Value))
		}
		want = s
	}
	lv, err := parseLogLevel(want)
	if err != nil {
		return file.Errorf(e, "%v", err)
	}
	old := level.Level()
	if lv == old {
		return nil
	}
	// Logged at whichever of the two levels is more verbose, so it shows.
	if lv < old {
		level.Set(lv)
	}
	logger.Info("log level changed", "from", old.String(), "to", lv.String(), "config", cs.path)
	level.Set(lv)
	return nil
}

// parseLogLevel reads --log-level.
func parseLogLevel(v string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(v)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", v)
	}
	return lv, nil
}
