package spec

import _ "embed"

//go:generate go run ../fixtures/frames/gen -out ../fixtures/frames

//go:embed STEP.md
var document string

// Document returns STEP.md, the normative specification the requirement
// catalogue is drawn from, so that tools can show it.
func Document() string { return document }
