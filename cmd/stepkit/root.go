package main

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// errUsage marks errors in the command line itself.
var errUsage = errors.New("usage")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func isUsageError(err error) bool { return errors.Is(err, errUsage) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "stepkit",
		Short: "The STEP toolkit: server, client, load generator, conformance suite, capture decoder",
		Long: `stepkit speaks STEP, the length-prefixed JSON + binary file-transfer protocol
of the networking course: a reference server, a client, a load generator, a
conformance suite that grades any STEP server requirement by requirement, and a
decoder for pcap/pcapng captures.`,
		Example: `  stepkit serve --root ./store                 # run the reference server on :1379
  stepkit conformance                          # check the built-in server
  stepkit conformance --target 127.0.0.1:1379  # check another server
  stepkit upload report.pdf --user 2362202     # upload a file
  stepkit dump capture.pcapng --summary        # decode a capture`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v\nRun '%s --help' for usage.", errUsage, err, c.CommandPath())
	})
	root.AddCommand(
		newServeCmd(),
		newConformanceCmd(),
		newDumpCmd(),
		newBenchCmd(),
		newSpecCmd(),
		newVersionCmd(),
	)
	root.AddCommand(newClientCmds()...)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the stepkit version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			fmt.Fprintln(cmd.OutOrStdout(), "stepkit", v)
			return nil
		},
	}
}
