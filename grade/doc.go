// Package grade grades a class: every submission of a folder (a student's
// STEP server or client) is run in a sandbox of its own, judged by the
// conformance suite (stepkit conformance, run as a separate process inside
// the submission's network namespace), stopped, and turned into a row of
// the class reports: class.csv and a student × requirement matrix in
// index.html, with each student's own HTML, JSON and JUnit reports and the
// program's output beside them. A rubric turns requirement verdicts into
// marks; a baseline submission (the course's own server, say) marks where a
// student does better or worse than it.
//
// Grading runs submissions concurrently (Options.Jobs) without changing a
// verdict: each submission has its own namespace, port 1379 and suite
// process, so nothing is shared but the CPU.
package grade
