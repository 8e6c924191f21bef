"""SpineBench evaluation: the lighteval tasks, answer extraction, prompts and baseline models."""
