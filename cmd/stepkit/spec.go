package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stepkit/stepkit/spec"
)

func newSpecCmd() *cobra.Command {
	var list bool
	cmd := &cobra.Command{
		Use:   "spec [ID|PREFIX]...",
		Short: "Print spec/STEP.md, or the requirements named by ID or section prefix",
		Long: `Print the normative STEP specification (spec/STEP.md), or look requirements up
in its catalogue: an ID (FILE-UPLOAD-7) prints that requirement, a prefix
(FILE-UPLOAD) every requirement of that section.`,
		Example: `  stepkit spec | less
  stepkit spec FILE-UPLOAD-7 TOKEN-2
  stepkit spec --list`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if !list && len(args) == 0 {
				_, err := fmt.Fprint(out, spec.Document())
				return err
			}
			reqs, err := selectRequirements(args)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLEVEL\tSUBJECT\tSECTION\tREQUIREMENT")
			for _, r := range reqs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Level, r.Subject, r.Section, r.Text)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&list, "list", false, "list every requirement of the catalogue")
	return cmd
}

// selectRequirements returns the catalogue entries named by IDs or section
// prefixes, in catalogue order; no names select everything.
func selectRequirements(names []string) ([]spec.Requirement, error) {
	all := spec.Requirements()
	if len(names) == 0 {
		return all, nil
	}
	var out []spec.Requirement
	for _, name := range names {
		name = strings.ToUpper(strings.TrimSpace(name))
		n := len(out)
		for _, r := range all {
			if r.ID == name || r.SectionPrefix() == name {
				out = append(out, r)
			}
		}
		if len(out) == n {
			return nil, usageErrorf("no requirement or section %q in the catalogue (stepkit spec --list shows them)", name)
		}
	}
	return out, nil
}
