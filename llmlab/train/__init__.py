"""Training: the optimizer step (optim), checkpoints, what is learned (objectives), the loop
(Trainer, train) and `llmlab train` (cli).

    from llmlab.train import TrainConfig, train
    train(GPTConfig(...), TrainConfig(...), train_ids, val_ids)               # next-token prediction
    train(ClassifierConfig(...), Classification(train_set, val_set, pad_id), TrainConfig(...))
"""

from llmlab.train.course_models import course_model
from llmlab.train.loop import Dist, LossPlot, NonFiniteLoss, TrainConfig, Trainer, TrainResult, setup_distributed, train
from llmlab.train.objectives import Classification, NextToken, Objective

__all__ = ["Classification", "course_model", "Dist", "LossPlot", "NextToken", "NonFiniteLoss", "Objective", "TrainConfig", "TrainResult", "Trainer",
           "setup_distributed", "train"]
