package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepkit/stepkit/sandbox"
)

func newSandboxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Inspect the sandbox graded submissions run in",
		Long: `sandbox inspects the sandbox stepkit grade and stepkit conformance --client run
submissions in.`,
		Args:                  groupArgs,
		RunE:                  groupRun,
		DisableFlagsInUseLine: true,
	}
	cmd.AddCommand(newSandboxCheckCmd(), newSandboxProbeCmd())
	return cmd
}

type sandboxCheckOptions struct {
	dir              string
	memory           string
	cpu              time.Duration
	requireIsolation bool
	json             bool
}

func newSandboxCheckCmd() *cobra.Command {
	var o sandboxCheckOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Print what a program can and cannot do inside the grader's sandbox",
		Long: `check makes a sandbox as stepkit grade makes one for a submission (same
memory and CPU bounds, same fallback to the host network when namespaces
cannot be made), runs a probe inside it, and prints line by line what a
program there can and cannot do: bind 127.0.0.1:1379 and 0.0.0.0:1379,
resolve localhost and its own host name, reach the network, write its
folder, /tmp, /dev/shm, $HOME and the system's folders, fork, start threads,
use POSIX semaphores and message queues (python3's multiprocessing too, when
installed); then the interpreters installed and the limits in force (memory,
tasks, CPU time, file size, open files, /tmp and /dev/shm sizes).

A line that goes otherwise than a submission may rely on is marked
UNEXPECTED, and the exit status is then 1.`,
		Example: `  stepkit sandbox check
  stepkit sandbox check --memory 256MiB --dir submissions/2362202
  stepkit sandbox check --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mem, err := parseBytes(o.memory)
			if err != nil || mem < 16<<20 {
				return usageErrorf("--memory %q: want a size of at least 16MiB, such as 512MiB or 2GiB", o.memory)
			}
			if o.cpu <= 0 {
				return usageErrorf("--cpu must be positive")
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("sandbox check: %w", err)
			}
			cfg := sandbox.Config{Dir: o.dir, Memory: mem, CPU: o.cpu, Fallback: !o.requireIsolation}
			rep, err := sandbox.Check(cmd.Context(), cfg, []string{exe, "sandbox", "probe"})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.json {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = rep.WriteText(out)
			}
			if err != nil {
				return err
			}
			if n := len(rep.Surprises()); n > 0 {
				return withExit(exitFailure, fmt.Errorf("sandbox check: %d line(s) went otherwise than a submission may rely on", n))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "copy this submission folder into the sandbox, as grade does (default: an empty folder)")
	f.StringVar(&o.memory, "memory", "1GiB", "memory bound, as stepkit grade --memory")
	f.DurationVar(&o.cpu, "cpu", 2*time.Minute, "CPU-time bound, as stepkit grade --cpu")
	f.BoolVar(&o.requireIsolation, "require-isolation", false, "fail rather than check the host network when namespaces are not available")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	return cmd
}

// newSandboxProbeCmd is the probe check runs inside the sandbox: this
// same binary, copied into the sandbox's folder.
func newSandboxProbeCmd() *cobra.Command {
	var host bool
	cmd := &cobra.Command{
		Use:    "probe",
		Short:  "Run inside a sandbox by stepkit sandbox check",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sandbox.Probe(cmd.Context(), cmd.OutOrStdout(), !host)
		},
	}
	cmd.Flags().BoolVar(&host, "host", false, "the sandbox runs on the host network")
	return cmd
}
