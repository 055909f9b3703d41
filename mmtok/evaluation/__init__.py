"""Evaluation of a trained tokenizer: `evaluate(model, data)` -> metrics, pictures and a report.

See mmtok.evaluation.runner for the protocol. Importing this package loads neither torch nor Lightning.
"""
from mmtok.evaluation.runner import default_out, evaluate

__all__ = ["default_out", "evaluate"]
