package metrics_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"iotd/metrics"
	"iotd/shard"
)

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// Every metric the Grafana dashboard queries exists in a scrape, under the
// name and type the query assumes (_bucket/_sum/_count of a histogram), and
// the dashboard has the panels the issue asks for.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("../dashboards/iotd.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d))
	require.Equal(t, "iotd", d.Title)

	b, _ := startBroker(t, shard.Config{})
	srv := httptest.NewServer(metrics.Handler(metrics.Registry(b, "dev"), false))
	defer srv.Close()
	fams := scrape(t, srv.URL+"/metrics")

	name := regexp.MustCompile(`\biotd_[a-zA-Z0-9_]+`)
	var exprs []string
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	ids := make(map[int]bool)
	var titles []string
	for _, p := range d.Panels {
		require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
		ids[p.ID] = true
		titles = append(titles, p.Title)
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q", p.Title)
			exprs = append(exprs, tg.Expr)
		}
	}
	used := 0
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			used++
			if f, ok := fams[m]; ok {
				require.NotEqual(t, dto.MetricType_HISTOGRAM, f.GetType(), "%s is a histogram: query %s_bucket, _sum or _count (in %q)", m, m, e)
				continue
			}
			base, suffix, found := cutSuffix(m, "_bucket", "_sum", "_count")
			require.True(t, found, "the dashboard queries %s, which /metrics does not have (in %q)", m, e)
			f, ok := fams[base]
			require.True(t, ok, "the dashboard queries %s, which /metrics does not have (in %q)", m, e)
			require.Equal(t, dto.MetricType_HISTOGRAM, f.GetType(), "%s%s needs a histogram (in %q)", base, suffix, e)
		}
	}
	require.Greater(t, used, 20)

	for _, want := range []string{"Messages received / sent by QoS", "Connections and sessions", "Dropped messages by reason",
		"Queued and in-flight messages", "Shard mailbox depth", "Shard loop time", "WAL fsync latency"} {
		require.True(t, slices.Contains(titles, want), "panel %q", want)
	}
}

func cutSuffix(s string, suffixes ...string) (string, string, bool) {
	for _, suf := range suffixes {
		if base, ok := strings.CutSuffix(s, suf); ok {
			return base, suf, true
		}
	}
	return s, "", false
}
