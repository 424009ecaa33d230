"""minigpt: train a small GPT on your own text and talk to it.

The public API; `minigpt --help` is the command line. Training is
`minigpt.training.trainer.train` (not re-exported here, where the name would hide the module).
"""

from minigpt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from minigpt.config import DataConfig, GPTConfig, SampleConfig, TrainConfig
from minigpt.errors import MinigptError
from minigpt.generation.generate import generate
from minigpt.generation.sampling import sample_next_token
from minigpt.model import GPT, KVCache, count_parameters
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.files import load_tokenizer, train_tokenizer

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
    "train_tokenizer",
]
