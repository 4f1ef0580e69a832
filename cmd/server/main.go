// Command server is kleinserve: a fal.ai-compatible HTTP server for
// FLUX.2 [klein] 4B Base on ONNX Runtime.
//
//	server [serve] [flags]     run the HTTP API (the default subcommand)
//	server generate [flags]    generate images from the command line
//
// Every serve flag has an environment equivalent, KLEINSERVE_<FLAG> with
// dashes as underscores (e.g. KLEINSERVE_PUBLIC_URL); see `server serve -h`.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches subcommands and returns the exit code.
func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "generate":
			return runGenerate(args[1:])
		case "serve":
			return serve(args[1:])
		case "help":
			fmt.Fprintln(os.Stdout, "usage: server [serve] [flags] | server generate [flags]\n\nserve flags:")
			fmt.Fprint(os.Stdout, serveHelp())
			return 0
		}
	}
	return serve(args)
}
