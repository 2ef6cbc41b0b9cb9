package interop

import (
	"reflect"
	"testing"

	"github.com/stepkit/stepkit/grade"
)

// TestLongestFirst: segments whose programs failed their own checks run
// first, most such cells first, the rest in the matrix's order; without
// own checks the order is the matrix's.
func TestLongestFirst(t *testing.T) {
	ok := &Conformance{Verdict: string(grade.Conformant)}
	bad := &Conformance{Verdict: string(grade.NotConformant)}
	m := &Matrix{
		Servers: []Program{{ID: ReferenceID, Reference: true}, {ID: "a"}, {ID: "b"}, {ID: "c"}},
		Clients: []Program{{ID: ReferenceID, Reference: true}, {ID: "x"}, {ID: "y"}},
	}
	// A client may share a server's id: each side is looked up on its own.
	own := &ownChecks{servers: map[string]*Conformance{"a": ok, "b": bad, "c": ok, "y": ok},
		clients: map[string]*Conformance{"x": ok, "y": bad, "b": ok}}
	rows := func(segs []segment) []int {
		var out []int
		for _, sg := range segs {
			out = append(out, sg.server)
		}
		return out
	}
	if got := rows(longestFirst(segments(4, 3, 8), m, own)); !reflect.DeepEqual(got, []int{2, 0, 1, 3}) {
		t.Errorf("rows in the order %v, want the failing server's first, then the matrix's order", got)
	}
	cells := func(segs []segment) [][2]int {
		var out [][2]int
		for _, sg := range segs {
			out = append(out, [2]int{sg.server, sg.clients[0]})
		}
		return out
	}
	want := [][2]int{{2, 2}, {0, 2}, {1, 2}, {2, 0}, {2, 1}, {3, 2}, {0, 0}, {0, 1}, {1, 0}, {1, 1}, {3, 0}, {3, 1}}
	if got := cells(longestFirst(segments(4, 3, 1), m, own)); !reflect.DeepEqual(got, want) {
		t.Errorf("one cell a segment: order %v, want %v", got, want)
	}
	if got := rows(longestFirst(segments(4, 3, 8), m, nil)); !reflect.DeepEqual(got, []int{0, 1, 2, 3}) {
		t.Errorf("without own checks: rows in the order %v, want the matrix's", got)
	}
}
