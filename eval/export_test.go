package eval

// setPointHook makes f see every point the attacks of c evaluate, before
// the graph runs; nil removes the hook. Production code never sets one.
func (c *Classifier) setPointHook(f func(a *attacker)) { c.pointHook = f }
