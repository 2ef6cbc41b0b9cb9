package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// usageError is an error in the command line itself: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func isUsageError(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

// seeHelp is the hint that ends a usage error about a command's syntax.
func seeHelp(c *cobra.Command) string {
	return fmt.Sprintf("(see '%s --help')", c.CommandPath())
}

// subcommand is a command's path below stepkit ("data put"), which the
// "stepkit: " every error line starts with completes.
func subcommand(c *cobra.Command) string {
	return strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), c.Root().Name()), " ")
}

// noArgs, exactArgs, minArgs and maxArgs check a command's arguments and
// say, as a usage error, which command wanted what.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q %s", subcommand(c), args, seeHelp(c))
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s takes %s, got %d argument(s) %s", subcommand(c), what, len(args), seeHelp(c))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("%s needs %s %s", subcommand(c), what, seeHelp(c))
		}
		return nil
	}
}

func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("%s takes %s, got %d arguments %s", subcommand(c), what, len(args), seeHelp(c))
		}
		return nil
	}
}

// groupArgs and groupRun make a command that only groups subcommands print
// its help when called alone and refuse an unknown subcommand.
func groupArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's own default for its suggestions
	}
	hint := ""
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	if sub := subcommand(c); sub != "" {
		return usageErrorf("unknown command %q for %s%s %s", args[0], sub, hint, seeHelp(c))
	}
	return usageErrorf("unknown command %q%s %s", args[0], hint, seeHelp(c))
}

func groupRun(c *cobra.Command, _ []string) error { return c.Help() }

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
		Args:                  groupArgs,
		RunE:                  groupRun,
		DisableFlagsInUseLine: true,
		SilenceUsage:          true,
		SilenceErrors:         true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if sub := subcommand(c); sub != "" {
			return usageErrorf("%s: %v %s", sub, err, seeHelp(c))
		}
		return usageErrorf("%v %s", err, seeHelp(c))
	})
	root.AddCommand(
		newServeCmd(),
		newConformanceCmd(),
		newDumpCmd(),
		newBenchCmd(),
		newSpecCmd(),
		newGradeCmd(),
		newSandboxCmd(),
		newInteropCmd(),
		newVersionCmd(),
	)
	root.AddCommand(newClientCmds()...)
	root.AddCommand(newFuzzCmd(), newReplayCmd())
	root.SetHelpCommand(newHelpCmd())
	return root
}

// newHelpCmd replaces cobra's help command, which prints the root's help
// and exits 0 for a topic it does not know: here an unknown topic is a
// usage error with a suggestion, as an unknown command is.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help provides help for any command: stepkit help upload, stepkit help data put.",
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			target, _, err := c.Root().Find(args)
			if err != nil || target == nil {
				target = c.Root()
			}
			var names []string
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			root := c.Root()
			target, rest, err := root.Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				parent := root
				if target != nil {
					parent = target
				}
				unknown := args[len(args)-1]
				if len(rest) > 0 {
					unknown = rest[0]
				}
				if parent.SuggestionsMinimumDistance <= 0 {
					parent.SuggestionsMinimumDistance = 2
				}
				hint := ""
				if s := parent.SuggestionsFor(unknown); len(s) > 0 {
					hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
				}
				return usageErrorf("unknown help topic %q%s (see 'stepkit --help')", strings.Join(args, " "), hint)
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the stepkit version",
		Args:  noArgs,
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
