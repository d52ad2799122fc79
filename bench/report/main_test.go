package main

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSpliceKeepsTheRest(t *testing.T) {
	old := "# iotd benchmarks\n\nbefore\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\nafter\n"
	got, err := spliceBytes([]byte(old), "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# iotd benchmarks\n\nbefore\n\n" + beginMarker + "\nnew table\n" + endMarker + "\n\nafter\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSpliceAddsMarkers(t *testing.T) {
	got, err := spliceBytes([]byte("# title\n\nrecovery numbers\n"), "tables")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# title\n\nrecovery numbers\n\n" + beginMarker + "\ntables\n" + endMarker + "\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got, err = spliceBytes(nil, "tables")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "# iotd benchmarks\n\n"+beginMarker) {
		t.Errorf("new file starts %q", got)
	}
}

func TestSpliceRefusesOneMarker(t *testing.T) {
	if _, err := spliceBytes([]byte("x\n"+endMarker+"\n"), "t"); err == nil {
		t.Error("a lone end marker was accepted")
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -12345: "-12,345"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}
