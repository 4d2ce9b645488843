package reconcile

import "fmt"

// Check is one PASS/FAIL line of a bench's verification.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// Checks is a verification's lines, in order.
type Checks []Check

// Add appends a line.
func (c *Checks) Add(name string, pass bool, format string, args ...any) {
	*c = append(*c, Check{Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)})
}

// Pass reports whether every line passed.
func (c Checks) Pass() bool {
	for _, x := range c {
		if !x.Pass {
			return false
		}
	}
	return true
}
