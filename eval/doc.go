// Package eval measures the adversarial robustness of a classifier: clean
// accuracy, the accuracy under each of a list of attacks, the worst case over
// all of them, and GradAlign's local-linearity probe. A robustness number is
// only worth the attack behind it, so the attacks follow their papers closely
// and the accounting errs on the side of calling a sample broken.
//
// # Graphs
//
// eval does not build or differentiate models. Its caller hands NewClassifier
// one eval graph per loss head (docs/contract.md), all with the same fixed batch
// size B: inputs x float32 [B,C,H,W] in [0,1] and y int64 [B] (the "dlr-t"
// and "diff-t" heads also target int64 [B]); outputs logits [B,K], loss.each
// [B] and grad.x = ∂(Σ loss.each)/∂x. The heads are "ce" (cross-entropy), "cw"
// (the CW margin max_{j≠y} z_j − z_y), "dlr" and "dlr-t" (Croce & Hein 2020),
// and "diff-t" (z_t − z_y, FAB-T's linearization); higher loss is more
// adversarial for each. Graphs whose weights are inputs take
// their values through Classifier.SetInput.
//
// # Attacks
//
// ParseAttacks reads names such as "fgsm,pgd-50-10,pgd-cw-50,apgd-ce,apgd-t";
// StandardAttacks is the evaluation of docs/methods.md. All attacks work in an L∞
// ball (or an L2 ball, Config.Norm) around x, intersected with [0,1]:
//
//   - FGSM: x + ε·sign(∇), clipped to the box.
//   - PGD-K-R: uniform random start in the ball, K steps of ε/4·sign(∇), each
//     projected onto the ball and the box; R restarts.
//   - APGD (APGD-CE, APGD-DLR) and APGD-T, AutoAttack's "standard" versions:
//     step 2ε with momentum 0.75, halved at the checkpoints 22, 41, 57, 70,
//     80, 87, 93, 99 (of 100 iterations) when the loss stalls, restarting
//     from the best point; APGD-T runs the targeted DLR loss against the 9
//     classes with the highest clean logits after y.
//   - FAB-T (fab.go): AutoAttack's targeted minimum-norm attack over the same
//     9 targets; its iterates may leave the ball, and a sample is broken
//     only at a misclassified iterate within ε of x.
//   - Square (square.go): score-based random search on the logits' margin,
//     5000 queries, one stream per sample and restart; broken samples leave
//     the batch and the next sample takes the row.
//   - "autoattack": APGD-CE, APGD-T, FAB-T and Square as AutoAttack's
//     standard cascade, summarized in Report.AutoAttack.
//
// A sample is robust against an attack only if it is classified correctly
// (its logit strictly above all others; a tie counts as a mistake) at every
// point the attack evaluates, in every restart; a sample is robust in the
// worst case only if it survives every attack requested. Samples
// misclassified clean are not attacked. By default every attack runs on
// every clean-correct sample, so each attack's accuracy is its own;
// Config.Cascade attacks only the samples still robust, as AutoAttack does,
// and then reports cumulative accuracies. The worst case is the same in both
// modes.
//
// # Determinism and cost
//
// Every random start comes from a stream fixed by the seed, the attack's
// name, the sample's index and the restart, so the same seed gives the same
// report (apart from timings), whatever the batch size or the other attacks
// in the list. The last partial batch is padded with copies. Buffers are
// allocated once per Evaluate; the attack loops allocate nothing, and they
// check ctx between graph runs. Report carries every setting, marshals to
// JSON and prints as a table (Report.Table).
package eval
