// Package conformance is the STEP conformance suite: Ginkgo specs that check
// a server, requirement by requirement, against spec/STEP.md and give a
// verdict precise enough to grade with.
//
// Each case is an ordinary Ginkgo spec, defined by the section files
// (frame.go, message.go, request.go, login.go, token.go, data.go,
// file_save.go, file_upload.go, file_get.go, file_download.go,
// file_delete.go, keys.go, conn.go, robust.go, extensions.go) inside
// Register, so that a process can define and run the suite any number of
// times after resetting Ginkgo's global suite (Run does both). A case cites
// the requirements it checks; its Ginkgo labels are req:ID, sec:PREFIX and
// level:MUST|SHOULD|MAY for each of them.
//
// Cases talk to the server through Conn, a raw connection that writes
// exactly the frames or bytes a case gives it (built with package spec),
// reads one frame at a time under a per-read deadline, and records the wire
// exchange. Checks name the requirement they enforce, and the requirement's
// level decides the outcome when the check fails:
//
//	MUST    FAIL           the case ends
//	SHOULD  NON-STRICT     the case goes on; the server is still conformant
//	MAY     INFORMATIONAL
//
// An optional requirement can carry a MUST of its own, for a server that
// takes it up: one that advertises pipelining at LOGIN and then mishandles
// segmented pipelined requests FAILs EXT-6, and so does one that breaks a
// quota or connection limit the run was told of (EXT-1, EXT-3); see
// T.FailTerms.
//
// FRAME-10 and ROBUST-3 send the same 4 GiB header: an answer or a close
// within the read timeout passes FRAME-10 (ROBUST-3 judges the 413), while
// silence, with the server answering on a new connection at once, is a
// server waiting for the announced body: FAIL under FRAME-10.
//
// ERROR is kept for cases the harness could not run (the server cannot be
// reached, or gives no STEP answer at all: a preflight LOGIN finds that out
// once, so a dead server costs one wait, not one per case).
// Where the course's servers disagree on a status code, the catalogue has a
// MUST for the class (a 4xx refusal, nothing stored, the connection usable)
// and a SHOULD for the preferred code, so another 4xx is NON-STRICT, never
// FAIL.
//
// A server that stays silent fails the waiting case after the per-read
// timeout, once the silence is confirmed (a LOGIN on a new connection is
// answered while the request is not; see silenceJudge), citing REQ-6
// besides the case's own requirement, and the case ends there whatever that
// requirement's level; a whole-case timeout backs it up. Cases use fresh
// connections, random users (under the course login rule, unless Config
// names real accounts) and random keys, and delete what they create, so
// they run side by side (Options.Parallel): the case bodies run on a pool
// of workers ahead of the Ginkgo specs, which report their results in
// order. A server serving one connection at a time, found at preflight, is
// checked one case at a time.
//
// # What the suite cannot see
//
// The suite judges a server by what crosses the wire. These deviations from
// STEP.md are invisible to it, or visible only in part:
//
//   - Storage outside the protocol: a server that writes a file outside its
//     root for a hostile key, yet answers 4xx, passes KEY-2 and ISO-3 (which
//     check that nothing is reachable through the protocol, not the disk).
//   - Durability: fsync, atomic renames, uploads resumed after a restart.
//   - ROBUST-3's "without allocating the announced length": memory use is
//     not observed, only the 413 answer and the close.
//   - FRAME-6 (one write per response) is judged from the client's first
//     read; the kernel may merge two quick writes, hiding the second.
//   - Races: CONN-4 and CONN-5 run concurrent uploads once; a race that does
//     not show in that run is not seen (CONN-5 notes a connection lost in
//     it and judges the file).
//   - Segmentation: CONN-2.3 and EXT-6 cut frames into pieces sent a moment
//     apart (75 ms, 20 ms); a server that reads later than that sees the
//     pieces whole, and an over-read (STEP.md A.23) stays hidden.
//   - Token strength: TOKEN-4 tampers with the user, time and signature of
//     a four-part base64 token (or flips a character of an opaque one); a
//     server that accepts other forgeries is not found out.
//   - TOKEN-7 (expiry), ROBUST-5 (idle timeout), EXT-1 (quota) and EXT-3
//     (connection cap) are checked only when the run is told the server's
//     settings (Config.TokenTTL, IdleTimeout, Quota, MaxConns); otherwise
//     they are INFORMATIONAL.
//   - TOKEN-11 (course tokens do not expire) reuses the run's first token
//     at the end of the run, at least two seconds old: a longer lifetime
//     is not seen. CONN-6 (port 1379 over IPv4) is judged only when the
//     run targets port 1379; on another port, the built-in server's free
//     port included, the server may be configured so.
//   - "Nothing stored or changed" after a refusal is verified where a case
//     can read it back (DATA-SAVE-3, FILE-SAVE-3/4, FILE-UPLOAD-4/6/8/10/13,
//     KEY-2, ISO-2/3, ROBUST-4), not after every refusal.
//   - MSG-2 and MSG-5 (echoed operation and type) are checked on a battery
//     of one request per operation and outcome, not on every response.
//   - A response paired with the wrong request is caught where the suite
//     can tell responses apart: pipelined requests (CONN-2, FRAME-5) and
//     fields that echo the request (key, block_index).
package conformance
