package grade_test

import (
	"os"
	"testing"

	"github.com/stepkit/stepkit/internal/testbin"
)

// stepkitBin is the stepkit binary the tests grade with, built once.
var stepkitBin string

func TestMain(m *testing.M) { os.Exit(testbin.Run(m, &stepkitBin)) }
