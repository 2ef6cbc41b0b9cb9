// Package fuzz finds the inputs that break a STEP server, black-box, and
// hands back the shortest input that still breaks it.
//
// It knows the protocol: it builds sessions from valid flows (LOGIN, DATA
// and FILE SAVE, UPLOAD, GET, DOWNLOAD, DELETE, BYE), mutates them at the
// level of fields, frames and sessions, and keeps the inputs that reach a
// behaviour of the server not seen before (a new status, a new response
// shape, a new failure) to mutate them further. Each input uses users of
// its own, so the server's answers to it depend on nothing else it was
// sent, and a model of what a correct server stores judges every answer.
//
// Oracles: the process died or stopped accepting connections; a request
// left unanswered (confirmed as the conformance suite confirms silence: a
// LOGIN on a new connection is answered meanwhile); a response that
// breaks a MUST of spec/STEP.md; the memory of a process stepkit started
// growing past a bound. Findings with the same oracle, operation and
// status are one finding, each naming the requirement it breaks.
//
// Each finding is shrunk by delta debugging (connections, then steps,
// then fields and frame decorations), re-checked on a fresh process where
// stepkit started the server, and written as a JSON reproducer that
// Replay plays and judges again and as a Python 3 script without
// dependencies.
package fuzz
