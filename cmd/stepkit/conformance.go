package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newConformanceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "conformance",
		Short: "conformance (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("conformance is not built yet")
		},
	}
}
