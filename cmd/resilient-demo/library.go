package main

// libraryOutcome names the library's own refusals; "" for other errors.
func libraryOutcome(error) string { return "" }

// isRejection reports whether an outcome is the client refusing a request
// itself, without sending it.
func isRejection(outcome string) bool {
	return outcome == "breaker open" || outcome == "budget empty"
}

// libraryClients lists the clients built on the library.
func libraryClients() []string { return nil }
