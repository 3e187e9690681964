// Package layering holds the dependency rules test: a table of which Granary
// packages may not depend on which others, checked against the import graph
// that `go list` reports for the module.
package layering
