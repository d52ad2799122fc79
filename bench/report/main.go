// Command report turns the raw run records that bench/compare.sh collects
// into medians (a JSON file) and Markdown tables, which it writes into
// BENCHMARKS.md between the bench-compare markers, leaving the rest of the
// file as it was.
//
//	go run ./bench/report -raw bench/results/T.raw.json -json bench/results/T.json -md BENCHMARKS.md
//
// The raw file is a stream of JSON objects: one {"kind":"meta"} describing
// the machine and the run, then one {"kind":"run"} per load-test run with
// the loadtest JSON result under "result".
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"iotd/loadtest"
)

// The markers that delimit the section this program owns in BENCHMARKS.md.
const (
	beginMarker = "<!-- bench-compare:begin -->"
	endMarker   = "<!-- bench-compare:end -->"
)

// Meta describes the machine and the settings of one bench-compare run.
type Meta struct {
	Date       string            `json:"date"`
	Command    string            `json:"command"`
	Commit     string            `json:"commit"`
	NProc      int               `json:"nproc"`
	CPUModel   string            `json:"cpu_model"`
	Kernel     string            `json:"kernel"`
	LoadStart  string            `json:"loadavg_start"`
	LoadEnd    string            `json:"loadavg_end"`
	Rounds     int               `json:"rounds"`
	Duration   string            `json:"duration"`
	E2EWindow  int               `json:"e2e_window"`
	Inflight   int               `json:"inflight"`
	Queued     int               `json:"queued"`
	PubWindow  int               `json:"publisher_inflight"`
	Brokers    []string          `json:"brokers"`    // in the order they ran
	Versions   map[string]string `json:"versions"`   // broker -> version
	Durability map[string]string `json:"durability"` // broker -> durability mode
	Limits     map[string]string `json:"limits"`     // broker -> limits as configured
	Elapsed    string            `json:"elapsed"`
	PortRange  string            `json:"port_range"` // net.ipv4.ip_local_port_range, "lo hi"
}

// Record is one line of the raw stream.
type Record struct {
	Kind     string           `json:"kind"` // "meta" or "run"
	Meta     *Meta            `json:"meta,omitempty"`
	Mode     string           `json:"mode,omitempty"` // unpinned, pinned, shards
	Round    int              `json:"round,omitempty"`
	Cell     string           `json:"cell,omitempty"`
	Broker   string           `json:"broker,omitempty"`
	Shards   int              `json:"shards,omitempty"`
	Clients  int              `json:"clients,omitempty"` // connect: connections asked for
	CPUTicks int64            `json:"cpu_ticks"`         // broker utime+stime over the run; -1 unknown
	ClkTck   int64            `json:"clk_tck,omitempty"` // ticks per second
	Exit     int              `json:"exit"`              // the load generator's exit status
	Note     string           `json:"note,omitempty"`    // what the script saw go wrong
	Load1    float64          `json:"load1"`             // the machine's 1-minute load average as the run began
	Result   *loadtest.Result `json:"result,omitempty"`  // nil when the load generator printed nothing
}

// ok reports whether the run completed and its numbers can be used.
func (r *Record) ok() bool { return r.why() == "" }

// why says why a run is not ok.
func (r *Record) why() string {
	switch {
	case r.Note != "":
		return r.Note
	case r.Result == nil:
		return fmt.Sprintf("load generator exited %d without a result", r.Exit)
	case r.Result.Failure != "":
		return strings.TrimSpace(r.Result.Failure)
	case r.Exit != 0:
		return fmt.Sprintf("load generator exited %d", r.Exit)
	case r.Clients > 0 && (r.Result.Connections < r.Clients || r.Result.Errors > 0):
		// connect: every connection must open and survive the hold.
		why := fmt.Sprintf("%d of %d connections opened, %d errors", r.Result.Connections, r.Clients, r.Result.Errors)
		if len(r.Result.ErrorSamples) > 0 {
			why += ": " + r.Result.ErrorSamples[0]
		}
		return why
	}
	return ""
}

// Cell aggregates the runs of one (mode, cell, broker, shards).
type Cell struct {
	Mode   string `json:"mode"`
	Cell   string `json:"cell"`
	Broker string `json:"broker"`
	Shards int    `json:"shards,omitempty"`

	Runs     int    `json:"runs"`
	OK       int    `json:"ok"`
	Failure  string `json:"failure,omitempty"` // the first reason a run failed
	Clients  int    `json:"clients,omitempty"`
	MinConns int    `json:"min_connections,omitempty"`

	MsgsPerSec   float64 `json:"median_msgs_per_sec"`
	P50          float64 `json:"median_p50_ms"`
	P99          float64 `json:"median_p99_ms"`
	CPUPerMillon float64 `json:"median_cpu_s_per_million"` // NaN-free: -1 when unknown
	Lost         uint64  `json:"lost_total"`
	Dup          uint64  `json:"duplicated_total"`
	Expected     uint64  `json:"expected_total"`
	Errors       int64   `json:"errors_total"`
	ErrorSample  string  `json:"error_sample,omitempty"` // the first error a run reported

	ConnectsPerSec float64 `json:"median_connects_per_sec,omitempty"`
	RSSPerConn     float64 `json:"median_rss_per_conn_bytes,omitempty"`
}

type key struct {
	mode, cell, broker string
	shards             int
}

func main() {
	raw := flag.String("raw", "", "raw record stream written by bench/compare.sh")
	out := flag.String("json", "", "write medians and raw records to this JSON file")
	md := flag.String("md", "BENCHMARKS.md", "Markdown file whose bench-compare section is replaced")
	flag.Parse()
	if *raw == "" {
		fail(errors.New("-raw is required"))
	}
	meta, runs, err := readRaw(*raw)
	if err != nil {
		fail(err)
	}
	cells, order := aggregate(runs)
	if *out != "" {
		b, err := json.MarshalIndent(struct {
			Meta  *Meta     `json:"meta"`
			Cells []*Cell   `json:"cells"`
			Runs  []*Record `json:"runs"`
		}{meta, sortedCells(cells, order), runs}, "", "  ")
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
	section := render(meta, cells, order, runs)
	if err := splice(*md, section); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/report:", err)
	os.Exit(1)
}

// readRaw decodes the stream of records; the meta record may be anywhere.
func readRaw(path string) (*Meta, []*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var (
		meta *Meta
		runs []*Record
		dec  = json.NewDecoder(f)
	)
	for {
		var r Record
		err := dec.Decode(&r)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: record %d: %w", path, len(runs)+1, err)
		}
		switch r.Kind {
		case "meta":
			meta = r.Meta
		case "run":
			runs = append(runs, &r)
		default:
			return nil, nil, fmt.Errorf("%s: record of unknown kind %q", path, r.Kind)
		}
	}
	if meta == nil {
		return nil, nil, fmt.Errorf("%s: no meta record", path)
	}
	return meta, runs, nil
}

// aggregate groups the runs and takes medians over the completed ones.
// order lists cell names in the order they first ran.
func aggregate(runs []*Record) (map[key]*Cell, []string) {
	groups := map[key][]*Record{}
	var order []string
	for _, r := range runs {
		k := key{r.Mode, r.Cell, r.Broker, r.Shards}
		groups[k] = append(groups[k], r)
		if !slices.Contains(order, r.Cell) {
			order = append(order, r.Cell)
		}
	}
	cells := map[key]*Cell{}
	for k, rs := range groups {
		c := &Cell{Mode: k.mode, Cell: k.cell, Broker: k.broker, Shards: k.shards, Runs: len(rs), CPUPerMillon: -1, MinConns: -1}
		var rate, p50, p99, cpu, cps, rss []float64
		for _, r := range rs {
			c.Clients = max(c.Clients, r.Clients)
			if r.Result != nil {
				res := r.Result
				c.Lost += res.Lost
				c.Dup += res.Duplicated
				c.Expected += res.Expected
				c.Errors += res.Errors
				if c.ErrorSample == "" && len(res.ErrorSamples) > 0 {
					c.ErrorSample = res.ErrorSamples[0]
				}
				if c.MinConns < 0 || res.Connections < c.MinConns {
					c.MinConns = res.Connections
				}
			}
			if !r.ok() {
				if c.Failure == "" {
					c.Failure = r.why()
				}
				continue
			}
			c.OK++
			res := r.Result
			rate = append(rate, res.MsgsPerSec)
			p50 = append(p50, res.Latency.P50)
			p99 = append(p99, res.Latency.P99)
			if r.CPUTicks >= 0 && r.ClkTck > 0 && res.Received > 0 {
				cpu = append(cpu, float64(r.CPUTicks)/float64(r.ClkTck)/float64(res.Received)*1e6)
			}
			if res.ConnectsPerSec > 0 {
				cps = append(cps, res.ConnectsPerSec)
			}
			if res.RSSAfterBytes > 0 {
				rss = append(rss, res.RSSPerConnBytes)
			}
		}
		c.MsgsPerSec, c.P50, c.P99 = median(rate), median(p50), median(p99)
		if len(cpu) > 0 {
			c.CPUPerMillon = median(cpu)
		}
		c.ConnectsPerSec, c.RSSPerConn = median(cps), median(rss)
		if c.MinConns < 0 {
			c.MinConns = 0
		}
		cells[k] = c
	}
	return cells, order
}

func sortedCells(cells map[key]*Cell, order []string) []*Cell {
	out := make([]*Cell, 0, len(cells))
	for _, c := range cells {
		out = append(out, c)
	}
	idx := func(cell string) int { return slices.Index(order, cell) }
	modeRank := func(m string) int {
		if i := slices.Index([]string{"unpinned", "pinned", "shards"}, m); i >= 0 {
			return i
		}
		return 3
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Mode != b.Mode {
			if modeRank(a.Mode) != modeRank(b.Mode) {
				return modeRank(a.Mode) < modeRank(b.Mode)
			}
			return a.Mode < b.Mode
		}
		if idx(a.Cell) != idx(b.Cell) {
			return idx(a.Cell) < idx(b.Cell)
		}
		if a.Broker != b.Broker {
			return a.Broker < b.Broker
		}
		return a.Shards < b.Shards
	})
	return out
}

// median of xs; 0 for none. An even count averages the middle two.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// label names a cell for people.
func label(cell string) string {
	name, arg, _ := strings.Cut(cell, "-")
	q := strings.TrimPrefix(arg, "q")
	switch name {
	case "fanin":
		return "fanin 10 → 1, QoS " + q
	case "fanout":
		return "fanout 1 → 50, QoS " + q + " (deliveries/s)"
	case "pairs":
		return "pairs 100 clients, QoS " + q
	case "latency":
		return "latency at 5,000 msg/s, QoS " + q
	case "connect":
		n, _ := strconv.Atoi(arg)
		return thousands(float64(n)) + " connections"
	}
	return cell
}

var brokerNames = map[string]string{"iotd": "iotd", "mochi": "mochi-mqtt", "mosquitto": "Mosquitto"}

func bname(b string) string {
	if n, ok := brokerNames[b]; ok {
		return n
	}
	return b
}

// thousands formats x rounded to an integer with comma separators.
func thousands(x float64) string {
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(x float64) string {
	switch {
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// failed renders a cell none of whose runs completed, or notes partial failure.
func failed(c *Cell) string {
	reason := c.Failure
	if len(reason) > 80 {
		reason = reason[:77] + "..."
	}
	reason = strings.ReplaceAll(reason, "|", "/")
	return fmt.Sprintf("failed %d/%d: %s", c.Runs-c.OK, c.Runs, reason)
}

func rate(c *Cell) string {
	if c == nil {
		return "—"
	}
	if c.OK == 0 {
		return failed(c)
	}
	s := thousands(c.MsgsPerSec)
	if c.OK < c.Runs {
		s += fmt.Sprintf(" (%d/%d ok)", c.OK, c.Runs)
	}
	return s
}

func ratio(a, b *Cell) string {
	if a == nil || b == nil || a.OK == 0 || b.OK == 0 || b.MsgsPerSec == 0 {
		return "—"
	}
	return strconv.FormatFloat(a.MsgsPerSec/b.MsgsPerSec, 'f', 2, 64) + "×"
}

func lat(c *Cell) string {
	if c == nil || c.OK == 0 {
		return "—"
	}
	return ms(c.P50) + " / " + ms(c.P99)
}

func lostDup(c *Cell) string {
	if c == nil || c.Expected == 0 {
		return "—"
	}
	lost := thousands(float64(c.Lost))
	if c.Lost > 0 {
		lost += fmt.Sprintf(" (%.2g%%)", 100*float64(c.Lost)/float64(c.Expected))
	}
	return lost + " / " + thousands(float64(c.Dup))
}

func cpu(c *Cell) string {
	if c == nil || c.OK == 0 || c.CPUPerMillon < 0 {
		return "—"
	}
	return strconv.FormatFloat(c.CPUPerMillon, 'f', 1, 64)
}

func kib(b float64) string {
	return strconv.FormatFloat(b/1024, 'f', 1, 64) + " KiB"
}

// render builds the Markdown section.
func render(m *Meta, cells map[key]*Cell, order []string, runs []*Record) string {
	var loads []float64
	for _, r := range runs {
		loads = append(loads, r.Load1)
	}
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	brokers := m.Brokers
	get := func(mode, cell, broker string) *Cell { return cells[key{mode, cell, broker, 0}] }
	has := func(mode string) bool {
		for k := range cells {
			if k.mode == mode {
				return true
			}
		}
		return false
	}
	var msgCells, latCells, connCells []string
	for _, c := range order {
		switch {
		case strings.HasPrefix(c, "latency-"):
			latCells = append(latCells, c)
		case strings.HasPrefix(c, "connect-"):
			connCells = append(connCells, c)
		default:
			msgCells = append(msgCells, c)
		}
	}

	p("## iotd, mochi-mqtt and Mosquitto side by side\n\n")
	p("Generated by `%s` on %s (took %s). Do not edit this section by hand: the next run replaces it.\n\n", m.Command, m.Date, m.Elapsed)
	p("- Machine: %d CPUs (%s), Linux %s; 1-minute load average as each run began: median %.1f, max %.1f (above %d, other work was competing for the CPUs and the numbers are noisy).\n",
		m.NProc, m.CPUModel, m.Kernel, median(loads), slices.Max(append(loads, 0)), m.NProc)
	p("- Brokers:")
	for i, br := range brokers {
		if i > 0 {
			p(";")
		}
		p(" %s %s (%s)", bname(br), m.Versions[br], m.Durability[br])
	}
	p(".\n")
	p("- Limits, raised alike so they are not the bottleneck: ")
	for i, br := range brokers {
		if i > 0 {
			p("; ")
		}
		p("%s: %s", bname(br), m.Limits[br])
	}
	p(".\n")
	p("- Method: %d round(s) over the whole matrix, %s of publishing per run; within a round each cell runs on every broker in turn (%s), so each cell sees A B C A B C; every run starts its broker fresh; the tables show medians over the rounds. "+
		"The load generator is `iotd loadtest` (commit %s): each message is %s; a subscriber may have at most %d messages published but not yet received (`--e2e-window`), "+
		"each publisher at most %d unacknowledged QoS 1/2 messages, so msg/s is a delivery rate, not queue depth.\n",
		m.Rounds, m.Duration, strings.Join(names(brokers), ", "), m.Commit, "64 bytes", m.E2EWindow, m.PubWindow)
	p("- Modes: *unpinned* lets broker and load generator use both cores; *pinned* runs the broker with `taskset -c 0` and the load generator with `taskset -c 1`.\n")
	p("- Columns: msg/s is deliveries per second (fanout counts each of the 50 deliveries); p50 / p99 is publish-to-delivery latency in ms; lost / dup are totals over all rounds (lost = published but never delivered after a 2 s drain); " +
		"CPU is the broker's user+system CPU seconds (from /proc/PID/stat) per million deliveries. " +
		"These cells publish as fast as the windows allow, so their latency is mostly waiting in the window (about the messages in flight divided by the rate); the fixed-rate table below is the one to read for latency.\n\n")

	for _, mode := range []string{"unpinned", "pinned"} {
		if !has(mode) {
			continue
		}
		p("### Throughput, %s\n\n", mode)
		p("| scenario |")
		for _, br := range brokers {
			p(" %s msg/s |", bname(br))
		}
		for _, br := range brokers[1:] {
			p(" %s / %s |", bname(brokers[0]), bname(br))
		}
		for _, br := range brokers {
			p(" %s p50 / p99 ms |", bname(br))
		}
		for _, br := range brokers {
			p(" %s lost / dup |", bname(br))
		}
		for _, br := range brokers {
			p(" %s CPU s / 1M |", bname(br))
		}
		p("\n|---|")
		for range 2*len(brokers) - 1 + 3*len(brokers) {
			p("--:|")
		}
		p("\n")
		for _, cell := range msgCells {
			p("| %s |", label(cell))
			for _, br := range brokers {
				p(" %s |", rate(get(mode, cell, br)))
			}
			for _, br := range brokers[1:] {
				p(" %s |", ratio(get(mode, cell, brokers[0]), get(mode, cell, br)))
			}
			for _, br := range brokers {
				p(" %s |", lat(get(mode, cell, br)))
			}
			for _, br := range brokers {
				p(" %s |", lostDup(get(mode, cell, br)))
			}
			for _, br := range brokers {
				p(" %s |", cpu(get(mode, cell, br)))
			}
			p("\n")
		}
		p("\n")
	}

	if len(latCells) > 0 {
		p("### Latency at a fixed rate (1 publisher → 1 subscriber)\n\n")
		p("| mode | scenario |")
		for _, br := range brokers {
			p(" %s p50 / p99 ms |", bname(br))
		}
		for _, br := range brokers {
			p(" %s msg/s, lost |", bname(br))
		}
		p("\n|---|---|")
		for range 2 * len(brokers) {
			p("--:|")
		}
		p("\n")
		for _, mode := range []string{"unpinned", "pinned"} {
			for _, cell := range latCells {
				if !has(mode) {
					continue
				}
				p("| %s | %s |", mode, label(cell))
				for _, br := range brokers {
					p(" %s |", lat(get(mode, cell, br)))
				}
				for _, br := range brokers {
					c := get(mode, cell, br)
					if c == nil || c.OK == 0 {
						p(" %s |", rate(c))
						continue
					}
					p(" %s, %s |", thousands(c.MsgsPerSec), thousands(float64(c.Lost)))
				}
				p("\n")
			}
		}
		p("\n")
	}

	if len(connCells) > 0 {
		p("### Connections: connects/s (64 in parallel) and broker RSS per idle connection\n\n")
		p("Each connection sends CONNECT (clean session, keep-alive 60 s), is held idle for 5 s, then must answer a PINGREQ; RSS is the broker's VmRSS after the hold minus before the first connect, divided by the connections.\n\n")
		if note := portNote(m.PortRange, cells); note != "" {
			p("%s\n\n", note)
		}
		p("| mode | connections |")
		for _, br := range brokers {
			p(" %s connects/s |", bname(br))
		}
		for _, br := range brokers {
			p(" %s RSS / conn |", bname(br))
		}
		p("\n|---|---|")
		for range 2 * len(brokers) {
			p("--:|")
		}
		p("\n")
		for _, mode := range []string{"unpinned", "pinned"} {
			for _, cell := range connCells {
				if !has(mode) {
					continue
				}
				p("| %s | %s |", mode, label(cell))
				for _, br := range brokers {
					c := get(mode, cell, br)
					switch {
					case c == nil:
						p(" — |")
					case c.OK == 0:
						p(" %s |", failed(c))
					default:
						s := thousands(c.ConnectsPerSec)
						if c.OK < c.Runs {
							s += fmt.Sprintf(" (%d/%d ok)", c.OK, c.Runs)
						}
						p(" %s |", s)
					}
				}
				for _, br := range brokers {
					c := get(mode, cell, br)
					if c == nil || c.OK == 0 || c.RSSPerConn == 0 {
						p(" — |")
						continue
					}
					p(" %s |", kib(c.RSSPerConn))
				}
				p("\n")
			}
		}
		p("\n")
	}

	if has("shards") {
		var sc []string
		shardSet := map[int]bool{}
		for k := range cells {
			if k.mode == "shards" {
				shardSet[k.shards] = true
				if !slices.Contains(sc, k.cell) {
					sc = append(sc, k.cell)
				}
			}
		}
		sort.Slice(sc, func(i, j int) bool { return slices.Index(order, sc[i]) < slices.Index(order, sc[j]) })
		var shards []int
		for s := range shardSet {
			shards = append(shards, s)
		}
		slices.Sort(shards)
		p("### iotd alone: throughput against `--shards` (unpinned)\n\n")
		p("| `--shards` |")
		for _, cell := range sc {
			p(" %s msg/s | p50 / p99 ms | lost / dup | CPU s / 1M |", label(cell))
		}
		p("\n|--:|")
		for range 4 * len(sc) {
			p("--:|")
		}
		p("\n")
		for _, s := range shards {
			p("| %d |", s)
			for _, cell := range sc {
				c := cells[key{"shards", cell, "iotd", s}]
				p(" %s | %s | %s | %s |", rate(c), lat(c), lostDup(c), cpu(c))
			}
			p("\n")
		}
		p("\n")
	}

	// Anything a reader must not miss: loss, duplicates, errors, failures.
	var notes []string
	for _, c := range sortedCells(cells, order) {
		where := fmt.Sprintf("%s, %s, %s", bname(c.Broker), label(c.Cell), c.Mode)
		if c.Mode == "shards" {
			where = fmt.Sprintf("iotd --shards %d, %s", c.Shards, label(c.Cell))
		}
		if c.OK < c.Runs {
			notes = append(notes, fmt.Sprintf("%s: %d of %d runs failed (%s).", where, c.Runs-c.OK, c.Runs, c.Failure))
		}
		if c.Lost > 0 {
			notes = append(notes, fmt.Sprintf("%s: lost %s of %s expected deliveries over the rounds.", where, thousands(float64(c.Lost)), thousands(float64(c.Expected))))
		}
		if c.Dup > 0 {
			notes = append(notes, fmt.Sprintf("%s: %s duplicate deliveries.", where, thousands(float64(c.Dup))))
		}
		if c.Errors > 0 && c.OK == c.Runs {
			n := fmt.Sprintf("%s: the load generator counted %s", where, plural(c.Errors, "error"))
			if c.ErrorSample != "" {
				n += fmt.Sprintf(" (first: %s)", c.ErrorSample)
			}
			notes = append(notes, n+".")
		}
	}
	if len(notes) > 0 {
		p("### What went wrong in this run\n\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	p("Raw and median numbers: `bench/results/` on the machine that ran it (not committed).\n")
	return b.String()
}

// portNote explains slow connects/s when a connect cell opened more
// connections to one port than the even halves of the ephemeral port range
// of its source addresses (loadtest spreads them over
// loadtest.DefaultLoopbackSources addresses): Linux's connect() searches
// that half first (__inet_hash_connect), so past it every connect scans it
// in vain and the load generator, not the broker, sets the rate.
func portNote(portRange string, cells map[key]*Cell) string {
	var lo, hi int
	if n, _ := fmt.Sscanf(portRange, "%d %d", &lo, &hi); n != 2 || hi < lo {
		return ""
	}
	half := (hi - lo + 1) / 2 * loadtest.DefaultLoopbackSources
	most := 0
	for k, c := range cells {
		if strings.HasPrefix(k.cell, "connect-") {
			most = max(most, c.Clients)
		}
	}
	if most <= half {
		return ""
	}
	return fmt.Sprintf("Past about %s connections, connects/s measures the load generator's kernel more than the broker: connections come from %d loopback addresses to one port, "+
		"and Linux's connect() looks for a free ephemeral port in the even half of %d–%d first, so once those halves are taken every further connect scans them in vain "+
		"(a few hundred connects/s, for every broker). Compare brokers within such a row.",
		thousands(float64(half)), loadtest.DefaultLoopbackSources, lo, hi)
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func names(bs []string) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = bname(b)
	}
	return out
}

// splice replaces what lies between the markers in path with section,
// adding the markers at the end when the file lacks them (and the file
// when it does not exist).
func splice(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out, err := spliceBytes(old, section)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

func spliceBytes(old []byte, section string) ([]byte, error) {
	block := beginMarker + "\n" + strings.TrimRight(section, "\n") + "\n" + endMarker
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	switch {
	case i >= 0 && j > i:
		return []byte(s[:i] + block + s[j+len(endMarker):]), nil
	case i >= 0 || j >= 0:
		return nil, errors.New("has only one of the bench-compare markers, or them in the wrong order: fix it by hand")
	case len(s) == 0:
		return []byte("# iotd benchmarks\n\n" + block + "\n"), nil
	}
	return []byte(strings.TrimRight(s, "\n") + "\n\n" + block + "\n"), nil
}
