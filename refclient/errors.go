package refclient

import (
	"errors"
	"fmt"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// ErrConnClosed reports that the server closed the connection while a
// response was awaited.
var ErrConnClosed = errors.New("connection closed by the server")

// ErrMD5Mismatch is matched (errors.Is) by every *MismatchError.
var ErrMD5Mismatch = errors.New("MD5 mismatch")

// StatusError is a response whose status is not 200: the server refused the
// request. Op and Type are the request's; the response's operation is not
// trusted (the course server answers FILE DELETE with "GET").
type StatusError struct {
	Op       spec.Operation
	Type     spec.Type
	Status   spec.Status
	Message  string        // the response's status_msg
	Response *spec.Message // the whole response
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Status.Text()
	}
	return fmt.Sprintf("%s %s refused: %d %s", e.Type, e.Op, int(e.Status), msg)
}

// IsStatus reports whether err holds a *StatusError with status s.
func IsStatus(err error, s spec.Status) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == s
}

// NoResponseError reports a server that stayed silent: the course server
// does so when a handler crashes, for FILE SAVE of size 0, and for BYE.
type NoResponseError struct {
	Op    spec.Operation
	Type  spec.Type
	Addr  string
	After time.Duration
}

func (e *NoResponseError) Error() string {
	return fmt.Sprintf("%s %s: no response from %s within %v", e.Type, e.Op, e.Addr, e.After)
}

// Timeout reports true, so the error classifies as a network timeout.
func (e *NoResponseError) Timeout() bool { return true }

// ProtocolError is a response the client cannot use: a missing or
// mistyped field, a block of the wrong length, a plan that does not add up.
type ProtocolError struct {
	Op       spec.Operation
	Type     spec.Type
	Msg      string
	Response *spec.Message
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("%s %s: bad response: %s", e.Type, e.Op, e.Msg)
}

// MismatchError reports a file whose MD5 differs from the server's.
type MismatchError struct {
	Key    string
	Local  string // MD5 of the local data
	Server string // MD5 the server announced
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("file %q: MD5 mismatch: local %s, server %s", e.Key, e.Local, e.Server)
}

func (e *MismatchError) Is(target error) bool { return target == ErrMD5Mismatch }

// OutOfStepError reports a server that lost track of pipelined requests:
// it refused a block of the plan's length as the wrong size (406) while
// later requests were in flight. The course server does this when a block
// reaches it in several TCP segments with the next request right behind
// (STEP.md A.23); that next request is then never answered. The
// connection is closed. With one block in flight (Window 1, or the
// automatic window on a server that does not advertise pipelining) such a
// server works.
type OutOfStepError struct {
	Window int   // blocks that were allowed in flight
	Err    error // the refusal
}

func (e *OutOfStepError) Error() string {
	return fmt.Sprintf("%v: the server misread pipelined blocks (%d in flight) and lost step; it needs one block in flight (window 1)", e.Err, e.Window)
}

func (e *OutOfStepError) Unwrap() error { return e.Err }
