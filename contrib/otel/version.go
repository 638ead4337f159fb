package otel

// Version is the version of this module, and of the instrumentation scope
// its meter is made with. Release tooling sets it (go run ./tools/release
// prepare) and checks it against the module's tag.
const Version = "0.1.0"
