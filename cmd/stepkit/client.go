package main

import "github.com/spf13/cobra"

// newClientCmds returns the client commands (login, upload, download, rm, data).
func newClientCmds() []*cobra.Command {
	return nil
}
