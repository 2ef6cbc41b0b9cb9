package s3

import (
	"slices"
	"testing"
)

func TestRunNames(t *testing.T) {
	for _, index := range [][]int64{{0}, {3, 4, 5, 9, 1}, {7, 6, 5}, {0, 1, 2, 3}} {
		name := runName("p/tmp/u/k/id/", index, 0xabc)
		got, seq, ok := parseRun(name[len("p/tmp/u/k/id/"):], 10)
		if !ok || seq != 0xabc || !slices.Equal(got, index) {
			t.Errorf("%v: name %q parsed as %v, %x, %v", index, name, got, seq, ok)
		}
	}
	if n := runName("", []int64{3, 4, 5, 9, 1}, 1); n != "3-5,9,1.0000000000000001" {
		t.Errorf("name %q", n)
	}
	for _, bad := range []string{
		"", "plan.json", "1.xyz", "1", "1.000000000000000", "1,1.0000000000000001", "1-3,2.0000000000000001",
		"10.0000000000000001", "3-1.0000000000000001", "-1.0000000000000001", "a.0000000000000001", "1,.0000000000000001",
	} {
		if index, _, ok := parseRun(bad, 10); ok {
			t.Errorf("%q parsed as %v", bad, index)
		}
	}
}
