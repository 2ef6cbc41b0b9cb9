package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	in := `{"area":"server","input":"b | c","times":2,"outcome":"507","lost":"nothing","test":"TestB"}
{"area":"server","input":"a","times":3,"outcome":"503","lost":"nothing","test":"TestA"}
{"area":"server","input":"a","times":3,"outcome":"503","lost":"nothing","test":"TestA"}
{"area":"decoder","input":"cut","times":1,"outcome":"reported as cut","lost":"nothing","test":"TestC"}
`
	rows, err := read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	write(&b, rows)
	doc := b.String()
	for _, want := range []string{
		"In all: 3 faults and hostile inputs, tried 6 times.",
		"| a | 3 | 503 | nothing | `TestA` |\n| b \\| c | 2 | 507 | nothing | `TestB` |",
		"## Capture decoder",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "## Client") {
		t.Error("an area without rows has a section")
	}
	for _, bad := range []string{"", `{"area":"server"}`, `{"area":"server","input":"x","times":0,"outcome":"o","lost":"l","test":"T"}`, `{"bogus":1}`} {
		if _, err := read(strings.NewReader(bad)); err == nil {
			t.Errorf("read accepted %q", bad)
		}
	}
}
