// Package config reads iotd's TOML configuration file.
//
// The file is flat: one top-level key per command-line flag, with the
// flag's name (`max-packet-size = "16MiB"`), and no tables. This package
// only parses the file and says where each key is; the caller (cmd/iotd)
// decides which keys exist and what their values mean, so that a new flag
// needs no change here. Every error names the file, the line, the key and
// the reason, as Error.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Entry is one key of the file with its decoded TOML value: string, int64,
// float64, bool, []any, a date/time type, or map[string]any for an inline
// table.
type Entry struct {
	Key   string
	Line  int
	Value any
}

// File is a parsed configuration file; Entries are in file order.
type File struct {
	Path    string
	Entries []Entry
}

// Lookup returns the entry for key.
func (f *File) Lookup(key string) (Entry, bool) {
	for _, e := range f.Entries {
		if e.Key == key {
			return e, true
		}
	}
	return Entry{}, false
}

// Errorf returns an Error at the entry's line.
func (f *File) Errorf(e Entry, format string, args ...any) *Error {
	return &Error{File: f.Path, Line: e.Line, Key: e.Key, Reason: fmt.Sprintf(format, args...)}
}

// Error is a problem at a place in a configuration file.
type Error struct {
	File   string
	Line   int // 1-based; 0 when the file could not be read
	Key    string
	Reason string
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("config file %s: %s", e.File, e.Reason)
	case e.Key == "":
		return fmt.Sprintf("config file %s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("config file %s:%d: key %q: %s", e.File, e.Line, e.Key, e.Reason)
}

// Load reads and parses the file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Reason: err.Error()}
	}
	return Parse(path, data)
}

// Parse parses data, read from path (used in messages). A syntax error, a
// key given twice, a table or a dotted key is an Error.
func Parse(path string, data []byte) (*File, error) {
	var values map[string]any
	if err := toml.Unmarshal(data, &values); err != nil {
		ce := &Error{File: path, Reason: err.Error()}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			ce.Line, _ = de.Position()
			if k := de.Key(); len(k) > 0 {
				ce.Key = strings.Join(k, ".")
			}
			ce.Reason = "TOML syntax: " + de.Error()
		}
		if ce.Line == 0 {
			ce.Line = 1 // never "line 0" for a file that was read
		}
		if ce.Key == "" {
			ce.Key = keyOnLine(data, ce.Line)
		}
		return nil, ce
	}
	// The document is valid TOML; walk it again for the line of each key.
	f := &File{Path: path}
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := n.Key()
			it.Next()
			name := string(it.Node().Data)
			return nil, &Error{File: path, Line: p.Shape(it.Node().Raw).Start.Line, Key: name,
				Reason: "unknown table: iotd's configuration has no tables, every key is at the top level"}
		case unstable.KeyValue:
			it := n.Key()
			it.Next()
			first := it.Node()
			line := p.Shape(first.Raw).Start.Line
			name := string(first.Data)
			if it.Next() {
				return nil, &Error{File: path, Line: line, Key: name + "." + string(it.Node().Data),
					Reason: "unknown key: iotd's configuration has no dotted keys, every key is at the top level"}
			}
			f.Entries = append(f.Entries, Entry{Key: name, Line: line, Value: values[name]})
		}
	}
	if err := p.Error(); err != nil {
		return nil, &Error{File: path, Line: 1, Reason: "TOML syntax: " + err.Error()}
	}
	return f, nil
}

// keyOnLine returns the bare key that line starts with ("key = ..."), or "".
func keyOnLine(data []byte, line int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	m := bareKeyLine.FindStringSubmatch(lines[line-1])
	if m == nil {
		return ""
	}
	return m[1]
}

var bareKeyLine = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=`)
