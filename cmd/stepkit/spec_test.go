package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/spec"
)

func runSpec(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"spec"}, args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func TestSpecPrintsDocument(t *testing.T) {
	out, _, code := runSpec(t)
	if code != exitOK || out != spec.Document() {
		t.Fatalf("exit %d, %d bytes of output, want STEP.md (%d bytes)", code, len(out), len(spec.Document()))
	}
}

func TestSpecLooksUpRequirements(t *testing.T) {
	out, _, code := runSpec(t, "file-upload-7", "TOKEN")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	r, _ := spec.Lookup("FILE-UPLOAD-7")
	if !strings.Contains(out, r.Text) {
		t.Fatalf("FILE-UPLOAD-7's text missing from:\n%s", out)
	}
	for _, r := range spec.Requirements() {
		if r.SectionPrefix() == "TOKEN" && !strings.Contains(out, "\n"+r.ID+" ") {
			t.Fatalf("%s missing from the TOKEN section:\n%s", r.ID, out)
		}
	}
	if strings.Contains(out, "\nFILE-UPLOAD-6 ") {
		t.Fatalf("an ID selected more than was asked:\n%s", out)
	}
}

func TestSpecListAndUnknown(t *testing.T) {
	out, _, code := runSpec(t, "--list")
	if code != exitOK || strings.Count(out, "\n") != len(spec.Requirements())+1 {
		t.Fatalf("exit %d, %d lines for %d requirements", code, strings.Count(out, "\n"), len(spec.Requirements()))
	}
	_, errOut, code := runSpec(t, "NO-SUCH-9")
	if code != exitUsage || !strings.Contains(errOut, "NO-SUCH-9") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
