package judge

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/stepkit/stepkit/spec"
)

// The cases about reporting: what a client tells its user after a refusal,
// a wrong md5 or a silence. Here, and only here, its output and exit status
// count.

var (
	// failureWords mark a line that reports a failure.
	failureWords = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)(fail|error|refus|denied|reject|invalid|incorrect|wrong|unable|cannot|can't|could not|couldn't|abort|mismatch|not match|n't match|differ|exception|traceback|unauthori|forbidden|exist|time ?out|timed out|not complete|incomplete)`)
	})
	// successWords mark a line that claims success.
	successWords = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)(success|succeed|passed|complete|finished|\bdone\b|uploaded|\bok\b)`)
	})
	md5Words = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)(md5|checksum|hash|integrity)`) })
)

// output is what the client printed, without the status_msg texts the
// judge sent it: a client that echoes "The key already exists." has not
// said anything by itself.
func (r *caseRun) output() string {
	if r.run == nil {
		return ""
	}
	out := r.run.Stdout + "\n" + r.run.Stderr
	msgs := r.srv.statusMsgs()
	sort.Slice(msgs, func(i, j int) bool {
		if len(msgs[i]) != len(msgs[j]) {
			return len(msgs[i]) > len(msgs[j])
		}
		return msgs[i] < msgs[j]
	})
	for _, m := range msgs {
		if len(m) >= 4 {
			out = strings.ReplaceAll(out, m, "")
		}
	}
	return out
}

// reported says whether the client reported a failure: a non-zero exit
// status of its own, or a line of output with a failure word or one of
// the given status codes.
func (r *caseRun) reported(codes ...string) (bool, string) {
	if r.run != nil && r.run.ExitCode > 0 {
		return true, "it ended with " + r.run.Exit
	}
	for _, line := range strings.Split(r.output(), "\n") {
		if failureWords().MatchString(line) {
			return true, fmt.Sprintf("it printed %q", strings.TrimSpace(line))
		}
		for _, c := range codes {
			if regexp.MustCompile(`\b` + c + `\b`).MatchString(line) {
				return true, fmt.Sprintf("it printed %q", strings.TrimSpace(line))
			}
		}
	}
	return false, ""
}

// claims returns the first line of output that claims success.
func (r *caseRun) claims() string {
	for _, line := range strings.Split(r.output(), "\n") {
		if successWords().MatchString(line) && !failureWords().MatchString(line) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// judgeRefusal judges a client after the judge refused one of its
// requests: refused picks the refused request, dependent the requests
// that only make sense had it been accepted. FAIL CLIENT-6 when the
// client did not report the failure yet went on as if accepted, or
// claimed success.
func (r *caseRun) judgeRefusal(code string, refused, dependent func(*request) bool) {
	reqs := r.srv.requests()
	at := -1
	for i, q := range reqs {
		if refused(q) && q.altered != "" {
			at = i
			break
		}
	}
	if at < 0 {
		r.neverConnected()
		r.info("CLIENT-6", "not applicable: the client never sent the request this case refuses"+r.connectedNote())
		return
	}
	var wentOn *request
	for _, q := range reqs[at+1:] {
		if dependent(q) && !refused(q) {
			wentOn = q
			break
		}
	}
	rep, how := r.reported(code)
	claim := r.claims()
	again := 0
	for _, q := range reqs[at+1:] {
		if refused(q) {
			again++
		}
	}
	switch {
	case rep:
		r.note("the client reported the refusal: %s", how)
		if r.run.TimedOut {
			r.note("it was still running at the case's limit of %v", r.o.Timeout)
		}
	case r.run.TimedOut:
		msg := fmt.Sprintf("after the %s refusal the client neither stopped nor reported it: it was still running at the case's limit of %v", code, r.o.Timeout)
		if again > 0 {
			msg += fmt.Sprintf(", having sent the refused request %d more times", again)
		}
		r.fail("CLIENT-6", msg, "stop, retry, or report the refusal", describe(reqs[at]))
	case claim != "":
		r.fail("CLIENT-6", fmt.Sprintf("after the %s refusal the client ended with %s and printed %q, reporting no failure", code, r.run.Exit, claim),
			"a non-zero exit status or a message reporting the refusal", describe(reqs[at]))
	case wentOn != nil:
		r.fail("CLIENT-6", fmt.Sprintf("after the %s refusal the client went on as if accepted and ended with %s, reporting no failure", code, r.run.Exit),
			"stop, retry, or report the refusal", describe(wentOn))
	default:
		r.note("the client stopped after the refusal (%s) without a message", r.run.Exit)
	}
	if wentOn != nil {
		r.note("after the refusal the client still sent: %s", describe(wentOn))
	}
}

func setupWrongMD5(r *caseRun) {
	withFile(r, "wrong-md5.bin", 2*blk+11)
	r.b.alter = func(q *request, resp *spec.Message) {
		// Only the md5 of the right file is replaced: a client that sent
		// other bytes is told the truth, and judged for its upload.
		if sum, err := resp.MD5(); err == nil && q.is(spec.OpUpload, spec.TypeFile) && sum == md5hex(r.data) {
			resp.Set(spec.FieldMD5, wrongMD5(r.data))
		}
	}
}

// afterMismatch says what the client sent after it was told the wrong md5.
func (r *caseRun) afterMismatch() string {
	n, told := 0, false
	for _, q := range r.srv.requests() {
		if told && q.op() != spec.OpBye {
			n++
		}
		told = told || q.altered != ""
	}
	if n == 0 {
		return ""
	}
	if n == 1 {
		return " (it sent one more request after it)"
	}
	return fmt.Sprintf(" (it sent %d more requests after it)", n)
}

// wrongMD5 is a well-formed MD5 that is not the file's.
func wrongMD5(data []byte) string { return md5hex(append(append([]byte(nil), data...), 'x')) }

func judgeWrongMD5(r *caseRun) {
	told := false
	for _, q := range r.srv.requests() {
		told = told || q.altered != ""
	}
	if !told {
		// The file never completed as sent: the upload is at fault.
		r.checkUpload()
	}
	if r.run.TimedOut {
		r.fail("CLIENT-2", fmt.Sprintf("after the server reported md5 %s (the file's is %s) the client was still running at the case's limit of %v, the mismatch unreported%s",
			wrongMD5(r.data), md5hex(r.data), r.o.Timeout, r.afterMismatch()), "a non-zero exit status, or a message naming the MD5 mismatch", "")
	}
	if r.run.ExitCode > 0 {
		r.note("the client reported the mismatch: it ended with %s", r.run.Exit)
		return
	}
	for _, line := range strings.Split(r.output(), "\n") {
		if md5Words().MatchString(line) && failureWords().MatchString(line) {
			r.note("the client reported the mismatch: it printed %q", strings.TrimSpace(line))
			return
		}
	}
	msg := fmt.Sprintf("the server reported md5 %s, the file's is %s; the client ended with %s and printed no mismatch", wrongMD5(r.data), md5hex(r.data), r.run.Exit)
	if c := r.claims(); c != "" {
		msg += fmt.Sprintf(" (it printed %q)", c)
	}
	r.fail("CLIENT-2", msg, "a non-zero exit status, or a message naming the MD5 mismatch", "")
}

func judgeHang(r *caseRun) {
	held := false
	for _, q := range r.srv.requests() {
		idx, _ := q.msg.BlockIndex()
		if q.is(spec.OpUpload, spec.TypeFile) && idx == 1 {
			held = true
		}
	}
	if !held {
		r.neverConnected()
		r.checkUpload()
		r.info("CLIENT-7", "not applicable: the client never sent block 1, the request this case leaves unanswered")
		return
	}
	if r.run.TimedOut {
		r.fail("CLIENT-7", fmt.Sprintf("the request was never answered and the client was still waiting after the case's limit of %v; the judge ended it", r.o.Timeout),
			"give up after a deadline and report the failure", "")
		return
	}
	if r.storedWhole() {
		r.note("the client gave up on the connection and completed the file on another one")
		return
	}
	if rep, how := r.reported("timeout"); rep {
		r.note("the client gave up and reported it: %s", how)
		return
	}
	if c := r.claims(); c != "" {
		r.fail("CLIENT-6", fmt.Sprintf("the upload never completed, yet the client ended with %s and printed %q", r.run.Exit, c),
			"a non-zero exit status or a message reporting the failure", "")
	}
	r.note("the client gave up (%s) without a message", r.run.Exit)
}
