package spec

import (
	"sort"
	"strings"
)

// Level is a requirement's RFC 2119 keyword.
type Level string

// Levels. A broken MUST makes a server non-conformant; a broken SHOULD is
// reported as NON-STRICT; a MAY is informational.
const (
	MUST   Level = "MUST"
	SHOULD Level = "SHOULD"
	MAY    Level = "MAY"
)

// Subject says whose behaviour a requirement constrains.
type Subject string

// Subjects.
const (
	Server Subject = "server"
	Client Subject = "client"
)

// Requirement is one testable statement of STEP.md.
type Requirement struct {
	ID      string
	Level   Level
	Subject Subject
	Section string // STEP.md section number, e.g. "4.2"
	Text    string
}

// SectionPrefix is the part of the ID before its number, e.g. "FILE-UPLOAD".
func (r Requirement) SectionPrefix() string {
	i := strings.LastIndexByte(r.ID, '-')
	if i < 0 {
		return r.ID
	}
	return r.ID[:i]
}

// Requirements returns the catalogue, in STEP.md order. IDs are stable:
// a requirement that is withdrawn keeps its ID out of use.
func Requirements() []Requirement {
	return append([]Requirement(nil), catalogue...)
}

// Lookup finds a requirement by ID.
func Lookup(id string) (Requirement, bool) {
	for _, r := range catalogue {
		if r.ID == id {
			return r, true
		}
	}
	return Requirement{}, false
}

// SectionPrefixes lists the distinct ID prefixes, sorted.
func SectionPrefixes() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range catalogue {
		p := r.SectionPrefix()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

var catalogue = []Requirement{
	// 2. Framing
	{"FRAME-1", MUST, Server, "2", "A message is an 8-byte header (JSON length, binary length: unsigned 32-bit big-endian) followed by exactly that many bytes of JSON and then of binary."},
	{"FRAME-2", MUST, Server, "2", "The JSON length counts the bytes of the UTF-8 encoded JSON text, not its characters."},
	{"FRAME-3", MUST, Server, "2", "The JSON part is one JSON object encoded in UTF-8."},
	{"FRAME-4", MUST, Server, "2", "A receiver reassembles a frame however it is split across TCP segments, including a header split in two."},
	{"FRAME-5", MUST, Server, "2", "A receiver handles several frames arriving in one TCP segment."},
	{"FRAME-6", SHOULD, Server, "2", "A server writes each response in a single write, so that a client reading it with one recv gets it whole."},
	{"FRAME-7", MUST, Server, "2", "A binary length of 0 means the message has no binary part."},
	{"FRAME-8", MUST, Server, "2", "A server accepts a frame whose binary part is one whole block of the block_size it announced."},
	{"FRAME-9", MUST, Server, "2", "Non-ASCII text in JSON values (keys, usernames, DATA fields) is carried unchanged in both directions."},
	{"FRAME-10", MUST, Server, "2", "A receiver checks both announced lengths against its limits before allocating memory for the frame or waiting for its body."},

	// 3. Messages
	{"MSG-1", MUST, Server, "3", "Every response carries operation, direction \"RESPONSE\", type, status (an integer) and status_msg (a string)."},
	{"MSG-2", SHOULD, Server, "3", "A response's operation echoes the request's operation (the reference answers FILE DELETE and DOWNLOAD errors with GET)."},
	{"MSG-3", MUST, Client, "3", "A client does not depend on a response's operation field; it pairs responses with requests by their order."},
	{"MSG-4", MUST, Server, "3", "Fields a request carries beyond those its operation uses are ignored, not refused."},
	{"MSG-5", SHOULD, Server, "3", "A response's type echoes the request's type, except for the errors of section 4 (type ERROR), token errors (type AUTH) and the easter egg."},
	{"MSG-6", MUST, Server, "3", "Status 200 is answered only for a request that was carried out; a refused request gets a status of 400 or more, with the meaning of the status table."},

	// 4. Request checks
	{"REQ-1", MUST, Server, "4", "A request missing operation, direction or type is answered with status 400 (operation ERROR)."},
	{"REQ-2", MUST, Server, "4", "A request whose direction is not REQUEST (nor EARTH) is answered with status 407."},
	{"REQ-3", MUST, Server, "4", "A request whose operation is not one of the seven is answered with status 408."},
	{"REQ-4", MUST, Server, "4", "A request whose type is not FILE, DATA or AUTH is answered with status 409."},
	{"REQ-5", SHOULD, Server, "4", "The checks of REQ-1 to REQ-4 are applied in that order, and before the token is checked."},
	{"REQ-6", MUST, Server, "4", "Every request other than BYE is answered with exactly one response, including requests the reference leaves unanswered."},
	{"REQ-7", MUST, Server, "4", "A request of type AUTH with an operation other than LOGIN or BYE is refused with a 4xx status."},
	{"REQ-8", SHOULD, Server, "4", "The status for REQ-7 is 409."},
	{"REQ-9", MUST, Server, "4", "A field of the wrong JSON type (a string block_index, a negative or fractional size, a numeric key) is refused with a 4xx status and the connection stays usable."},
	{"REQ-10", SHOULD, Server, "4", "The status for REQ-9 is 410."},
	{"REQ-11", SHOULD, Server, "4", "The status_msg of a REQ-1 response names the missing field."},

	// 5. The EARTH easter egg
	{"EARTH-1", MAY, Server, "5", "A request with direction EARTH is answered with operation 3BODY, status 333, type DANGEROUS and status_msg \"DO NOT ANSWER! DO NOT ANSWER! DO NOT ANSWER!\"."},

	// 6. Login
	{"LOGIN-1", MUST, Server, "6", "LOGIN with a type other than AUTH is answered with status 409."},
	{"LOGIN-2", MUST, Server, "6", "LOGIN without username is answered with status 410."},
	{"LOGIN-3", MUST, Server, "6", "LOGIN without password is answered with status 410."},
	{"LOGIN-4", MUST, Server, "6", "LOGIN with a wrong password is answered with status 401 and no token."},
	{"LOGIN-5", MUST, Server, "6", "A successful LOGIN is answered with status 200 and a non-empty string token."},
	{"LOGIN-6", MUST, Server, "6", "Under the course login rule the password is the hex MD5 of the username, accepted in either letter case, for every username the server does not refuse with 410."},
	{"LOGIN-7", SHOULD, Server, "6", "An empty username is refused with status 410."},
	{"LOGIN-8", MUST, Server, "6", "A username or password that is not a JSON string is refused with a 4xx status."},

	// 7. Tokens
	{"TOKEN-1", MUST, Server, "7", "A request other than LOGIN and BYE without a token is answered with status 403 (type AUTH)."},
	{"TOKEN-2", MUST, Server, "7", "A token that is not valid base64 is answered with status 403."},
	{"TOKEN-3", MUST, Server, "7", "A token that does not decode to four dot-separated parts is answered with status 403."},
	{"TOKEN-4", MUST, Server, "7", "A token whose signature does not match (a tampered user or time) is answered with status 403."},
	{"TOKEN-5", MUST, Client, "7", "A client treats the token as opaque and sends it back unchanged."},
	{"TOKEN-6", MUST, Server, "7", "A token is valid on every connection to the server that issued it, not only the one it was issued on."},
	{"TOKEN-7", MUST, Server, "7", "A server whose tokens expire answers a request with an expired token with status 403."},
	{"TOKEN-8", SHOULD, Server, "7", "In course mode a token is base64 of USER.TIME.login.SIG as the course recipe builds it, because course clients rebuild and check it."},
	{"TOKEN-9", MUST, Server, "7", "A token that is not a JSON string is answered with status 403."},
	{"TOKEN-10", MUST, Server, "7", "A request acts on the keys of the user its token was issued to, whatever other fields it carries."},
	{"TOKEN-11", SHOULD, Server, "7", "In course mode tokens do not expire, because course clients reuse old tokens."},

	// 8. DATA operations
	{"DATA-SAVE-1", MUST, Server, "8.1", "DATA SAVE with a new key stores the document and is answered with status 200 and the key."},
	{"DATA-SAVE-2", MUST, Server, "8.1", "DATA SAVE without a key stores the document under a new key the server generates and returns."},
	{"DATA-SAVE-3", MUST, Server, "8.1", "DATA SAVE of an existing key is answered with status 402 and leaves the stored document unchanged."},
	{"DATA-SAVE-4", SHOULD, Server, "8.1", "A generated key is a random (version 4) UUID in its canonical text form."},
	{"DATA-SAVE-5", SHOULD, Server, "8.1", "The stored document is the request's fields in order and as sent, except token."},
	{"DATA-GET-1", MUST, Server, "8.2", "DATA GET of a stored key is answered with status 200 and every field the document was saved with, other than the five every response carries."},
	{"DATA-GET-2", MUST, Server, "8.2", "DATA GET of an unknown key is answered with status 404."},
	{"DATA-GET-3", MUST, Server, "8.2", "DATA GET without a key is answered with status 410."},
	{"DATA-GET-4", SHOULD, Server, "8.2", "DATA GET returns the stored fields in their saved order and bytes; the response's own five fields replace same-named stored fields."},
	{"DATA-DELETE-1", MUST, Server, "8.3", "DATA DELETE of a stored key removes it and is answered with status 200 and the key."},
	{"DATA-DELETE-2", MUST, Server, "8.3", "DATA DELETE of an unknown key is answered with status 404."},
	{"DATA-DELETE-3", MUST, Server, "8.3", "DATA DELETE without a key is answered with status 410."},
	{"DATA-OTHER-1", MUST, Server, "8.4", "DATA UPLOAD and DATA DOWNLOAD are refused with a 4xx status."},
	{"DATA-OTHER-2", SHOULD, Server, "8.4", "The status for DATA UPLOAD and DATA DOWNLOAD is 408."},

	// 9.1 FILE SAVE (upload plan)
	{"FILE-SAVE-1", MUST, Server, "9.1", "FILE SAVE with a new key and a size of at least 1 is answered with status 200, the key, size, block_size (1 to 65536) and total_block = ceil(size / block_size)."},
	{"FILE-SAVE-2", MUST, Server, "9.1", "FILE SAVE without a key plans the upload under a new key the server generates and returns."},
	{"FILE-SAVE-3", MUST, Server, "9.1", "FILE SAVE of a key whose upload completed is answered with status 402 and leaves the file unchanged."},
	{"FILE-SAVE-4", MUST, Server, "9.1", "FILE SAVE without a size is refused with a 4xx status and plans nothing."},
	{"FILE-SAVE-5", SHOULD, Server, "9.1", "The status for FILE-SAVE-4 is 410 (the reference answers 402)."},
	{"FILE-SAVE-6", MUST, Server, "9.1", "FILE SAVE of a key whose upload is still in progress is accepted with status 200 and a new plan."},
	{"FILE-SAVE-7", SHOULD, Server, "9.1", "FILE SAVE of a key still in progress restarts its upload: blocks received before are discarded."},
	{"FILE-SAVE-8", MUST, Server, "9.1", "FILE SAVE with size 0 is answered: either with status 200 (an empty file) or with a 4xx status."},
	{"FILE-SAVE-9", MAY, Server, "9.1", "FILE SAVE with size 0 creates an empty file at once: status 200, total_block 0 and the md5 of no bytes."},
	{"FILE-SAVE-10", MUST, Server, "9.1", "FILE SAVE with a size larger than the server accepts is refused with a 4xx status and plans nothing."},
	{"FILE-SAVE-11", SHOULD, Server, "9.1", "A server plans with block_size 20480 unless configured otherwise, because many course clients cut 20480-byte blocks whatever the plan says."},

	// 9.2 FILE UPLOAD
	{"FILE-UPLOAD-1", MUST, Server, "9.2", "FILE UPLOAD of a planned block is answered with status 200, the key and the block_index."},
	{"FILE-UPLOAD-2", MUST, Server, "9.2", "The UPLOAD response that completes the file carries md5, the hex MD5 of the whole file."},
	{"FILE-UPLOAD-3", MUST, Server, "9.2", "FILE UPLOAD without a key is answered with status 410."},
	{"FILE-UPLOAD-4", MUST, Server, "9.2", "FILE UPLOAD without a block_index is refused with a 4xx status."},
	{"FILE-UPLOAD-5", SHOULD, Server, "9.2", "The status for FILE-UPLOAD-4 is 410."},
	{"FILE-UPLOAD-6", MUST, Server, "9.2", "FILE UPLOAD with a block_index of total_block or more is refused with a 4xx status and stores nothing."},
	{"FILE-UPLOAD-7", SHOULD, Server, "9.2", "The status for FILE-UPLOAD-6 is 405."},
	{"FILE-UPLOAD-8", MUST, Server, "9.2", "FILE UPLOAD with a negative block_index is refused with a 4xx status and stores nothing."},
	{"FILE-UPLOAD-9", SHOULD, Server, "9.2", "The status for FILE-UPLOAD-8 is 410."},
	{"FILE-UPLOAD-10", MUST, Server, "9.2", "FILE UPLOAD of a block whose length is not the plan's (block_size, or the rest of the file for the last block) is answered with status 406 and stores nothing."},
	{"FILE-UPLOAD-11", MUST, Server, "9.2", "FILE UPLOAD to a key with no upload planned is refused with a 4xx status."},
	{"FILE-UPLOAD-12", SHOULD, Server, "9.2", "The status for FILE-UPLOAD-11 is 408."},
	{"FILE-UPLOAD-13", MUST, Server, "9.2", "FILE UPLOAD to a key whose upload completed is refused with a 4xx status and leaves the file unchanged."},
	{"FILE-UPLOAD-14", SHOULD, Server, "9.2", "The status for FILE-UPLOAD-13 is 408."},
	{"FILE-UPLOAD-15", MUST, Server, "9.2", "Sending a block again before the upload completes is accepted with status 200 and does no harm."},
	{"FILE-UPLOAD-16", MUST, Server, "9.2", "Blocks may arrive in any order; the file completes when every block has arrived once."},
	{"FILE-UPLOAD-17", MUST, Server, "9.2", "An upload in progress is invisible: FILE GET and FILE DOWNLOAD of its key are answered with status 404."},

	// 9.3 FILE GET (download plan)
	{"FILE-GET-1", MUST, Server, "9.3", "FILE GET of a completed key is answered with status 200, the key, size, block_size, total_block and md5."},
	{"FILE-GET-2", MUST, Server, "9.3", "FILE GET of an unknown key is answered with status 404."},
	{"FILE-GET-3", MUST, Server, "9.3", "FILE GET of a key whose upload is in progress is answered with status 404."},
	{"FILE-GET-4", MUST, Server, "9.3", "FILE GET without a key is refused with a 4xx status."},
	{"FILE-GET-5", SHOULD, Server, "9.3", "The status for FILE-GET-4 is 410."},

	// 9.4 FILE DOWNLOAD
	{"FILE-DOWNLOAD-1", MUST, Server, "9.4", "FILE DOWNLOAD of a block of a completed key is answered with status 200, the key, the block_index, size (the block's length) and the block as binary."},
	{"FILE-DOWNLOAD-2", MUST, Server, "9.4", "FILE DOWNLOAD of an unknown or unfinished key is answered with status 404."},
	{"FILE-DOWNLOAD-3", MUST, Server, "9.4", "FILE DOWNLOAD without a key is refused with a 4xx status."},
	{"FILE-DOWNLOAD-4", SHOULD, Server, "9.4", "The status for FILE-DOWNLOAD-3 is 410."},
	{"FILE-DOWNLOAD-5", MUST, Server, "9.4", "FILE DOWNLOAD without a block_index is refused with a 4xx status."},
	{"FILE-DOWNLOAD-6", SHOULD, Server, "9.4", "The status for FILE-DOWNLOAD-5 is 410."},
	{"FILE-DOWNLOAD-7", MUST, Server, "9.4", "FILE DOWNLOAD with a block_index of total_block or more is refused with a 4xx status."},
	{"FILE-DOWNLOAD-8", SHOULD, Server, "9.4", "The status for FILE-DOWNLOAD-7 is 405."},
	{"FILE-DOWNLOAD-9", MUST, Server, "9.4", "FILE DOWNLOAD with a negative block_index is refused with a 4xx status."},
	{"FILE-DOWNLOAD-10", SHOULD, Server, "9.4", "The status for FILE-DOWNLOAD-9 is 410."},

	// 9.5 FILE DELETE
	{"FILE-DELETE-1", MUST, Server, "9.5", "FILE DELETE of a completed key removes the file and is answered with status 200 and the key."},
	{"FILE-DELETE-2", MUST, Server, "9.5", "FILE DELETE of an unknown key is answered with status 404."},
	{"FILE-DELETE-3", MUST, Server, "9.5", "FILE DELETE without a key is refused with a 4xx status."},
	{"FILE-DELETE-4", SHOULD, Server, "9.5", "The status for FILE-DELETE-3 is 410."},
	{"FILE-DELETE-5", MUST, Server, "9.5", "FILE DELETE of a key whose upload is in progress removes the partial upload; a later UPLOAD to it is refused."},
	{"FILE-DELETE-6", SHOULD, Server, "9.5", "The status for FILE-DELETE-5 is 404, as the reference answers."},

	// 10. Keys and user isolation
	{"KEY-1", MUST, Server, "10", "Any key of 1 to 255 bytes without '/', '\\', NUL or control characters, other than \".\" and \"..\", is accepted, including non-ASCII text and spaces."},
	{"KEY-2", MUST, Server, "10", "A key containing '/', '\\', NUL or a control character, or equal to \".\" or \"..\", is refused with a 4xx status; nothing is created, read or deleted."},
	{"KEY-3", SHOULD, Server, "10", "The status for KEY-2, for an empty key, for a key longer than 255 bytes and for a key that is not a JSON string is 410."},
	{"ISO-1", MUST, Server, "10", "A user cannot read another user's DATA or FILE keys: the same key under another user is answered with status 404."},
	{"ISO-2", MUST, Server, "10", "Users have separate key spaces: saving or deleting a key never changes another user's key of the same name."},
	{"ISO-3", MUST, Server, "10", "A key such as ../OTHER/k never reaches another user's storage."},

	// 11. Connections, ordering and BYE
	{"CONN-1", MUST, Server, "11", "A connection serves any number of requests until the client closes it or sends BYE."},
	{"CONN-2", MUST, Server, "11", "Responses come in the order of the requests; requests sent before earlier responses are read (pipelining) are each answered."},
	{"CONN-3", MUST, Server, "11", "A server serves several connections at once; a client holding two connections does not deadlock."},
	{"CONN-4", MUST, Server, "11", "Many clients uploading different keys at once all complete with the right MD5."},
	{"CONN-5", SHOULD, Server, "11", "Two connections uploading the same key at once cannot corrupt it: the completed file is whole."},
	{"CONN-6", SHOULD, Server, "11", "A server listens on TCP port 1379, on IPv4, unless configured otherwise."},
	{"BYE-1", MUST, Client, "11", "A client does not wait for a response to BYE."},
	{"BYE-2", SHOULD, Server, "11", "A server answers BYE with status 200 and then closes the connection."},

	// 12. Bad input
	{"ROBUST-1", MUST, Server, "12", "After malformed input on one connection (bad JSON, wrong types, huge lengths, a disconnect mid-frame), the server still serves new connections."},
	{"ROBUST-2", SHOULD, Server, "12", "A frame whose JSON does not parse, is not an object or is not UTF-8 is answered with status 400 (operation ERROR) and the connection stays usable."},
	{"ROBUST-3", SHOULD, Server, "12", "A header announcing more than the server accepts is answered with status 413 and the connection closed, without allocating the announced length."},
	{"ROBUST-4", MUST, Server, "12", "A connection that ends mid-frame changes no stored data."},
	{"ROBUST-5", SHOULD, Server, "12", "A server closes a connection that stays idle, or stalls mid-frame, past its timeout."},

	// 13. Clients
	{"CLIENT-1", MUST, Client, "13", "A client follows the plan's block_size and total_block, whatever block size it expects."},
	{"CLIENT-2", MUST, Client, "13", "A client compares the md5 the server reports with the MD5 of the data it sent or received."},
	{"CLIENT-3", SHOULD, Client, "13", "A client writes JSON lengths in bytes and reads frames whatever their segmentation."},
	{"CLIENT-4", SHOULD, Client, "13", "A client that does not know the server keeps at most one request carrying binary in flight per connection, unless the server advertised pipelining (EXT-6)."},
	{"CLIENT-5", MUST, Client, "13", "A client uploading a file asks for a plan with FILE SAVE carrying the file's size, then sends every block of the plan with the token, its block_index and exactly the file's bytes at that offset."},
	{"CLIENT-6", MUST, Client, "13", "A client does not report success for an operation the server refused or never completed: it stops or retries, and reports the failure."},
	{"CLIENT-7", SHOULD, Client, "13", "A client puts a deadline on every read and gives up, reporting the failure, when a response does not come."},
	{"CLIENT-8", MUST, Client, "13", "A client of a course-mode server logs in with the MD5 hex of the username's UTF-8 bytes as the password."},

	// Appendix B. Extensions
	{"EXT-1", MAY, Server, "B", "A server may cap each user's stored bytes; a SAVE or UPLOAD that would pass the quota is then answered with status 413."},
	{"EXT-2", MAY, Server, "B", "A server may rate-limit requests or bytes per user; a request over the limit is then answered with status 429."},
	{"EXT-3", MAY, Server, "B", "A server at its connection limit answers a new connection with one ERROR frame of status 503 and closes it."},
	{"EXT-4", MAY, Server, "B", "A server may offer real accounts (account mode): passwords checked against stored hashes, signed tokens that expire."},
	{"EXT-5", MAY, Server, "B", "A receiver may recognise a frame whose JSON length counts characters and serve the request it recovers; it still writes byte lengths."},
	{"EXT-6", MAY, Server, "B", "A server that answers pipelined requests correctly however their frames are segmented may say so with \"pipelining\": true in its successful LOGIN response, and must not advertise it otherwise."},
}
