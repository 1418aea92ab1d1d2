"""The training engine: the loop and its hooks, the trainer that builds a run, staged runs, evaluation, metrics."""
from ..errors import TrainingInterrupted
from .evaluator import evaluate, evaluate_checkpoint
from .hooks import AfterStep, StopAtStep
from .metrics import ConfusionMatrix, format_table, metrics_from_confusion
from .train_loop import HookBase, TrainLoop
from .trainer import ScoringChangeWarning, ThreadCountWarning, Trainer, train

__all__ = ["AfterStep", "ConfusionMatrix", "HookBase", "ScoringChangeWarning", "StopAtStep", "ThreadCountWarning",
           "TrainLoop", "Trainer", "TrainingInterrupted", "evaluate", "evaluate_checkpoint", "format_table",
           "metrics_from_confusion", "train"]
