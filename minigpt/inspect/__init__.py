"""Views into a trained model: what `minigpt inspect` shows, as tensors and plain records.

Every view takes a model and its tokenizer and returns data; the CLI (and the HTML
pages) only render it.

- `forward`: one traced forward pass over a prompt (`Traced`): ids, token labels,
  logits, and the `minigpt.model.Trace` (attention, residual stream);
- `weights`: the parameters by role (embedding, query, key, value, attention output,
  up- and down-projection, unembedding, plus positions, norms and biases), with counts
  and statistics, overall and per layer;
- `attention`: every head's pattern, and the four stages of one head's picture;
- `positions`: the position table, its similarities, RoPE's frequencies and decay, and
  whether adding a position changes which token an embedding looks like;
- `embeddings`: nearest tokens, embedding arithmetic, a 2-D PCA map;
- `lens`: the logit lens, each layer's prediction;
- `nextdist`: the next-token distribution at several temperatures, cut by the
  sampler's own filters;
- `surprise`: the model's loss on every token of a text, and its bits per byte;
- `html`: self-contained HTML pages of these views (the attention widget alone, or
  every view in one report), with their script, style and data inline.
"""
