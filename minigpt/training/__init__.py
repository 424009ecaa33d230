"""Training a GPT: the loop and the components it hands work to.

- `trainer`: `train()`, and the loop that asks the components below when to act;
- `setup`: device, precision, seeds, model and optimizer, built once; the run's summary;
- `precision`: `--precision auto` on a CPU: fp32, bf16 autocast or bf16 with fp32
  attention, timed on the model;
- `step`: one optimizer step (micro-batches, gradients, skipped non-finite steps);
- `evaluate`: validation loss and bits per byte; the `Evaluator` (when, best, patience,
  samples shown while training);
- `checkpointer`: saving `latest/` and `best/`, and the exact restore of a run;
- `state`: what an exact resume needs beyond the weights (optimizer moments, RNGs,
  counters);
- `metrics`: `metrics.jsonl`, its rows written and read back; when a step is logged;
- `reporting`: the records the loop reports (a `Reporter` draws them), stop reasons;
- `sizing`: whether the model suits the amount of text (the small-data warning and
  what to train instead);
- `optim`: AdamW parameter groups, the learning-rate schedule, run progress;
- `distributed`: several processes (torchrun, DistributedDataParallel);
- `plot`: a run's curves as a PNG.
"""
