// Package refserver is the stepkit reference server: STEP as the course's
// reference server speaks it, with every request answered, hostile input
// refused, uploads that survive a restart, per-user quotas and rate
// limits, and a course mode that every course client works with unchanged.
//
// # Using it
//
//	srv, err := refserver.New(refserver.Config{Root: "/srv/step"})
//	...
//	go srv.ListenAndServe(":1379")
//	...
//	srv.Shutdown(ctx) // stop accepting, finish requests in flight, close
//
// Tests start a server on 127.0.0.1 with a temporary root in one call:
//
//	addr, srv := refserver.StartTest(t, refserver.Config{})
//
// ServeConn serves one connection accepted elsewhere, or one end of a
// net.Pipe (FuzzConn feeds arbitrary streams to it).
//
// StartTest, New, Config, Serve, ServeConn, ListenAndServe, Shutdown and
// Close are the stable API of this package.
//
// # Every request answered
//
// The server answers every request exactly once, in order, each response
// in a single write, with the statuses of the course's reference server
// and, where that server is silent or crashes, the statuses of STEP.md:
// 408 for DATA UPLOAD/DOWNLOAD, 409 for AUTH with another operation than
// LOGIN, 410 for fields of the wrong JSON type or unusable keys, 413 for
// frames over Config.Limits (then the connection is closed), files over
// Config.MaxFileSize or a user's Config.Quota, 429 past Config.RateLimit,
// 500 for storage failures, 507 when the storage is full, and one
// ERROR/503 frame past Config.MaxConns or Config.MaxConnsPerIP. BYE is
// answered with 200 before the connection is closed.
//
// # Hostile clients and a full disk
//
// The frames in flight of all connections are bounded together by
// Config.MaxFrameMemory (limits.go): a connection that would pass it is not
// read from until others give theirs back, within its frame's deadline
// (Config.ReadTimeout, extended by Config.MinFrameRate). FILE SAVE
// reserves the file's space and answers 507 at once when it is not there,
// after removing uploads idle for Config.FullDiskUploadMaxAge
// (fulldisk.go).
//
// # Security modes
//
// Course mode (Accounts nil) follows the course: the password of a user is
// the MD5 hex of the username, and the token is the course recipe
// (CourseToken), which never expires. Anyone can therefore log in as
// anyone; course mode is for classes, not for data that matters. Account
// mode (Config.Accounts) checks bcrypt hashes and signs tokens of the same
// four-part shape with HMAC-SHA256 under a server secret; they expire after
// Config.TokenTTL.
//
// In both modes a user is confined to their own folders, keys naming
// anything but a plain file name are refused (CheckKey), and every file
// access goes through an os.Root opened on the storage root.
//
// # Storage
//
// The handlers keep everything through a storage.Backend. The default is
// the folder Config.Root (package storage/local); Config.Storage names
// another backend, such as an S3-compatible bucket that several servers
// share (package storage/s3). The folder's layout:
//
//	ROOT/data/USER/KEY              DATA document (the request's JSON without its token)
//	ROOT/file/USER/KEY              completed file, only ever present whole
//	ROOT/meta/USER/KEY              size and MD5 of file/USER/KEY (JSON)
//	ROOT/tmp/USER/KEY/plan.json     upload in progress: its plan
//	ROOT/tmp/USER/KEY/blocks        ... the file, its space reserved, blocks written in place
//	ROOT/tmp/USER/KEY/received      ... one byte per block, 1 once written
//	ROOT/tmp/.stage/                files being written, renamed into place when whole
//
// USER is the username with "." replaced by "_". A restarted server on the
// same root resumes the uploads in tmp/.
package refserver
