"""hf-unlearn: LLM unlearning on Hugging Face Trainer."""

from .callbacks import HessianRefreshCallback
from .config import UnlearningConfig
from .data.pairing import UnlearningCollator, UnlearningPairs, build_unlearning_dataset
from .methods import METHODS
from .optim import SophiaG
from .trainer import UnlearningTrainer

__all__ = [
    "HessianRefreshCallback", "METHODS", "SophiaG", "UnlearningCollator", "UnlearningConfig", "UnlearningPairs",
    "UnlearningTrainer", "build_unlearning_dataset",
]
__version__ = "0.1.0"
