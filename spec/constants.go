// Package spec is STEP as code: the protocol's vocabulary, the Message type,
// the frame Reader and Writer, and the catalogue of requirements defined in
// STEP.md. Every other package of stepkit reads and writes frames through
// this package only.
package spec

// Network defaults.
const (
	// DefaultPort is the TCP port the course document fixes for STEP.
	DefaultPort = 1379
	// DefaultAddr is where clients look for a server when told nothing else.
	DefaultAddr = "127.0.0.1:1379"
	// DefaultBlockSize is the block size of the course's reference server
	// (MAX_PACKET_SIZE). Clients must follow the plan's block_size instead.
	DefaultBlockSize = 20480
	// MaxBlockSize is the largest block_size the course document allows.
	MaxBlockSize = 65536
	// MaxFileSize is the largest size the course document allows (2^32).
	MaxFileSize = 1 << 32
	// HeaderLen is the length of a frame header: two big-endian uint32s.
	HeaderLen = 8
)

// Operation is the "operation" field of a message.
type Operation string

// Operations. OpError and Op3Body appear only in responses.
const (
	OpSave     Operation = "SAVE"
	OpDelete   Operation = "DELETE"
	OpGet      Operation = "GET"
	OpUpload   Operation = "UPLOAD"
	OpDownload Operation = "DOWNLOAD"
	OpBye      Operation = "BYE"
	OpLogin    Operation = "LOGIN"
	OpError    Operation = "ERROR"
	Op3Body    Operation = "3BODY"
)

// RequestOperations are the seven operations a request may carry.
func RequestOperations() []Operation {
	return []Operation{OpSave, OpDelete, OpGet, OpUpload, OpDownload, OpBye, OpLogin}
}

// Valid reports whether op is one of the seven request operations.
func (op Operation) Valid() bool {
	switch op {
	case OpSave, OpDelete, OpGet, OpUpload, OpDownload, OpBye, OpLogin:
		return true
	}
	return false
}

// Type is the "type" field of a message.
type Type string

// Types. TypeError and TypeDangerous appear only in responses.
const (
	TypeFile      Type = "FILE"
	TypeData      Type = "DATA"
	TypeAuth      Type = "AUTH"
	TypeError     Type = "ERROR"
	TypeDangerous Type = "DANGEROUS"
)

// Valid reports whether t is one of the three request types.
func (t Type) Valid() bool {
	return t == TypeFile || t == TypeData || t == TypeAuth
}

// Direction is the "direction" field of a message.
type Direction string

// Directions. DirEarth is the reference server's easter egg.
const (
	DirRequest  Direction = "REQUEST"
	DirResponse Direction = "RESPONSE"
	DirEarth    Direction = "EARTH"
)

// Field names of the JSON part.
const (
	FieldOperation  = "operation"
	FieldDirection  = "direction"
	FieldType       = "type"
	FieldUsername   = "username"
	FieldPassword   = "password"
	FieldToken      = "token"
	FieldKey        = "key"
	FieldSize       = "size"
	FieldTotalBlock = "total_block"
	FieldBlockSize  = "block_size"
	FieldBlockIndex = "block_index"
	FieldMD5        = "md5"
	FieldStatus     = "status"
	FieldStatusMsg  = "status_msg"
	// FieldPipelining is the extension field of a LOGIN response by which a
	// server advertises that it answers pipelined requests however TCP cuts
	// them up (EXT-6). Clients that do not know it ignore it.
	FieldPipelining = "pipelining"
	// FieldMaxBlockSize is the extension field of a LOGIN response by which
	// a server advertises the largest block_size it plans with for a client
	// that asks for one in FILE SAVE, FILE GET and FILE DOWNLOAD (EXT-7).
	FieldMaxBlockSize = "max_block_size"
	// FieldUploadWindow is the extension field of a LOGIN response by
	// which a server advertises how many bytes of an upload a client must
	// keep in flight on a connection for the server to gather its blocks
	// into fewer, larger writes (EXT-8).
	FieldUploadWindow = "upload_window"
	// FieldWindow is the extension field of an UPLOAD request by which a
	// client says how many bytes of the upload it keeps in flight on the
	// connection until the upload's last block (EXT-8).
	FieldWindow = "window"
)

// ReservedFields lists every field name STEP gives a meaning to.
func ReservedFields() []string {
	return []string{FieldOperation, FieldDirection, FieldType, FieldUsername,
		FieldPassword, FieldToken, FieldKey, FieldSize, FieldTotalBlock,
		FieldBlockSize, FieldBlockIndex, FieldMD5, FieldStatus, FieldStatusMsg}
}

// Status is the "status" field of a response.
type Status int

// Status codes of the course document (200, 400–410), the easter egg (333),
// and the extension codes of STEP.md appendix B (413, 429, 500, 503).
const (
	StatusOK               Status = 200
	Status3Body            Status = 333
	StatusCompulsory       Status = 400 // compulsory field missing; malformed frame
	StatusPasswordError    Status = 401
	StatusKeyExists        Status = 402
	StatusTokenError       Status = 403
	StatusKeyNotFound      Status = 404
	StatusBlockIndexRange  Status = 405 // block_index past the last block
	StatusBlockSize        Status = 406 // block length differs from the plan
	StatusWrongDirection   Status = 407
	StatusWrongOperation   Status = 408
	StatusTypeNotAllowed   Status = 409
	StatusFieldMissing     Status = 410 // a field is missing or its value is unusable
	StatusTooLarge         Status = 413 // frame, file or quota too large (extension)
	StatusTooManyRequests  Status = 429 // rate limit (extension)
	StatusInternalError    Status = 500 // storage failure (extension)
	StatusServiceBusy      Status = 503 // connection limit reached (extension)
	statusClientErrorFirst Status = 400
	statusClientErrorLast  Status = 499
)

// IsClientError reports whether s is in the 4xx class: a refused request.
func (s Status) IsClientError() bool {
	return s >= statusClientErrorFirst && s <= statusClientErrorLast
}

// Text is the meaning the course document (or STEP.md's extensions) gives s.
func (s Status) Text() string {
	switch s {
	case StatusOK:
		return "OK"
	case Status3Body:
		return "Easter egg (EARTH)"
	case StatusCompulsory:
		return "Compulsory field is missing"
	case StatusPasswordError:
		return "Password error for login"
	case StatusKeyExists:
		return "The key is existing"
	case StatusTokenError:
		return "No token or token is wrong"
	case StatusKeyNotFound:
		return "Cannot find the key"
	case StatusBlockIndexRange:
		return "The block_index is over the maximum block number"
	case StatusBlockSize:
		return "The size for uploading does not match the required block_size"
	case StatusWrongDirection:
		return "Wrong direction"
	case StatusWrongOperation:
		return "Wrong operation"
	case StatusTypeNotAllowed:
		return "Type is not allowed"
	case StatusFieldMissing:
		return "Field is missing"
	case StatusTooLarge:
		return "Too large"
	case StatusTooManyRequests:
		return "Too many requests"
	case StatusInternalError:
		return "Internal server error"
	case StatusServiceBusy:
		return "Server busy"
	}
	return "Unknown status"
}

// TotalBlocks is the block plan arithmetic: ceil(size / blockSize).
func TotalBlocks(size, blockSize int64) int64 {
	if blockSize <= 0 || size <= 0 {
		return 0
	}
	return (size + blockSize - 1) / blockSize
}

// BlockLen is the length of block index of a file of size bytes cut into
// blockSize blocks: blockSize for every block but the last, which holds the
// rest. It returns 0 for an index outside the plan.
func BlockLen(size, blockSize, index int64) int64 {
	total := TotalBlocks(size, blockSize)
	if index < 0 || index >= total {
		return 0
	}
	if index == total-1 {
		return size - blockSize*index
	}
	return blockSize
}
