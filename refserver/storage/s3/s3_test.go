package s3_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/s3"
	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

// TestContract runs the storage contract against a real SeaweedFS, each
// test under a prefix of its own in one bucket.
func TestContract(t *testing.T) {
	w := weedtest.Start(t)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) func() storage.Backend {
		prefix := fmt.Sprintf("contract-%d/", n.Add(1))
		return func() storage.Backend {
			st, err := s3.Open(context.Background(), w.Config(prefix))
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	})
}
