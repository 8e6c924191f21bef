"""What lighteval 0.13's model interface asks of a model that only generates text (our baselines and the
endpoint model): no tokenizer, no log-likelihoods.

A mixin, not a LightevalModel subclass: lighteval takes the first LightevalModel subclass it finds in a model
file, which must stay the file's own model class.
"""


class GenerationOnly:
    @property
    def tokenizer(self) -> None:
        return None

    @property
    def add_special_tokens(self) -> bool:
        return False

    @property
    def max_length(self) -> int:  # required by the interface; generation length is the task's setting
        return 2048

    def loglikelihood(self, docs: list) -> list:
        raise NotImplementedError(f"{type(self).__name__} is scored generatively only")

    def loglikelihood_rolling(self, docs: list) -> list:
        raise NotImplementedError(f"{type(self).__name__} is scored generatively only")
