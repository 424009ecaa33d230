"""Training a GPT: the loop and the components it hands work to.

- `trainer`: `train()`, the loop;
- `optim`: AdamW parameter groups, the learning-rate schedule, run progress;
- `evaluate`: validation loss and bits per byte;
- `state`: what an exact resume needs beyond the weights (optimizer moments, RNGs,
  counters);
- `reporting`: the records the loop reports (a `Reporter` draws them);
- `distributed`: several processes (torchrun, DistributedDataParallel);
- `plot`: a run's curves as a PNG.
"""
