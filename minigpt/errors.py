"""The project's exception types.

Every error a user can cause (a missing file, a bad option, a corrupt checkpoint)
is a `MinigptError`: the CLI prints its message as one line on stderr and exits
non-zero, with no traceback unless `--debug` is given. Anything else that escapes
is a bug in minigpt.

The exit codes of the command line live here too, so that its entry
(`minigpt.__main__`) can use them before anything heavy is loaded.
"""

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT


class MinigptError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class ConfigError(MinigptError):
    """An inconsistent or out-of-range setting (model shape, training or sampling option)."""


class TokenizerError(MinigptError):
    """Text that a tokenizer cannot encode, or a tokenizer file that cannot be used."""


class DataError(MinigptError):
    """An input text or dataset directory that cannot be used."""


class CheckpointError(MinigptError):
    """A directory or file that is not a usable minigpt checkpoint."""


class TrainingError(MinigptError):
    """Training cannot go on (e.g. the loss diverged); the last checkpoint is kept."""


class MissingDependencyError(MinigptError):
    """An optional package a command needs is not installed; the message says how to get it."""


class GenerationError(MinigptError):
    """Generation cannot go on (e.g. the model's logits are all NaN)."""
