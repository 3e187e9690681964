// Package testutil holds helpers shared by Granary's tests that drive real
// processes: free loopback ports, building the module's commands once,
// running child processes with their output in the test log, polling with a
// deadline, and stopping processes with SIGTERM then SIGKILL.
package testutil
