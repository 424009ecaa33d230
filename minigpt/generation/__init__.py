"""Generating text from a trained model.

- `sampling`: pure functions over logits: the filters and the draw of the next token;
- `context`: the model's context while generating (the KV cache and the window);
- `generate`: the one generation path: prompt ids -> steps -> text chunks for n sequences;
- `text`: token ids -> printable text (whole UTF-8 characters, stop strings held back);
- `utf8`: the UTF-8 automaton whose tables mask the tokens that would break a character;
- `inference`: a model made ready to generate (eval mode, the matmul path measured
  fastest on this machine: default, oneDNN packed or bf16 weights);
- `transcript`: a conversation's turns, undo/regenerate/reset, save and load;
- `chat`: a conversation kept in the model's context, replies through `generate`.
"""
