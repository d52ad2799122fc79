package loadtest

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tmosquitto\nVmPeak:\t   12000 kB\nVmRSS:\t    9140 kB\nRssAnon:\t    1000 kB\n"
	rss, err := parseVmRSS(strings.NewReader(status), 42)
	require.NoError(t, err)
	require.Equal(t, int64(9140*1024), rss)

	_, err = parseVmRSS(strings.NewReader("Name:\tkthreadd\n"), 2)
	require.ErrorContains(t, err, "no VmRSS")
	_, err = parseVmRSS(strings.NewReader("VmRSS:\t12 MB\n"), 7)
	require.ErrorContains(t, err, "unexpected VmRSS line")

	rss, err = readRSS(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, rss)
	_, err = readRSS(1 << 30)
	require.ErrorContains(t, err, "--broker-pid")
}
