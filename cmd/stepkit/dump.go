package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newDumpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dump",
		Short: "dump (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("dump is not built yet")
		},
	}
}
