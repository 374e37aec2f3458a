"""Training: the optimizer step (optim), checkpoints, the loop (Trainer, train) and `llmlab train` (cli).

    from llmlab.train import TrainConfig, train
"""

from llmlab.train.loop import Dist, LossPlot, NonFiniteLoss, TrainConfig, Trainer, TrainResult, setup_distributed, train

__all__ = ["Dist", "LossPlot", "NonFiniteLoss", "TrainConfig", "TrainResult", "Trainer", "setup_distributed", "train"]
