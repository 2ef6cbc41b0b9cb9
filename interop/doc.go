// Package interop runs every client of a class against every server of
// the class, stepkit's own server and client included as a row and a
// column of their own, and tells each student why a pair failed.
//
// A cell is one pair. Its server runs in a sandbox of its own, listening
// on 127.0.0.1:1379 of its network namespace, as on a student's laptop;
// its client runs in another sandbox, where 127.0.0.1:1379 is the
// listener of a relay in the grader's process. The relay dials the
// server's namespace for each connection the client opens, copies the
// bytes both ways untouched, and records them with the time they passed,
// so that clients which hard-code 127.0.0.1:1379 work and neither program
// can reach the other except through it. Each scenario (the course flow, a
// 2 MiB upload, a non-ASCII name, a download into {dir}) is written as a
// pcapng file with synthesized TCP/IP headers (package capgen), decoded
// by package stepdump into its text output, its ladder diagram and its
// diagnoses, and judged by what the server then reports it stored (FILE
// GET on a connection of the grader's own) and what the client wrote.
//
// A server process serves up to eight cells of its row in turn (a
// segment, cut the same way at any number of jobs), each client logging
// in as an id of its own. A cell that does not pass ends the process; a
// cell that failed on a process which had served other cells runs again
// on a fresh one and keeps that verdict (Cell.Rerun), so that no cell is
// judged by what another client left behind. Options.FreshServers starts
// a server for every cell.
//
// A failing cell is blamed on one side, in one line, from the strongest
// evidence there is: the server process dying, a framing or block-size
// diagnosis of the capture naming the side that sent the frame, a
// connection left unserved while another was open, a request left
// unanswered, a refusal weighed against both programs' results with
// stepkit's own peer, and what the server stored. Each side's own
// conformance run (package grade, once per program, restricted to the
// requirements blame cites) is quoted beside it. Where the evidence does
// not settle it, the blame says "unclear" and what is known.
package interop
