package refclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/spec"
)

// Upload a file, resuming an interrupted upload of the same file, then
// fetch it back. The window is automatic: blocks are pipelined only if the
// server advertises pipelining at login.
func Example() {
	ctx := context.Background()
	c, err := refclient.Dial(ctx, "127.0.0.1:1379", &refclient.Options{JournalDir: "/tmp/step-journal"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Bye()
	if _, err := c.Login(ctx, "2362202", ""); err != nil { // course rule: password = MD5 of the username
		log.Fatal(err)
	}
	res, err := c.UploadFile(ctx, "report.pdf", "report.pdf", nil)
	var se *refclient.StatusError
	switch {
	case errors.As(err, &se) && se.Status == spec.StatusKeyExists:
		fmt.Println("already uploaded")
	case errors.Is(err, refclient.ErrMD5Mismatch):
		log.Fatal("the server stored other bytes: ", err)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("uploaded", res.Plan.TotalBlock, "blocks, md5", res.MD5)
	}
	if _, err := c.DownloadFile(ctx, "report.pdf", "copy.pdf", nil); err != nil {
		log.Fatal(err)
	}
}
