// Package judge judges a STEP client program by being its server, case by
// case, as package conformance judges servers.
//
// A case runs the client once: its command line (a Template with
// placeholders {host} {port} {user} {file} {dir}) in a fresh copy of its
// folder, against a judging server made for the case. The judging server
// is refserver behind a relay: the relay listens where the client looks
// for its server (127.0.0.1:1379 in a network namespace of the case's own,
// made by package sandbox, or the host network when namespaces cannot be
// made), reads every frame the client sends with package spec, records it,
// and answers it through refserver, or in the case's own way: a plan of
// another block size, responses cut into pieces or written together, a
// refusal, a wrong md5, silence.
//
// The verdict comes from what reached the server: the requests, the file
// refserver completed, the bytes of a frame it could not read. What the
// client printed and its exit status count only where a requirement is
// about reporting (CLIENT-2, CLIENT-6), and then the status_msg texts the
// judge sent are removed from the output first.
//
// Cases cite requirement IDs of spec/STEP.md and are reported with
// package conformance's outcomes, findings and writers, so that a client
// run's JSON, JUnit and HTML reports have the same form as a server run's.
// A case that needs a placeholder the template lacks is INFORMATIONAL; a
// client that never connects is an ERROR.
package judge
