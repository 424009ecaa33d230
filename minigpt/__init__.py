"""minigpt: train a small GPT on your own text and talk to it.

The public API is below; `minigpt --help` is the command line. The package map, one
line a module; imports flow one way, from the command line to the features to the
core, never back:

core
  config        typed settings (model shape, data, training, sampling), each field
                declaring its default, help and flag once
  schema        JSON type checks of those fields, from_dict, the `setting` declaration
  model         positions, attention, MLP, Block, GPT, the KV cache
  checkpoint    snapshots: safetensors + JSON, written atomically, read once and checked
  device        device, autocast precision, torch.compile choice, matmul peak
  errors        the errors a user can cause, each one line
  fileio        atomic writes, directory swaps, bounded JSON reads, locks, hashes
  tokenizer/    encodings (char, own BPE, tiktoken), bpe (learning merges), files
features
  data/         corpus (reading text in bounded memory), dataset (dataset
                directories), cache (the train-time dataset cache), batches, download
  training/     trainer (the loop), setup, step, evaluate, checkpointer, state,
                metrics (metrics.jsonl), reporting, optim, distributed, plot
  generation/   sampling (pure logit filters), context (KV cache + window), generate
                (the one path: ids -> steps -> text), text (UTF-8 and stop strings),
                inference, memory (what a generation needs, what is free),
                transcript, chat (the session)
  convert/      Hugging Face GPT-2 and Llama layouts (common, gpt2, llama)
command line
  cli/          app (registers the commands), settings (options from config fields),
                options, terminal, one module per command, dashboard, launch, signals
"""

from minigpt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from minigpt.config import DataConfig, GPTConfig, SampleConfig, TrainConfig
from minigpt.errors import MinigptError
from minigpt.generation.generate import generate
from minigpt.generation.sampling import sample_next_token
from minigpt.model import GPT, KVCache, count_parameters
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.files import load_tokenizer, train_tokenizer
from minigpt.training.trainer import train

__all__ = [
    "GPT",
    "Checkpoint",
    "DataConfig",
    "GPTConfig",
    "KVCache",
    "MinigptError",
    "SampleConfig",
    "Tokenizer",
    "TrainConfig",
    "count_parameters",
    "generate",
    "load_checkpoint",
    "load_tokenizer",
    "sample_next_token",
    "save_checkpoint",
    "train",
    "train_tokenizer",
]
