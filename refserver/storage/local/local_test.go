package local_test

import (
	"testing"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/local"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) func() storage.Backend {
		dir := t.TempDir()
		return func() storage.Backend {
			s, err := local.Open(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
