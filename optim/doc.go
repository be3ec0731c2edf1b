// Package optim is slatrun's optimizer and learning-rate schedules, in plain
// Go over caller-owned float32 slices: SGD is PyTorch's torch.optim.SGD
// (momentum, weight decay, no dampening or Nesterov) and Schedule gives the
// learning rate and momentum of every optimizer step (PyTorch's CyclicLR
// with cycling momentum, a piecewise-constant decay, cosine annealing, or a
// constant rate). The orchestrator's Trainer owns one of each; nothing here
// knows about graphs or sessions, and SGD.Step allocates nothing.
package optim
